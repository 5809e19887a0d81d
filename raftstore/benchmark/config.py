"""What a ``raftstore bench`` run measures: the size presets and the run's settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLOCKS", "FULL", "QUICK", "SMOKE", "BenchConfig", "Sizes", "size_label"]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How long and how big: one preset per ``--quick`` / full / smoke run."""

    name: str
    #: Timed budget of one round of one subject, in seconds.
    round_seconds: float
    #: Rounds per subject; figures are medians over them.
    repeats: int
    #: Log lengths for ``reopen`` and ``rss``; the largest is the data set of
    #: ``get_random`` and ``tail_read``.
    dataset_sizes: tuple[int, ...]
    #: Bytes of ``data`` per entry.
    data_bytes: int = 128
    #: Run the synced tables with every codec; False: the ladder codecs only (the
    #: disk's wait dwarfs a codec's cost there, and synced rounds are the slow ones).
    synced_every_codec: bool = True


#: Clocks a step can be timed with (``--clock``).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.thread_time}

QUICK = Sizes("quick", 0.04, 3, (1_000, 10_000), synced_every_codec=False)
FULL = Sizes("full", 0.2, 5, (10_000, 100_000, 1_000_000))
SMOKE = Sizes("smoke", 0.002, 1, (100, 300))


@dataclass(slots=True)
class BenchConfig:
    """What to run; see ``raftstore bench --help``."""

    engines: list[str]
    codecs: list[str]
    workloads: list[str]
    syncs: list[bool]
    sizes: Sizes = FULL
    #: Codecs that get the ``reopen`` / ``rss`` ladder (codecs do not change them).
    ladder_codecs: list[str] = field(default_factory=lambda: ["msgpack"])
    baselines: bool = True
    directory: Path | None = None
    seed: int = 1
    #: ``wall`` (default) or ``cpu``: the calling thread's CPU time, for
    #: unsynced and read steps only; steadier on a busy machine, blind to
    #: time spent waiting (and to the engine's background threads).
    clock: str = "wall"

    def describe(self) -> str:
        """The settings in words, as the report's first line shows them."""
        if self.syncs == [True, False] or self.syncs == [False, True]:
            sync = "writes synced and unsynced"
        elif self.syncs == [True]:
            sync = "synced writes only"
        else:
            sync = "unsynced writes only"
        sizes = ", ".join(size_label(size) for size in self.sizes.dataset_sizes)
        rounds = f"{self.sizes.repeats} rounds of {self.sizes.round_seconds * 1000:.0f} ms"
        parts = [
            f"{self.sizes.name} run",
            f"engines {', '.join(self.engines)}",
            f"codecs {', '.join(self.codecs)}",
            sync,
            f"logs of {sizes} entries",
            f"{rounds} per figure",
            "timed by wall clock" if self.clock == "wall" else "timed by CPU clock",
        ]
        if not self.sizes.synced_every_codec and True in self.syncs:
            parts.append(f"synced tables with {', '.join(self.ladder_codecs)} only")
        if not self.baselines:
            parts.append("no PySyncObj or disk-floor baselines")
        return "; ".join(parts)


def size_label(count: int) -> str:
    """*count* entries as a short label: ``10k``, ``1M``, ``300``."""
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)
