"""``raftstore bench``: every engine x codec on Raft-shaped workloads, beside its baselines.

Each figure is measured side by side with its baselines in the same process:

- ``raw``: the engine's own Python binding (py-lmdb, rocksdict, plyvel, a
  dict for ``memory``) doing the same work in a minimal loop, with the same
  keys and the same record bytes (`raftstore.benchmark.raw`), so ``x raw``
  prices the whole store layer. Engines without one (plug-ins, ``wal``) run
  alone, and their rows say "no raw baseline".
- ``pysyncobj``: PySyncObj's ``FileJournal`` (never fsyncs) and
  ``MemoryJournal`` on the same append / read / reopen work.
- the disk's floor (`raftstore.benchmark.floor`): one 4 KiB overwrite +
  ``fdatasync`` per call, which no durable write beats, and one 256-byte
  append + ``fdatasync``, what a plain log file pays.

Rounds of every subject of a table are interleaved (rotating the order);
each figure is the median of its rounds, shown with their spread (min-max),
and each ratio (``x raw``, ``x best``) is a ratio of those medians, so it
agrees with the figures printed beside it.

Where things are: `config` (presets, settings), `workloads` (the registry:
a new workload is one entry there), `entries`, `handles` and `raw` (what a
workload drives), `floor`, `subjects` (rounds), `runner`, `rss`, `results`,
`report` (text), `plot`, `targets` (the team's goals, ``--targets``),
`machine`, `cli` (the ``bench`` command). The JSON written by ``--json``
is described in ``docs/benchmarks.md``.
"""

from __future__ import annotations

from raftstore.benchmark.cli import add_subcommand, config_from_args, run, run_benchmarks
from raftstore.benchmark.config import CLOCKS, FULL, QUICK, SMOKE, BenchConfig, Sizes
from raftstore.benchmark.entries import build_logs
from raftstore.benchmark.floor import DiskFloor
from raftstore.benchmark.handles import Handle, JournalHandle, StoreHandle, open_store
from raftstore.benchmark.raw import RawHandle, RawMemory, has_raw, open_raw
from raftstore.benchmark.report import format_tables, legend, summarize
from raftstore.benchmark.results import SCHEMA_VERSION, Report, Result, table_order
from raftstore.benchmark.rss import run_rss_probe
from raftstore.benchmark.runner import NO_RAW
from raftstore.benchmark.targets import evaluate_targets, format_targets
from raftstore.benchmark.workloads import REGISTRY, WORKLOADS, Workload


def write_plot(results: list[Result], path: object) -> None:
    """Write the ``--plot`` figure of *results* to *path* (imports matplotlib on first use)."""
    from pathlib import Path

    from raftstore.benchmark.plot import write_plot as write

    write(results, Path(str(path)))


__all__ = [
    "CLOCKS",
    "FULL",
    "NO_RAW",
    "QUICK",
    "REGISTRY",
    "SCHEMA_VERSION",
    "SMOKE",
    "WORKLOADS",
    "BenchConfig",
    "DiskFloor",
    "Handle",
    "JournalHandle",
    "RawHandle",
    "RawMemory",
    "Report",
    "Result",
    "Sizes",
    "StoreHandle",
    "Workload",
    "add_subcommand",
    "build_logs",
    "config_from_args",
    "evaluate_targets",
    "format_tables",
    "format_targets",
    "has_raw",
    "legend",
    "open_raw",
    "open_store",
    "run",
    "run_benchmarks",
    "run_rss_probe",
    "summarize",
    "table_order",
    "write_plot",
]
