"""The ``raftstore`` command: look inside, check, migrate and compact stores from the shell.

The work is done by `raftstore.admin`; this module parses arguments, prints
results (text, or JSON with ``--json``) and turns errors into one line on
stderr and an exit code:

====  ============================================================
code  meaning
====  ============================================================
0     success (``verify``: the store is clean)
1     a check failed: ``verify`` found damage or gaps, the
      conformance suite failed, a migrated copy did not match
2     bad usage: unknown option, malformed target or engine option
3     no store at the target (nothing was created)
4     the store is locked by another process or handle
5     unknown engine or codec, or its package is not installed
6     the store cannot be read: damaged meta record, newer format
7     the migration destination already exists
8     an I/O or storage error
130   interrupted (Ctrl-C)
====  ============================================================
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import raftstore
from raftstore import admin, benchmark
from raftstore._terminal import Progress, format_bytes, is_terminal, render_table
from raftstore.errors import (
    CodecMismatchError,
    ConfigurationError,
    CorruptionError,
    EngineUnavailableError,
    InvalidArgumentError,
    RaftStoreError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownCodecError,
    UnknownEngineError,
    UnsupportedFormatError,
)
from raftstore.log import Log, LogType
from raftstore.registry import get_engine_class
from raftstore.store import engine_capabilities
from raftstore.url import parse_target

__all__ = [
    "EXIT_DAMAGED",
    "EXIT_EXISTS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_NO_STORE",
    "EXIT_OK",
    "EXIT_STORAGE",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "build_parser",
    "exit_code_for",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_STORE = 3
EXIT_LOCKED = 4
EXIT_UNAVAILABLE = 5
EXIT_DAMAGED = 6
EXIT_EXISTS = 7
EXIT_STORAGE = 8
EXIT_INTERRUPTED = 130

# Most specific first: StoreNotFoundError is also an OSError, and so on.
_EXIT_CODES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int], ...] = (
    (StoreNotFoundError, EXIT_NO_STORE),
    (StoreLockedError, EXIT_LOCKED),
    (admin.DestinationExistsError, EXIT_EXISTS),
    (admin.MigrationError, EXIT_FAILED),
    ((UnknownEngineError, UnknownCodecError, EngineUnavailableError), EXIT_UNAVAILABLE),
    ((CorruptionError, UnsupportedFormatError, CodecMismatchError), EXIT_DAMAGED),
    ((ConfigurationError, InvalidArgumentError), EXIT_USAGE),
)


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for *error* (see the module docstring)."""
    for kinds, code in _EXIT_CODES:
        if isinstance(error, kinds):
            return code
    return EXIT_STORAGE


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _progress_callback(
    label: str, enabled: bool
) -> tuple[Callable[[int, int], None] | None, list[Progress]]:
    """A ``progress(done, total)`` drawing a `Progress` on stderr, created on the first call."""
    bars: list[Progress] = []
    if not enabled:
        return None, bars

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(Progress(label, total))
        bars[0].update(done, total)  # the same fitted bar, with an ETA, as raftstore bench

    return progress, bars


# -- demo ----------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    """Open a store on the default engine, write and read logs, print what happened."""
    if args.target:
        path = parse_target(args.target).path
        if path is not None and path.exists() and (not path.is_dir() or any(path.iterdir())):
            held = "a raftstore store" if (path / "raftstore.json").exists() else "files"
            raise admin.DestinationExistsError(
                f"{path} already holds {held}; demo writes and truncates a store of its own"
                " and never touches an existing one: give a new path (or none, for a"
                " temporary store)"
            )
    with tempfile.TemporaryDirectory(prefix="raftstore-demo-") as tmp:
        target = args.target or str(Path(tmp) / "raft")
        print(f"opening {target!r} (engine {args.engine or raftstore.DEFAULT_ENGINE})")
        with raftstore.open(target, engine=args.engine, codec=args.codec) as store:
            print(
                f"opened {store!r}: first_index={store.first_index()} "
                f"last_index={store.last_index()}"
            )
            start = store.last_index() + 1
            now = time.time_ns()
            logs = [
                Log(
                    index=start + i,
                    term=1,
                    type=LogType.COMMAND,
                    data=f"set x={i}".encode(),
                    appended_at=now,
                )
                for i in range(args.count)
            ]
            began = time.perf_counter()
            store.store_logs(logs)
            elapsed = time.perf_counter() - began
            print(f"stored {len(logs)} logs in one synced batch in {elapsed * 1000:.2f} ms")
            store.set_uint64(b"CurrentTerm", 1)
            store.set(b"LastVoteCand", b"node-1")
            last = store.get_log(store.last_index())
            print(f"read back log {last.index}: term={last.term} data={last.data!r}")
            print(
                f"stable: CurrentTerm={store.get_uint64(b'CurrentTerm')} "
                f"LastVoteCand={store.get(b'LastVoteCand')!r}"
            )
            store.delete_range(store.first_index(), max(store.last_index() - 10, 0))
            print(
                f"compacted the prefix: first_index={store.first_index()} "
                f"last_index={store.last_index()}"
            )
    return EXIT_OK


