"""``--plot``: one figure, one row of panels per question a reader has (needs matplotlib).

Durable appends, unsynced appends, reads, and reopen + memory: horizontal
bars on linear axes, one bar per on-disk engine with the default codec, its
raw binding beside it (light), the disk's floor as lines; each axis says
which way is better. A baseline far off the scale (PySyncObj's in-memory
lists) is cut at the edge and labelled with its value instead of squashing
every other bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import raftstore
from raftstore.benchmark.floor import FLOORS
from raftstore.benchmark.handles import on_disk
from raftstore.benchmark.results import Result, tables

__all__ = ["write_plot"]

#: Question -> its panels: (workload, case or None for the largest, panel title).
_QUESTIONS: list[tuple[str, list[tuple[str, str | None, str]]]] = [
    (
        "Durable appends (sync=True)",
        [
            ("append_1", "sync", "store_log, 1 entry per call"),
            ("append_64", "sync", "store_logs, 64 per call"),
            ("append_1024", "sync", "store_logs, 1024 per call"),
        ],
    ),
    (
        "Unsynced appends (sync=False): not waiting for the disk",
        [
            ("append_1", "no sync", "store_log, 1 entry per call"),
            ("append_64", "no sync", "store_logs, 64 per call"),
            ("append_1024", "no sync", "store_logs, 1024 per call"),
        ],
    ),
    (
        "Reads from a filled log",
        [
            ("get_random", None, "random get_log"),
            ("tail_read", None, "the last 64 entries (replication)"),
        ],
    ),
    (
        "Restart: time to reopen, and memory",
        [
            ("reopen", None, "open + first/last index + last entry"),
            ("rss", None, "peak RSS growth after 10k random reads"),
        ],
    ),
]
_AXIS = {
    "entries/s": "entries per second  (higher is better)",
    "s": "milliseconds  (lower is better)",
    "MB": "MB  (lower is better)",
}
_STORE, _RAW, _JOURNAL = "#1f77b4", "#aec7e8", "#d62728"


def _codec(results: Sequence[Result]) -> str:
    codecs = {r.codec for r in results if r.kind == "raftstore" and r.codec is not None}
    if raftstore.DEFAULT_CODEC in codecs or not codecs:
        return raftstore.DEFAULT_CODEC
    return min(codecs)


def _bars(rows: list[Result], codec: str) -> list[tuple[str, Result, str]]:
    """(label, row, colour) of the bars of one panel, best store first."""
    raw = {r.engine: r for r in rows if r.kind == "raw" and r.codec == codec}
    stores = [r for r in rows if r.kind == "raftstore" and r.codec == codec and on_disk(r.engine)]
    higher = rows[0].higher_is_better
    stores.sort(key=lambda r: -r.value if higher else r.value)
    bars = []
    for row in stores:
        bars.append((str(row.engine), row, _STORE))
        twin = raw.get(row.engine)
        if twin is not None:
            bars.append((f"raw {row.engine}", twin, _RAW))
    for row in rows:
        if row.kind == "pysyncobj" and "FileJournal" in row.subject:
            bars.append(("FileJournal", row, _JOURNAL))
    return bars


def _scale(row: Result) -> float:
    return 1000.0 if row.unit == "s" else 1.0


def _short(value: float) -> str:
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _panel(axis: Any, rows: list[Result], codec: str, title: str) -> None:
    bars = _bars(rows, codec)
    if not bars:
        axis.set_visible(False)
        return
    unit = rows[0].unit
    scale = _scale(rows[0])
    floors = [r for r in rows if r.kind == "floor"]
    # Room for every store's and raw row's slowest-to-fastest whisker, the floor lines and
    # the value labels; a baseline more than twice past that is cut at the edge.
    reach = [row.spread[1] * scale for _, row, colour in bars if colour != _JOURNAL]
    reach += [r.value for r in floors]
    limit = None
    if reach:
        reach += [
            row.spread[1] * scale
            for _, row, colour in bars
            if colour == _JOURNAL and row.value * scale <= 2 * max(reach)
        ]
        limit = 1.2 * max(reach)
    labels = [label for label, _, _ in bars]
    positions = range(len(bars))
    for position, (_, row, colour) in zip(positions, bars, strict=True):
        value = row.value * scale
        low, high = (bound * scale for bound in row.spread)
        shown = min(value, limit) if limit else value
        axis.barh(position, shown, color=colour, height=0.7)
        if limit and value > limit:
            axis.text(
                shown,
                position,
                f" {_short(value)} (off scale) ",
                ha="right",
                va="center",
                fontsize=8,
                color="white",
            )
            continue
        if len(row.samples) > 1:
            axis.plot(
                [low, min(high, limit or high)], [position, position], color="black", linewidth=1
            )
        axis.text(
            max(shown, high if limit is None else min(high, limit)),
            position,
            f" {_short(value)}",
            va="center",
            fontsize=8,
        )
    for row in floors:
        mode = "overwrite" if row.subject == FLOORS["overwrite"][0] else "append"
        axis.axvline(
            row.value,
            color="black",
            linestyle="-" if mode == "overwrite" else "--",
            linewidth=1.2,
            label=row.subject.removeprefix("disk: "),
        )
    axis.set_yticks(list(positions))
    axis.set_yticklabels(labels, fontsize=9)
    axis.invert_yaxis()
    if limit:
        axis.set_xlim(0, limit)
    axis.set_xlabel(_AXIS[unit], fontsize=9)
    axis.set_title(title if rows[0].sync is not None else f"{title} ({rows[0].case})", fontsize=10)
    axis.tick_params(axis="x", labelsize=8)
    axis.xaxis.set_major_formatter(_formatter())
    axis.grid(axis="x", alpha=0.3)


def _formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: _short(value) if value else "0")


def write_plot(results: list[Result], path: Path) -> None:
    """Write the figure to *path* (PNG, about 1000 px wide); needs ``raftstore[plot]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = tables(results)
    codec = _codec(results)
    rows = []
    for question, panels in _QUESTIONS:
        present = []
        for workload, case, title in panels:
            cases = [c for (w, c) in grouped if w == workload and (case is None or c == case)]
            if cases:
                present.append((grouped[(workload, cases[-1])], title))
        if present:
            rows.append((question, present))
    if not rows:
        raise ValueError("nothing to plot: the run measured none of the plotted workloads")
    figure = plt.figure(figsize=(10, 0.6 + 3.1 * len(rows)), dpi=100, layout="constrained")
    figure.suptitle(
        f"raftstore bench, on-disk engines, {codec} codec: dark = raftstore, light = the"
        " engine's own binding\ndoing the same work (raw), red = PySyncObj FileJournal;"
        " whiskers = slowest to fastest round",
        fontsize=10,
    )
    subfigures = figure.subfigures(len(rows), 1, squeeze=False)[:, 0]
    for subfigure, (question, present) in zip(subfigures, rows, strict=True):
        subfigure.suptitle(question, fontsize=12, fontweight="bold", x=0.01, ha="left")
        axes = subfigure.subplots(1, len(present), squeeze=False)[0]
        for axis, (table, title) in zip(axes, present, strict=True):
            _panel(axis, table, codec, title)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            subfigure.legend(
                handles,
                [f"disk alone, {label}" for label in labels],
                loc="upper right",
                fontsize=8,
                ncols=len(handles),
                frameon=False,
            )
    figure.savefig(path)
    plt.close(figure)
