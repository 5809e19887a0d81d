"""The file-damage campaign: damage stores' files at random, seeded, and count what raftstore does.

For each engine (lmdb, rocksdb, leveldb, and ``wal`` when it is available) a
small store is built through the public API, copied per trial, damaged
(bytes flipped, a file truncated or deleted, a 4 KiB page zeroed, garbage
appended, the meta record or ``raftstore.json`` forged), then opened and
read in a child process with a hard timeout, and checked with
``raftstore verify`` in another. The trial logic lives in
`raftstore.testing.damage` (its docstring defines every outcome); this script
runs many trials and prints a markdown table per engine, then every outcome
that is not allowed with a one-line reproduction. Examples::

    python bench/damage_fuzz.py --trials 200
    python bench/damage_fuzz.py --engines rocksdb,leveldb --trials 50 --seed 7000
    python bench/damage_fuzz.py --engine lmdb --seed 1234 --trials 1 --keep

Trial *i* of a run uses seed ``--seed + i``; ``--engine E --seed S --trials
1`` reruns exactly trial S of engine E. ``--keep`` keeps each trial's
directories (``damaged/``: the files as damaged; ``store/``: after the
check opened them; ``verify/``: after verify) and prints the full record.
Exits 1 when any trial has an outcome that is not allowed (or an engine's
undamaged store could not be built and read back).

The run first copies the ``raftstore`` package it will test into a
temporary directory and puts that copy first on the path of this process
and of every child (``--no-pin`` tests the working tree as it is): a long
run measures one version of the code even if the tree changes under it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent


def _pin_package() -> Path:
    """Copy ``raftstore/`` aside and import it (here and in every child) from the copy."""
    pinned = Path(tempfile.mkdtemp(prefix="raftstore-pinned-"))
    shutil.copytree(
        _REPO / "raftstore", pinned / "raftstore", ignore=shutil.ignore_patterns("__pycache__")
    )
    _use(pinned)
    return pinned


def _use(directory: Path) -> None:
    sys.path.insert(0, str(directory))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(directory), os.environ.get("PYTHONPATH", "")])
    )


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--engines",
        "--engine",
        dest="engines",
        action="append",
        help="engines to damage, comma-separated or repeated (default: lmdb, rocksdb,"
        " leveldb, and wal when available)",
    )
    parser.add_argument("--trials", type=int, default=200, help="trials per engine (200)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first trial (1000)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds each child may take (30)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="trials run at once (2)")
    parser.add_argument("--json", type=Path, help="write every trial as JSON to this file")
    parser.add_argument("--markdown", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--keep", action="store_true", help="keep each trial's directories and print its record"
    )
    parser.add_argument("--workdir", type=Path, help="where stores are built (a temporary dir)")
    parser.add_argument(
        "--no-pin", action="store_true", help="test the working tree, not a copy of it"
    )
    parser.add_argument(
        "--stop-after", type=int, help="start no new trial after this many not allowed"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    pinned = None if args.no_pin else _pin_package()
    if pinned is None:
        _use(_REPO)
    from raftstore.testing import damage

    requested = [name for item in args.engines or [] for name in item.split(",") if name]
    engines, skipped = damage.campaign_engines(requested or None)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raftstore-damage-"))
    workdir.mkdir(parents=True, exist_ok=True)
    commit = _git("log", "--oneline", "-1")
    dirty = _git("status", "--short", "--", "raftstore")
    changed = ", ".join(line.split(maxsplit=1)[-1] for line in dirty.splitlines())
    print(
        f"damage campaign: engines {', '.join(engines) or 'none'}, {args.trials} trials each,"
        f" seeds {args.seed}..{args.seed + args.trials - 1}, timeout {args.timeout:g} s,"
        f" {args.jobs} jobs",
        file=sys.stderr,
    )
    print(
        f"code: {commit}{' + uncommitted changes: ' + changed if dirty else ''}"
        f"{' (pinned copy ' + str(pinned) + ')' if pinned else ' (working tree)'}",
        file=sys.stderr,
    )
    started = time.monotonic()
    done = 0

    def progress(trial: damage.TrialResult) -> None:
        nonlocal done
        done += 1
        mark = "." if trial.allowed else "X"
        if not trial.allowed or args.keep:
            print(
                f"\n[{done}] {trial.engine} seed {trial.seed}: {trial.outcome}"
                f" {'(not allowed) ' if not trial.allowed else ''}- {trial.description}",
                file=sys.stderr,
            )
        else:
            print(mark, end="", file=sys.stderr, flush=True)

    try:
        result = damage.run_campaign(
            engines,
            args.trials,
            args.seed,
            workdir,
            timeout=args.timeout,
            jobs=args.jobs,
            keep=args.keep,
            stop_after=args.stop_after,
            progress=progress,
        )
    finally:
        if pinned is not None:
            shutil.rmtree(pinned, ignore_errors=True)
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result.skipped.update(skipped)
    print(file=sys.stderr)
    report = damage.render_markdown(result)
    header = (
        f"Damage campaign: `python bench/damage_fuzz.py {' '.join(argv or sys.argv[1:])}`"
        f" on `{commit}`{' plus uncommitted changes (' + changed + ')' if dirty else ''},"
        f" {len(result.trials)} trials in {time.monotonic() - started:.0f} s.\n"
    )
    print(header)
    print(report)
    if args.keep:
        for trial in result.trials:
            print(f"\n{trial.engine} seed {trial.seed}, kept in {trial.kept}:")
            print(json.dumps(asdict(trial), indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(header + "\n" + report + "\n")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "commit": commit,
                    "uncommitted_changes": dirty.splitlines(),
                    "engines": engines,
                    "skipped": result.skipped,
                    "seconds": result.seconds,
                    "trials": [asdict(t) for t in result.trials],
                },
                indent=1,
                default=str,
            )
        )
    built_failed = set(result.skipped) - set(skipped)  # an engine whose store did not build
    return 1 if result.failures or built_failed else 0


if __name__ == "__main__":
    sys.exit(main())
