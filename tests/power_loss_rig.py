"""Power loss, approximated on one machine: a store on a loop-mounted ext4 image, cut mid-stream.

One *run*, for one engine, filesystem variant, workload and seed:

1. A fresh ext4 image (with a journal, or ``-O ^has_journal``) is created
   and loop-mounted. The writer (this file, run as ``power_loss_rig.py
   writer``) opens a store on it and performs the workload's deterministic
   call stream, printing ``ready`` once the store is open and ``ack N``
   after each acknowledged call (N calls done in total). With ``sync=True``
   every call is acknowledged; the ``sync`` workload writes with
   ``sync=False`` and acknowledges only after each ``store.sync()``.
2. At each seeded cut point the parent reads an acknowledgement, SIGSTOPs
   the writer (the call in flight may or may not have reached the device),
   waits until every thread of the writer is stopped and the loop device has
   no write in flight, and copies the image file. The copy is read through
   the page cache of the *backing file*: it holds exactly what the
   filesystem submitted to its block device, not the filesystem's own dirty
   page cache, so anything that was never written back or fsynced is
   missing from it, as after a power cut. The copy is retaken if the device
   wrote anything while it was being made. Then the writer continues (SIGCONT).
3. Each copy is checked like a disk after a power cut: ``e2fsck -fy``
   (which also replays the journal), loop-mounted, and opened with raftstore
   in a child process with a timeout (``power_loss_rig.py check``). The store
   must hold the state after the acknowledged calls, or after some of the
   unacknowledged calls that followed (the call in flight; with ``sync``,
   any of the writes before the next ``sync()``), or raise a raftstore
   error. Anything else that opens and reads cleanly is a *silent loss*.

What it cannot show: reordered or torn device writes (the loop device
writes in the order it is given; no device-mapper here), nor a disk's
volatile write cache. The image and every mount are removed in ``finally``
blocks; a busy mount falls back to ``umount -l``, and loop devices left
attached to a rig image are detached.

Needs root, loop devices, ``mkfs.ext4``, ``e2fsck``, ``mount``, ``losetup``
and ``cp``; `unavailable()` says what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import raftstore
from raftstore import Log, LogType

__all__ = [
    "ENGINES",
    "ENGINE_OPTIONS",
    "FILESYSTEMS",
    "WORKLOADS",
    "Cut",
    "Model",
    "RigError",
    "Step",
    "engine_unavailable",
    "models_through",
    "run_power_loss",
    "steps",
    "unavailable",
]

RIG = Path(__file__).resolve()
ENGINES = ("lmdb", "rocksdb", "leveldb", "wal")
FILESYSTEMS = ("journal", "nojournal")
#: Workloads checked for loss; ``unsynced`` (never synced) is the rig's control.
WORKLOADS = ("append", "conflict", "prefix", "term", "sync", "compact")
CONTROL_WORKLOADS = ("unsynced",)
#: Small memtables, so LSM engines rotate logs and flush tables during the run
#: (issue 15 item 7: a rotated LevelDB log is closed without an fsync).
ENGINE_OPTIONS: dict[str, dict[str, Any]] = {
    "lmdb": {},
    "rocksdb": {"write_buffer_size": 65536},
    "leveldb": {"write_buffer_size": 65536},
    "wal": {},
}
IMAGE_MIB = 128
STORE_DIR = "store"
TERM_KEY = b"CurrentTerm"

#: Bounds on everything the rig waits for (seconds).
COMMAND_TIMEOUT = 60.0
CHECK_TIMEOUT = 120.0
ACK_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
QUIESCE_TIMEOUT = 10.0

_REQUIRED_TOOLS = ("mkfs.ext4", "e2fsck", "mount", "umount", "losetup", "cp")


class RigError(RuntimeError):
    """The rig itself failed (a command, a mount, the writer): not a store outcome."""


# -- the call streams -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One store call of a workload's stream; ``ack`` when the writer acknowledges it."""

    kind: Literal["store_logs", "delete_range", "set_uint64", "sync", "compact"]
    logs: tuple[Log, ...] = ()
    low: int = 0
    high: int = 0
    key: bytes = b""
    value: int = 0
    ack: bool = True

    def apply(self, store: raftstore.RaftStore) -> None:
        """Perform this call on *store*."""
        if self.kind == "store_logs":
            store.store_logs(self.logs)
        elif self.kind == "delete_range":
            store.delete_range(self.low, self.high)
        elif self.kind == "set_uint64":
            store.set_uint64(self.key, self.value)
        elif self.kind == "sync":
            store.sync()
        else:
            store.compact()

    def describe(self) -> str:
        """A short form for reports."""
        if self.kind == "store_logs":
            return f"store_logs({self.logs[0].index}..{self.logs[-1].index})"
        if self.kind == "delete_range":
            return f"delete_range({self.low}, {self.high})"
        if self.kind == "set_uint64":
            return f"set_uint64({self.key.decode()}, {self.value})"
        return f"{self.kind}()"


