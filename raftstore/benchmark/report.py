"""The text report: a legend, one table per workload case and a summary in plain words."""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Iterable, Sequence

import raftstore
from raftstore.benchmark.floor import FLOORS, FloorMode
from raftstore.benchmark.handles import on_disk
from raftstore.benchmark.results import Result, table_order, tables
from raftstore.benchmark.workloads import WORKLOADS

__all__ = [
    "case_words",
    "format_ratio",
    "format_spread",
    "format_tables",
    "format_value",
    "legend",
    "summarize",
]

_CASES = {"sync": "synced", "no sync": "unsynced"}
_UNITS = {
    "entries/s": "entries/s, higher is better",
    "s": "ms per open, lower is better",
    "MB": "MB of peak RSS growth, lower is better",
}


def case_words(case: str) -> str:
    """A table's case in words: ``synced``, ``unsynced``, ``10k entries``."""
    return _CASES.get(case, case)


def format_value(value: float, unit: str) -> str:
    """A figure in its unit: ``12,345`` (entries/s), ``0.75 ms``, ``12.2 MB``."""
    if unit == "s":
        return f"{value * 1000:,.2f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f}"


def format_ratio(ratio: float | None) -> str:
    """A ratio with two decimals (one significant digit below 0.1: ``0.006``); "" for None."""
    if ratio is None:
        return ""
    return f"{ratio:.2f}" if ratio >= 0.095 else f"{ratio:.1g}"


def format_spread(result: Result) -> str:
    """The lowest and highest round as ``low-high`` (empty for a single round)."""
    if len(result.samples) < 2:
        return ""
    low, high = result.spread
    if result.unit == "s":
        return f"{low * 1000:,.2f}-{high * 1000:,.2f}"
    return f"{low:,.0f}-{high:,.0f}"


def legend(repeats: int) -> str:
    """How to read the tables: units, which way is better, what the ratios are."""
    floor = FLOORS["overwrite"][0].removeprefix("disk: ")
    return "\n".join(
        [
            "How to read the tables",
            "  entries/s  log entries written or read per second: higher is better",
            "  ms, MB     time per reopen, peak memory growth: lower is better",
            f"  median     of {repeats} or more interleaved rounds per row; 'spread' is the",
            "             slowest and fastest round; a median inside the best's spread is a tie",
            "  x raw      row median / its raw twin's median (ms: raw / row), where the",
            "             raw twin is the engine's own binding doing the same work with",
            "             the same bytes and no checks: 0.80 = the store layer costs 20%",
            "  x best     row median / the table's best raftstore median (ms: best / row):",
            "             1.00 = the best, 0.50 = half as fast; above 1 is always better",
            "  disk: ...  the disk alone, one durable write per call, times the batch;",
            f"             '{floor}' is the floor: durable rows can at best tie it",
            "  not durable  memory engines in the synced tables: nothing reaches the disk",
        ]
    )


