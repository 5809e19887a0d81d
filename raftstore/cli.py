"""The ``raftstore`` command."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import raftstore
from raftstore.errors import RaftStoreError
from raftstore.log import Log, LogType

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    """Open a store on the default engine, write and read logs, print what happened."""
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
            store.delete_range(store.first_index(), store.last_index() - 10)
            print(
                f"compacted the prefix: first_index={store.first_index()} "
                f"last_index={store.last_index()}"
            )
    return 0


def _cmd_engines(args: argparse.Namespace) -> int:
    """List every known engine and codec and whether it can be used here."""
    for title, infos in (
        ("engines", raftstore.available_engines()),
        ("codecs", raftstore.available_codecs()),
    ):
        print(f"{title}:")
        for info in infos:
            status = "available" if info.available else f"missing ({info.install_hint})"
            print(f"  {info.name:<10} {status:<40} {info.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``raftstore`` command."""
    parser = argparse.ArgumentParser(
        prog="raftstore", description="Durable storage for Raft logs: tools for operators."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="write and read a few logs on the default engine",
        epilog="example: raftstore demo --count 1000",
    )
    demo.add_argument("target", nargs="?", help="store URL or path (default: a temp dir)")
    demo.add_argument("--engine", help="engine name (default: lmdb)")
    demo.add_argument("--codec", help="codec name (default: msgpack)")
    demo.add_argument("--count", type=int, default=100, help="logs to write (default 100)")
    demo.set_defaults(func=_cmd_demo)
    engines = commands.add_parser(
        "engines", help="list engines and codecs", epilog="example: raftstore engines"
    )
    engines.set_defaults(func=_cmd_engines)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``raftstore`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RaftStoreError as exc:
        print(f"raftstore: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
