"""Plug-ins found through entry points: one broken or doubly registered never breaks the rest."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_GOOD = """
import raftstore
from raftstore.engines.memory import MemoryEngine


class GoodEngine(MemoryEngine):
    name = "goodplug"


# Registers itself on import *and* is declared as an entry point (issue 12).
raftstore.register_engine("goodplug", GoodEngine, description="a plug-in")
"""

_BROKEN = """
raise RuntimeError("this plug-in is broken")
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory on PYTHONPATH holding two installed plug-ins: one good, one broken."""
    (tmp_path / "goodplug.py").write_text(_GOOD)
    (tmp_path / "brokenplug.py").write_text(_BROKEN)
    for name, target in (("goodplug", "goodplug:GoodEngine"), ("brokenplug", "brokenplug:X")):
        info = tmp_path / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[raftstore.engines]\n{name} = {target}\n")
    return tmp_path


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_available_engines_lists_a_broken_plugin_as_unavailable(site: Path) -> None:
    script = textwrap.dedent("""
        import json, raftstore
        rows = {i.name: [i.available, i.error] for i in raftstore.available_engines()}
        print(json.dumps(rows))
    """)
    result = _run(site, "-c", script)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows["goodplug"] == [True, None]
    assert rows["brokenplug"][0] is False
    assert "RuntimeError: this plug-in is broken" in rows["brokenplug"][1]
    assert rows["lmdb"][0] is True
    assert rows["memory"][0] is True


def test_a_self_registering_plugin_opens_by_name(site: Path, tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import raftstore
        from raftstore import Log
        raftstore.available_engines()
        with raftstore.open("goodplug://") as store:
            store.store_log(Log(1, 1))
            print(store.engine, store.last_index())
    """)
    result = _run(site, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["goodplug", "1"]


def test_the_engines_command_survives_plugins(site: Path) -> None:
    result = _run(site, "-m", "raftstore", "engines", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["engines"]}
    assert rows["goodplug"]["available"] is True
    assert rows["brokenplug"]["available"] is False


def test_opening_a_broken_plugin_says_what_failed(site: Path) -> None:
    result = _run(site, "-c", "import raftstore; raftstore.open('brokenplug://')")
    assert result.returncode == 1
    assert "EngineUnavailableError" in result.stderr
    assert "failed to load" in result.stderr


def test_registering_the_same_class_twice_is_a_no_op() -> None:
    import raftstore
    from raftstore.engines.memory import MemoryEngine

    class Twice(MemoryEngine):
        name = "twice"

    raftstore.register_engine("twice", Twice)
    raftstore.register_engine("twice", Twice)
    with pytest.raises(raftstore.ConfigurationError, match="already registered"):
        raftstore.register_engine("twice", MemoryEngine)


def test_the_pytest_option_runs_the_suite_on_a_named_engine(tmp_path: Path) -> None:
    # The plugin ships with raftstore (entry point pytest11): one option, no subclass.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--raftstore-engine",
            "memory",
            "-k",
            "delete_range",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert "failed" not in result.stdout


def test_the_pytest_plugin_is_inert_without_its_option(tmp_path: Path) -> None:
    (tmp_path / "test_nothing.py").write_text("def test_one():\n    assert True\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
