"""The long crash run: many SIGKILL trials per disk engine, summarised as a table.

The same trials as ``tests/test_crash.py`` (see ``tests/crash_harness.py``),
just more of them. Example, the run reported in docs/durability.md::

    python bench/crash_trials.py --trials 150 --generations 3
    python bench/crash_trials.py --engines lmdb --trials 20 --seed 7 --no-sync

Exits 1 when any trial fails; each failure prints its seed and generation,
so ``--seed S --trials 1`` reruns it.

The run first copies the ``raftstore`` package it will test into a
temporary directory and puts that copy first on the path of this process
and of every writer: a long run measures one version of the code even if
the working tree changes while it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _pin_package() -> Path:
    """Copy ``raftstore/`` aside and import it (here and in every writer) from the copy."""
    pinned = Path(tempfile.mkdtemp(prefix="raftstore-pinned-"))
    shutil.copytree(
        _REPO / "raftstore", pinned / "raftstore", ignore=shutil.ignore_patterns("__pycache__")
    )
    sys.path.insert(0, str(pinned))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(pinned), os.environ.get("PYTHONPATH", "")])
    )
    return pinned


_PINNED = _pin_package()
sys.path.insert(0, str(_REPO / "tests"))

from crash_harness import (  # noqa: E402
    DISK_ENGINES,
    TrialFailure,
    TrialResult,
    engine_available,
    run_trial,
)

import raftstore  # noqa: E402


def _summarise(
    engine: str, sync: bool, results: list[TrialResult], failures: int
) -> dict[str, object]:
    generations = [g for r in results for g in r.generations]
    in_flight_landed = sum(1 for g in generations if g.found > g.acked)
    reopen_ms = [g.reopen_seconds * 1000 for g in generations]
    return {
        "engine": engine,
        "sync": sync,
        "trials": len(results) + failures,
        "passed": len(results),
        "failed": failures,
        "kills": len(generations),
        "kills_during_open": sum(1 for g in generations if g.kill_mode == "open"),
        "in_flight_call_landed": in_flight_landed,
        "max_acked_calls": max((g.acked for g in generations), default=0),
        "max_entries": max((g.entries for g in generations), default=0),
        "reopen_ms_median": round(statistics.median(reopen_ms), 1) if reopen_ms else None,
        "reopen_ms_max": round(max(reopen_ms), 1) if reopen_ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the trials and print one summary row per engine and sync setting."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--engines", nargs="+", default=list(DISK_ENGINES))
    parser.add_argument("--trials", type=int, default=100, help="trials per engine (default 100)")
    parser.add_argument("--generations", type=int, default=3, help="kills per trial (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="first seed; trial n uses seed + n")
    parser.add_argument("--max-acks", type=int, default=60, help="most calls between kills")
    parser.add_argument("--no-sync", action="store_true", help="also run sync=False trials")
    parser.add_argument("--json", type=Path, help="write the summary rows here as JSON")
    args = parser.parse_args(argv)

    print(f"testing {raftstore.__file__} (a copy of {_REPO / 'raftstore'})", flush=True)
    settings = [True, False] if args.no_sync else [True]
    rows: list[dict[str, object]] = []
    any_failed = False
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raftstore-crash-") as tmp:
        for engine in args.engines:
            reason = engine_available(engine)
            if reason is not None:
                print(f"skip {engine}: {reason}", flush=True)
                continue
            for sync in settings:
                results: list[TrialResult] = []
                failures = 0
                engine_started = time.perf_counter()
                for n in range(args.trials):
                    seed = args.seed + n
                    root = Path(tmp) / f"{engine}-{sync}-{seed}"
                    root.mkdir()
                    try:
                        results.append(
                            run_trial(
                                engine,
                                seed,
                                root,
                                generations=args.generations,
                                sync=sync,
                                max_acks=args.max_acks,
                            )
                        )
                    except TrialFailure as exc:
                        failures += 1
                        print(f"FAIL {exc}", flush=True)
                row = _summarise(engine, sync, results, failures)
                row["seconds"] = round(time.perf_counter() - engine_started, 1)
                rows.append(row)
                any_failed |= failures > 0
                print(json.dumps(row), flush=True)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s,"
        f" seeds {args.seed}..{args.seed + args.trials - 1}"
    )
    columns = [
        "engine", "sync", "trials", "passed", "kills", "during open",
        "in-flight call landed", "max entries", "reopen ms (median/max)",
    ]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print(
            f"| {row['engine']} | {row['sync']} | {row['trials']} | {row['passed']}"
            f" | {row['kills']} | {row['kills_during_open']} | {row['in_flight_call_landed']}"
            f" | {row['max_entries']}"
            f" | {row['reopen_ms_median']}/{row['reopen_ms_max']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    shutil.rmtree(_PINNED, ignore_errors=True)
    return 1 if any_failed else 0


if __name__ == "__main__":
    sys.exit(main())
