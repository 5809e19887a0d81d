"""The runner: plans a run as tasks (one per table or data set) and measures them."""

from __future__ import annotations

import functools
import importlib.util
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from raftstore._terminal import Progress
from raftstore.benchmark.config import CLOCKS, BenchConfig, size_label
from raftstore.benchmark.entries import fill_batches
from raftstore.benchmark.floor import FLOORS, DiskFloor
from raftstore.benchmark.handles import JournalHandle, StoreHandle, is_persistent, open_store
from raftstore.benchmark.raw import RawMemory, has_raw, open_raw
from raftstore.benchmark.results import Result, set_ratios
from raftstore.benchmark.rss import run_rss_probe
from raftstore.benchmark.subjects import Subject, Table, engine_label, interleave, planned_units
from raftstore.benchmark.workloads import REGISTRY, ReadSet, Step, Workload, no_step
from raftstore.registry import create_codec

__all__ = ["NO_RAW", "Runner", "have"]

#: The note on a store row whose engine has no raw binding to compare with.
NO_RAW = "no raw baseline"
#: Rough fill rate and probe time, to weigh those steps on the progress bar.
_FILL_PER_SECOND = 250_000
_PROBE_SECONDS = 0.4


def have(module: str) -> bool:
    """True when *module* can be imported here."""
    return importlib.util.find_spec(module) is not None


@dataclass(frozen=True, slots=True)
class _Task:
    """One step of the plan: its progress units and the work, returning its figures."""

    label: str
    units: int
    run: Callable[[], list[Result]]


def _same(step: Step) -> Step:
    return step


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


