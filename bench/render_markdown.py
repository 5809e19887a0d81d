"""Render a ``raftstore bench --json`` report as the Markdown tables of docs/benchmarks.md.

python bench/render_markdown.py bench.json > tables.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from raftstore.benchmark import WORKLOADS, Result, table_order


def _value(row: Result) -> str:
    if row.unit == "s":
        return f"{row.value * 1000:,.2f} ms"
    if row.unit == "MB":
        return f"{row.value:,.1f} MB"
    return f"{row.value:,.0f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def render(report: dict[str, Any]) -> str:
    """Every table of *report*, then the targets, as Markdown."""
    results = [Result(**row) for row in report["results"]]
    tables: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        tables.setdefault((result.workload, result.case), []).append(result)
    out: list[str] = []
    for (workload, case), rows in tables.items():
        unit = rows[0].unit
        shown = {"s": "time (lower is better)", "MB": "peak RSS growth (lower is better)"}.get(
            unit, unit
        )
        out.append(f"#### {workload} — {case}\n\n{WORKLOADS.get(workload, '')}.\n")
        out.append(f"| subject | {shown} | x raw | x best | note |")
        out.append("|---|---:|---:|---:|---|")
        for row in table_order(rows):
            name = f"**{row.subject}**" if row.kind == "raftstore" else row.subject
            out.append(
                f"| {name} | {_value(row)} | {_ratio(row.ratio_to_raw)} |"
                f" {_ratio(row.ratio_to_best)} | {row.note} |"
            )
        out.append("")
    out.append("#### Targets\n")
    out.append("| target | measured | goal | met | detail |")
    out.append("|---|---:|---|---|---|")
    for target in report["targets"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[target["met"]]
        out.append(
            f"| {target['target']} | {target['measured']} | {target['goal']} | {met} |"
            f" {target['detail']} |"
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a file written by raftstore bench --json")
    args = parser.parse_args()
    print(render(json.loads(args.report.read_text())), end="")


if __name__ == "__main__":
    main()
