"""The long power-loss run: many power cuts per engine, filesystem and workload, as tables.

The same rig as ``tests/test_power_loss.py`` (see ``tests/power_loss_rig.py``):
a writer on a loop-mounted ext4 image (``journal``: default ext4;
``nojournal``: ``mkfs.ext4 -O ^has_journal``) is SIGSTOPped right after a
seeded acknowledgement, the image is copied, and the copy is fsck'd, mounted
and checked against the model. Each run (one writer) is cut ``--cuts`` times;
``--trials`` runs per engine, filesystem and workload, run n with seed
``--seed + n``. Needs root and loop devices. Examples::

    sudo python bench/power_loss.py --trials 10 --cuts 3
    sudo python bench/power_loss.py --engines leveldb --fs journal --workloads sync \\
        --seed 20261201 --trials 1 --cuts 2

Prints one markdown table per engine and filesystem: per workload the power
cuts, the acknowledged calls they covered, how many copies held the
acknowledged state or a later one, silent losses, raftstore errors and
failures (native errors, crashes, hangs, rig failures). The ``unsynced``
workload is the rig's control (``sync=False``, never synced): it is expected
to lose writes and never counts as a failure. Exits 1 on any silent loss or
failure elsewhere; each one prints the command that reruns its run (the cut
points follow from the seed; where the in-flight call lands is up to the OS).

Like ``bench/crash_trials.py``, it first copies the ``raftstore`` package
aside and runs every child on that copy, so a long run measures one version
of the code even if the working tree changes meanwhile.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _early_ref(argv: list[str]) -> str | None:
    """The ``--ref`` argument, needed before argparse runs (the package is pinned at import)."""
    for n, word in enumerate(argv):
        if word == "--ref" and n + 1 < len(argv):
            return argv[n + 1]
        if word.startswith("--ref="):
            return word.partition("=")[2]
    return None


def _pin_package() -> Path:
    """Copy ``raftstore/`` aside and import it (here and in every child) from the copy.

    The copy is of the working tree, or with ``--ref REF`` of that commit's
    ``raftstore/`` (``git archive``; the working tree is not touched).
    """
    pinned = Path(tempfile.mkdtemp(prefix="raftstore-pinned-"))
    ref = _early_ref(sys.argv[1:])
    if ref is None:
        shutil.copytree(
            _REPO / "raftstore", pinned / "raftstore", ignore=shutil.ignore_patterns("__pycache__")
        )
    else:
        archive = subprocess.run(
            ["git", "-C", str(_REPO), "archive", "--format=tar", ref, "raftstore"],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        if archive.returncode != 0:
            sys.exit(f"git archive {ref} failed: {archive.stderr.decode(errors='replace')}")
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(pinned, filter="data")
    sys.path.insert(0, str(pinned))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(pinned), os.environ.get("PYTHONPATH", "")])
    )
    return pinned


_PINNED = _pin_package()
sys.path.insert(0, str(_REPO / "tests"))

from power_loss_rig import (  # noqa: E402
    CONTROL_WORKLOADS,
    ENGINES,
    FILESYSTEMS,
    WORKLOADS,
    Cut,
    engine_unavailable,
    probe,
    run_power_loss,
)

import raftstore  # noqa: E402


def _code_version(ref: str | None) -> str:
    """The commit tested: ``--ref``'s, or HEAD and whether the working tree differs from it."""
    if ref is not None:
        done = subprocess.run(
            ["git", "-C", str(_REPO), "log", "--oneline", "-1", ref],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return f"{done.stdout.strip()} (git archive {ref}, not the working tree)"
    try:
        head = subprocess.run(
            ["git", "-C", str(_REPO), "log", "--oneline", "-1"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--", "raftstore"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout.split("\n")  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (git failed)"
    changed = [line[3:] for line in dirty if line.strip()]
    if changed:
        return f"{head} plus uncommitted changes to {', '.join(changed)}"
    return head


def _row(workload: str, cuts: list[Cut]) -> dict[str, object]:
    return {
        "workload": workload,
        "runs": len({cut.seed for cut in cuts}),
        "cuts": len(cuts),
        "acknowledged": sum(cut.acked for cut in cuts),
        "ok": sum(cut.outcome == "ok" for cut in cuts),
        "later": sum(cut.outcome == "later" for cut in cuts),
        "lost": sum(cut.silent_loss for cut in cuts),
        "raftstore_errors": sum(cut.outcome == "raftstore_error" for cut in cuts),
        "failures": sum(cut.failed for cut in cuts),
        "torn_copies": sum(cut.copy_attempts == 0 for cut in cuts),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the power cuts and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--engines", nargs="+", default=list(ENGINES))
    parser.add_argument("--fs", nargs="+", default=list(FILESYSTEMS), choices=FILESYSTEMS)
    parser.add_argument(
        "--workloads",
        nargs="+",
        default=list(WORKLOADS + CONTROL_WORKLOADS),
        choices=WORKLOADS + CONTROL_WORKLOADS,
    )
    parser.add_argument("--trials", type=int, default=10, help="runs per cell (default 10)")
    parser.add_argument("--cuts", type=int, default=3, help="power cuts per run (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="first seed; run n uses seed + n")
    parser.add_argument("--max-acks", type=int, default=60, help="latest cut point")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--json", type=Path, help="write every cut here as JSON")
    parser.add_argument("--keep", type=Path, help="keep the copies that were not ok here")
    parser.add_argument(
        "--ref", help="test raftstore/ as committed at REF (default: the working tree)"
    )
    args = parser.parse_args(argv)

    version = _code_version(args.ref)
    print(f"code: {version}", flush=True)
    print(f"testing {raftstore.__file__} (a copy of {args.ref or _REPO / 'raftstore'})", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="raftstore-power-loss-") as tmp:
            workdir = Path(tmp)
            reason = probe(workdir)
            if reason is not None:
                print(f"cannot run: {reason}", file=sys.stderr)
                return 2
            engines = []
            for engine in args.engines:
                why = engine_unavailable(engine)
                if why is None:
                    engines.append(engine)
                else:
                    print(f"skip {engine}: {why}", flush=True)
            cells = [
                (engine, fs, workload, args.seed + n)
                for engine in engines
                for fs in args.fs
                for workload in args.workloads
                for n in range(args.trials)
            ]
            started = time.perf_counter()
            ref = f" --ref {args.ref}" if args.ref else ""
            everything: list[Cut] = []
            with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
                futures = [
                    pool.submit(
                        run_power_loss,
                        engine,
                        fs,
                        workload,
                        seed,
                        workdir,
                        cuts=args.cuts,
                        max_acks=args.max_acks,
                        keep=args.keep,
                    )
                    for engine, fs, workload, seed in cells
                ]
                for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                    cuts = future.result()
                    everything.extend(cuts)
                    for cut in cuts:
                        if cut.workload in CONTROL_WORKLOADS or cut.outcome in ("ok", "later"):
                            continue
                        print(
                            f"{cut.outcome.upper()} {cut.engine} {cut.fs} {cut.workload}"
                            f" seed={cut.seed} cut at ack {cut.ordinal}, {cut.acked}"
                            f" acknowledged calls: {cut.detail}\n  rerun: {cut.reproduce()}{ref}",
                            flush=True,
                        )
                    if done % 20 == 0 or done == len(futures):
                        print(
                            f"... {done}/{len(futures)} runs,"
                            f" {time.perf_counter() - started:.0f} s",
                            flush=True,
                        )
    finally:
        shutil.rmtree(_PINNED, ignore_errors=True)
    print(
        f"\ncode: {version}\ntotal {time.perf_counter() - started:.0f} s, seeds"
        f" {args.seed}..{args.seed + args.trials - 1}, {args.cuts} cuts per run,"
        f" cut points up to acknowledgement {args.max_acks}"
    )
    rows: list[dict[str, object]] = []
    any_bad = False
    columns = [
        "workload", "runs", "power cuts", "acknowledged calls", "ok", "in-flight landed",
        "lost (silent)", "CorruptionError/raftstore error", "failures",
    ]  # fmt: skip
    for engine in engines:
        for fs in args.fs:
            print(f"\n**{engine}, ext4 {'with' if fs == 'journal' else 'without'} a journal**\n")
            print("| " + " | ".join(columns) + " |")
            print("|" + "---|" * len(columns))
            for workload in args.workloads:
                cell = [
                    c for c in everything if (c.engine, c.fs, c.workload) == (engine, fs, workload)
                ]
                row = _row(workload, cell) | {"engine": engine, "fs": fs}
                rows.append(row)
                control = workload in CONTROL_WORKLOADS
                any_bad |= not control and (bool(row["lost"]) or bool(row["failures"]))
                name = f"{workload} (control)" if control else workload
                print(
                    f"| {name} | {row['runs']} | {row['cuts']} | {row['acknowledged']}"
                    f" | {row['ok']} | {row['later']} | {row['lost']}"
                    f" | {row['raftstore_errors']} | {row['failures']} |"
                )
    torn = sum(cut.copy_attempts == 0 for cut in everything)
    if torn:
        print(f"\n{torn} copies were taken while the device kept writing (not point-in-time)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"code": version, "rows": rows, "cuts": [c.as_dict() for c in everything]},
                indent=1,
            )
            + "\n"
        )
    return 1 if any_bad else 0


if __name__ == "__main__":
    sys.exit(main())