@dataclass
class Model:
    """What the store holds after a prefix of a stream."""

    logs: dict[int, Log] = field(default_factory=dict)
    stable: dict[bytes, int] = field(default_factory=dict)

    def apply(self, step: Step) -> None:
        """Record a completed *step*."""
        if step.kind == "store_logs":
            for log in step.logs:
                self.logs[log.index] = log
        elif step.kind == "delete_range":
            for index in [i for i in self.logs if step.low <= i <= step.high]:
                del self.logs[index]
        elif step.kind == "set_uint64":
            self.stable[step.key] = step.value

    def copy(self) -> Model:
        """An independent copy."""
        return Model(dict(self.logs), dict(self.stable))

    @property
    def first(self) -> int:
        """Lowest index held, 0 when empty."""
        return min(self.logs, default=0)

    @property
    def last(self) -> int:
        """Highest index held, 0 when empty."""
        return max(self.logs, default=0)


_SIZES = (0, 16, 128, 128, 512, 1024, 4096)
_LARGE_SIZES = (512, 1024, 1024, 4096)


def steps(workload: str, seed: int) -> Iterator[Step]:
    """The endless, deterministic call stream of *workload* for *seed*.

    - ``append``: synced ``store_logs`` of 1..32 entries.
    - ``conflict``: appends, and Raft conflict rewrites: a suffix
      ``delete_range`` (acknowledged on its own) then a new term's batch.
    - ``prefix``: appends and prefix ``delete_range`` (log compaction).
    - ``term``: ``set_uint64(CurrentTerm)``, rising.
    - ``sync``: ``sync=False`` writes (appends of up to 64 large entries, suffix
      deletes, ``CurrentTerm``), 1..6 of them, then ``sync()``; only the
      ``sync()`` is acknowledged.
    - ``compact``: appends and prefix deletes, each followed by ``compact()``
      now and then.
    - ``unsynced`` (the rig's control): ``sync=False`` appends, never synced,
      each acknowledged; a power cut is expected to lose them.
    """
    if workload not in WORKLOADS + CONTROL_WORKLOADS:
        raise ValueError(f"unknown workload {workload!r}")
    rng = random.Random(f"{workload}-{seed}")
    model = Model()
    term = 1

    def batch(start: int, count: int, sizes: tuple[int, ...] = _SIZES, ack: bool = True) -> Step:
        size = rng.choice(sizes)
        logs = tuple(
            Log(
                index,
                term,
                LogType.CONFIGURATION if rng.random() < 0.02 else LogType.COMMAND,
                data=rng.randbytes(size),
                extensions=rng.randbytes(rng.choice((0, 0, 8))),
                appended_at=rng.getrandbits(63),
            )
            for index in range(max(start, 1), max(start, 1) + count)
        )
        return Step("store_logs", logs=logs, ack=ack)

    def prefix_cut() -> Step:
        cut = model.first + rng.randint(1, max(1, (model.last - model.first) // 2))
        return Step("delete_range", low=rng.choice((0, model.first)), high=cut)

    while True:
        group: list[Step]
        first, last = model.first, model.last
        roll = rng.random()
        if workload == "append":
            group = [batch(last + 1, rng.randint(1, 32))]
        elif workload == "conflict":
            if last < 8 or roll < 0.4:
                group = [batch(last + 1, rng.randint(1, 32))]
            else:
                conflict = rng.randint(max(first, 1), last)
                term += 1
                group = [Step("delete_range", low=conflict, high=last)]
                group.append(batch(conflict, rng.randint(1, 32)))
        elif workload == "prefix":
            if last - first > 16 and roll < 0.4:
                group = [prefix_cut()]
            else:
                group = [batch(last + 1, rng.randint(4, 48))]
        elif workload == "term":
            term += rng.randint(1, 3)
            group = [Step("set_uint64", key=TERM_KEY, value=term)]
        elif workload == "sync":
            group = []
            for _ in range(rng.randint(1, 6)):
                kind = rng.random()
                if model.last > 8 and kind < 0.12:
                    conflict = rng.randint(max(model.first, 1), model.last)
                    term += 1
                    group.append(Step("delete_range", low=conflict, high=model.last, ack=False))
                elif kind < 0.25:
                    term += 1
                    group.append(Step("set_uint64", key=TERM_KEY, value=term, ack=False))
                else:
                    group.append(batch(model.last + 1, rng.randint(1, 64), _LARGE_SIZES, ack=False))
                model.apply(group[-1])
            group.append(Step("sync"))
            yield from group
            continue
        elif workload == "compact":
            if last - first > 16 and roll < 0.3:
                group = [prefix_cut()]
            elif last and roll < 0.55:
                group = [Step("compact")]
            else:
                group = [batch(last + 1, rng.randint(4, 48))]
        else:  # unsynced
            group = [batch(last + 1, rng.randint(1, 32))]
        for step in group:
            model.apply(step)
            yield step


def models_through(workload: str, seed: int, count: int) -> tuple[list[Model], list[Step]]:
    """The models after 0..*count* calls of the stream, and the first *count* calls."""
    model = Model()
    models = [model.copy()]
    done: list[Step] = []
    stream = steps(workload, seed)
    for _ in range(count):
        step = next(stream)
        model.apply(step)
        models.append(model.copy())
        done.append(step)
    return models, done


def next_ack_point(workload: str, seed: int, acked: int) -> int:
    """The call count at the first acknowledgement after *acked* calls."""
    stream = steps(workload, seed)
    for _ in range(acked):
        next(stream)
    count = acked
    for step in stream:
        count += 1
        if step.ack:
            return count
    raise AssertionError("the streams are endless")  # pragma: no cover


# -- the writer (a child process) -------------------------------------------------


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us if the parent dies first (no orphan writers)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def writer_main(args: argparse.Namespace) -> None:
    """Open the store and perform the stream, acknowledging, until killed."""
    _die_with_parent()
    out = sys.stdout
    sync = args.workload not in ("sync", "unsynced")
    store = raftstore.open(args.path, engine=args.engine, sync=sync, **json.loads(args.options))
    out.write("ready\n")
    out.flush()
    stream = steps(args.workload, args.seed)
    for done in range(1, args.limit + 1):
        step = next(stream)
        step.apply(store)
        if step.ack:
            out.write(f"ack {done}\n")
            out.flush()
    while True:  # the parent kills us
        time.sleep(1)


# -- the check of a copy (a child process) ----------------------------------------


def _read(store: raftstore.RaftStore) -> tuple[dict[int, Log], dict[bytes, int], str]:
    logs = {log.index: log for log in store.iter_logs()}
    problem = ""
    first, last = store.first_index(), store.last_index()
    if (first, last) != (min(logs, default=0), max(logs, default=0)):
        problem = f"first/last {first}/{last} disagree with the entries read"
    for index in {first, last} - {0}:
        if index in logs and store.get_log(index) != logs[index]:
            problem = f"get_log({index}) differs from iter_logs"
    stable = {key: store.get_uint64(key) for key, _ in store.iter_stable()}
    return logs, stable, problem


def _difference(logs: dict[int, Log], stable: dict[bytes, int], model: Model) -> str:
    parts = []
    if stable != model.stable:
        parts.append(f"stable {stable} != {model.stable}")
    missing = sorted(set(model.logs) - set(logs))
    extra = sorted(set(logs) - set(model.logs))
    if missing:
        parts.append(f"{len(missing)} entries missing (first {missing[:3]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (first {extra[:3]})")
    wrong = [i for i in sorted(model.logs) if i in logs and logs[i] != model.logs[i]]
    if wrong:
        parts.append(f"{len(wrong)} entries differ (first {wrong[:3]})")
    return "; ".join(parts)


def check_store(
    path: Path, engine: str, workload: str, seed: int, acked: int, options: dict[str, Any]
) -> dict[str, Any]:
    """Open the store at *path* after a power cut and classify what it holds.

    ``ok``: the acknowledged state; ``later``: the state after some of the
    unacknowledged calls that followed; ``raftstore_error``: open or a read
    raised a raftstore error; ``lost``: it opened and read cleanly but holds
    neither (a silent loss); ``native_error``: any other exception.
    """
    upto = next_ack_point(workload, seed, acked)
    models, done = models_through(workload, seed, upto)
    result: dict[str, Any] = {"acked": acked, "next_ack": upto}
    try:
        store = raftstore.open(path, engine=engine, **options)
    except raftstore.RaftStoreError as exc:
        return result | {"outcome": "raftstore_error", "detail": f"open: {exc!r}"[:600]}
    except Exception as exc:
        return result | {"outcome": "native_error", "detail": f"open: {exc!r}"[:600]}
    try:
        logs, stable, problem = _read(store)
    except raftstore.RaftStoreError as exc:
        return result | {"outcome": "raftstore_error", "detail": f"read: {exc!r}"[:600]}
    except Exception as exc:
        return result | {"outcome": "native_error", "detail": f"read: {exc!r}"[:600]}
    finally:
        with contextlib.suppress(Exception):
            store.close()
    result["entries"] = len(logs)
    if problem:
        return result | {"outcome": "lost", "detail": problem}
    for count in range(acked, upto + 1):
        if not _difference(logs, stable, models[count]):
            outcome = "ok" if count == acked else "later"
            return result | {"outcome": outcome, "found": count}
    detail = f"after {acked} acknowledged calls: {_difference(logs, stable, models[acked])}"
    for count in range(acked - 1, -1, -1):
        if not _difference(logs, stable, models[count]):
            detail += f"; the store is the state after call {count} (rolled back"
            detail += f" {acked - count} calls, the first {done[count].describe()})"
            result["found"] = count
            break
    return result | {"outcome": "lost", "detail": detail}


def check_main(args: argparse.Namespace) -> None:
    """Print the classification of one copy as a JSON line."""
    result = check_store(
        args.path, args.engine, args.workload, args.seed, args.acked, json.loads(args.options)
    )
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


# -- the rig: images, mounts, the stopped writer ----------------------------------


def _run(command: list[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RigError(f"{' '.join(command)} did not finish in {timeout} s") from exc


def _must(command: list[str], timeout: float = COMMAND_TIMEOUT) -> str:
    done = _run(command, timeout)
    if done.returncode != 0:
        raise RigError(
            f"{' '.join(command)} exited {done.returncode}: {(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def unavailable() -> str | None:
    """None when the rig can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "the power-loss rig needs root (loop mounts)"
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"the power-loss rig needs {', '.join(missing)}"
    if not Path("/dev/loop-control").exists() and not Path("/dev/loop0").exists():
        return "the power-loss rig needs loop devices (/dev/loop-control is missing)"
    return None


def probe(workdir: Path) -> str | None:
    """Make, mount and unmount one small image: None when that works, else why not."""
    reason = unavailable()
    if reason is not None:
        return reason
    image = workdir / "probe.img"
    try:
        make_image(image, "journal", mib=16)
        with loop_mount(image, workdir / "probe-mnt"):
            pass
    except RigError as exc:
        return f"cannot loop-mount an ext4 image here: {exc}"
    finally:
        image.unlink(missing_ok=True)
    return None


def make_image(image: Path, fs: str, *, mib: int = IMAGE_MIB) -> None:
    """A fresh ext4 image of *mib* MiB, with a journal or without (``fs``)."""
    if fs not in FILESYSTEMS:
        raise ValueError(f"unknown filesystem variant {fs!r}")
    image.unlink(missing_ok=True)
    with image.open("wb") as file:
        file.truncate(mib * 1024 * 1024)
    features = ["-O", "^has_journal"] if fs == "nojournal" else []
    _must(["mkfs.ext4", "-q", "-F", "-b", "4096", *features, str(image)])


def _mount_source(mount_point: Path) -> str | None:
    target = os.path.realpath(mount_point)
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == target:
                return fields[0]
    return None


def detach_loops(image: Path) -> None:
    """Detach every loop device still backed by *image*."""
    with contextlib.suppress(RigError):
        listing = _run(["losetup", "-j", str(image)]).stdout
        for line in listing.splitlines():
            device = line.split(":", 1)[0].strip()
            if device.startswith("/dev/loop"):
                _run(["losetup", "-d", device])


def unmount(mount_point: Path, image: Path | None = None) -> None:
    """Unmount *mount_point* (lazily when it is busy) and detach *image*'s loop devices."""
    for _ in range(3):
        if _mount_source(mount_point) is None:
            break
        try:
            done = _run(["umount", str(mount_point)])
        except RigError:
            done = None
        if done is None or done.returncode != 0:
            with contextlib.suppress(RigError):
                _run(["umount", "-l", str(mount_point)])
    if image is not None:
        detach_loops(image)


@contextlib.contextmanager
def loop_mount(image: Path, mount_point: Path) -> Iterator[str]:
    """Loop-mount *image* at *mount_point*; yield the loop device; always unmount."""
    mount_point.mkdir(parents=True, exist_ok=True)
    try:
        _must(["mount", "-o", "loop", str(image), str(mount_point)])
        device = _mount_source(mount_point)
        if device is None or not device.startswith("/dev/loop"):
            raise RigError(f"{image} is not loop-mounted at {mount_point} ({device})")
        yield device
    finally:
        unmount(mount_point, image)


def _write_counters(device: str) -> tuple[tuple[str, ...], int]:
    """The loop device's write and flush counters, and its requests in flight."""
    fields = Path(f"/sys/block/{Path(device).name}/stat").read_text().split()
    counters = tuple(fields[4:8]) + tuple(fields[15:17])
    return counters, int(fields[8])


def _quiesce(device: str) -> bool:
    """Wait until *device* has nothing in flight and wrote nothing for 30 ms."""
    deadline = time.monotonic() + QUIESCE_TIMEOUT
    last: tuple[str, ...] | None = None
    still = 0
    while time.monotonic() < deadline:
        counters, in_flight = _write_counters(device)
        if in_flight == 0 and counters == last:
            still += 1
            if still >= 3:
                return True
        else:
            still = 0
        last = counters
        time.sleep(0.01)
    return False


def copy_image(image: Path, copy: Path, device: str) -> int:
    """Copy *image* while *device* writes nothing; return the attempts it took."""
    for attempt in range(1, 6):
        _quiesce(device)
        before = _write_counters(device)[0]
        copy.unlink(missing_ok=True)
        _must(["cp", "--sparse=always", str(image), str(copy)], timeout=COMMAND_TIMEOUT)
        if _write_counters(device)[0] == before:
            return attempt
    return 0  # the device kept writing: this copy is not a point-in-time image


class Writer:
    """The writer child: its acknowledgements and stop/continue/kill."""

    def __init__(self, command: list[str], stderr: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = b""
        self.eof = False
        #: Calls done at each acknowledgement; ``ready`` is acknowledgement 0.
        self.acks: list[int] = []

    def _take(self, timeout: float) -> None:
        if self.eof:
            return
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0))
        if not ready:
            return
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self.eof = True
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            word, _, number = line.decode().strip().partition(" ")
            if word == "ready":
                self.acks.append(0)
            elif word == "ack":
                self.acks.append(int(number))

    def wait_for(self, ordinal: int, timeout: float = ACK_TIMEOUT) -> bool:
        """Read until acknowledgement *ordinal* arrives; False on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while len(self.acks) <= ordinal:
            if self.eof or time.monotonic() > deadline:
                return False
            self._take(deadline - time.monotonic())
        return True

    def drain(self) -> None:
        """Take whatever the (stopped) writer printed before it stopped."""
        before = -1
        while before != len(self._buffer) + len(self.acks) and not self.eof:
            before = len(self._buffer) + len(self.acks)
            self._take(0)

    def _all_stopped(self) -> bool:
        pid = self.process.pid
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            return True
        for task in tasks:
            try:
                stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
            except FileNotFoundError:
                continue
            if stat.rpartition(")")[2].split()[0] not in ("T", "t", "Z", "X"):
                return False
        return True

    def stop(self) -> None:
        """SIGSTOP the writer and wait until every one of its threads has stopped."""
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + STOP_TIMEOUT
        while not self._all_stopped():
            if time.monotonic() > deadline:
                raise RigError(f"the writer did not stop within {STOP_TIMEOUT} s")
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT the writer."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the writer and reap it (bounded)."""
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=COMMAND_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Cut:
    """One power cut: where it landed and what the copy held."""

    engine: str
    fs: str
    workload: str
    seed: int
    ordinal: int
    acked: int = 0
    outcome: str = "rig_error"
    found: int | None = None
    entries: int = 0
    fsck: int | None = None
    copy_attempts: int = 0
    detail: str = ""
    #: The run's parameters, so `reproduce` reruns the same cut points.
    cuts: int = 3
    max_acks: int = 60

    @property
    def silent_loss(self) -> bool:
        """The copy opened and read cleanly with less (or other) than was acknowledged."""
        return self.outcome == "lost"

    @property
    def failed(self) -> bool:
        """A native error, crash, hang or rig failure: neither data nor a raftstore error."""
        return self.outcome not in ("ok", "later", "lost", "raftstore_error")

    def reproduce(self) -> str:
        """The command that reruns this cut's run."""
        return (
            f"python bench/power_loss.py --engines {self.engine} --fs {self.fs}"
            f" --workloads {self.workload} --seed {self.seed} --trials 1"
            f" --cuts {self.cuts} --max-acks {self.max_acks}"
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def cut_points(seed: int, workload: str, cuts: int, max_acks: int) -> list[int]:
    """The acknowledgement ordinals at which a run of *seed* is cut (sorted, distinct)."""
    rng = random.Random(f"cuts-{workload}-{seed}")
    if workload == "sync":
        max_acks = max(cuts, max_acks // 3)
    points = sorted(rng.sample(range(1, max_acks + 1), min(cuts, max_acks)))
    if rng.random() < 0.1:
        points[0] = 0  # right after the store was created
    return points


def _check_copy(
    cut: Cut, copy: Path, mount_point: Path, options: dict[str, Any], python: str
) -> None:
    fsck = _run(["e2fsck", "-fy", str(copy)], timeout=COMMAND_TIMEOUT)
    cut.fsck = fsck.returncode
    if fsck.returncode >= 4:
        cut.outcome = "rig_error"
        cut.detail = f"e2fsck -fy exited {fsck.returncode}: {fsck.stdout[-400:]}"
        return
    with loop_mount(copy, mount_point):
        command = [
            python, str(RIG), "check",
            "--engine", cut.engine,
            "--path", str(mount_point / STORE_DIR),
            "--workload", cut.workload,
            "--seed", str(cut.seed),
            "--acked", str(cut.acked),
            "--options", json.dumps(options),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired:
            cut.outcome = "hang"
            cut.detail = f"opening the copy did not finish in {CHECK_TIMEOUT} s"
            return
    if done.returncode < 0:
        cut.outcome = "crash"
        cut.detail = f"the checker died of signal {-done.returncode}: {done.stderr[-400:]}"
        return
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        cut.outcome = "native_error"
        cut.detail = f"checker exited {done.returncode}: {done.stderr[-600:]}"
        return
    cut.outcome = result["outcome"]
    cut.found = result.get("found")
    cut.entries = result.get("entries", 0)
    cut.detail = result.get("detail", "")


def run_power_loss(
    engine: str,
    fs: str,
    workload: str,
    seed: int,
    workdir: Path,
    *,
    cuts: int = 3,
    max_acks: int = 60,
    python: str = sys.executable,
    keep: Path | None = None,
) -> list[Cut]:
    """One run: a writer on a fresh image, cut at seeded acknowledgements, each copy checked.

    Returns one `Cut` per cut point (a rig failure is a cut with outcome
    ``rig_error`` and the reason in ``detail``). With *keep*, copies that
    were not ``ok``/``later`` are moved there for inspection (not those of
    the control workload, which are expected to lose writes); note that the
    check opened them read-write, so the engine's recovery has run on them.
    """
    options = ENGINE_OPTIONS.get(engine, {})
    rng = random.Random(f"delay-{engine}-{fs}-{workload}-{seed}")
    points = cut_points(seed, workload, cuts, max_acks)
    results = [
        Cut(engine, fs, workload, seed, ordinal, cuts=cuts, max_acks=max_acks) for ordinal in points
    ]
    run_dir = workdir / f"{engine}-{fs}-{workload}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    image, copy = run_dir / "disk.img", run_dir / "copy.img"
    mount_point, check_point = run_dir / "mnt", run_dir / "check"
    stderr_path = run_dir / "writer.stderr"
    writer: Writer | None = None
    try:
        make_image(image, fs)
        with loop_mount(image, mount_point) as device, stderr_path.open("wb") as stderr:
            command = [
                python, str(RIG), "writer",
                "--engine", engine,
                "--path", str(mount_point / STORE_DIR),
                "--workload", workload,
                "--seed", str(seed),
                "--options", json.dumps(options),
            ]  # fmt: skip
            writer = Writer(command, stderr)
            try:
                for cut in results:
                    if not writer.wait_for(cut.ordinal):
                        raise RigError(
                            f"the writer stopped acknowledging before acknowledgement"
                            f" {cut.ordinal} (exit {writer.process.poll()}):"
                            f" {stderr_path.read_text(errors='replace')[-800:]}"
                        )
                    if rng.random() < 0.5:
                        time.sleep(rng.uniform(0, 0.003))  # land inside the next call
                    writer.stop()
                    writer.drain()
                    cut.acked = writer.acks[-1]
                    cut.copy_attempts = copy_image(image, copy, device)
                    _check_copy(cut, copy, check_point, options, python)
                    if cut.copy_attempts == 0 and cut.outcome not in ("ok", "later"):
                        cut.detail += " (the device kept writing while it was copied)"
                    kept = cut.outcome not in ("ok", "later") and workload in WORKLOADS
                    if keep is not None and kept:
                        keep.mkdir(parents=True, exist_ok=True)
                        name = f"{engine}-{fs}-{workload}-{seed}-ack{cut.ordinal}.img"
                        shutil.move(str(copy), str(keep / name))
                    copy.unlink(missing_ok=True)
                    writer.resume()
            finally:
                writer.kill()
    except RigError as exc:
        for cut in results:
            if cut.outcome == "rig_error" and not cut.detail:
                cut.detail = str(exc)
    finally:
        if writer is not None:
            writer.kill()
        unmount(check_point, copy)
        unmount(mount_point, image)
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


def engine_unavailable(engine: str) -> str | None:
    """None when *engine* can be used here, else why not."""
    for info in raftstore.available_engines():
        if info.name == engine:
            return None if info.available else (info.error or "unavailable")
    return "not registered"


def main(argv: list[str] | None = None) -> None:
    """The child-process entry points: ``writer`` and ``check``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["writer", "check"])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--path", required=True, type=Path)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--seed", required=True, type=int)
    parser.add_argument("--options", default="{}")
    parser.add_argument("--acked", type=int, default=0)
    parser.add_argument("--limit", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.role == "writer":
        writer_main(args)
    else:
        check_main(args)


if __name__ == "__main__":
    main()
