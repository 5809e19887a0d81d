"""The writer process of a crash trial (see ``crash_harness``); it is meant to be SIGKILLed.

Prints ``open`` before opening the store, ``ready`` once it is open, and
``ack N`` after the N-th call of the seed's call stream has returned
(calls before ``--start`` were done by an earlier writer and are skipped).
After ``--limit`` calls it stops writing and waits to be killed.
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import sys
import time
from pathlib import Path

# Run as a script, so this directory is on sys.path and crash_harness imports.
from crash_harness import calls

import raftstore


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us if the parent dies first (no orphan writers)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    """Open the store and perform calls, acknowledging each, until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--path", required=True, type=Path)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--sync", type=int, default=1)
    parser.add_argument("--limit", type=int, default=5000)
    args = parser.parse_args(argv)
    _die_with_parent()
    out = sys.stdout
    stream = calls(args.seed)
    for _ in range(args.start):
        next(stream)
    out.write("open\n")
    out.flush()
    store = raftstore.open(args.path, engine=args.engine, sync=bool(args.sync))
    out.write("ready\n")
    out.flush()
    for done in range(args.start + 1, args.start + args.limit + 1):
        next(stream).apply(store)
        out.write(f"ack {done}\n")
        out.flush()
    while True:  # the parent kills us; exiting by ourselves would be a failed trial
        time.sleep(1)


if __name__ == "__main__":
    main()
