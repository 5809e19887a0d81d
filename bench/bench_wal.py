"""Issue 14's targets: the ``wal`` engine beside lmdb, rocksdb and leveldb, in one run.

Measures, with every engine on the same disk in the same process (the
msgpack codec, 128-byte entries):

- the disk's floor: a 4 KiB overwrite of already-written blocks + fdatasync,
  and, for comparison, a 4 KiB append into an ``fallocate``d (unwritten)
  extent + fdatasync (it commits file-system metadata);
- synced ``store_log``: p50/p99 latency and rate; synced and unsynced
  ``store_logs(64)`` rates;
- random ``get_log`` and reopen time on a log of ``--entries`` entries (wal, lmdb);
- disk usage after deleting the oldest 90% (wal, lmdb);
- syncs per synced append, counted by ``strace -c -f`` in a child process.

Each figure is the median over ``--rounds`` rounds (the engines interleaved
in each round), printed with its spread (min..max). Nothing here asserts:
it prints the targets table.

    python bench/bench_wal.py                       # the full run (1M entries)
    python bench/bench_wal.py --entries 100000 --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import raftstore
from raftstore import Log

#: Subjects: a label, the engine, its options.
SUBJECTS: dict[str, tuple[str, dict[str, Any]]] = {
    "wal": ("wal", {}),
    "wal-fallocate": ("wal", {"preallocate": "fallocate"}),
    "lmdb": ("lmdb", {}),
    "rocksdb": ("rocksdb", {}),
    "leveldb": ("leveldb", {}),
}
KEY_VALUE = ("lmdb", "rocksdb", "leveldb")
DATA = 128
_SYNC_CALLS = ("fsync", "fdatasync", "sync_file_range")


def _logs(start: int, count: int, rng: random.Random) -> list[Log]:
    return [Log(i, 1, data=rng.randbytes(DATA)) for i in range(start, start + count)]


def _open(root: Path, label: str, **extra: Any) -> raftstore.RaftStore:
    engine, options = SUBJECTS[label]
    return raftstore.open(root / label, engine=engine, codec="msgpack", **{**options, **extra})


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the floor and appends, interleaved call by call -----------------------------------------


class _Floor:
    """The disk's floor as a subject: a 4 KiB overwrite of written blocks + fdatasync per call."""

    def __init__(self, path: Path, blocks: int, *, prewrite: bool) -> None:
        self.path, self.blocks, self.next = path, blocks, 0
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        if prewrite:
            os.pwrite(self.fd, bytes(4096 * blocks), 0)
        else:  # allocated but never written: each sync also commits the extent's conversion
            os.posix_fallocate(self.fd, 0, 4096 * blocks)
        os.fsync(self.fd)
        self.block = os.urandom(4096)

    def call(self) -> None:
        if self.next == self.blocks:
            raise RuntimeError("the floor file is used up")
        os.pwrite(self.fd, self.block, 4096 * self.next)
        os.fdatasync(self.fd)
        self.next += 1

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink()


def interleaved_appends(
    root: Path, labels: list[str], calls: int, size: int, *, sync: bool, floor: bool
) -> dict[str, list[float]]:
    """Per-call latencies (s) of ``store_logs(size)`` on every subject, interleaved.

    Each call goes to every subject in a fresh random order, so a burst of
    load from elsewhere hits all of them alike. With *floor*, the 4 KiB
    overwrite + fdatasync floor and its fallocated-extent variant are subjects too.
    """
    rng = random.Random(5)
    stores = {label: _open(root, label, sync=sync) for label in labels}
    floors = (
        {
            "floor": _Floor(root / "floor", calls, prewrite=True),
            "floor-fallocated": _Floor(root / "floor-fallocated", calls, prewrite=False),
        }
        if floor
        else {}
    )
    samples: dict[str, list[float]] = {name: [] for name in [*stores, *floors]}
    data = rng.randbytes(DATA)
    try:
        for store in stores.values():  # warm up: files made, first segment in use
            for start in range(1, 1 + 10 * size, size):
                store.store_logs([Log(i, 1, data=data) for i in range(start, start + size)])
        names = list(samples)
        for call in range(calls):
            start = 1 + (10 + call) * size
            batch = [Log(i, 1, data=data) for i in range(start, start + size)]
            rng.shuffle(names)
            for name in names:
                if name in floors:
                    begin = time.perf_counter()
                    floors[name].call()
                else:
                    store = stores[name]
                    begin = time.perf_counter()
                    store.store_logs(batch)
                samples[name].append(time.perf_counter() - begin)
    finally:
        for store in stores.values():
            store.close()
        for each in floors.values():
            each.close()
        for label in stores:
            shutil.rmtree(root / label)
    return samples


# -- a long log: reads, reopen, head truncation -------------------------------------------


def fill(root: Path, label: str, entries: int) -> None:
    rng = random.Random(3)
    with _open(root, label, sync=False) as store:
        for start in range(1, entries + 1, 1024):
            store.store_logs(_logs(start, min(1024, entries - start + 1), rng))
        store.sync()


