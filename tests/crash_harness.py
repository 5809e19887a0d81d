"""Crash trials: a writer process is SIGKILLed at a seeded moment, then the store is checked.

One trial, for one engine and one seed:

1. ``crash_writer.py`` (a subprocess) opens the store and performs a
   deterministic stream of calls derived from the seed: synced
   ``store_logs`` batches (appends, conflict rewrites after a suffix
   ``delete_range``, prefix compactions) each followed by ``set_uint64``.
   After each call returns it prints ``ack N`` (N calls done in total) and
   flushes.
2. The parent reads the acknowledgements and SIGKILLs the writer at a seeded
   point: during ``raftstore.open`` or shortly after the k-th acknowledgement
   (a seeded sub-millisecond delay puts most kills inside a call).
3. The parent reopens the store (a lock left behind would fail here), reads
   everything back (every record is checksummed and decoded) and requires it
   to equal the model after exactly the acknowledged calls or after one more
   (the call in flight when the kill landed): nothing acknowledged is lost,
   no batch is torn, no call is half-applied. ``first_index``/``last_index``
   must agree with the entries read.
4. With several generations, the next writer continues the call stream from
   the state found, so kills also land in reopen and recovery.

The seed picks the calls, their sizes and the kill points; the timing of a
kill relative to the writer is up to the OS, so a failure report always
carries the seed, the generation and the acknowledged count.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import raftstore
from raftstore import Log, LogType

__all__ = [
    "DISK_ENGINES",
    "WRITER",
    "Call",
    "CrashModel",
    "GenerationResult",
    "TrialFailure",
    "TrialResult",
    "calls",
    "model_after",
    "read_state",
    "run_trial",
]

DISK_ENGINES = ("lmdb", "rocksdb", "leveldb", "wal")
WRITER = Path(__file__).with_name("crash_writer.py")

#: Stable keys the writer sets after every log call.
TERM_KEY = b"CurrentTerm"
CALLS_KEY = b"CallsDone"

_DATA_SIZES = (0, 16, 128, 128, 128, 1024, 4096)
#: A writer that reaches no kill point in this long is reported as stalled.
_STALL_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Call:
    """One store call of the writer's stream."""

    kind: Literal["store_logs", "delete_range", "set_uint64"]
    logs: tuple[Log, ...] = ()
    low: int = 0
    high: int = 0
    key: bytes = b""
    value: int = 0

    def apply(self, store: raftstore.RaftStore) -> None:
        """Perform this call on *store*."""
        if self.kind == "store_logs":
            store.store_logs(self.logs)
        elif self.kind == "delete_range":
            store.delete_range(self.low, self.high)
        else:
            store.set_uint64(self.key, self.value)

    def describe(self) -> str:
        """A short human-readable form, for failure reports."""
        if self.kind == "store_logs":
            return f"store_logs({self.logs[0].index}..{self.logs[-1].index})"
        if self.kind == "delete_range":
            return f"delete_range({self.low}, {self.high})"
        return f"set_uint64({self.key!r}, {self.value})"


@dataclass
class CrashModel:
    """What the store must hold after a prefix of the call stream."""

    logs: dict[int, Log] = field(default_factory=dict)
    stable: dict[bytes, int] = field(default_factory=dict)

    def apply(self, call: Call) -> None:
        """Record a completed *call*."""
        if call.kind == "store_logs":
            for log in call.logs:
                self.logs[log.index] = log
        elif call.kind == "delete_range":
            for index in [i for i in self.logs if call.low <= i <= call.high]:
                del self.logs[index]
        else:
            self.stable[call.key] = call.value

    def copy(self) -> CrashModel:
        """An independent copy (Logs are immutable, the dicts are not shared)."""
        return CrashModel(dict(self.logs), dict(self.stable))

    @property
    def first(self) -> int:
        """Lowest index held, 0 when empty."""
        return min(self.logs, default=0)

    @property
    def last(self) -> int:
        """Highest index held, 0 when empty."""
        return max(self.logs, default=0)