# -- engines -------------------------------------------------------------------


def _engine_details(name: str) -> dict[str, Any]:
    engine = get_engine_class(name)
    capabilities = engine_capabilities(engine)
    return {
        "persistent": capabilities.persistent,
        "concurrent_readers": capabilities.concurrent_readers,
        "locking": capabilities.locking,
        "options": {
            option: {"type": spec.type.__name__, "default": spec.default, "help": spec.help}
            for option, spec in engine.options.items()
        },
    }


def _cmd_engines(args: argparse.Namespace) -> int:
    """List every known engine and codec, whether it can be used here and what it can do."""
    engines: list[dict[str, Any]] = []
    for info in raftstore.available_engines():
        row: dict[str, Any] = {
            "name": info.name,
            "available": info.available,
            "install_hint": info.install_hint,
            "description": info.description,
            "source": info.source,
            "error": info.error,
        }
        if info.available:
            try:
                row.update(_engine_details(info.name))
            except RaftStoreError as exc:
                row.update(available=False, error=str(exc))
        engines.append(row)
    codecs: list[dict[str, Any]] = [
        {
            "name": info.name,
            "available": info.available,
            "install_hint": info.install_hint,
            "description": info.description,
            "source": info.source,
            "error": info.error,
        }
        for info in raftstore.available_codecs()
    ]
    if args.json:
        _print_json({"engines": engines, "codecs": codecs})
        return EXIT_OK

    def yes(value: object) -> str:
        return "-" if value is None else ("yes" if value else "no")

    def status(row: dict[str, Any]) -> str:
        return "available" if row["available"] else f"missing: {row['install_hint']}"

    print("engines")
    print(
        render_table(
            ["name", "status", "persistent", "concurrent readers", "description"],
            [
                [
                    row["name"] + (" (default)" if row["name"] == raftstore.DEFAULT_ENGINE else ""),
                    status(row),
                    yes(row.get("persistent")),
                    yes(row.get("concurrent_readers")),
                    row["description"],
                ]
                for row in engines
            ],
        )
    )
    print("\ncodecs")
    print(
        render_table(
            ["name", "status", "description"],
            [
                [
                    row["name"] + (" (default)" if row["name"] == raftstore.DEFAULT_CODEC else ""),
                    status(row),
                    row["description"],
                ]
                for row in codecs
            ],
        )
    )
    return EXIT_OK


# -- inspect -------------------------------------------------------------------


def _stable_text(item: dict[str, Any]) -> str:
    if item["uint64"] is not None and item["text"] is None:
        return f"{item['uint64']} (uint64)"
    if item["text"] is not None:
        return repr(item["text"])
    return f"0x{item['hex']}"


