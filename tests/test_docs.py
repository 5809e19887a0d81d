"""Every code sample in ``docs/`` runs.

Rules the pages are written to:

- A page's samples run in order, in a fresh directory of their own, sharing
  one namespace (a later block may use what an earlier one defined). The
  namespace starts with ``import raftstore`` and ``from raftstore import Log,
  LogType`` done, so fragments need not repeat them.
- ``/var/lib/`` in a sample means the page's own directory: samples may show
  real paths without needing root.
- ````python`` blocks are executed in this process. A block with a title
  (````python title="my_engine.py"``) is a file: it is written to the page's
  directory (importable by later blocks and commands) instead of executed.
- ````console`` blocks: every line starting with ``$ `` is a shell command,
  run with bash in the page's directory (``raftstore`` and ``pytest`` are
  this interpreter's ``python -m raftstore`` and ``python -m pytest``); it
  must exit 0 unless the line ends with a comment ``# exit N``. Other lines
  are shown output and are not compared.
- Blocks in any other language (``text``, ``toml``...) are not run.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import raftstore

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]+)(?P<attrs>[^\n]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$",
    re.MULTILINE | re.DOTALL,
)
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\s*$")


@dataclass(frozen=True)
class Sample:
    """One fenced block of a page."""

    page: str
    line: int
    language: str
    title: str | None
    body: str


def samples(page: Path) -> list[Sample]:
    """The runnable fenced blocks of *page*, in order."""
    text = page.read_text("utf-8")
    found = []
    for match in _FENCE.finditer(text):
        language = match["lang"]
        if language not in ("python", "console"):
            continue
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        title = _TITLE.search(match["attrs"])
        found.append(
            Sample(
                page=page.name,
                line=text.count("\n", 0, match.start()) + 1,
                language=language,
                title=title["title"] if title else None,
                body=body + "\n",
            )
        )
    return found


PAGES = sorted(DOCS.glob("**/*.md"))


@contextlib.contextmanager
def page_directory(path: Path) -> Iterator[None]:
    """Run with *path* as the working directory and first on ``sys.path``."""
    old_cwd = Path.cwd()
    os.chdir(path)
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        sys.path.remove(str(path))
        os.chdir(old_cwd)


def _run_command(command: str, directory: Path, where: str) -> None:
    expected = 0
    found = _EXIT.search(command)
    if found:
        expected = int(found["code"])
        command = command[: found.start()]
    shell = re.sub(r"(^|[|;&]\s*)(raftstore|pytest)\b", rf"\1{sys.executable} -m \2", command)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), *sys.path])}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == expected, (
        f"{where}: `{command.strip()}` exited {result.returncode}, expected {expected}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_samples_run(page: Path, tmp_path: Path) -> None:
    blocks = samples(page)
    if not blocks:
        pytest.skip(f"{page.name} has no code samples")
    var_lib = tmp_path / "var" / "lib"
    var_lib.mkdir(parents=True)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    exec("import raftstore\nfrom raftstore import Log, LogType\n", namespace)
    with page_directory(tmp_path):
        for block in blocks:
            where = f"docs/{block.page}:{block.line}"
            body = block.body.replace("/var/lib/", f"{var_lib}/")
            if block.title is not None:
                (tmp_path / block.title).write_text(body, "utf-8")
            elif block.language == "python":
                exec(compile(body, where, "exec"), namespace)
            else:
                for line in body.splitlines():
                    if line.startswith("$ "):
                        _run_command(line[2:], tmp_path, where)
    # Close what the samples left open, so their locks do not outlive the test,
    # and forget the modules they wrote, so no other page imports a stale one.
    for value in namespace.values():
        if isinstance(value, raftstore.RaftStore):
            value.close()
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def test_every_page_is_in_the_nav() -> None:
    config = (DOCS.parent / "mkdocs.yml").read_text("utf-8")
    for page in PAGES:
        assert str(page.relative_to(DOCS)) in config, f"{page.name} is not in mkdocs.yml nav"
