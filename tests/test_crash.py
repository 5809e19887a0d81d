"""Crash consistency: a writer SIGKILLed at seeded moments loses nothing it acknowledged.

Each trial (see ``crash_harness``) kills a subprocess writer during open or
inside a synced call, reopens the store and requires it to hold exactly the
acknowledged calls, or those plus the one in flight: no lost write, no torn
batch, every entry decodes, first/last agree with the entries, and the
killed writer's lock is gone. Three generations per trial, so kills also
land in recovery. The seed is in the test id and in every failure message;
rerun one trial with ``pytest tests/test_crash.py -k 'lmdb and 20261126'``.

``RAFTSTORE_CRASH_TRIALS`` (default 10) sets the trials per engine; the long
run is ``python bench/crash_trials.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from crash_harness import (
    DISK_ENGINES,
    WRITER,
    calls,
    engine_available,
    model_after,
    run_trial,
)

import raftstore
from raftstore._records import FORMAT_VERSION

BASE_SEED = 20261126
TRIALS = int(os.environ.get("RAFTSTORE_CRASH_TRIALS", "10"))
#: Unsynced trials per engine: SIGKILL (not power loss) must not lose those either.
NOSYNC_TRIALS = max(1, TRIALS // 4)


def _engine(name: str) -> str:
    reason = engine_available(name)
    if reason is not None:
        pytest.skip(f"engine {name!r} is not usable here: {reason}")
    return name


@pytest.fixture(params=DISK_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each disk engine; skipped with the reason when its binding is missing."""
    return _engine(str(request.param))


@pytest.mark.parametrize("seed", [BASE_SEED + n for n in range(TRIALS)])
def test_synced_writes_survive_sigkill(engine: str, seed: int, tmp_path: Path) -> None:
    result = run_trial(engine, seed, tmp_path, generations=3, sync=True)
    assert len(result.generations) == 3
    for generation in result.generations:
        assert generation.found in (generation.acked, generation.acked + 1)


@pytest.mark.parametrize("seed", [BASE_SEED + 1000 + n for n in range(NOSYNC_TRIALS)])
def test_unsynced_writes_survive_sigkill(engine: str, seed: int, tmp_path: Path) -> None:
    # The page cache outlives a killed process: even sync=False loses nothing
    # here. This is not a power-loss test (see docs/durability.md).
    result = run_trial(engine, seed, tmp_path, generations=2, sync=False)
    assert len(result.generations) == 2


def test_call_stream_is_deterministic_and_covers_every_call_kind() -> None:
    first, in_flight = model_after(BASE_SEED, 400)
    again, in_flight_again = model_after(BASE_SEED, 400)
    assert first == again
    assert in_flight == in_flight_again
    assert first.logs, "400 calls of the stream store some entries"
    stream = calls(BASE_SEED)
    kinds = {next(stream).kind for _ in range(400)}
    assert kinds == {"store_logs", "delete_range", "set_uint64"}


def test_killed_holder_releases_the_lock(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    command = [
        sys.executable, str(WRITER), "--engine", engine, "--path", str(path),
        "--seed", str(BASE_SEED), "--limit", "3",
    ]  # fmt: skip
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    # A writer stuck in open must fail this test, not stall the run: killing
    # it ends the readline below with EOF.
    watchdog = threading.Timer(120, writer.kill)
    watchdog.start()
    try:
        assert writer.stdout is not None
        lines = [writer.stdout.readline() for _ in range(5)]
        assert lines[-1] == "ack 3\n", lines
        # The writer now holds the store and idles.
        with pytest.raises(raftstore.StoreLockedError, match="locked"):
            raftstore.open(path, engine=engine)
    finally:
        watchdog.cancel()
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        if writer.stdout is not None:
            writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    with raftstore.open(path, engine=engine) as store:
        expected, _ = model_after(BASE_SEED, 3)
        assert store.last_index() == expected.last
        assert [log.index for log in store.iter_logs()] == sorted(expected.logs)


def _leave(path: Path, engine: str, leftover: str) -> None:
    """Recreate what a writer killed at some point of creating a store leaves behind."""
    path.mkdir()
    if leftover == "empty-directory":
        return
    (path / "raftstore.lock").write_text("pid 999999\n")
    # The marker says "creating" until the meta record is durable.
    marker = json.dumps({"engine": engine, "format": FORMAT_VERSION, "state": "creating"}) + "\n"
    if leftover == "marker-tmp-empty":
        (path / "raftstore.json.tmp").write_bytes(b"")
    elif leftover == "marker-tmp-partial":
        (path / "raftstore.json.tmp").write_text(marker[:10])
    elif leftover in ("marker-only", "marker-and-empty-data-directory"):
        (path / "raftstore.json").write_text(marker)
        if leftover == "marker-and-empty-data-directory":
            (path / "data").mkdir()


@pytest.mark.parametrize(
    "leftover",
    [
        "empty-directory",
        "lock-file-only",
        "marker-tmp-empty",
        "marker-tmp-partial",
        "marker-only",
        "marker-and-empty-data-directory",
    ],
)
def test_a_store_whose_creation_was_killed_can_be_opened(
    engine: str, leftover: str, tmp_path: Path
) -> None:
    # Creation writes raftstore.json.tmp, then renames it; a kill in between
    # must not leave a directory that only manual cleanup can open.
    path = tmp_path / "db"
    _leave(path, engine, leftover)
    with raftstore.open(path, engine=engine) as store:
        assert store.last_index() == 0
        store.store_log(raftstore.Log(1, 1, data=b"first"))
    with raftstore.open(path) as store:  # the recorded engine is found again
        assert store.engine == engine
        assert store.get_log(1).data == b"first"