def _cmd_inspect(args: argparse.Namespace) -> int:
    """Describe a store: engine, codec, bounds, size, stable state and the last entries."""
    if args.tail < 0:
        raise ConfigurationError(f"--tail must be 0 or more, got {args.tail}")
    from raftstore import _isolate

    try:
        # In a child process: damage that makes an engine abort must not kill the command.
        report = _isolate.run_isolated(admin.inspect_store, args.target, tail=args.tail)
    except _isolate.EngineCrashedError as exc:
        print(f"raftstore: error: {args.target}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(report.to_json())
        return EXIT_OK
    bounds = f"{report.first_index}..{report.last_index}" if report.last_index else "empty"
    print(f"store    {report.path}")
    print(f"engine   {report.engine}, codec {report.codec}, format {report.format}")
    print(f"logs     {bounds} ({report.entries:,} entries)")
    print(f"on disk  {format_bytes(report.disk_usage)}")
    print(f"commit   {report.commit_index or 'none persisted'}")
    if report.stale_readers_cleared:
        print(
            f"readers  {report.stale_readers_cleared} stale readers (slots of dead processes)"
            " cleared"
        )
    if report.stable:
        print("\nstable state")
        print(
            render_table(
                ["key", "value"],
                [[item["key"], _stable_text(item)] for item in report.stable],
            )
        )
    if report.tail:
        print(f"\nlast {len(report.tail)} entries")
        rows = []
        for log in report.tail:
            if "error" in log:
                rows.append([str(log["index"]), "-", "-", "-", "-", f"damaged: {log['error']}"])
                continue
            data = (
                repr(log["data_text"]) if log["data_text"] is not None else "0x" + log["data_hex"]
            )
            when = (
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(log["appended_at"] / 1e9))
                if log["appended_at"]
                else "-"
            )
            rows.append(
                [
                    str(log["index"]),
                    str(log["term"]),
                    log["type"],
                    str(log["size"]),
                    when,
                    data + ("..." if log["truncated"] else ""),
                ]
            )
        print(render_table(["index", "term", "type", "bytes", "appended at", "data"], rows))
    return EXIT_OK


# -- verify --------------------------------------------------------------------


def _cmd_verify(args: argparse.Namespace) -> int:
    """Read every record; exit 0 when the store is clean, 1 with a report otherwise."""
    from raftstore import _isolate

    progress, bars = _progress_callback("verifying", not args.json and is_terminal(sys.stderr))
    try:
        # In a child process: damage that makes an engine abort must not kill the command.
        report = _isolate.run_isolated(admin.verify_store, args.target, progress=progress)
    except _isolate.EngineCrashedError as exc:
        report = admin.VerifyReport(target=str(args.target))
        report.add_problem("engine", str(exc))
    finally:
        for bar in bars:
            bar.finish()
    if args.json:
        _print_json(report.to_json())
        return EXIT_OK if report.ok else EXIT_FAILED
    if report.engine is not None:
        bounds = f"{report.first_index}..{report.last_index}" if report.last_index else "empty"
        print(
            f"{report.target}: {report.engine}/{report.codec}, logs {bounds},"
            f" {report.entries:,} entries, {report.stable_keys} stable keys"
        )
    for low, high in report.gaps:
        print(f"gap       logs {low}..{high} missing ({high - low + 1})")
    for problem in report.problems:
        print(f"damaged   {problem['where']}: {problem['problem']}")
    if report.problem_count > len(report.problems):
        print(f"          ... and {report.problem_count - len(report.problems)} more")
    if report.ok:
        print("OK: every record reads back and the index range has no gap")
        return EXIT_OK
    print(f"FAILED: {report.problem_count} damaged record(s), {len(report.gaps)} gap(s)")
    return EXIT_FAILED


# -- migrate -------------------------------------------------------------------