def calls(seed: int) -> Iterator[Call]:
    """The writer's endless, deterministic call stream for *seed*.

    Mostly appends of 1..64 entries; sometimes a batch of 300..600 entries,
    a Raft conflict rewrite (suffix ``delete_range`` then a new term's
    batch) or a prefix compaction. Every log call is followed by
    ``set_uint64(CurrentTerm)`` or ``set_uint64(CallsDone)``.
    """
    rng = random.Random(seed)
    model = CrashModel()
    term = 1
    done = 0

    def batch(start: int, count: int) -> Call:
        size = rng.choice(_DATA_SIZES)
        logs = tuple(
            Log(
                index,
                term,
                LogType.CONFIGURATION if rng.random() < 0.02 else LogType.COMMAND,
                data=rng.randbytes(size),
                extensions=rng.randbytes(rng.choice((0, 0, 8))),
                appended_at=rng.getrandbits(63),
            )
            for index in range(start, start + count)
        )
        return Call("store_logs", logs=logs)

    while True:
        roll = rng.random()
        first, last = model.first, model.last
        if last and roll < 0.08:
            conflict = rng.randint(max(first, 1), last)
            step: list[Call] = [Call("delete_range", low=conflict, high=last)]
            term += 1
            step.append(batch(conflict, rng.randint(1, 64)))
            step.append(Call("set_uint64", key=TERM_KEY, value=term))
        elif last - first > 300 and roll < 0.16:
            cut = first + rng.randint(1, (last - first) // 2)
            step = [Call("delete_range", low=rng.choice((0, first)), high=cut)]
        elif roll < 0.21:
            step = [batch(last + 1, rng.randint(300, 600))]
        else:
            step = [batch(last + 1, rng.randint(1, 64))]
        for call in step:
            model.apply(call)
            done += 1
            yield call
            if call.kind != "set_uint64":
                model.apply(after := Call("set_uint64", key=CALLS_KEY, value=done + 1))
                done += 1
                yield after


def model_after(seed: int, count: int) -> tuple[CrashModel, Call | None]:
    """The model after the first *count* calls of *seed*'s stream, and call *count* + 1."""
    model = CrashModel()
    stream = calls(seed)
    for _ in range(count):
        model.apply(next(stream))
    return model, next(stream)


@dataclass
class StoreState:
    """Everything a reopened store holds, read through the public API."""

    logs: dict[int, Log]
    stable: dict[bytes, int]
    first: int
    last: int


def read_state(store: raftstore.RaftStore) -> StoreState:
    """Read every entry and stable value of *store* (each record is checksummed)."""
    logs = {log.index: log for log in store.iter_logs()}
    for index in (min(logs, default=0), max(logs, default=0)):
        if index:
            assert store.get_log(index) == logs[index]
    stable = {key: store.get_uint64(key) for key, _ in store.iter_stable()}
    return StoreState(logs, stable, store.first_index(), store.last_index())


def _difference(state: StoreState, model: CrashModel) -> str:
    if (state.first, state.last) != (min(state.logs, default=0), max(state.logs, default=0)):
        return (
            f"first/last index {(state.first, state.last)} disagree with the entries"
            f" {(min(state.logs, default=0), max(state.logs, default=0))}"
        )
    if state.stable != model.stable:
        return f"stable {state.stable} != expected {model.stable}"
    missing = sorted(set(model.logs) - set(state.logs))
    extra = sorted(set(state.logs) - set(model.logs))
    if missing or extra:
        return (
            f"{len(missing)} entries missing (first {missing[:5]}),"
            f" {len(extra)} unexpected (first {extra[:5]})"
        )
    wrong = [i for i in sorted(model.logs) if state.logs[i] != model.logs[i]]
    if wrong:
        return f"{len(wrong)} entries differ (first {wrong[:5]})"
    return ""


class TrialFailure(AssertionError):
    """A crash trial found a store that is not a clean prefix of what was written."""


@dataclass
class GenerationResult:
    """One writer process of a trial: where it was killed and what was found."""

    kill_mode: str
    acked: int
    #: Calls found applied on reopen: ``acked`` or ``acked + 1``.
    found: int
    in_flight: str
    entries: int
    reopen_seconds: float


@dataclass
class TrialResult:
    """A passed trial's generations."""

    engine: str
    seed: int
    sync: bool
    generations: list[GenerationResult]


def _read_acks(stream: IO[str], until: int | None, saw_open: list[bool]) -> int:
    """Read ``ack N`` lines until N reaches *until* (or EOF when None); return the last N."""
    acked = -1
    for line in stream:
        if not line.endswith("\n"):
            break  # a line cut off by the kill acknowledges nothing
        word, _, number = line.strip().partition(" ")
        if word == "ack":
            acked = int(number)
        elif word == "open":
            saw_open[0] = True
            if until == 0:
                return acked
        if until is not None and acked >= until:
            return acked
    return acked


def run_trial(
    engine: str,
    seed: int,
    root: Path,
    *,
    generations: int = 2,
    sync: bool = True,
    max_acks: int = 60,
    python: str = sys.executable,
) -> TrialResult:
    """Run one crash trial in ``root``; raise `TrialFailure` (naming the seed) on any violation."""
    rng = random.Random(f"kill-{seed}")
    path = root / f"{engine}-{seed}-{'sync' if sync else 'nosync'}"
    done = 0
    results: list[GenerationResult] = []
    label = f"engine={engine} seed={seed} sync={sync}"
    for generation in range(generations):
        during_open = rng.random() < 0.15
        target = 0 if during_open else done + rng.randint(1, max_acks)
        delay = rng.uniform(0, 0.03) if during_open else rng.uniform(0, 0.002)
        command = [
            python,
            str(WRITER),
            "--engine",
            engine,
            "--path",
            str(path),
            "--seed",
            str(seed),
            "--start",
            str(done),
            "--sync",
            "1" if sync else "0",
        ]
        writer = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        saw_open = [False]
        stalled = threading.Event()

        def watchdog(
            process: subprocess.Popen[str] = writer, flag: threading.Event = stalled
        ) -> None:
            flag.set()
            process.kill()

        timer = threading.Timer(_STALL_SECONDS, watchdog)
        timer.start()
        try:
            assert writer.stdout is not None
            acked = _read_acks(writer.stdout, target, saw_open)
            time.sleep(delay)
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=60)
            rest = _read_acks(writer.stdout, None, saw_open)
            acked = max(acked, rest)
        finally:
            timer.cancel()
            if writer.poll() is None:
                writer.kill()
                writer.wait(timeout=60)
            stderr = writer.stderr.read() if writer.stderr else ""
            for pipe in (writer.stdout, writer.stderr):
                if pipe is not None:
                    pipe.close()
        where = f"{label} generation={generation}"
        if stalled.is_set():
            raise TrialFailure(
                f"{where}: the writer made no progress for {_STALL_SECONDS} s:\n{stderr}"
            )
        if writer.returncode != -signal.SIGKILL:
            raise TrialFailure(
                f"{where}: writer exited with {writer.returncode} before the kill:\n{stderr}"
            )
        if acked < 0:
            acked = done  # killed before its first acknowledgement
        if acked < done:
            raise TrialFailure(f"{where}: writer acknowledged {acked} < {done} calls")
        started = time.perf_counter()
        try:
            store = raftstore.open(path, engine=engine)
        except raftstore.StoreLockedError as exc:
            raise TrialFailure(
                f"{where}: the killed writer's lock was not released: {exc}"
            ) from exc
        except raftstore.RaftStoreError as exc:
            raise TrialFailure(
                f"{where}: reopen after the kill failed (acked {acked}): {exc!r}"
            ) from exc
        try:
            reopen_seconds = time.perf_counter() - started
            try:
                state = read_state(store)
            except raftstore.RaftStoreError as exc:
                raise TrialFailure(
                    f"{where}: reading back after the kill failed (acked {acked}): {exc!r}"
                ) from exc
        finally:
            store.close()
        acked_model, in_flight = model_after(seed, acked)
        problem = _difference(state, acked_model)
        found = acked
        if problem:
            assert in_flight is not None
            next_model = acked_model.copy()
            next_model.apply(in_flight)
            second = _difference(state, next_model)
            if second:
                raise TrialFailure(
                    f"{where}: after {acked} acknowledged calls the store is neither that"
                    f" state ({problem}) nor the state after the in-flight call"
                    f" {in_flight.describe()} ({second})"
                )
            found = acked + 1
        results.append(
            GenerationResult(
                kill_mode="open" if during_open else "ack",
                acked=acked,
                found=found,
                in_flight=in_flight.describe() if in_flight else "",
                entries=len(state.logs),
                reopen_seconds=reopen_seconds,
            )
        )
        done = found
    return TrialResult(engine, seed, sync, results)


def engine_available(engine: str) -> str | None:
    """None when *engine* can be used here, else why not."""
    for info in raftstore.available_engines():
        if info.name == engine:
            return None if info.available else (info.error or "unavailable")
    return "not registered"
