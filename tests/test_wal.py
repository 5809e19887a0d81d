"""The ``wal`` engine's own tests: torn-write recovery, faults, rotation, truncation, reopen cost.

The recovery cases follow hashicorp/raft-wal's: a crash image of a store
(its files copied while the writer still has them open, every batch
synced) is damaged the way a torn write or a bad disk would, then opened.
A torn final batch is dropped; damage anywhere else raises
`CorruptionError` and changes no file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_harness import CrashModel, calls, model_after, read_state

import raftstore
from raftstore import CorruptionError, Log, StorageError
from raftstore.engines.wal import WalEngine
from raftstore.engines.wal.engine import SegmentInfo

ENGINE_MODULE = "raftstore.engines.wal.engine"
#: Small segments, so a few hundred entries rotate through many.
SEGMENT = 8192
TERM = b"CurrentTerm"


def open_wal(path: Path, **options: Any) -> raftstore.RaftStore:
    return raftstore.open(path, engine="wal", **{"segment_size": SEGMENT, **options})


def engine_of(store: raftstore.RaftStore) -> WalEngine:
    engine = store.kv
    assert isinstance(engine, WalEngine)
    return engine


def entries(low: int, high: int, term: int = 1, size: int = 40) -> list[Log]:
    return [Log(i, term, data=bytes([i % 251]) * size) for i in range(low, high + 1)]


def digest(path: Path) -> dict[str, str]:
    """Every file under *path* and a hash of its contents."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def crash_image(store: raftstore.RaftStore, destination: Path) -> Path:
    """A copy of *store*'s files as a crash would leave them (the store stays open)."""
    assert store.path is not None
    shutil.copytree(store.path, destination)
    return destination


def in_image(image: Path, info: SegmentInfo) -> Path:
    return image / "data" / info.path.name


def zero(path: Path, start: int, end: int) -> None:
    with path.open("r+b") as file:
        file.seek(start)
        file.write(bytes(end - start))