class Runner:
    """Runs one `BenchConfig`; `run` returns every figure with its ratios set."""

    def __init__(self, config: BenchConfig, progress_stream: TextIO | None = None) -> None:
        self.config = config
        self.sizes = config.sizes
        self.rng = random.Random(config.seed)
        self.codecs = {name: create_codec(name) for name in config.codecs}
        #: Times the work of unsynced and read steps (reopen and synced writes: always wall).
        self.clock: Callable[[], float] = CLOCKS[config.clock]
        self.stream = progress_stream
        self.progress: Progress | None = None
        self.directory = Path()
        self.journals = config.baselines and have("pysyncobj")
        self.workloads = [REGISTRY[name] for name in config.workloads]

    # progress -------------------------------------------------------------------------------

    def _tick(self, units: int) -> None:
        if self.progress is not None:
            self.progress.advance(units)

    def _status(self, text: str) -> None:
        if self.progress is not None:
            self.progress.status(text)

    def _fill_units(self, entries: int) -> int:
        return max(1, round(2 * entries / _FILL_PER_SECOND / self.sizes.round_seconds))

    def _probe_units(self) -> int:
        return max(1, round(2 * _PROBE_SECONDS / self.sizes.round_seconds))

    # the plan -------------------------------------------------------------------------------

    def _family(self, family: str) -> list[Workload]:
        return [workload for workload in self.workloads if workload.family == family]

    def plan(self) -> list[_Task]:
        """Every table and data set to measure, in order, each weighed for the progress bar."""
        tasks: list[_Task] = []
        pairs = [(engine, codec) for engine in self.config.engines for codec in self.config.codecs]
        for workload in self._family("write"):
            for sync in self.config.syncs:
                rows = len(self._write_codecs(sync)) * sum(
                    1 + has_raw(engine) for engine in self.config.engines
                )
                rows += 2 * (sync and self.config.baselines and workload.has_floor)
                rows += 2 * (not sync and self.journals)
                tasks.append(
                    _Task(
                        f"{workload.name} ({'sync' if sync else 'no sync'})",
                        planned_units(rows, self.sizes, synced=sync),
                        functools.partial(self.write_table, workload, sync),
                    )
                )
        reads, ladder = self._family("read"), self._family("reopen") + self._family("rss")
        for engine, codec in pairs:
            on_ladder = bool(ladder) and codec in self.config.ladder_codecs
            if reads or on_ladder:
                tasks.append(
                    _Task(
                        f"data set {engine}/{codec}",
                        self._dataset_units(engine, on_ladder),
                        functools.partial(self.dataset, engine, codec, on_ladder),
                    )
                )
        if self.journals and (reads or ladder):
            tasks.append(_Task("pysyncobj journals", self._journal_units(), self.journal_dataset))
        return tasks

    def _write_codecs(self, sync: bool) -> list[str]:
        if sync and not self.sizes.synced_every_codec:
            return [codec for codec in self.config.codecs if codec in self.config.ladder_codecs]
        return self.config.codecs

    def _ladder(self, on_ladder: bool) -> tuple[int, ...]:
        sizes = self.sizes.dataset_sizes
        return sizes if on_ladder else sizes[-1:]

    def _dataset_units(self, engine: str, on_ladder: bool) -> int:
        rows = 1 + has_raw(engine)
        units = self._fill_units(self.sizes.dataset_sizes[-1])
        units += len(self._family("read")) * planned_units(rows, self.sizes)
        if on_ladder and is_persistent(engine):
            steps = len(self._ladder(on_ladder))
            units += steps * planned_units(rows, self.sizes) * len(self._family("reopen"))
            units += steps * rows * self._probe_units() * len(self._family("rss"))
        return units

    def _journal_units(self) -> int:
        steps = len(self.sizes.dataset_sizes)
        units = self._fill_units(self.sizes.dataset_sizes[-1])
        units += steps * planned_units(1, self.sizes) * len(self._family("reopen"))
        units += steps * self._probe_units() * len(self._family("rss"))
        return units + len(self._family("read")) * planned_units(3, self.sizes)

    def run(self) -> list[Result]:
        """Measure every task of the plan; returns the figures with their ratios set."""
        tasks = self.plan()
        if self.stream is not None:
            total = sum(task.units for task in tasks)
            self.progress = Progress("bench", total, self.stream, counts=False)
        results: list[Result] = []
        base = self.config.directory
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="raftstore-bench-", dir=base) as tmp:
            self.directory = Path(tmp)
            for task in tasks:
                self._status(task.label)
                results += task.run()
        if self.progress is not None:
            self.progress.update(self.progress.total)
            self.progress.finish()
        set_ratios(results)
        return results

    # helpers --------------------------------------------------------------------------------

    def _tmp(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.directory))
        shutil.rmtree(path)
        return path

    def _store_subject(self, engine: str, codec: str, step: Step, **how: Any) -> Subject:
        """raftstore's row on *engine*; *how* holds `Subject`'s keywords (how it gets a handle)."""
        label = engine_label("raftstore", engine, codec)
        note = "" if has_raw(engine) else NO_RAW
        return Subject(label, "raftstore", engine, codec, step, note=note, **how)

    def _raw_subject(self, engine: str, codec: str, step: Step, **how: Any) -> Subject:
        return Subject(engine_label("raw", engine, codec), "raw", engine, codec, step, **how)

    def _pair(self, engine: str, codec: str, step: Step, path: Path, **how: Any) -> list[Subject]:
        """The store on *path* and its raw twin on ``path/data``, each opening its own handles."""
        codec_object = self.codecs[codec]
        subjects = [
            self._store_subject(
                engine,
                codec,
                step,
                opener=lambda: StoreHandle(open_store(engine, codec, path, sync=False)),
                **how,
            )
        ]
        if has_raw(engine):
            data = path / "data"
            subjects.append(
                self._raw_subject(
                    engine,
                    codec,
                    step,
                    opener=lambda: open_raw(engine, data, codec_object, sync=False),
                    **how,
                )
            )
        return subjects

    def _journal_subjects(
        self, step: Callable[[], Step], path: Path | None, memory: object
    ) -> list[Subject]:
        from pysyncobj.journal import FileJournal, MemoryJournal

        subjects = []
        if path is not None:
            name = str(path)
            subjects.append(
                Subject(
                    "pysyncobj FileJournal",
                    "pysyncobj",
                    None,
                    None,
                    step(),
                    opener=lambda: JournalHandle(FileJournal(name)),
                    note="never fsyncs",
                )
            )
        journal = memory if memory is not None else MemoryJournal()
        subjects.append(
            Subject(
                "pysyncobj MemoryJournal",
                "pysyncobj",
                None,
                None,
                step(),
                handle=JournalHandle(journal),
                note="not durable",
            )
        )
        return subjects

    # write tables -----------------------------------------------------------------------------

    def write_table(self, workload: Workload, sync: bool) -> list[Result]:
        """One write workload, synced or not, on a fresh store of every engine x codec."""
        data_bytes = self.sizes.data_bytes
        # CPU time would hide the fsync a synced write waits for.
        clock = time.perf_counter if sync else self.clock

        def stepper() -> Step:
            return workload.write_step(sync=sync, data_bytes=data_bytes, clock=clock)

        subjects: list[Subject] = []
        paths: list[Path] = []
        try:
            for engine in self.config.engines:
                persistent = is_persistent(engine)
                for codec in self._write_codecs(sync):
                    path = self._tmp(f"{engine}-{codec}") if persistent else None
                    paths += [path] if path is not None else []
                    store = open_store(engine, codec, path, sync=sync)
                    note = "" if persistent or not sync else "not durable"
                    subject = self._store_subject(
                        engine, codec, stepper(), handle=StoreHandle(store)
                    )
                    subject.note = ", ".join(filter(None, (subject.note, note)))
                    subjects.append(subject)
                    if has_raw(engine):
                        raw_path = self._tmp(f"raw-{engine}-{codec}") if persistent else None
                        if raw_path is not None:
                            raw_path.mkdir()
                            paths.append(raw_path)
                        handle = open_raw(engine, raw_path, self.codecs[codec], sync=sync)
                        subjects.append(self._raw_subject(engine, codec, stepper(), handle=handle))
            if sync and self.config.baselines and workload.has_floor:
                for mode, (label, note) in FLOORS.items():
                    floor = DiskFloor(self._tmp(f"floor-{mode}"), mode)
                    subjects.append(
                        Subject(label, "floor", None, None, stepper(), handle=floor, note=note)
                    )
            if not sync and self.journals:
                journal_path = self._tmp("filejournal")
                paths += [Path(f"{journal_path}.meta"), journal_path]
                subjects += self._journal_subjects(stepper, journal_path, None)
            interleave(subjects, self.sizes, self._tick, synced=sync)
        finally:
            for subject in subjects:
                subject.release()
            for path in paths:
                _remove(path)
        case = "sync" if sync else "no sync"
        table = Table(workload.name, case, workload.unit, sync, params=workload.params(data_bytes))
        return table.results(subjects)

    # data sets: reads, reopen and rss ----------------------------------------------------------

    def dataset(self, engine: str, codec: str, on_ladder: bool) -> list[Result]:
        """Fill one engine x codec, growing through the ladder's sizes, and measure it."""
        persistent = is_persistent(engine)
        path = self._tmp(f"data-{engine}-{codec}") if persistent else None
        store = open_store(engine, codec, path, sync=False)
        raw_memory = RawMemory(self.codecs[codec]) if not persistent and has_raw(engine) else None
        sizes = self._ladder(on_ladder)
        results: list[Result] = []
        filled = 0
        try:
            for size in sizes:
                self._status(f"fill {engine}/{codec} to {size_label(size)}")
                for logs in fill_batches(filled + 1, size, self.sizes.data_bytes):
                    store.store_logs(logs)
                    if raw_memory is not None:
                        raw_memory.append([logs])
                self._tick(self._fill_units(size - filled))
                filled = max(filled, size)
                if path is None:
                    continue  # nothing to reopen
                store.sync()
                store.close()
                # The first open after writing replays the engine's log; measure the next.
                open_store(engine, codec, path, sync=False).close()
                if on_ladder:
                    results += self._ladder_step(engine, codec, path, size)
                if size != sizes[-1]:
                    store = open_store(engine, codec, path, sync=False)
            for workload in self._family("read"):
                self._status(f"{workload.name} {engine}/{codec} ({size_label(filled)})")
                step = self._read_step(workload, filled)
                if path is not None:
                    subjects = self._pair(engine, codec, step, path, per_round=True)
                else:
                    subjects = [self._store_subject(engine, codec, step, handle=StoreHandle(store))]
                    if raw_memory is not None:
                        subjects.append(self._raw_subject(engine, codec, step, handle=raw_memory))
                interleave(subjects, self.sizes, self._tick)
                results += self._read_table(workload, filled).results(subjects)
        finally:
            if not store.closed:
                store.close()
            if path is not None:
                _remove(path)
        return results

    def _read_step(self, workload: Workload, last: int) -> Step:
        assert workload.read_step is not None
        largest = self.sizes.dataset_sizes[-1]
        indexes = [self.rng.randrange(1, largest + 1) for _ in range(4096)]
        return workload.read_step(ReadSet(indexes, last, self.clock))

    def _read_table(self, workload: Workload, entries: int) -> Table:
        params = {"entries": entries, **workload.params(self.sizes.data_bytes)}
        return Table(workload.name, f"{size_label(entries)} entries", workload.unit, params=params)

    def _ladder_step(self, engine: str, codec: str, path: Path, size: int) -> list[Result]:
        results: list[Result] = []
        case = f"{size_label(size)} entries"
        for workload in self._family("reopen"):
            self._status(f"{workload.name} {engine}/{codec} at {size_label(size)}")
            subjects = self._pair(engine, codec, no_step, path, timed_open=True)
            interleave(subjects, self.sizes, self._tick)
            table = Table(workload.name, case, "s", as_seconds=True, params={"entries": size})
            results += table.results(subjects)
        for _ in self._family("rss"):
            self._status(f"rss {engine}/{codec} at {size_label(size)}")
            targets = [("raftstore", path)] + ([("raw", path / "data")] if has_raw(engine) else [])
            for kind, target in targets:
                probe = run_rss_probe(kind, engine, codec, target, size)
                self._tick(self._probe_units())
                if probe is not None:
                    label = f"{engine}/{codec}" if kind == "raftstore" else f"raw {engine}"
                    note = NO_RAW if kind == "raftstore" and not has_raw(engine) else ""
                    results.append(_rss_result(label, kind, engine, codec, size, probe, note))
        return results

    def journal_dataset(self) -> list[Result]:
        """PySyncObj's journals through the same sizes and reads."""
        from pysyncobj.journal import FileJournal, MemoryJournal

        path = self._tmp("filejournal")
        memory = MemoryJournal()
        journal = FileJournal(str(path))
        results: list[Result] = []
        filled = 0
        try:
            for size in self.sizes.dataset_sizes:
                self._status(f"fill pysyncobj journals to {size_label(size)}")
                for logs in fill_batches(filled + 1, size, self.sizes.data_bytes):
                    for log in logs:
                        journal.add(log.data, log.index, log.term)
                        memory.add(log.data, log.index, log.term)
                self._tick(self._fill_units(size - filled))
                filled = max(filled, size)
                journal.flush()
                for workload in self._family("reopen"):
                    journal._destroy()
                    self._status(f"{workload.name} FileJournal at {size_label(size)}")
                    subject = Subject(
                        "pysyncobj FileJournal",
                        "pysyncobj",
                        None,
                        None,
                        no_step,
                        opener=lambda: JournalHandle(FileJournal(str(path))),
                        timed_open=True,
                        note="reads the whole file into a list",
                    )
                    interleave([subject], self.sizes, self._tick)
                    case = f"{size_label(size)} entries"
                    table = Table(
                        workload.name, case, "s", as_seconds=True, params={"entries": size}
                    )
                    results += table.results([subject])
                    journal = FileJournal(str(path))
                for _ in self._family("rss"):
                    probe = run_rss_probe("pysyncobj", "filejournal", "", path, size)
                    self._tick(self._probe_units())
                    if probe is not None:
                        label = "pysyncobj FileJournal"
                        results.append(_rss_result(label, "pysyncobj", None, None, size, probe, ""))
            for workload in self._family("read"):
                step = self._read_step(workload, filled)
                self._status(f"{workload.name} pysyncobj journals")
                subjects = [
                    Subject(
                        "pysyncobj FileJournal",
                        "pysyncobj",
                        None,
                        None,
                        step,
                        handle=JournalHandle(journal),
                        note="list in memory",
                    ),
                    *self._journal_subjects(functools.partial(_same, step), None, memory),
                ]
                interleave(subjects, self.sizes, self._tick)
                results += self._read_table(workload, filled).results(subjects)
        finally:
            journal._destroy()
            _remove(path)
            _remove(Path(str(path) + ".meta"))
        return results


def _rss_result(
    subject: str,
    kind: str,
    engine: str | None,
    codec: str | None,
    size: int,
    probe: dict[str, Any],
    note: str,
) -> Result:
    """The ``rss`` row of *subject*: a fresh process's peak RSS growth over *size* entries."""
    growth = float(probe["growth_mb"])
    return Result(
        workload="rss",
        case=f"{size_label(size)} entries",
        subject=subject,
        kind=kind,
        engine=engine,
        codec=codec,
        sync=None,
        unit="MB",
        higher_is_better=False,
        value=growth,
        samples=[growth],
        params={"entries": size, **probe},
        note=note,
    )