def _cmd_migrate(args: argparse.Namespace) -> int:
    """Copy a store into a new one of any engine and codec, then check the copy."""
    progress, bars = _progress_callback("copying logs", not args.quiet)
    try:
        report = admin.migrate_store(
            args.source,
            args.destination,
            engine=args.engine,
            codec=args.codec,
            sample=args.sample,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.finish()
    if args.json:
        _print_json(report.to_json())
        return EXIT_OK
    bounds = f"{report.first_index}..{report.last_index}" if report.last_index else "empty"
    print(
        f"migrated {report.source} ({report.source_engine}/{report.source_codec})"
        f" -> {report.destination} ({report.engine}/{report.codec})"
    )
    print(
        f"copied {report.entries:,} entries (logs {bounds}) and {report.stable_keys} stable keys;"
        f" checked counts, stable state and {report.sampled} sampled entries"
    )
    return EXIT_OK


# -- compact -------------------------------------------------------------------


def _cmd_compact(args: argparse.Namespace) -> int:
    """Give disk space back after truncation and report the size before and after."""
    report = admin.compact_store(args.target)
    if args.json:
        _print_json(report.to_json())
        return EXIT_OK
    change = (
        f"reclaimed {format_bytes(report.reclaimed)}"
        if report.reclaimed >= 0
        else f"grew by {format_bytes(-report.reclaimed)}"
    )
    print(
        f"{report.target} ({report.engine}): {format_bytes(report.before)} ->"
        f" {format_bytes(report.after)} ({change})"
    )
    return EXIT_OK


# -- conformance ---------------------------------------------------------------


def _cmd_conformance(args: argparse.Namespace) -> int:
    """Run the shipped conformance suite against a registered engine in a pytest subprocess."""
    missing = [name for name in ("pytest", "hypothesis") if importlib.util.find_spec(name) is None]
    if missing:
        raise EngineUnavailableError(
            f"the conformance suite needs {' and '.join(missing)}: pip install 'raftstore[test]'"
        )
    # Modules named by --import are found in the current directory, as with
    # ``python -m``, both here and in the pytest subprocess (which runs elsewhere).
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    python_path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    source = admin.conformance_module(args.engine, codec=args.codec, imports=tuple(args.imports))
    with tempfile.TemporaryDirectory(prefix="raftstore-conformance-") as tmp:
        directory = Path(tmp)
        module = directory / f"test_conformance_{args.engine.replace('-', '_')}.py"
        module.write_text(source, "utf-8")
        # An ini file of our own keeps any project configuration around the
        # current directory (addopts, plugins) out of the run.
        (directory / "pytest.ini").write_text("[pytest]\n", "utf-8")
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(module),
            "-c",
            str(directory / "pytest.ini"),
            "--rootdir",
            str(directory),
            "-p",
            "no:cacheprovider",
            "-v" if args.verbose else "-q",
        ]
        if args.keyword:
            command += ["-k", args.keyword]
        if args.exitfirst:
            command.append("-x")
        print(
            f"running the raftstore conformance suite on engine {args.engine!r}"
            + (f" with codec {args.codec!r}" if args.codec else ""),
            flush=True,
        )
        returncode = subprocess.run(
            command, cwd=directory, env={**os.environ, "PYTHONPATH": python_path}, check=False
        ).returncode
    if returncode == 0:
        return EXIT_OK
    if returncode in (1, 5):  # tests failed / none selected
        return EXIT_FAILED
    return returncode


def _cmd_pysyncobj_run(args: argparse.Namespace) -> int:
    """Run a PySyncObj program in this process with its journals on raftstore (path mode)."""
    from raftstore.integrations.pysyncobj.launcher import run_program

    return run_program(args.program, module=args.module, engine=args.engine, codec=args.codec)


# -- the parser ----------------------------------------------------------------