def overwrite(path: Path, at: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(at)
        file.write(data)


def read_back(path: Path) -> tuple[list[int], int]:
    with open_wal(path) as store:
        return [log.index for log in store.iter_logs()], store.get_uint64(TERM)


@pytest.fixture
def batches(tmp_path: Path) -> Iterator[tuple[raftstore.RaftStore, list[int]]]:
    """An open store holding five synced batches (1..10, 11..20, ... 41..50); the tail's
    batch start offsets are returned too."""
    store = open_wal(tmp_path / "db", segment_size=1 << 20)
    starts = []
    for batch in range(5):
        starts.append(engine_of(store).segments()[-1].end)
        store.store_logs(entries(batch * 10 + 1, batch * 10 + 10))
    store.set_uint64(TERM, 7)
    yield store, starts
    store.close()


# -- torn writes -----------------------------------------------------------------------


def _last_batch(store: raftstore.RaftStore) -> tuple[SegmentInfo, int, int]:
    """The tail, and the start and end offsets of its last log batch (the 41..50 one)."""
    tail = engine_of(store).segments()[-1]
    offsets = engine_of(store)._tail.offsets
    assert offsets is not None
    return tail, offsets[40], offsets[49]


def test_a_partial_last_frame_drops_only_the_last_batch(
    batches: tuple[raftstore.RaftStore, list[int]], tmp_path: Path
) -> None:
    store, _ = batches
    store.store_logs(entries(51, 60))  # the torn one: its last frame is cut
    tail = engine_of(store).segments()[-1]
    image = crash_image(store, tmp_path / "image")
    last_frame = engine_of(store)._tail.offsets[59]  # type: ignore[index]
    zero(in_image(image, tail), last_frame + 20, tail.end)
    assert read_back(image) == (list(range(1, 51)), 7)


def test_a_partial_commit_frame_drops_only_the_last_batch(
    batches: tuple[raftstore.RaftStore, list[int]], tmp_path: Path
) -> None:
    store, _ = batches
    store.store_logs(entries(51, 60))
    tail = engine_of(store).segments()[-1]
    image = crash_image(store, tmp_path / "image")
    zero(in_image(image, tail), tail.end - 24, tail.end)  # half the commit frame
    assert read_back(image) == (list(range(1, 51)), 7)


def test_a_zeroed_tail_drops_the_batches_it_covers(
    batches: tuple[raftstore.RaftStore, list[int]], tmp_path: Path
) -> None:
    store, _ = batches
    start = engine_of(store).segments()[-1].end
    store.store_logs(entries(51, 60))
    store.store_logs(entries(61, 70))
    tail = engine_of(store).segments()[-1]
    image = crash_image(store, tmp_path / "image")
    # Never-synced pages read back as zeros: from batch 51..60 on, nothing landed.
    zero(in_image(image, tail), start, tail.end)
    assert read_back(image) == (list(range(1, 51)), 7)


def test_garbage_after_the_last_commit_is_dropped_and_appends_continue(
    batches: tuple[raftstore.RaftStore, list[int]], tmp_path: Path
) -> None:
    store, _ = batches
    tail = engine_of(store).segments()[-1]
    image = crash_image(store, tmp_path / "image")
    overwrite(in_image(image, tail), tail.end, random.Random(1).randbytes(3000))
    assert read_back(image) == (list(range(1, 51)), 7)
    with open_wal(image) as reopened:
        reopened.store_logs(entries(51, 55, term=2))
    with open_wal(image) as reopened:
        assert [log.index for log in reopened.iter_logs()] == list(range(1, 56))
        assert reopened.get_log(55).term == 2


@pytest.mark.parametrize(
    "damage",
    ["flip-a-byte-of-batch-2", "zero-batch-2", "flip-a-commit-field"],
)
def test_damage_before_the_last_commit_is_refused_and_changes_nothing(
    batches: tuple[raftstore.RaftStore, list[int]], tmp_path: Path, damage: str
) -> None:
    store, starts = batches
    tail = engine_of(store).segments()[-1]
    image = crash_image(store, tmp_path / "image")
    target = in_image(image, tail)
    second = starts[1]
    if damage == "flip-a-byte-of-batch-2":
        raw = target.read_bytes()
        overwrite(target, second + 30, bytes([raw[second + 30] ^ 0x10]))
    elif damage == "zero-batch-2":
        zero(target, second, starts[2])
    else:
        commit = starts[2] - 48 + 16 + 8  # the first index field of batch 2's commit
        overwrite(target, commit, (999).to_bytes(8, "little"))
    before = digest(image)
    with pytest.raises(CorruptionError, match="followed by a valid batch"):
        open_wal(image)
    assert digest(image) == before


def test_a_damaged_sealed_segment_is_reported_on_read(tmp_path: Path) -> None:
    with open_wal(tmp_path / "db") as store:
        store.store_logs(entries(1, 400))  # a batch larger than a segment: one segment
        for i in range(401, 801, 20):
            store.store_logs(entries(i, i + 19))
        sealed = [s for s in engine_of(store).segments() if s.sealed]
        assert len(sealed) >= 3
        victim = sealed[1]
        offsets = engine_of(store)._segment_for(victim.base).offsets
        assert offsets is not None
        frame = offsets[0]
    overwrite(victim.path, frame + 16 + 5, b"\xff\xff")
    with open_wal(tmp_path / "db") as store:  # reopen reads only the tail
        assert store.get_log(1).index == 1
        with pytest.raises(CorruptionError, match=f"log {victim.base}"):
            store.get_log(victim.base)
    # A damaged index frame: the whole segment is refused on first use.
    overwrite(victim.path, victim.index_offset + 40, b"\x00\x01\x02")
    with open_wal(tmp_path / "db") as store, pytest.raises(CorruptionError, match="index frame"):
        store.get_log(victim.base + 1)


def test_a_truncated_sealed_segment_is_refused(tmp_path: Path) -> None:
    with open_wal(tmp_path / "db") as store:
        for i in range(1, 801, 20):
            store.store_logs(entries(i, i + 19))
        victim = engine_of(store).segments()[1]
    os.truncate(victim.path, victim.index_offset // 2)
    with open_wal(tmp_path / "db") as store, pytest.raises(CorruptionError, match="truncated"):
        store.get_log(victim.base)


def test_a_truncated_tail_segment_is_refused_not_read_as_a_torn_write(
    batches: tuple[raftstore.RaftStore, list[int]], tmp_path: Path
) -> None:
    store, starts = batches
    image = crash_image(store, tmp_path / "image")  # no checkpoint: a crash image
    tail = in_image(image, engine_of(store).segments()[-1])
    os.truncate(tail, starts[3] + 100)  # inside batch 4: it looks torn, but files never shrink
    before = digest(image)
    with pytest.raises(CorruptionError, match="truncated"):
        open_wal(image)
    assert digest(image) == before


@pytest.mark.parametrize("which", ["tail", "sealed", "manifest"])
def test_a_missing_file_is_refused_and_nothing_is_created(tmp_path: Path, which: str) -> None:
    with open_wal(tmp_path / "db") as store:
        for i in range(1, 601, 20):
            store.store_logs(entries(i, i + 19))
        segments = engine_of(store).segments()
    data = tmp_path / "db" / "data"
    if which == "manifest":
        (data / "wal.manifest").unlink()
    else:
        (segments[-1] if which == "tail" else segments[0]).path.unlink()
    before = digest(tmp_path / "db")
    with pytest.raises(CorruptionError, match=r"missing|lost"):
        open_wal(tmp_path / "db")
    assert digest(tmp_path / "db") == before


def test_a_store_that_fails_its_open_is_left_as_it_was(tmp_path: Path) -> None:
    store = open_wal(tmp_path / "db")
    for i in range(1, 601, 20):
        store.store_logs(entries(i, i + 19))
    image = crash_image(store, tmp_path / "image")  # unclean: the next close would checkpoint
    first = in_image(image, engine_of(store).segments()[0])
    store.close()
    os.truncate(first, 1000)  # found when the store reads its first entry at open
    before = digest(image)
    with pytest.raises(CorruptionError, match="truncated"):
        open_wal(image)
    assert digest(image) == before


def test_a_damaged_manifest_is_refused(tmp_path: Path) -> None:
    with open_wal(tmp_path / "db") as store:
        store.store_logs(entries(1, 10))
    overwrite(tmp_path / "db" / "data" / "wal.manifest", 30, b"\x00")
    with pytest.raises(CorruptionError, match="manifest"):
        open_wal(tmp_path / "db")


@pytest.mark.parametrize(
    "name", ["segment-0000000000000999.wal", "segment-0000000000000000.wal", "notes.txt"]
)
def test_a_file_the_segment_list_does_not_know_is_refused(tmp_path: Path, name: str) -> None:
    with open_wal(tmp_path / "db") as store:
        store.store_logs(entries(1, 10))
        first = engine_of(store).segments()[0].path
    shutil.copy(first, tmp_path / "db" / "data" / name)
    before = digest(tmp_path / "db")
    with pytest.raises(CorruptionError, match=f"does not name: {name}"):
        open_wal(tmp_path / "db")
    assert digest(tmp_path / "db") == before


# -- faults ------------------------------------------------------------------------------


def _failing(error: int, after: Callable[..., Any] | None = None) -> Callable[..., Any]:
    def fail(*args: Any) -> Any:
        if after is not None:
            after(*args)
        raise OSError(error, os.strerror(error))

    return fail


def _append_until_it_fails(store: raftstore.RaftStore, start: int, size: int) -> None:
    for i in range(start, start + 200 * size, size):
        store.store_logs(entries(i, i + size - 1))


def _half_written(fd: int, buffers: list[bytes], offset: int) -> int:
    data = b"".join(buffers)
    os.pwrite(fd, data[: len(data) // 2], offset)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("pwritev", errno.EIO),
        ("pwritev", errno.ENOSPC),
        ("pwritev-half", errno.ENOSPC),
        ("fdatasync", errno.EIO),
        ("fdatasync", errno.ENOSPC),
    ],
)
def test_a_failed_write_or_sync_poisons_the_handle_and_reopen_shows_what_was_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, error: int
) -> None:
    store = open_wal(tmp_path / "db", segment_size=1 << 20)
    store.store_logs(entries(1, 20))
    store.set_uint64(TERM, 3)
    with monkeypatch.context() as patch:
        if call == "pwritev-half":
            patch.setattr(f"{ENGINE_MODULE}.os.pwritev", _half_written)
        else:
            patch.setattr(f"{ENGINE_MODULE}.os.{call}", _failing(error))
        with pytest.raises(StorageError, match="cannot be retried safely"):
            store.store_logs(entries(21, 30))
    # Poisoned: every call that reaches the engine refuses, though the disk is fine again.
    for attempt in (
        lambda: store.store_logs(entries(21, 30)),
        lambda: store.get_log(5),
        lambda: store.set_uint64(TERM, 4),
        lambda: store.get_uint64(TERM),
        lambda: store.delete_range(1, 5),
        store.sync,
    ):
        with pytest.raises(StorageError, match="refuses every call"):
            attempt()
    store.close()
    assert read_back(tmp_path / "db") == (list(range(1, 21)), 3)
    with open_wal(tmp_path / "db") as reopened:  # usable again
        reopened.store_logs(entries(21, 22))
        assert reopened.last_index() == 22


def test_a_failed_sync_while_sealing_a_segment_poisons_the_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_wal(tmp_path / "db", sync=False)
    store.store_logs(entries(1, 50))
    store.sync()
    calls_seen: list[int] = []
    real = os.fdatasync

    def fail_on_seal(fd: int) -> None:
        calls_seen.append(fd)
        if fd == engine_of(store)._tail.fd:
            raise OSError(errno.EIO, "injected")
        real(fd)

    with monkeypatch.context() as patch:
        patch.setattr(f"{ENGINE_MODULE}.os.fdatasync", fail_on_seal)
        with pytest.raises(StorageError, match="sealing"):
            _append_until_it_fails(store, 51, 50)  # rotates: sealing fdatasyncs the old tail
    store.close()
    indexes, _ = read_back(tmp_path / "db")
    assert indexes[:50] == list(range(1, 51))
    assert indexes == list(range(1, len(indexes) + 1))


def test_a_spare_that_cannot_be_made_fails_the_rotation_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_wal(tmp_path / "db")
    store.store_logs(entries(1, 10))
    engine_of(store)._preparer.wait()  # type: ignore[union-attr]
    with monkeypatch.context() as patch:
        patch.setattr("raftstore.engines.wal.spare.os.posix_fallocate", _failing(errno.ENOSPC))
        with pytest.raises(StorageError, match="cannot create wal segment"):
            _append_until_it_fails(store, 11, 10)
        acknowledged = store.last_index()
    store.close()
    assert read_back(tmp_path / "db")[0] == list(range(1, acknowledged + 1))


# -- rotation, truncation, reopen cost -----------------------------------------------------


def test_rotation_across_many_segments(tmp_path: Path) -> None:
    rng = random.Random(5)
    with open_wal(tmp_path / "db") as store:
        index = 1
        while index < 3000:
            count = rng.randint(1, 64)
            store.store_logs(entries(index, index + count - 1, size=rng.choice((0, 20, 200))))
            index += count
        last = index - 1
        segments = engine_of(store).segments()
        assert len(segments) > 20
        assert all(s.sealed for s in segments[:-1])
        files = {p.name for p in (tmp_path / "db" / "data").iterdir()}
        assert {s.path.name for s in segments} <= files
    with open_wal(tmp_path / "db") as store:
        assert (store.first_index(), store.last_index()) == (1, last)
        for i in rng.sample(range(1, last + 1), 300):
            assert store.get_log(i).index == i
        assert [log.index for log in store.iter_logs()] == list(range(1, last + 1))


def test_head_truncation_gives_the_space_back(tmp_path: Path) -> None:
    with open_wal(tmp_path / "db") as store:
        for i in range(1, 10_001, 100):
            store.store_logs(entries(i, i + 99, size=60))
        engine_of(store)._preparer.wait()  # type: ignore[union-attr]
        before = store.disk_usage()
        assert len(engine_of(store).segments()) > 40
        store.delete_range(0, 9000)
        after = store.disk_usage()
        assert after <= 0.15 * before + SEGMENT, (before, after)
        assert store.first_index() == 9001
        assert store.get_log(9001).index == 9001
    with open_wal(tmp_path / "db") as store:
        assert (store.first_index(), store.last_index()) == (9001, 10_000)


def test_tail_truncation_starts_a_new_segment_and_drops_later_ones(tmp_path: Path) -> None:
    with open_wal(tmp_path / "db") as store:
        for i in range(1, 2001, 50):
            store.store_logs(entries(i, i + 49))
        before = engine_of(store).segments()
        store.delete_range(700, 2000)  # deep into a sealed segment
        after = engine_of(store).segments()
        assert (after[-1].base, after[-1].count) == (700, 0)
        assert len(after) < len(before)
        dropped = {s.path for s in before} - {s.path for s in after}
        assert dropped
        assert not any(p.exists() for p in dropped)
        store.store_logs(entries(700, 710, term=2))
    with open_wal(tmp_path / "db") as store:
        assert store.last_index() == 710
        assert (store.get_log(699).term, store.get_log(700).term) == (1, 2)


def _build(path: Path, count: int) -> None:
    with open_wal(path) as store:
        for i in range(1, count + 1, 100):
            store.store_logs(entries(i, i + 99))
        store.set_uint64(TERM, 9)


def test_reopen_reads_the_same_whatever_the_log_length(tmp_path: Path) -> None:
    reports = {}
    for count in (2_000, 40_000):
        _build(tmp_path / str(count), count)
        with open_wal(tmp_path / str(count)) as store:
            reports[count] = dict(engine_of(store).recovery)
            assert store.last_index() == count
    # A clean close leaves a checkpoint: the reopen scans nothing and reads the tail, plus
    # the segments of the first and last entries (the store checks both records at open).
    assert reports[2_000]["segments_read"] == reports[40_000]["segments_read"] <= 3
    assert reports[2_000]["bytes_scanned"] == reports[40_000]["bytes_scanned"] == 0
    per_segment = SEGMENT // 56 + 100
    assert max(reports[2_000]["indexed"], reports[40_000]["indexed"]) <= per_segment


def test_reopen_after_a_crash_scans_at_most_the_tail_segment(tmp_path: Path) -> None:
    store = open_wal(tmp_path / "db")
    for i in range(1, 40_001, 100):
        store.store_logs(entries(i, i + 99))
    image = crash_image(store, tmp_path / "image")
    store.close()
    with open_wal(image) as reopened:
        report = engine_of(reopened).recovery
        assert reopened.last_index() == 40_000
    assert report["segments_read"] <= 3  # the tail, and those of the first and last entries
    assert 0 < report["bytes_scanned"] <= SEGMENT + 100 * 64


# -- SIGKILL with small segments (rotation, truncation and recovery mid-flight) -----------------

_WRITER = """
import sys
sys.path.insert(0, {tests!r})
import raftstore
from crash_harness import calls
path, seed, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = raftstore.open(path, engine="wal", segment_size={segment})
stream = calls(seed)
for _ in range(start):
    next(stream)
done = start
print("open", flush=True)
for call in stream:
    call.apply(store)
    done += 1
    print("ack", done, flush=True)
"""


def _matches(state: Any, model: CrashModel) -> bool:
    return bool(state.logs == model.logs and state.stable == model.stable)


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_during_rotation_and_truncation_keeps_a_clean_prefix(
    tmp_path: Path, seed: int
) -> None:
    script = _WRITER.format(tests=str(Path(__file__).parent), segment=4096)
    path = tmp_path / "db"
    rng = random.Random(seed)
    done = 0
    for generation in range(4):
        writer = subprocess.Popen(
            [sys.executable, "-c", script, str(path), str(seed), str(done)],
            stdout=subprocess.PIPE,
            text=True,
        )
        timer = threading.Timer(60, writer.kill)  # a stalled writer never hangs the test
        timer.start()
        try:
            assert writer.stdout is not None
            target = rng.randint(5, 120)
            acked = done
            for line in writer.stdout:
                if line.startswith("ack"):
                    acked = int(line.split()[1])
                    if acked >= done + target:
                        break
            writer.send_signal(signal.SIGKILL)
            # Acknowledgements still in the pipe count: they were printed before the kill.
            for line in writer.stdout:
                if line.startswith("ack"):
                    acked = int(line.split()[1])
            writer.wait()
        finally:
            timer.cancel()
        with open_wal(path, segment_size=4096) as store:
            state = read_state(store)
        after, _next = model_after(seed, acked)
        one_more, _ = model_after(seed, acked + 1)
        where = f"seed {seed} generation {generation} acked {acked}"
        if _matches(state, after):
            done = acked
        else:
            assert _matches(state, one_more), where
            done = acked + 1
        assert (state.first, state.last) == (min(state.logs, default=0), max(state.logs, default=0))
    assert sum(1 for _ in zip(range(done), calls(seed), strict=False)) == done