def random_gets(root: Path, label: str, entries: int, lookups: int) -> float:
    rng = random.Random(4)
    indexes = [rng.randint(1, entries) for _ in range(lookups)]
    with _open(root, label) as store:
        get = store.get_log
        for index in indexes[:1000]:
            get(index)
        begin = time.perf_counter()
        for index in indexes:
            get(index)
        return lookups / (time.perf_counter() - begin)


def reopen(root: Path, label: str) -> float:
    """Seconds for open + first_index + last_index + get_log(last), after a clean close."""
    begin = time.perf_counter()
    with _open(root, label) as store:
        store.first_index()
        store.get_log(store.last_index())
        elapsed = time.perf_counter() - begin
    return elapsed


def head_delete(root: Path, label: str, entries: int) -> tuple[int, int]:
    """Disk usage before and after deleting the oldest 90% of the log."""
    with _open(root, label) as store:
        before = store.disk_usage()
        store.delete_range(0, entries * 9 // 10)
        store.compact()
        return before, store.disk_usage()


# -- syncs per append ---------------------------------------------------------------------

_CHILD = """
import sys, raftstore
from raftstore import Log
engine, path, count, options = sys.argv[1], sys.argv[2], int(sys.argv[3]), eval(sys.argv[4])
with raftstore.open(path, engine=engine, codec="msgpack", sync=True, **options) as store:
    for i in range(1, 51):
        store.store_log(Log(i, 1, data=b"x" * 128))
    for i in range(51, 51 + count):
        store.store_log(Log(i, 1, data=b"x" * 128))
"""


def _strace_syncs(root: Path, label: str, count: int) -> int:
    engine, options = SUBJECTS[label]
    path = root / f"strace-{label}-{count}"
    report = root / f"strace-{label}-{count}.txt"
    subprocess.run(
        [
            "strace", "-c", "-f", "-o", str(report),
            "-e", "trace=" + ",".join(_SYNC_CALLS),
            sys.executable, "-c", _CHILD, engine, str(path), str(count), repr(options),
        ],
        check=True,
        timeout=600,
    )  # fmt: skip
    total = 0
    for line in report.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in _SYNC_CALLS:
            total += int(fields[3])  # % time, seconds, usecs/call, calls, [errors,] name
    shutil.rmtree(path, ignore_errors=True)
    return total


def syncs_per_append(root: Path, label: str, count: int = 300) -> float:
    """(sync calls with *count* more appends - without) / *count*: startup costs cancel."""
    return (_strace_syncs(root, label, count) - _strace_syncs(root, label, 0)) / count


# -- the run ------------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    available = {i.name for i in raftstore.available_engines() if i.available}
    labels = [label for label in args.subjects if SUBJECTS[label][0] in available]
    root = Path(tempfile.mkdtemp(prefix="bench-wal-", dir=args.dir))
    figures: dict[str, Any] = {"subjects": labels, "entries": args.entries}
    samples: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    floors: list[dict[str, float]] = []

    def note(label: str, what: str, value: float) -> None:
        samples[label].setdefault(what, []).append(value)

    try:
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            single = interleaved_appends(root, labels, args.appends, 1, sync=True, floor=True)
            floors.append({
                "overwrite_p50_us": statistics.median(single.pop("floor")) * 1e6,
                "fallocated_p50_us": statistics.median(single.pop("floor-fallocated")) * 1e6,
            })  # fmt: skip
            for label, latencies in single.items():
                note(label, "synced_1_p50_us", statistics.median(latencies) * 1e6)
                note(label, "synced_1_p99_us", _percentile(latencies, 0.99) * 1e6)
                note(label, "synced_1_rate", len(latencies) / sum(latencies))
            calls = max(args.appends // 8, 20)
            batched = interleaved_appends(root, labels, calls, 64, sync=True, floor=False)
            for label, latencies in batched.items():
                note(label, "synced_64_rate", 64 * len(latencies) / sum(latencies))
            batched = interleaved_appends(root, labels, 2000, 64, sync=False, floor=False)
            for label, latencies in batched.items():
                note(label, "unsynced_64_rate", 64 * len(latencies) / sum(latencies))
        long = [label for label in ("wal", "lmdb") if label in labels]
        for label in long:
            print(f"filling {label} to {args.entries} entries", file=sys.stderr)
            fill(root, label, args.entries)
        for _ in range(args.rounds):
            for label in long:
                note(label, "get_random_rate", random_gets(root, label, args.entries, 200_000))
                note(
                    label,
                    "reopen_ms",
                    statistics.median(reopen(root, label) for _ in range(5)) * 1e3,
                )
        for label in long:
            before, after = head_delete(root, label, args.entries)
            figures[f"{label}_disk_before"], figures[f"{label}_disk_after"] = before, after
        figures["segment_size"] = 8 * 1024 * 1024
        if shutil.which("strace") and not args.no_strace:
            figures["syncs_per_append"] = {label: syncs_per_append(root, label) for label in labels}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    figures["floor"] = {key: _spread([f[key] for f in floors]) for key in floors[0]}
    figures["measures"] = {
        label: {what: _spread(values) for what, values in measured.items()}
        for label, measured in samples.items()
    }
    return figures


def _table(figures: dict[str, Any]) -> str:
    measures = figures["measures"]

    def median(label: str, what: str) -> float:
        return float(measures[label][what]["median"])

    def spread(label: str, what: str, unit: str = "", digits: int = 0) -> str:
        m = measures[label][what]
        return f"{m['median']:,.{digits}f}{unit} ({m['min']:,.{digits}f}..{m['max']:,.{digits}f})"

    kv = [label for label in KEY_VALUE if label in measures]
    rows: list[tuple[str, str, str, str]] = []

    def best(what: str) -> str:
        return max(kv, key=lambda label: median(label, what))

    floor_p50 = figures["floor"]["overwrite_p50_us"]["median"]
    rows.append((
        "synced store_log p50 / 4 KiB overwrite+fdatasync floor",
        f"{median('wal', 'synced_1_p50_us'):.0f} µs / {floor_p50:.0f} µs",
        f"{median('wal', 'synced_1_p50_us') / floor_p50:.2f}",
        "<= 1.15",
    ))  # fmt: skip
    for what, title, goal in (
        ("synced_1_rate", "synced store_log rate / best key-value engine", ">= 1.4"),
        ("synced_64_rate", "synced store_logs(64) rate / best key-value engine", ">= 1.5"),
    ):
        top = best(what)
        rows.append((
            title,
            f"{spread('wal', what, '/s')} vs {top} {spread(top, what, '/s')}",
            f"{median('wal', what) / median(top, what):.2f}",
            goal,
        ))  # fmt: skip
    if "lmdb" in measures:
        for what, title, goal in (
            ("unsynced_64_rate", "unsynced store_logs(64) / LMDB", ">= 1.0"),
            (
                "get_random_rate",
                f"random get_log on {figures['entries']:,} entries / LMDB",
                ">= 0.8",
            ),
        ):
            rows.append((
                title,
                f"{spread('wal', what, '/s')} vs {spread('lmdb', what, '/s')}",
                f"{median('wal', what) / median('lmdb', what):.2f}",
                goal,
            ))  # fmt: skip
        rows.append((
            f"reopen at {figures['entries']:,} entries (lmdb {median('lmdb', 'reopen_ms'):.1f} ms)",
            spread("wal", "reopen_ms", " ms", 2),
            f"{median('wal', 'reopen_ms'):.2f} ms",
            "<= 50 ms",
        ))  # fmt: skip
    before, after = figures["wal_disk_before"], figures["wal_disk_after"]
    rows.append((
        "disk usage after deleting the oldest 90% (wal)",
        f"{before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB"
        f" (lmdb {figures.get('lmdb_disk_before', 0) / 2**20:.0f} -> "
        f"{figures.get('lmdb_disk_after', 0) / 2**20:.0f} MiB)",
        f"{after / before:.3f}",
        f"<= 0.15 + one segment ({(0.15 * before + figures['segment_size']) / before:.3f})",
    ))  # fmt: skip
    width = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{width}}  ratio   goal          figures"]
    lines += [f"{m:<{width}}  {r:<7} {g:<13} {f}" for m, f, r, g in rows]
    lines.append("")
    lines.append("synced store_log latency, µs: p50 (spread) / p99 (spread); syncs per append")
    syncs = figures.get("syncs_per_append", {})
    for label in measures:
        lines.append(
            f"  {label:<14} p50 {spread(label, 'synced_1_p50_us')}  p99"
            f" {spread(label, 'synced_1_p99_us')}  syncs/append"
            f" {syncs.get(label, float('nan')):.2f}"
        )
    over, unwritten = figures["floor"]["overwrite_p50_us"], figures["floor"]["fallocated_p50_us"]
    lines.append(
        f"  floor p50: 4 KiB overwrite+fdatasync {over['median']:.0f} µs"
        f" ({over['min']:.0f}..{over['max']:.0f}); 4 KiB into a fallocated (unwritten) extent"
        f" +fdatasync {unwritten['median']:.0f} µs ({unwritten['min']:.0f}..{unwritten['max']:.0f})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="long log length (1M)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure (3)")
    parser.add_argument("--appends", type=int, default=2000, help="synced appends per round")
    parser.add_argument(
        "--subjects", type=lambda text: text.split(","), default=list(SUBJECTS),
        help=f"comma-separated subjects ({','.join(SUBJECTS)})",
    )  # fmt: skip
    parser.add_argument("--dir", default=None, help="where the stores go (system temp)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure as JSON")
    parser.add_argument("--no-strace", action="store_true", help="skip counting syncs")
    args = parser.parse_args(argv)
    unknown = [label for label in args.subjects if label not in SUBJECTS]
    if unknown:
        parser.error(f"unknown subjects {unknown}; choose from {', '.join(SUBJECTS)}")
    figures = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    print(_table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
