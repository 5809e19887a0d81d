"""The team's performance goals for the default engine and codec (``raftstore bench --targets``).

Goals, not promises: they say where the store layer should get to, so they
are shown only when asked for and never in the report a user reads first.
"""

from __future__ import annotations

from typing import Any

from raftstore.benchmark.results import Result

__all__ = ["evaluate_targets", "format_targets"]


def _find(results: list[Result], workload: str, case: str | None, subject: str) -> Result | None:
    for result in results:
        if (
            result.workload == workload
            and (case is None or result.case == case)
            and result.subject == subject
        ):
            return result
    return None


def evaluate_targets(
    results: list[Result], engine: str = "lmdb", codec: str = "msgpack"
) -> list[dict[str, Any]]:
    """Each goal with its measured figure (None when the run did not measure it)."""
    me = f"{engine}/{codec}"
    targets: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, goal: float, at_least: bool, detail: str) -> None:
        met = None if measured is None else (measured >= goal if at_least else measured <= goal)
        targets.append(
            {
                "target": name,
                "measured": None if measured is None else round(measured, 3),
                "goal": f"{'>=' if at_least else '<='} {goal}",
                "met": met,
                "detail": detail,
            }
        )

    gets = [r for r in results if r.workload == "get_random" and r.subject == me]
    add(
        f"get_log vs raw get+decode ({me})",
        gets[0].ratio_to_raw if gets else None,
        0.85,
        True,
        gets[0].case if gets else "not measured",
    )
    batch = _find(results, "append_64", "no sync", me)
    add(
        f"store_logs(64, unsynced) vs raw batch write ({me})",
        batch.ratio_to_raw if batch else None,
        0.8,
        True,
        "",
    )
    single = _find(results, "append_1", "sync", me)
    add(
        f"synced store_log vs raw synced put ({me})",
        single.ratio_to_raw if single else None,
        0.9,
        True,
        "",
    )
    reopens = sorted(
        (r for r in results if r.workload == "reopen" and r.subject == me),
        key=lambda r: int(r.params["entries"]),
    )
    if len(reopens) >= 2:
        add(
            f"reopen at {reopens[-1].case} / reopen at {reopens[0].case} ({me})",
            reopens[-1].value / reopens[0].value,
            2.0,
            False,
            f"{reopens[-1].value * 1000:.2f} ms vs {reopens[0].value * 1000:.2f} ms",
        )
    else:
        add(f"reopen at largest / smallest ({me})", None, 2.0, False, "not measured")
    rss = sorted(
        (r for r in results if r.workload == "rss" and r.subject == me),
        key=lambda r: int(r.params["entries"]),
    )
    raw_rss = {r.case: r for r in results if r.workload == "rss" and r.subject == f"raw {engine}"}
    if rss:
        largest = rss[-1]
        raw = raw_rss.get(largest.case)
        beyond = largest.value - (raw.value if raw else 0.0)
        add(
            f"peak RSS growth at {largest.case} beyond the raw binding's, MB ({me})",
            beyond,
            50.0,
            False,
            f"store {largest.value} MB, raw {raw.value if raw else '?'} MB",
        )
    else:
        add(f"peak RSS growth beyond the raw binding's, MB ({me})", None, 50.0, False, "")
    for workload in ("append_1", "append_64", "append_1024"):
        journal = _find(results, workload, "no sync", "pysyncobj FileJournal")
        stores = [
            r
            for r in results
            if r.workload == workload
            and r.case == "no sync"
            and r.kind == "raftstore"
            and r.engine != "memory"
        ]
        if journal and stores:
            best = max(stores, key=lambda r: r.value)
            add(
                f"fastest on-disk engine vs FileJournal, {workload} unsynced",
                best.value / journal.value,
                1.0,
                True,
                f"{best.subject}",
            )
    for journal in (
        r for r in results if r.workload == "reopen" and r.subject == "pysyncobj FileJournal"
    ):
        stores = [
            r
            for r in results
            if r.workload == "reopen" and r.case == journal.case and r.kind == "raftstore"
        ]
        if stores:
            best = min(stores, key=lambda r: r.value)
            add(
                f"fastest engine vs FileJournal, reopen at {journal.case} (speed-up)",
                journal.value / best.value,
                1.0,
                True,
                f"{best.subject} {best.value * 1000:.2f} ms vs {journal.value * 1000:.2f} ms",
            )
    return targets


def format_targets(targets: list[dict[str, Any]]) -> str:
    """The goals as a short list: measured, goal, met."""
    lines = ["team goals (lmdb/msgpack; see raftstore/benchmark/targets.py):"]
    for target in targets:
        measured = "n/a" if target["measured"] is None else f"{target['measured']}"
        met = {True: "met", False: "not met", None: "not measured"}[target["met"]]
        detail = f"  ({target['detail']})" if target["detail"] else ""
        lines.append(
            f"  {met:<13} {measured:>9} (goal {target['goal']})  {target['target']}{detail}"
        )
    return "\n".join(lines)
