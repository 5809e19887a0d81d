"""The ``rss`` probe: peak RSS growth of a fresh interpreter that reopens a log and reads it."""

from __future__ import annotations

import importlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import raftstore
from raftstore.benchmark.handles import Handle, JournalHandle, StoreHandle
from raftstore.benchmark.raw import RAW_ENGINES, open_raw
from raftstore.benchmark.workloads import RSS_GETS
from raftstore.registry import create_codec, get_engine_class

__all__ = ["probe", "run_rss_probe"]


def _status_kib(field_name: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def probe(kind: str, engine: str, codec: str, target: str, size: int) -> dict[str, Any]:
    """Open *target* in this (fresh) process, read like Raft at start, report RSS growth."""
    rng = random.Random(7)
    gets = [rng.randrange(1, size + 1) for _ in range(RSS_GETS)]
    handle: Handle
    if kind == "pysyncobj":
        from pysyncobj.journal import FileJournal

        before = _status_kib("VmRSS")
        handle = JournalHandle(FileJournal(target))
    elif kind == "raw":
        codec_object = create_codec(codec)
        module = RAW_ENGINES[engine]
        if module is not None:
            importlib.import_module(module)
        before = _status_kib("VmRSS")
        handle = open_raw(engine, Path(target), codec_object, sync=False)
    else:
        get_engine_class(engine)
        create_codec(codec)
        before = _status_kib("VmRSS")
        handle = StoreHandle(raftstore.open(target, engine=engine, codec=codec, sync=False))
    handle.startup()
    handle.get_many(gets)
    after = _status_kib("VmRSS")
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forking parent.
    peak = _status_kib("VmHWM")
    handle.close()
    return {
        "rss_before_mb": round(before / 1024, 1),
        "rss_after_mb": round(after / 1024, 1),
        "peak_mb": round(peak / 1024, 1),
        "growth_mb": round((peak - before) / 1024, 1),
    }


def run_rss_probe(
    kind: str, engine: str, codec: str, target: Path, size: int
) -> dict[str, Any] | None:
    """`probe` in a fresh interpreter; None (and a line on stderr) when it fails."""
    code = (
        "import json, sys; from raftstore.benchmark.rss import probe; "
        "print(json.dumps(probe(*sys.argv[1:5], int(sys.argv[5]))))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, kind, engine, codec, str(target), str(size)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        print(f"\nrss probe of {kind} {engine} failed: {exc}", file=sys.stderr)
        return None
    return result
