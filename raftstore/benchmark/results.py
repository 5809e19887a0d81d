"""Figures and their ratios: what a run produces and what ``--json`` writes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from raftstore.benchmark.handles import on_disk
from raftstore.benchmark.workloads import REGISTRY

__all__ = [
    "SCHEMA_VERSION",
    "Report",
    "Result",
    "set_ratios",
    "table_order",
    "tables",
]

SCHEMA_VERSION = 2


@dataclass(slots=True)
class Result:
    """One figure: a subject measured on one workload case."""

    workload: str
    case: str
    subject: str
    #: ``raftstore``, ``raw``, ``pysyncobj`` or ``floor`` (the disk alone).
    kind: str
    engine: str | None
    codec: str | None
    sync: bool | None
    unit: str
    higher_is_better: bool
    #: The median of *samples*.
    value: float
    #: One figure per round, in *unit*.
    samples: list[float]
    ratio_to_raw: float | None = None
    ratio_to_best: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and the highest round (min, max)."""
        return (min(self.samples), max(self.samples)) if self.samples else (0.0, 0.0)

    def better_than(self, other: Result) -> float | None:
        """This figure over *other*'s, turned so that > 1 means better; None without a value."""
        if self.value <= 0 or other.value <= 0:
            return None
        return self.value / other.value if self.higher_is_better else other.value / self.value


@dataclass(slots=True)
class Report:
    """Everything one run produced, as written to ``--json``."""

    results: list[Result]
    environment: dict[str, Any]
    settings: dict[str, Any]
    targets: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON document (schema in docs/benchmarks.md)."""
        return {
            "schema": SCHEMA_VERSION,
            "environment": self.environment,
            "settings": self.settings,
            "seconds": round(self.seconds, 2),
            "results": [asdict(result) for result in self.results],
            "targets": self.targets,
        }


def _case_order(case: str) -> tuple[int, float]:
    if case in ("sync", "no sync"):
        return 0, float(case == "no sync")
    count = case.split()[0]
    scale = {"k": 1e3, "M": 1e6}.get(count[-1:], 1.0)
    try:
        return 1, float(count.rstrip("kM")) * scale
    except ValueError:
        return 2, 0.0


def tables(results: Iterable[Result]) -> dict[tuple[str, str], list[Result]]:
    """*results* grouped by table (workload, case), in the registry's order of workloads."""
    grouped: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        grouped.setdefault((result.workload, result.case), []).append(result)
    order = {name: position for position, name in enumerate(REGISTRY)}
    return dict(
        sorted(
            grouped.items(),
            key=lambda item: (order.get(item[0][0], len(order)), _case_order(item[0][1])),
        )
    )


def set_ratios(results: list[Result]) -> None:
    """Set each row's ``ratio_to_raw`` (to its raw twin) and ``ratio_to_best``.

    Both are ratios of medians, turned so that > 1 means better: ``x raw`` =
    row / raw twin for rates, raw twin / row for times; ``x best`` = the same
    against the best raftstore row of the table (the best on-disk one in a
    synced table). RSS rows get no ``x raw``:
    a growth near zero makes a ratio meaningless.
    """
    for rows in tables(results).values():
        raw = {(row.engine, row.codec): row for row in rows if row.kind == "raw"}
        stores = [row for row in rows if row.kind == "raftstore" and row.value > 0]
        if rows[0].sync:
            # In a synced table the best is the best *durable* row, not the memory engine.
            stores = [row for row in stores if on_disk(row.engine)] or stores
        best = None
        if stores:
            pick = max if rows[0].higher_is_better else min
            best = pick(stores, key=lambda row: row.value)
        for row in rows:
            twin = raw.get((row.engine, row.codec))
            if twin is not None and row.kind in ("raftstore", "raw") and row.unit != "MB":
                row.ratio_to_raw = row.better_than(twin)
            if best is not None:
                row.ratio_to_best = row.better_than(best)


def table_order(rows: list[Result]) -> list[Result]:
    """Stores best first, each followed by its raw twin; then the other baselines."""

    def rank(row: Result) -> float:
        return -row.value if row.higher_is_better else row.value

    raw = {(row.engine, row.codec): row for row in rows if row.kind == "raw"}
    ordered: list[Result] = []
    for row in sorted((r for r in rows if r.kind == "raftstore"), key=rank):
        ordered.append(row)
        twin = raw.pop((row.engine, row.codec), None)
        if twin is not None:
            ordered.append(twin)
    ordered += sorted(raw.values(), key=rank)
    ordered += sorted((r for r in rows if r.kind not in ("raftstore", "raw")), key=rank)
    return ordered