def _add_command(
    commands: Any, name: str, help: str, example: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    return parser


def _add_store_command(
    commands: Any, name: str, help: str, example: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Add a command that works on one store: a TARGET argument and a --json flag."""
    parser = _add_command(commands, name, help, example, func)
    parser.add_argument("target", metavar="TARGET", help="store URL or path")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``raftstore`` command."""
    parser = argparse.ArgumentParser(
        prog="raftstore",
        description="Durable storage for Raft logs: tools for operators.",
        epilog=(
            "TARGET is a store URL (lmdb:///var/lib/raft) or a plain path to a store directory.\n"
            "exit codes: 0 ok, 1 check failed, 2 usage, 3 no store, 4 locked,"
            " 5 engine/codec unavailable,\n"
            "            6 store unreadable, 7 destination exists, 8 I/O error, 130 interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"raftstore {raftstore.__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="count",
        default=0,
        help="log what the library does to stderr (-v: opens, recovery, compaction,"
        " migration, damage found; -vv: everything)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _add_command(
        commands,
        "demo",
        "write and read a few logs on the default engine",
        "raftstore demo --count 1000",
        _cmd_demo,
    )
    demo.add_argument("target", nargs="?", help="store URL or path (default: a temp dir)")
    demo.add_argument("--engine", help="engine name (default: lmdb)")
    demo.add_argument("--codec", help="codec name (default: msgpack)")
    demo.add_argument("--count", type=int, default=100, help="logs to write (default 100)")

    engines = _add_command(
        commands,
        "engines",
        "list engines and codecs, whether they are usable here and what they can do",
        "raftstore engines --json",
        _cmd_engines,
    )
    engines.add_argument("--json", action="store_true", help="print JSON")

    inspect = _add_store_command(
        commands,
        "inspect",
        "show a store's engine, codec, bounds, size, stable state and last entries",
        "raftstore inspect /var/lib/node1/raft --tail 20",
        _cmd_inspect,
    )
    inspect.add_argument(
        "--tail", type=int, default=5, metavar="N", help="last N entries (default 5)"
    )

    _add_store_command(
        commands,
        "verify",
        "read every record, report damage and gaps (exit 1 when any)",
        "raftstore verify lmdb:///var/lib/node1/raft",
        _cmd_verify,
    )

    migrate = _add_command(
        commands,
        "migrate",
        "copy a store into a new store of any engine and codec, then check the copy",
        "raftstore migrate /var/lib/node1/raft rocksdb:///var/lib/node1/raft-rocks --codec cbor",
        _cmd_migrate,
    )
    migrate.add_argument(
        "source", metavar="SRC", help="existing store URL or path, or a PySyncObj FileJournal file"
    )
    migrate.add_argument(
        "destination", metavar="DST", help="new store URL or path (must not exist)"
    )
    migrate.add_argument("--engine", help="destination engine (default: DST's URL, else SRC's)")
    migrate.add_argument("--codec", help="destination codec (default: SRC's)")
    migrate.add_argument(
        "--sample",
        type=int,
        default=256,
        metavar="N",
        help="random entries read back and compared (default 256)",
    )
    migrate.add_argument("--json", action="store_true", help="print JSON")
    migrate.add_argument("--quiet", action="store_true", help="no progress on stderr")

    _add_store_command(
        commands,
        "compact",
        "give disk space back after truncation, reporting the size before and after",
        "raftstore compact /var/lib/node1/raft",
        _cmd_compact,
    )

    conformance = _add_command(
        commands,
        "conformance",
        "run the shipped conformance suite against a registered engine (exit 0 when it passes)",
        "raftstore conformance rocksdb --codec cbor",
        _cmd_conformance,
    )
    conformance.add_argument("engine", metavar="ENGINE", help="registered engine name")
    conformance.add_argument("--codec", help="codec for every store the suite opens")
    conformance.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (e.g. one that calls raftstore.register_engine); repeatable",
    )
    conformance.add_argument("-k", dest="keyword", metavar="EXPR", help="only tests matching EXPR")
    conformance.add_argument(
        "-x", dest="exitfirst", action="store_true", help="stop at the first failure"
    )
    conformance.add_argument("-v", dest="verbose", action="store_true", help="one line per test")

    benchmark.add_subcommand(commands)
    run = _add_command(
        commands,
        "pysyncobj-run",
        "run a PySyncObj program (e.g. patroni) with every journalFile=P kept in the store"
        " P.raftstore",
        "raftstore pysyncobj-run --engine lmdb patroni /etc/patroni.yml",
        _cmd_pysyncobj_run,
    )
    run.add_argument("--engine", default="lmdb", help="engine of the stores (default: lmdb)")
    run.add_argument("--codec", help="codec of new stores (default: msgpack)")
    run.add_argument(
        "-m", dest="module", nargs=argparse.REMAINDER, help="MODULE [ARGS...]: as python -m MODULE"
    )
    run.add_argument("program", nargs=argparse.REMAINDER, metavar="PROGRAM [ARGS...]")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``raftstore`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.log_level:
        logging.basicConfig(
            stream=sys.stderr,
            format="raftstore: %(levelname)s %(name)s: %(message)s",
            level=logging.DEBUG if args.log_level > 1 else logging.INFO,
        )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("raftstore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RaftStoreError, OSError) as exc:
        message = " ".join(str(exc).split())
        if isinstance(exc, StoreLockedError) and " is locked by " in message:
            # The library's advice speaks Python (read_only=True); say it in shell terms.
            message = message.split(":")[0] + (
                ": one writer at a time. Stop that process (the node using the store) and run"
                " the command again; to look at a store while its node runs, use"
                " 'raftstore inspect' or 'raftstore verify' on an lmdb or rocksdb store"
            )
        print(f"raftstore: error: {message}", file=sys.stderr)
        return exit_code_for(exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