def format_tables(results: Iterable[Result]) -> str:
    """One aligned table per workload case: median, spread, ratio to raw, ratio to the best."""
    blocks = []
    for (workload, case), rows in tables(results).items():
        unit = rows[0].unit
        title = f"{workload}, {case_words(case)} ({_UNITS[unit]})\n  {WORKLOADS.get(workload, '')}"
        ordered = table_order(rows)
        width = max(len("subject"), *(len(r.subject) for r in ordered)) + 2
        spreads = [format_spread(row) for row in ordered]
        spread_width = max(len("spread"), *(len(s) for s in spreads)) + 2
        shown = {"s": "median", "MB": "growth"}.get(unit, unit)
        lines = [
            title,
            f"  {'subject':<{width}}{shown:>12}{'spread':>{spread_width}}{'x raw':>8}{'x best':>8}"
            "  note",
        ]
        for row, spread in zip(ordered, spreads, strict=True):
            raw, best = format_ratio(row.ratio_to_raw), format_ratio(row.ratio_to_best)
            lines.append(
                f"  {row.subject:<{width}}{format_value(row.value, unit):>12}"
                f"{spread:>{spread_width}}{raw:>8}{best:>8}  {row.note}".rstrip()
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# -- the summary ----------------------------------------------------------------------------------


class _Facts:
    """Look-ups over one run's results for the summary."""

    def __init__(self, results: Sequence[Result]) -> None:
        self.results = list(results)
        self.tables = tables(self.results)

    def rows(self, workload: str, case: str | None = None) -> list[Result]:
        """The on-disk raftstore rows of *workload* (its last case when *case* is None)."""
        cases = [c for (w, c) in self.tables if w == workload]
        if not cases:
            return []
        chosen = case if case is not None else cases[-1]
        return [
            row
            for row in self.tables.get((workload, chosen), [])
            if row.kind == "raftstore" and on_disk(row.engine) and row.value > 0
        ]

    def floor(self, mode: FloorMode) -> Result | None:
        label = FLOORS[mode][0]
        for row in self.tables.get(("append_1", "sync"), []):
            if row.subject == label:
                return row
        return None


def _ties(rows: list[Result]) -> tuple[Result | None, list[Result]]:
    """The best row and the rows whose median lies inside its spread (a tie within noise)."""
    if not rows:
        return None, []
    higher = rows[0].higher_is_better
    ordered = sorted(rows, key=lambda r: -r.value if higher else r.value)
    best = ordered[0]
    if len(best.samples) < 2:
        return best, []
    low, high = best.spread
    tied = [
        row
        for row in ordered[1:]
        if (higher and row.value >= low) or (not higher and row.value <= high)
    ]
    return best, tied


def _leader(rows: list[Result]) -> str:
    """The best row's subject, with the rows that tie it ("within noise")."""
    best, tied = _ties(rows)
    if best is None:
        return ""
    if tied:
        names = ", ".join(row.subject for row in tied[:2]) + (" ..." if len(tied) > 2 else "")
        return f"{best.subject} (within noise: {names})"
    return best.subject


def _best(rows: list[Result]) -> Result | None:
    if not rows:
        return None
    pick = max if rows[0].higher_is_better else min
    return pick(rows, key=lambda r: r.value)


def _per_call(rate: float) -> str:
    micros = 1e6 / rate
    return f"{micros / 1000:.1f} ms" if micros >= 1000 else f"{micros:.0f} us"


def summarize(results: Sequence[Result]) -> str:
    """What this run says in plain words: the fastest engine for each job, and what to pick."""
    facts = _Facts(results)
    lines = ["On this machine, in this run (on-disk engines; medians):"]
    wins: dict[str, list[str]] = {}
    ties: list[str] = []

    def won(rows: list[Result], job: str) -> None:
        best, tied = _ties(rows)
        if best is None or best.engine is None:
            return
        engines = dict.fromkeys([str(best.engine), *(str(row.engine) for row in tied)])
        if len(engines) > 1:
            ties.append(f"{job} ({', '.join(engines)})")
        else:
            wins.setdefault(best.engine, []).append(job)

    single, batch = facts.rows("append_1", "sync"), facts.rows("append_64", "sync")
    if single or batch:
        parts = []
        if single and (top := _best(single)):
            parts.append(
                f"{_leader(single)}: {top.value:,.0f} synced store_log/s"
                f" ({_per_call(top.value)} each)"
            )
            won(single, "durable single appends")
        if batch and (top := _best(batch)):
            parts.append(f"{_leader(batch)}: {top.value:,.0f} entries/s in synced batches of 64")
            won(batch, "durable batches")
        lines.append("  durable appends   " + "; ".join(parts))
        floors = [
            f"{FLOORS[mode][0].removeprefix('disk: ')} {row.value:,.0f}/s ({_per_call(row.value)})"
            for mode in ("overwrite", "append")
            if (row := facts.floor(mode)) is not None
        ]
        if floors:
            lines.append("                    the disk alone: " + "; ".join(floors))
    unsynced = facts.rows("append_64", "no sync")
    if unsynced and (top := _best(unsynced)):
        lines.append(
            f"  unsynced appends  {_leader(unsynced)}: {top.value:,.0f} entries/s in batches of 64"
        )
        won(unsynced, "unsynced batches")
    gets, tails = facts.rows("get_random"), facts.rows("tail_read")
    if gets or tails:
        parts = []
        if gets and (top := _best(gets)):
            parts.append(f"{_leader(gets)}: {top.value:,.0f} random get_log/s ({top.case})")
            won(gets, "random reads")
        if tails and (top := _best(tails)):
            parts.append(f"tail reads {_leader(tails)}: {top.value:,.0f} entries/s")
        lines.append("  reads             " + "; ".join(parts))
    reopen = facts.rows("reopen")
    if reopen and (top := _best(reopen)):
        lines.append(
            f"  reopen            {_leader(reopen)}: {top.value * 1000:,.2f} ms at {top.case}"
        )
        won(reopen, "fast restarts")
    rss = facts.rows("rss")
    if rss and (top := _best(rss)):
        lines.append(
            f"  memory            {top.subject}: {top.value:,.1f} MB peak RSS growth at {top.case}"
        )
        won(rss, "the smallest memory")
    default = f"{raftstore.DEFAULT_ENGINE}/{raftstore.DEFAULT_CODEC}"
    costs = [
        (f"{workload} {case_words(case)}", row.ratio_to_raw)
        for (workload, case), rows in facts.tables.items()
        for row in rows
        if row.subject == default and row.ratio_to_raw is not None
    ]
    if costs:
        ratios = [ratio for _, ratio in costs if ratio is not None]
        low, high, middle = min(ratios), max(ratios), statistics.median(ratios)
        lines.append(
            f"  the default       {default} runs at {low:.2f}-{high:.2f}x its raw binding"
            f" (median {middle:.2f}x over {len(ratios)} tables): the price of the store's"
            " checks, lock and checksums (see each table's 'x raw')"
        )
    lines += _advice(facts, wins, ties)
    return "\n".join(_wrapped(line) for line in lines)


def _wrapped(line: str) -> str:
    return textwrap.fill(line, width=88, subsequent_indent=" " * 20, break_on_hyphens=False)


def _advice(facts: _Facts, wins: dict[str, list[str]], ties: list[str]) -> list[str]:
    lines = []
    picks = [
        f"{engine} for {', '.join(jobs)}"
        for engine, jobs in sorted(wins.items(), key=lambda item: -len(item[1]))
    ]
    if ties:
        picks.append("a tie within noise for " + "; ".join(ties))
    if picks:
        lines.append("  which to pick     " + "; ".join(picks) + ".")
    single = {row.engine: row for row in facts.rows("append_1", "sync")}
    batch = {row.engine: row for row in facts.rows("append_64", "sync")}
    gains = [batch[engine].value / row.value for engine, row in single.items() if engine in batch]
    if gains:
        lines.append(
            f"  batching          store_logs of 64 commits"
            f" {min(gains):,.0f}-{max(gains):,.0f}x the entries/s of store_log when synced:"
            " batch durable appends (group commit)"
        )
    lines.append("  memory://         tests only: nothing survives close()")
    return lines
