"""``raftstore bench``: its arguments, and the command that runs and prints the report."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

import raftstore
from raftstore.benchmark.config import CLOCKS, FULL, QUICK, SMOKE, BenchConfig
from raftstore.benchmark.machine import describe_environment, environment
from raftstore.benchmark.report import format_tables, legend, summarize
from raftstore.benchmark.results import Report
from raftstore.benchmark.runner import Runner, have
from raftstore.benchmark.targets import evaluate_targets, format_targets
from raftstore.benchmark.workloads import WORKLOADS
from raftstore.errors import (
    ConfigurationError,
    EngineUnavailableError,
    RaftStoreError,
    UnknownCodecError,
    UnknownEngineError,
)

__all__ = ["add_subcommand", "config_from_args", "run", "run_benchmarks"]


def run_benchmarks(
    config: BenchConfig, *, progress: TextIO | None = None, targets: bool = False
) -> Report:
    """Run *config*'s matrix and return every figure with its ratios (and the goals if asked)."""
    began = time.monotonic()
    results = Runner(config, progress).run()
    report = Report(
        results=results,
        environment=environment(),
        settings={
            "engines": config.engines,
            "codecs": config.codecs,
            "workloads": config.workloads,
            "syncs": config.syncs,
            "sizes": asdict(config.sizes),
            "ladder_codecs": config.ladder_codecs,
            "baselines": config.baselines,
            "clock": config.clock,
        },
    )
    if targets:
        report.targets = evaluate_targets(results)
    report.seconds = time.monotonic() - began
    return report


def _names(
    text: str | None, known: Sequence[str], what: str, error: type[RaftStoreError]
) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise error(f"bench: unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """Build a `BenchConfig` from ``raftstore bench`` arguments.

    Raises `UnknownEngineError` / `UnknownCodecError` for a name nobody registered,
    `EngineUnavailableError` for one whose package is missing and `ConfigurationError`
    for an unknown workload (the CLI turns them into its documented exit codes).
    """
    engines_info = {info.name: info for info in raftstore.available_engines()}
    codecs_info = {info.name: info for info in raftstore.available_codecs()}
    engines = _names(args.engines, list(engines_info), "engine", UnknownEngineError) or [
        name for name, info in engines_info.items() if info.available
    ]
    codecs = _names(args.codecs, list(codecs_info), "codec", UnknownCodecError) or [
        name for name, info in codecs_info.items() if info.available
    ]
    for kind, names, infos in (("engine", engines, engines_info), ("codec", codecs, codecs_info)):
        for name in names:
            if not infos[name].available:
                raise EngineUnavailableError(
                    f"bench: {kind} {name!r} is not available here: {infos[name].install_hint}"
                )
    workloads = _names(args.workloads, list(WORKLOADS), "workload", ConfigurationError)
    syncs = [True, False] if args.sync is None else [args.sync]
    sizes = SMOKE if getattr(args, "smoke", False) else QUICK if args.quick else FULL
    ladder = [codec for codec in codecs if codec == raftstore.DEFAULT_CODEC] or codecs[:1]
    return BenchConfig(
        engines=engines,
        codecs=codecs,
        workloads=workloads or list(WORKLOADS),
        syncs=syncs,
        sizes=sizes,
        ladder_codecs=ladder,
        baselines=not args.no_baselines,
        directory=args.dir,
        clock=args.clock,
    )


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88, subsequent_indent="  ", break_on_hyphens=False)


def run(args: argparse.Namespace) -> int:
    """``raftstore bench``: run, print the legend, tables and summary, write JSON / plot."""
    config = config_from_args(args)
    if args.plot is not None and not have("matplotlib"):
        print(
            "raftstore bench: --plot needs matplotlib: pip install 'raftstore[plot]'",
            file=sys.stderr,
        )
        return 2
    print(_wrap(f"raftstore bench: {config.describe()}"), flush=True)
    report = run_benchmarks(config, progress=sys.stderr, targets=args.targets)
    print(_wrap(f"measured on {describe_environment(report.environment)}"))
    print()
    print(legend(config.sizes.repeats))
    print()
    print(format_tables(report.results))
    print()
    print(summarize(report.results))
    if args.targets:
        print()
        print(format_targets(report.targets))
    print(f"\n{len(report.results)} figures in {report.seconds:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot is not None:
        from raftstore.benchmark.plot import write_plot

        write_plot(report.results, args.plot)
        print(f"wrote {args.plot}")
    return 0


def add_subcommand(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to the ``raftstore`` command's subparsers."""
    bench = commands.add_parser(
        "bench",
        help="benchmark every engine x codec against the raw engines and PySyncObj",
        description=(
            "Benchmark raftstore engines x codecs on Raft-shaped workloads, side by side"
            " with the raw engine bindings, PySyncObj's journals and the disk's floor."
            f" Workloads: {', '.join(WORKLOADS)}."
        ),
        epilog=(
            "example:\n  raftstore bench --quick\n"
            "  raftstore bench --engines lmdb,rocksdb --codecs msgpack --json out.json"
            " --plot out.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--engines", help="comma-separated engines (default: every available one)")
    bench.add_argument("--codecs", help="comma-separated codecs (default: every available one)")
    bench.add_argument(
        "--workloads", help=f"comma-separated workloads (default: all): {', '.join(WORKLOADS)}"
    )
    bench.add_argument(
        "--sync",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only synced (--sync) or unsynced (--no-sync) writes (default: both)",
    )
    bench.add_argument(
        "--quick", action="store_true", help="small sizes and short rounds (about a minute)"
    )
    bench.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    bench.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the PySyncObj journals and the disk floor (raw bindings always run)",
    )
    bench.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="time unsynced and read steps by wall time (default) or by this thread's CPU"
        " time (steadier on a busy machine; synced writes and reopen always use wall time)",
    )
    bench.add_argument(
        "--targets",
        action="store_true",
        help="also check the team's performance goals for lmdb/msgpack (and add them to --json)",
    )
    bench.add_argument("--json", type=Path, metavar="FILE", help="write every figure as JSON")
    bench.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="write one figure of bar charts, a row per question (needs matplotlib)",
    )
    bench.add_argument(
        "--dir", type=Path, metavar="DIR", help="where to put the stores (default: system temp)"
    )
    bench.set_defaults(func=run)
