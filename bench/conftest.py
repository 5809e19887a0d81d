"""Fixtures of the pytest-benchmark suite: every available engine x codec, and data sets.

Run the suite (it is not part of the normal test run, whose testpaths is
``tests``)::

    pytest bench                              # quick sizes
    RAFTSTORE_BENCH_SCALE=full pytest bench   # 1M-entry data sets
    pytest bench --benchmark-disable          # each benchmark once (CI smoke)

``RAFTSTORE_BENCH_SCALE`` is ``smoke``, ``quick`` (default) or ``full``;
``RAFTSTORE_BENCH_ENGINES`` / ``RAFTSTORE_BENCH_CODECS`` narrow the matrix
(comma-separated names).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import raftstore
from raftstore.benchmark import (
    FULL,
    QUICK,
    SMOKE,
    Handle,
    RawMemory,
    Sizes,
    StoreHandle,
    build_logs,
    open_raw,
)
from raftstore.registry import create_codec

SCALES = {"smoke": SMOKE, "quick": QUICK, "full": FULL}
SIZES: Sizes = SCALES[os.environ.get("RAFTSTORE_BENCH_SCALE", "quick")]
#: Engines with a raw baseline in `raftstore.benchmark`.
RAW_ENGINES = ("memory", "lmdb", "rocksdb", "leveldb")


def _selected(variable: str, infos: list[raftstore.BackendInfo]) -> list[str]:
    wanted = os.environ.get(variable)
    names = [info.name for info in infos if info.available]
    if wanted:
        names = [name for name in wanted.split(",") if name in names]
    return names


ENGINES = [
    name
    for name in _selected("RAFTSTORE_BENCH_ENGINES", raftstore.available_engines())
    if name in RAW_ENGINES
]
CODECS = _selected("RAFTSTORE_BENCH_CODECS", raftstore.available_codecs())
PAIRS = [(engine, codec) for engine in ENGINES for codec in CODECS]
PERSISTENT = [engine for engine in ENGINES if engine != "memory"]


@pytest.fixture(params=PAIRS, ids=[f"{engine}-{codec}" for engine, codec in PAIRS])
def engine_codec(request: pytest.FixtureRequest) -> tuple[str, str]:
    """One available engine x codec."""
    pair: tuple[str, str] = request.param
    return pair


def open_store(engine: str, codec: str, path: Path, *, sync: bool) -> raftstore.RaftStore:
    """A store of *engine* / *codec* at *path* (``memory://`` for the memory engine)."""
    if engine == "memory":
        return raftstore.open("memory://", codec=codec, sync=sync)
    return raftstore.open(path, engine=engine, codec=codec, sync=sync)


@pytest.fixture
def store_factory(
    tmp_path: Path, engine_codec: tuple[str, str]
) -> Iterator[Callable[..., raftstore.RaftStore]]:
    """Opens a fresh store of the current engine x codec; closes it after the test."""
    opened: list[raftstore.RaftStore] = []

    def factory(*, sync: bool = False) -> raftstore.RaftStore:
        store = open_store(*engine_codec, tmp_path / f"store{len(opened)}", sync=sync)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@dataclass
class DataSet:
    """A log of ``size`` entries written by one engine x codec, readable by store or raw."""

    engine: str
    codec: str
    size: int
    path: Path
    memory_store: raftstore.RaftStore | None = None
    memory_raw: RawMemory | None = None

    def open(self, variant: str) -> Handle:
        """A handle on the data: ``raftstore`` or ``raw`` (close it after use)."""
        if self.engine == "memory":
            assert self.memory_store is not None
            assert self.memory_raw is not None
            return _Borrowed(self.memory_store) if variant == "raftstore" else self.memory_raw
        if variant == "raftstore":
            return StoreHandle(open_store(self.engine, self.codec, self.path, sync=False))
        return open_raw(self.engine, self.path / "data", create_codec(self.codec), sync=False)


class _Borrowed(StoreHandle):
    """A memory store shared by the whole session: closing the handle keeps it open."""

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def datasets(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str, str, int], DataSet]]:
    """Builds (once per session) the data set of an engine x codec at a size."""
    built: dict[tuple[str, str, int], DataSet] = {}

    def get(engine: str, codec: str, size: int) -> DataSet:
        key = (engine, codec, size)
        if key not in built:
            path = tmp_path_factory.mktemp(f"data-{engine}-{codec}-{size}") / "store"
            store = open_store(engine, codec, path, sync=False)
            raw = RawMemory(create_codec(codec)) if engine == "memory" else None
            for first in range(1, size + 1, 1024):
                logs = build_logs(first, min(1024, size - first + 1), SIZES.data_bytes)
                store.store_logs(logs)
                if raw is not None:
                    raw.append([logs])
            data = DataSet(engine, codec, size, path)
            if engine == "memory":
                data.memory_store, data.memory_raw = store, raw
            else:
                store.sync()
                store.close()
                open_store(engine, codec, path, sync=False).close()  # replay the engine's log once
            built[key] = data
        return built[key]

    yield get
    for data in built.values():
        if data.memory_store is not None:
            data.memory_store.close()
        shutil.rmtree(data.path, ignore_errors=True)


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    """The sizes preset chosen by ``RAFTSTORE_BENCH_SCALE``."""
    return SIZES


@pytest.fixture(params=["raftstore", "raw"])
def variant(request: pytest.FixtureRequest) -> str:
    """The store, or the engine's raw binding doing the same work."""
    kind: str = request.param
    return kind


@pytest.fixture
def handle_factory(
    tmp_path: Path, engine_codec: tuple[str, str], variant: str
) -> Iterator[Callable[..., Handle]]:
    """Opens a fresh handle (store or raw binding) of the current engine x codec."""
    opened: list[Handle] = []

    def factory(*, sync: bool = False) -> Handle:
        engine, codec = engine_codec
        path = tmp_path / f"{variant}{len(opened)}"
        handle: Handle
        if variant == "raftstore":
            handle = StoreHandle(open_store(engine, codec, path, sync=sync))
        else:
            if engine != "memory":
                path.mkdir()
            handle = open_raw(engine, path, create_codec(codec), sync=sync)
        opened.append(handle)
        return handle

    yield factory
    for handle in opened:
        handle.close()
