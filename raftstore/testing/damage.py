"""A file-damage campaign: damage a store's files at random and check what raftstore does.

One trial, for one engine and one seed:

1. A pristine store is built (once per engine and *family*, then copied per
   trial) through the public API, in a child process: a few hundred entries
   over several batches and generations (close and reopen), a prefix
   ``delete_range``, a suffix ``delete_range`` followed by a conflict rewrite
   with a newer term, and ``CurrentTerm`` / ``LastVoteTerm`` /
   ``LastVoteCand`` set after every batch. The *model* (`plan`) is what every
   index and stable key must hold after those acknowledged calls.
2. The copy is damaged, seeded (`choose_damage`): bytes flipped, a file
   truncated (to 0, to a random length, by a few bytes), a 4 KiB page
   zeroed, a file deleted, garbage appended, ``data/`` removed; targets are
   the engine's files, ``raftstore.json`` and, through the engine bypass
   (``store.kv``), the meta record and single records.
3. A child process with a hard timeout opens the damaged store as a Raft
   node would (``raftstore.open(path, engine=E)``), reads ``first_index`` /
   ``last_index``, every index of the model's range and some outside it,
   ``iter_logs``, every stable key, then appends one entry, sets one key and
   reads both back. Separately, on an untouched copy of the damaged files,
   ``python -m raftstore verify PATH --json`` runs in a child with the same
   timeout.
4. The trial is classified (`classify`): ``correct data``, ``raftstore
   error`` (a `raftstore.RaftStoreError` raised by open or a read: loud, so
   allowed), ``native error`` (any other exception escaping raftstore),
   ``crash`` (the child died by a signal), ``hang`` (timeout), ``wrong data``
   (a value differs from the last acknowledged one, including entries an
   acknowledged ``delete_range`` removed coming back) and ``silent loss``
   (everything read without an error but acknowledged data is missing).
   Only correct data and raftstore errors are allowed; a crash is allowed
   only for LMDB's assertion (SIGABRT) and only when ``verify`` reports the
   store as damaged (exit code 1). ``verify`` crashing, hanging or leaking a
   traceback is not allowed either.

Everything is derived from the engine name and the seed, so one trial is
rerun with ``python bench/damage_fuzz.py --engine E --seed S --trials 1 --keep``.
The children run ``python -m raftstore.testing.damage`` (this module) and
``python -m raftstore``; they import the ``raftstore`` found first on
``PYTHONPATH`` (the campaign script pins a copy of the package there).

No pytest is needed: `run_campaign` and `run_trial` are plain functions, used
by ``bench/damage_fuzz.py`` and ``tests/test_damage_fuzz.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ALLOWED",
    "DEFAULT_ENGINES",
    "FAMILIES",
    "NOT_ALLOWED",
    "OUTCOMES",
    "BuildError",
    "CampaignResult",
    "Damage",
    "Model",
    "TrialResult",
    "UnsupportedDamage",
    "apply_file_damage",
    "campaign_engines",
    "choose_damage",
    "classify",
    "plan",
    "render_markdown",
    "repro_command",
    "run_campaign",
    "run_trial",
]

#: The disk engines every campaign covers; ``wal`` joins when it is available.
DEFAULT_ENGINES = ("lmdb", "rocksdb", "leveldb")
_OPTIONAL_ENGINES = ("wal",)

CORRECT = "correct data"
RAFTSTORE_ERROR = "raftstore error"
NATIVE_ERROR = "native error"
CRASH = "crash"
HANG = "hang"
WRONG = "wrong data"
LOSS = "silent loss"
OUTCOMES = (CORRECT, RAFTSTORE_ERROR, NATIVE_ERROR, CRASH, HANG, WRONG, LOSS)
ALLOWED = frozenset({CORRECT, RAFTSTORE_ERROR})
NOT_ALLOWED = frozenset(OUTCOMES) - ALLOWED

#: Shapes of pristine store; a trial's family is ``seed % FAMILIES``.
FAMILIES = {
    0: "closed cleanly",
    1: "last writer killed (SIGKILL) right after its last acknowledged write",
    2: "compacted after the prefix delete, then more writes",
    3: "larger entries (0.5-3 KiB), last writer killed (SIGKILL) after its last write",
}
#: Families whose last writer is killed: an LSM engine's write-ahead log then holds data.
_KILLED_FAMILIES = (1, 3)

_UINT64_KEYS = (b"CurrentTerm", b"LastVoteTerm")
#: How a CLI run may not end: it must report damage, not die or hang.
_BROKEN_CLI = ("hang", "crash", "traceback")
#: Steps of the check that come after every read.
_AFTER_READS = frozenset({"store_logs(probe)", "set_uint64(CurrentTerm)", "close"})
_BYTES_KEYS = (b"LastVoteCand",)
_ABSENT_KEY = b"NeverSet"
_META_KEY = b"raftstore"
_MAX_INDEX = 2**64 - 1
_PAGE = 4096
_MESSAGE_LIMIT = 300
#: Files whose changes are expected whenever a store is opened, even read-only.
_VOLATILE = re.compile(r"^(LOCK|lock\.mdb|raftstore\.lock|LOG(\.old.*)?|LOG\.\d+)$")


# -- the model -------------------------------------------------------------------


@dataclass
class Model:
    """What an undamaged store holds after the acknowledged calls of `plan`."""

    family: int
    #: index -> (term, type, data, extensions, appended_at)
    logs: dict[int, tuple[int, int, bytes, bytes, int]]
    first: int
    last: int
    uint64: dict[bytes, int]
    values: dict[bytes, bytes]
    #: Indexes an acknowledged ``delete_range`` removed (a sample), and some never written.
    absent: list[int]
    #: Per generation (one open .. close), the calls: ``(op, args...)``.
    generations: list[list[tuple[Any, ...]]]


def plan(family: int) -> Model:
    """The deterministic calls of *family* and the state they leave."""
    rng = random.Random(f"raftstore-damage-plan:{family}")
    low, high = (500, 3000) if family == 3 else (40, 240)
    logs: dict[int, tuple[int, int, bytes, bytes, int]] = {}
    uint64: dict[bytes, int] = {}
    values: dict[bytes, bytes] = {}
    deleted: set[int] = set()
    generations: list[list[tuple[Any, ...]]] = []
    next_index, term = 1, 1

    def entry(index: int, entry_term: int) -> tuple[int, int, bytes, bytes, int]:
        kind = 1 if index % 17 == 0 else 5 if index % 50 == 0 else 0
        data = rng.randbytes(rng.randint(low, high))
        extensions = rng.randbytes(8) if index % 5 == 0 else b""
        return (entry_term, kind, data, extensions, 1_700_000_000_000_000_000 + index * 1000)

    def append(ops: list[tuple[Any, ...]], start: int, count: int, entry_term: int) -> None:
        batch = {index: entry(index, entry_term) for index in range(start, start + count)}
        ops.append(("logs", batch))
        logs.update(batch)
        deleted.difference_update(batch)

    def stable(ops: list[tuple[Any, ...]]) -> None:
        uint64[b"CurrentTerm"] = term
        ops.append(("uint64", b"CurrentTerm", term))
        if rng.random() < 0.7:
            uint64[b"LastVoteTerm"] = term
            candidate = b"node-%d" % rng.randint(1, 5)
            values[b"LastVoteCand"] = candidate
            ops.append(("uint64", b"LastVoteTerm", term))
            ops.append(("set", b"LastVoteCand", candidate))

    def delete(ops: list[tuple[Any, ...]], lo: int, hi: int) -> None:
        ops.append(("delete", lo, hi))
        for index in range(lo, hi + 1):
            if logs.pop(index, None) is not None:
                deleted.add(index)

    for generation in range(3):
        ops: list[tuple[Any, ...]] = []
        for _ in range(rng.randint(2, 4)):
            count = rng.randint(15, 50)
            append(ops, next_index, count, term)
            next_index += count
            term += rng.randint(0, 1)
            stable(ops)
        if generation == 1:
            # A prefix delete (Raft's log compaction); from 1, so it is clamped.
            delete(ops, 1, min(logs) + rng.randint(10, 40))
            if family == 2:
                ops.append(("compact",))
        if generation == 2:
            # A suffix delete and a conflict rewrite with a newer term: the
            # old entries above the new last index must stay deleted.
            last = max(logs)
            cut = rng.randint(6, 20)
            delete(ops, last - cut + 1, last)
            term += 1
            rewrite = rng.randint(1, cut - 3)
            append(ops, last - cut + 1, rewrite, term)
            stable(ops)
        generations.append(ops)
    first, last = min(logs), max(logs)
    gone = sorted(deleted)
    absent = sorted(
        {
            *gone[:3],
            *gone[-8:],
            *rng.sample(gone, min(6, len(gone))),
            last + 1,
            last + 1000,
            _MAX_INDEX,
        }
        - set(logs)
    )
    return Model(family, logs, first, last, uint64, values, absent, generations)


def _log(index: int, fields: tuple[int, int, bytes, bytes, int]) -> Any:
    from raftstore import Log, LogType

    term, kind, data, extensions, appended_at = fields
    return Log(index, term, LogType(kind), data, extensions, appended_at)


# -- children ------------------------------------------------------------------------


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _error(exc: BaseException) -> dict[str, Any]:
    import raftstore

    message = str(exc)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "..."
    cause = exc.__cause__
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "raftstore": isinstance(exc, raftstore.RaftStoreError),
        "message": message,
        "cause": f"{type(cause).__module__}.{type(cause).__name__}" if cause else None,
    }


def _child_build(path: Path, engine: str, family: int) -> int:
    import raftstore

    model = plan(family)
    for number, ops in enumerate(model.generations):
        store = raftstore.open(path, engine=engine)
        for op in ops:
            if op[0] == "logs":
                store.store_logs([_log(index, fields) for index, fields in op[1].items()])
            elif op[0] == "delete":
                store.delete_range(op[1], op[2])
            elif op[0] == "uint64":
                store.set_uint64(op[1], op[2])
            elif op[0] == "set":
                store.set(op[1], op[2])
            elif op[0] == "compact":
                store.compact()
        if family in _KILLED_FAMILIES and number == len(model.generations) - 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as a killed node: no close, no flush
        store.close()
    return 0


def _frame(payload: bytes) -> bytes:
    return payload + zlib.crc32(payload).to_bytes(4, "little")


def _flip_bytes(raw: bytes, rng: random.Random, count: int) -> bytes:
    damaged = bytearray(raw)
    for _ in range(count):
        position = rng.randrange(len(damaged))
        damaged[position] ^= rng.randrange(1, 256)
    return bytes(damaged)


def _child_bypass(path: Path, engine: str, kind: str, seed: int, family: int) -> int:
    """Damage one record through the engine bypass (``store.kv``); prints what was done."""
    import raftstore
    from raftstore.engines.base import LOGS, META, STABLE, WriteBatch

    rng = random.Random(seed)
    store = raftstore.open(path, engine=engine)
    kv = getattr(store, "kv", None)
    if kv is None:
        store.close()
        _emit({"unsupported": f"a {engine} store has no key-value bypass"})
        return 0
    try:
        note = ""
        if kind.startswith("meta-"):
            raw = kv.get(META, _META_KEY)
            assert raw is not None, "the pristine store has no meta record"
            raw = bytes(raw)
            meta = json.loads(raw[:-4])
            new: bytes | None
            if kind == "meta-flip":
                count = rng.choice([1, 1, 2, 3])
                new = _flip_bytes(raw, rng, count)
                note = f"{count} byte(s) of the {len(raw)}-byte value"
            elif kind == "meta-truncate":
                cut = rng.randrange(len(raw))
                new = raw[:cut]
                note = f"to {cut} of {len(raw)} bytes"
            elif kind == "meta-delete":
                new = None
            elif kind == "meta-forge-codec":
                codecs = [c.name for c in raftstore.available_codecs() if c.available]
                others = [c for c in codecs if c != meta["codec"]] or ["nonexistent"]
                meta["codec"] = rng.choice(others)
                new = _frame(json.dumps(meta).encode())
                note = f"valid checksum, codec {meta['codec']!r}"
            elif kind == "meta-forge-engine":
                meta["engine"] = rng.choice(
                    [e for e in ("lmdb", "rocksdb", "leveldb") if e != engine]
                )
                new = _frame(json.dumps(meta).encode())
                note = f"valid checksum, engine {meta['engine']!r}"
            elif kind == "meta-forge-format":
                meta["format"] = rng.choice([0, -1, 99, 2**70])
                new = _frame(json.dumps(meta).encode())
                note = f"valid checksum, format {meta['format']}"
            elif kind == "meta-forge-shape":
                payload = rng.choice(
                    [b"[]", b"null", b'{"format": 1}', b"\xff\xfe", b"[" * 100_000, b'"x"']
                )
                new = _frame(payload)
                note = f"valid checksum, payload {payload[:24]!r}"
            else:
                raise ValueError(kind)
            if new is None:
                kv.write(WriteBatch(deletes=[(META, _META_KEY, _META_KEY)]))
            else:
                kv.write(WriteBatch(puts=[(META, _META_KEY, new)]))
        elif kind == "stable-key-flip":
            key = rng.choice(_UINT64_KEYS)
            raw = kv.get(STABLE, key)
            assert raw is not None
            bit = rng.randrange(len(key) * 8)
            flipped = bytearray(key)
            flipped[bit // 8] ^= 1 << (bit % 8)
            kv.write(
                WriteBatch(
                    deletes=[(STABLE, key, key)], puts=[(STABLE, bytes(flipped), bytes(raw))]
                )
            )
            note = f"{key.decode()} moved to key {bytes(flipped)!r}"
        elif kind == "stable-value-flip":
            key = rng.choice([*_UINT64_KEYS, *_BYTES_KEYS])
            raw = kv.get(STABLE, key)
            assert raw is not None
            kv.write(WriteBatch(puts=[(STABLE, key, _flip_bytes(bytes(raw), rng, 1))]))
            note = f"one byte of {key.decode()}'s record"
        elif kind in ("log-value-flip", "log-key-flip"):
            model = plan(family)
            index = rng.randint(model.first, model.last)
            key = index.to_bytes(8, "big")
            raw = kv.get(LOGS, key)
            assert raw is not None
            if kind == "log-value-flip":
                kv.write(WriteBatch(puts=[(LOGS, key, _flip_bytes(bytes(raw), rng, 1))]))
                note = f"one byte of log {index}'s record"
            else:
                bit = rng.randrange(64)
                moved = (index ^ (1 << bit)).to_bytes(8, "big")
                kv.write(WriteBatch(deletes=[(LOGS, key, key)], puts=[(LOGS, moved, bytes(raw))]))
                note = f"log {index}'s record moved to key {int.from_bytes(moved, 'big')}"
        else:
            raise ValueError(kind)
    except raftstore.RaftStoreError as exc:
        # The engine refuses the forged write (a monotonic log will not overwrite).
        _emit({"unsupported": f"the {engine} engine refused it: {_error(exc)['message']}"})
        return 0
    finally:
        store.close()
    _emit({"done": note})
    return 0


class _Checker:
    """Reads a damaged store and prints one JSON line per step and per finding."""

    def __init__(self, path: Path, engine: str, model: Model) -> None:
        self.path, self.engine, self.model = path, engine, model

    def attempt(self, op: str, call: Callable[[], Any]) -> tuple[bool, Any]:
        _emit({"at": op})
        try:
            return True, call()
        except Exception as exc:
            import raftstore

            if isinstance(exc, raftstore.LogNotFoundError) and op.startswith("get_log("):
                return True, exc
            _emit({"op": op, "kind": "error", "error": _error(exc)})
            return False, None

    @staticmethod
    def finding(op: str, kind: str, detail: str) -> None:
        _emit({"op": op, "kind": kind, "detail": detail[:_MESSAGE_LIMIT]})

    def run(self) -> None:
        import raftstore

        model = self.model
        ok, store = self.attempt("open", lambda: raftstore.open(self.path, engine=self.engine))
        if not ok:
            return
        ok, first = self.attempt("first_index", store.first_index)
        if ok and first != model.first:
            kind = WRONG if 0 < first < model.first else LOSS
            self.finding("first_index", kind, f"first_index {first}, acknowledged {model.first}")
        ok, last = self.attempt("last_index", store.last_index)
        if ok and last != model.last:
            kind = WRONG if last > model.last else LOSS
            self.finding("last_index", kind, f"last_index {last}, acknowledged {model.last}")
        for index in range(model.first, model.last + 1):
            self.read_log(store, index, model.logs.get(index))
        for index in model.absent:
            self.read_log(store, index, None)
        self.iterate(store)
        for key in _UINT64_KEYS:
            self.read_stable(store, key, model.uint64.get(key, 0), uint64=True)
        for key in _BYTES_KEYS:
            self.read_stable(store, key, model.values.get(key), uint64=False)
        self.read_stable(store, _ABSENT_KEY, None, uint64=False)
        self.read_stable(store, _ABSENT_KEY, 0, uint64=True)
        # A restarted node appends and votes: the store must take writes or refuse loudly.
        probe = (model.logs[model.last][0], 0, b"probe", b"", 1)
        after = model.last + 1
        if self.attempt("store_logs(probe)", lambda: store.store_logs([_log(after, probe)]))[0]:
            self.read_log(store, after, probe)
        term = model.uint64[b"CurrentTerm"] + 1
        if self.attempt("set_uint64(CurrentTerm)", lambda: store.set_uint64(b"CurrentTerm", term))[
            0
        ]:
            self.read_stable(store, b"CurrentTerm", term, uint64=True)
        self.attempt("close", store.close)

    def read_log(
        self, store: Any, index: int, expected: tuple[int, int, bytes, bytes, int] | None
    ) -> None:
        import raftstore

        op = f"get_log({index})"
        ok, got = self.attempt(op, lambda: store.get_log(index))
        if not ok:
            return
        found = not isinstance(got, raftstore.LogNotFoundError)
        if expected is None:
            if found:
                self.finding(op, WRONG, f"log {index} was deleted or never written, read {got!r}")
        elif not found:
            self.finding(op, LOSS, f"log {index} not found: {got}")
        elif got != _log(index, expected):
            self.finding(op, WRONG, _differences(_log(index, expected), got))

    def iterate(self, store: Any) -> None:
        _emit({"at": "iter_logs()"})
        model, seen, high = self.model, 0, 0
        try:
            for log in store.iter_logs():
                expected = model.logs.get(log.index)
                if expected is None:
                    self.finding("iter_logs()", WRONG, f"yielded deleted/unknown log {log.index}")
                elif log != _log(log.index, expected):
                    self.finding("iter_logs()", WRONG, _differences(_log(log.index, expected), log))
                else:
                    seen += 1
                high = max(high, log.index)
        except Exception as exc:
            _emit({"op": "iter_logs()", "kind": "error", "error": _error(exc)})
            skipped = sum(1 for index in model.logs if index < high) - seen
            if skipped > 0:
                self.finding("iter_logs()", LOSS, f"skipped {skipped} entries below {high}")
            return
        if seen < len(model.logs):
            self.finding(
                "iter_logs()", LOSS, f"yielded {seen} of {len(model.logs)} acknowledged entries"
            )

    def read_stable(self, store: Any, key: bytes, expected: Any, *, uint64: bool) -> None:
        name = key.decode()
        op = f"get_uint64({name})" if uint64 else f"get({name})"
        ok, got = self.attempt(op, lambda: store.get_uint64(key) if uint64 else store.get(key))
        if not ok or got == expected:
            return
        lost = got in (0, None) and expected not in (0, None)
        self.finding(op, LOSS if lost else WRONG, f"{name} is {got!r}, acknowledged {expected!r}")


def _differences(expected: Any, got: Any) -> str:
    fields = ("index", "term", "type", "data", "extensions", "appended_at")
    diffs = [f for f in fields if getattr(expected, f, None) != getattr(got, f, None)]
    return (
        f"log {expected.index}: {', '.join(diffs)} differ"
        f" (term {getattr(got, 'term', got)!r}, acknowledged {expected.term})"
    )


def _child_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftstore.testing.damage")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "check", "bypass"):
        command = sub.add_parser(name)
        command.add_argument("path", type=Path)
        command.add_argument("--engine", required=True)
        command.add_argument("--family", type=int, default=0)
        command.add_argument("--kind", default="")
        command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "build":
        return _child_build(args.path, args.engine, args.family)
    if args.command == "bypass":
        return _child_bypass(args.path, args.engine, args.kind, args.seed, args.family)
    _Checker(args.path, args.engine, plan(args.family)).run()
    _emit({"done": True})
    return 0


# -- damage ------------------------------------------------------------------------

#: Damage to a file: kind -> weight.
_FILE_KINDS = {"flip": 34, "truncate": 20, "zero-page": 16, "delete": 12, "append": 18}
#: Damage through the engine bypass: kind -> weight.
_BYPASS_KINDS = {
    "meta-flip": 4,
    "meta-truncate": 2,
    "meta-delete": 2,
    "meta-forge-codec": 2,
    "meta-forge-engine": 1,
    "meta-forge-format": 1,
    "meta-forge-shape": 2,
    "stable-key-flip": 2,
    "stable-value-flip": 1,
    "log-value-flip": 1,
    "log-key-flip": 1,
}
_MARKER_FORGERIES = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b'{"engine": 7}',
    b'{"engine": "nonexistent", "format": 1}\n',
    b'{"engine": "memory", "format": 1}\n',
    b"[" * 100_000,
    b'{"engine": "' + b"\xff\xfe" + b'"}',
]


@dataclass
class Damage:
    """One damage, as done (``description`` says it in words)."""

    kind: str
    target: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)


def _file_weight(relative: str) -> float:
    """How often *relative* (a path in the store) is chosen: small critical files most."""
    name = relative.rsplit("/", 1)[-1]
    if name == "raftstore.json":
        return 6
    if name in ("CURRENT", "data.mdb") or "manifest" in name.lower():
        return 8
    if name.endswith((".log", ".wal", ".seg", ".segment")):
        return 8
    if name.endswith((".sst", ".ldb")):
        return 4
    if name in ("lock.mdb", "raftstore.lock", "LOCK") or name.startswith("LOG"):
        return 0.7
    return 1.5  # OPTIONS-*, IDENTITY, rocksdict-config.json, unknown engine files


def _files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, [weights[n] for n in names])[0]


def _used_length(path: Path) -> int:
    """Bytes up to and including the last nonzero byte of *path*."""
    return len(path.read_bytes().rstrip(b"\x00"))


def _offset(rng: random.Random, size: int) -> int:
    """A random offset, a third of the time in the first 8 KiB or last 4 KiB (headers, footers)."""
    if size > 3 * _PAGE and rng.random() < 0.35:
        return rng.randrange(2 * _PAGE) if rng.random() < 0.6 else size - 1 - rng.randrange(_PAGE)
    return rng.randrange(size)


def choose_damage(rng: random.Random, store: Path, *, bypass: bool = True) -> Damage:
    """A random damage for the store at *store*; file damage is done by `apply_file_damage`."""
    roll = rng.random()
    if bypass and roll < 0.14:
        kind = _weighted(rng, dict(_BYPASS_KINDS))
        return Damage(kind, "record", kind, {"seed": rng.randrange(2**31)})
    if roll < 0.16:
        return Damage("delete-data-dir", "data", "delete data/ (every engine file)")
    if roll < 0.19:
        payload = rng.choice(_MARKER_FORGERIES)
        return Damage(
            "forge-marker",
            "raftstore.json",
            f"raftstore.json replaced by {payload[:40]!r}{'...' if len(payload) > 40 else ''}",
            {"payload": payload.hex()},
        )
    files = _files(store)
    weights = [_file_weight(f) * (1 if (store / f).stat().st_size else 0.25) for f in files]
    target = rng.choices(files, weights)[0]
    size = (store / target).stat().st_size
    kind = _weighted(rng, {k: float(w) for k, w in _FILE_KINDS.items()})
    if size == 0 and kind in ("flip", "truncate", "zero-page"):
        kind = rng.choice(["append", "delete"])
    # A preallocated file (a WAL segment) is mostly zeros after its data:
    # damage lands in the data most of the time.
    used = _used_length(store / target) if size else 0
    span = used if 0 < used < size and rng.random() < 0.85 else size
    what = f"{target} ({size} B{f', data in the first {used} B' if used < size else ''})"
    if kind == "flip":
        count = rng.choice([1, 1, 1, 1, 2, 3, 5, 8])
        flips = [(_offset(rng, span), rng.randrange(1, 256)) for _ in range(count)]
        where = ", ".join(str(o) for o, _ in flips)
        return Damage(kind, target, f"flip {count} byte(s) of {what} at {where}", {"flips": flips})
    if kind == "truncate":
        roll = rng.random()
        length = (
            0
            if roll < 0.3 or span == 1
            else span - rng.randint(1, min(64, span - 1))
            if roll < 0.55
            else rng.randrange(1, span)
        )
        return Damage(kind, target, f"truncate {what} to {length} B", {"length": length})
    if kind == "zero-page":
        pages = (span + _PAGE - 1) // _PAGE
        page = rng.randrange(min(2, pages)) if rng.random() < 0.3 else rng.randrange(pages)
        return Damage(kind, target, f"zero 4 KiB page {page} of {what}", {"page": page})
    if kind == "delete":
        return Damage(kind, target, f"delete {target}")
    length = rng.choice([1, 7, 64, 4096, rng.randint(1, 9000)])
    garbage = rng.randbytes(length) if rng.random() < 0.8 else b"\x00" * length
    zeros = " zero" if not any(garbage) else ""
    return Damage(
        kind,
        target,
        f"append {length}{zeros} garbage byte(s) to {target} ({size} B)",
        {"data": garbage.hex()},
    )


def apply_file_damage(store: Path, damage: Damage) -> bool:
    """Do *damage* (not a bypass kind) to the store at *store*; False when nothing changed."""
    path = store / damage.target
    if damage.kind == "delete-data-dir":
        shutil.rmtree(path)
        return True
    if damage.kind == "delete":
        path.unlink()
        return True
    if damage.kind == "forge-marker":
        path.write_bytes(bytes.fromhex(damage.params["payload"]))
        return True
    before = path.read_bytes()
    data = bytearray(before)
    if damage.kind == "flip":
        for offset, mask in damage.params["flips"]:
            data[offset] ^= mask
    elif damage.kind == "truncate":
        del data[damage.params["length"] :]
    elif damage.kind == "zero-page":
        start = damage.params["page"] * _PAGE
        end = min(len(data), start + _PAGE)
        data[start:end] = bytes(end - start)
    elif damage.kind == "append":
        data += bytes.fromhex(damage.params["data"])
    else:
        raise ValueError(f"not a file damage: {damage.kind}")
    if bytes(data) == before:
        return False
    # Write in place (same inode), as a bad disk would.
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate(len(data))
    return True


# -- running children ------------------------------------------------------------------


@dataclass
class _Run:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float

    @property
    def signal(self) -> str | None:
        if self.returncode is not None and self.returncode < 0:
            try:
                return signal.Signals(-self.returncode).name
            except ValueError:
                return f"signal {-self.returncode}"
        return None


def _run(argv: list[str], cwd: Path, timeout: float) -> _Run:
    """Run *argv* in its own process group; on timeout kill the whole group."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1", PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    return _Run(
        None if timed_out else process.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        timed_out,
        time.monotonic() - started,
    )


def _child(command: str, path: Path, engine: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "raftstore.testing.damage",
        command,
        str(path),
        "--engine",
        engine,
        *extra,
    ]


def _snapshot(store: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    if not store.is_dir():
        return found
    for path in store.rglob("*"):
        if path.is_file() and not _VOLATILE.match(path.name):
            found[str(path.relative_to(store))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return found


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    changes = [f"deleted {p}" for p in sorted(before.keys() - after.keys())]
    changes += [f"created {p}" for p in sorted(after.keys() - before.keys())]
    changes += [f"changed {p}" for p in sorted(before) if p in after and before[p] != after[p]]
    return changes


def _crash_summary(text: str) -> str:
    """From a crashed child's stderr: the native message, the fatal error, the innermost frames."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    fatal = next((n for n, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is None:
        return _tail(text)
    native = lines[max(0, fatal - 3) : fatal]
    frames = [line.strip() for line in lines[fatal:] if line.lstrip().startswith("File ")][:3]
    return " | ".join([*native, lines[fatal], *frames])[:1500]


def _tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)[-1500:]


# -- trials ----------------------------------------------------------------------------


@dataclass
class TrialResult:
    """One trial: the damage done, what the reads found, what ``verify`` said."""

    engine: str
    seed: int
    family: int
    damage: dict[str, Any]
    outcome: str
    allowed: bool
    #: Why the trial is not allowed (empty when it is).
    problems: list[str]
    #: The first error or finding that decided the outcome: op, type, message.
    cause: dict[str, Any]
    #: Counts of findings: ``"op kind type" -> n`` (ops with an index grouped).
    findings: dict[str, int]
    #: Loud errors seen together with missing data (allowed, but worth a look).
    loss_beside_error: bool
    verify: dict[str, Any]
    #: How ``raftstore inspect --json`` ended, on another copy of the damaged files.
    inspect: dict[str, Any]
    #: Files a failed read-write open or the read-only verify changed.
    changed_by_failed_open: list[str]
    changed_by_verify: list[str]
    seconds: float
    kept: str | None = None

    @property
    def description(self) -> str:
        """The damage, in words."""
        return str(self.damage["description"])


def _family(seed: int) -> int:
    return seed % len(FAMILIES)


def classify(
    engine: str, run: _Run, verify: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, int], bool]:
    """Outcome of a check child: (outcome, cause, findings, loss beside a loud error).

    Precedence: hang, crash, native error, wrong data, raftstore error, silent
    loss, correct data. A loud error from open or a read makes missing data a
    raftstore error (the caller was told); an error from the write probe after
    the reads does not, and nothing excuses a wrong value.
    """
    del engine, verify  # the crash allowance is decided by the caller
    records: list[dict[str, Any]] = []
    last_step = "start"
    for line in run.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "at" in record:
            last_step = record["at"]
        elif "kind" in record:
            records.append(record)
    findings: Counter[str] = Counter()
    for record in records:
        op = re.sub(r"\(\d+\)", "(i)", record["op"])
        what = record["error"]["type"] if record["kind"] == "error" else ""
        findings[f"{op} {record['kind']} {what}".strip()] += 1
    done = any(line.strip() == '{"done": true}' for line in run.stdout.splitlines())
    stderr = _tail(run.stderr)
    if run.timed_out:
        return HANG, {"op": last_step, "stderr": stderr}, dict(findings), False
    if run.signal is not None:
        return (
            CRASH,
            {"op": last_step, "signal": run.signal, "stderr": _crash_summary(run.stderr)},
            dict(findings),
            False,
        )
    if not done:
        cause = {
            "op": last_step,
            "type": "exit",
            "message": f"the child exited with code {run.returncode} before finishing",
            "stderr": stderr,
        }
        return NATIVE_ERROR, cause, dict(findings), False
    errors = [r for r in records if r["kind"] == "error"]
    native = [r for r in errors if not r["error"]["raftstore"]]
    # Only a loud read tells the caller: an error from the write probe or close,
    # after the reads, does not excuse data the reads silently missed.
    read_errors = [r for r in errors if r["op"] not in _AFTER_READS]
    wrong = [r for r in records if r["kind"] == WRONG]
    lost = [r for r in records if r["kind"] == LOSS]
    if native:
        return NATIVE_ERROR, _cause(native[0]), dict(findings), False
    if wrong:
        return WRONG, _cause(wrong[0]), dict(findings), False
    if lost and not read_errors:
        return LOSS, _cause(lost[0]), dict(findings), False
    if errors:
        return RAFTSTORE_ERROR, _cause(errors[0]), dict(findings), bool(lost)
    return CORRECT, {}, dict(findings), False


def _cause(record: dict[str, Any]) -> dict[str, Any]:
    if record["kind"] == "error":
        error = record["error"]
        return {
            "op": record["op"],
            "type": error["type"],
            "module": error["module"],
            "message": error["message"],
            "cause": error["cause"],
        }
    return {"op": record["op"], "type": record["kind"], "message": record["detail"]}


def _cli(command: str, store: Path, cwd: Path, timeout: float) -> dict[str, Any]:
    """Run ``python -m raftstore COMMAND STORE --json`` and say how it ended."""
    run = _run([sys.executable, "-m", "raftstore", command, str(store), "--json"], cwd, timeout)
    result: dict[str, Any] = {"exit": run.returncode, "seconds": round(run.seconds, 2)}
    if run.timed_out:
        result["status"] = "hang"
    elif run.signal is not None:
        result["status"] = "crash"
        result["signal"] = run.signal
    elif "Traceback (most recent call last)" in run.stderr:
        result["status"] = "traceback"
    elif run.returncode == 0:
        result["status"] = "ok"
    elif run.returncode == 1:
        result["status"] = "failed"
    else:
        result["status"] = f"exit {run.returncode}"
    try:
        report = json.loads(run.stdout)
        if command == "verify":
            result["problems"] = report.get("problem_count")
            result["first"] = (report.get("problems") or [{}])[0]
    except (ValueError, AttributeError):
        pass
    if run.stderr.strip():
        result["stderr"] = _crash_summary(run.stderr) if run.signal else _tail(run.stderr, 4)
    return result


def repro_command(engine: str, seed: int) -> str:
    """The command that reruns one trial and keeps its damaged directory."""
    return f"python bench/damage_fuzz.py --engine {engine} --seed {seed} --trials 1 --keep"


class UnsupportedDamage(RuntimeError):
    """The damage asked for cannot be done to this engine's store (it refused the bypass)."""


class BuildError(RuntimeError):
    """The pristine store of an engine could not be built or does not read back."""


class _Pristine:
    """Builds each engine x family store once (thread-safe) and checks it reads correctly."""

    def __init__(self, workdir: Path, timeout: float) -> None:
        self.workdir, self.timeout = workdir, timeout
        self.built: dict[tuple[str, int], Path | BuildError] = {}
        self.lock = threading.Lock()
        self.locks: dict[tuple[str, int], threading.Lock] = {}

    def get(self, engine: str, family: int) -> Path:
        key = (engine, family)
        with self.lock:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self.built:
                try:
                    self.built[key] = self._build(engine, family)
                except BuildError as exc:
                    self.built[key] = exc
            built = self.built[key]
        if isinstance(built, BuildError):
            raise built
        return built

    def _build(self, engine: str, family: int) -> Path:
        home = self.workdir / "pristine" / f"{engine}-{family}"
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        store = home / "store"
        run = _run(_child("build", store, engine, "--family", str(family)), home, self.timeout * 4)
        expected = -signal.SIGKILL if family in _KILLED_FAMILIES else 0
        if run.returncode != expected:
            raise BuildError(
                f"building the pristine {engine} store (family {family}) failed:"
                f" exit {run.returncode}, timed out {run.timed_out}\n{_tail(run.stderr, 20)}"
            )
        probe = home / "probe"
        shutil.copytree(store, probe, symlinks=True)
        check = _run(_child("check", probe, engine, "--family", str(family)), home, self.timeout)
        outcome, cause, _, _ = classify(engine, check, {})
        shutil.rmtree(probe)
        if outcome != CORRECT:
            raise BuildError(
                f"the undamaged {engine} store (family {family}) does not read back: {outcome}"
                f" {cause}\n{_tail(check.stderr, 20)}"
            )
        return store


def _damage(
    engine: str,
    family: int,
    store: Path,
    source: Path,
    home: Path,
    rng: random.Random,
    damage: Damage | None,
    timeout: float,
) -> Damage:
    """Damage the copy at *store* (*damage*, else a seeded choice); returns what was done."""
    bypass = True
    for _ in range(8):
        chosen = damage or choose_damage(rng, store, bypass=bypass)
        if chosen.kind == "none":
            return chosen
        if chosen.target != "record":
            if apply_file_damage(store, chosen) or damage is not None:
                return chosen
            continue  # the damage changed nothing (zeroing zeros): choose again
        argv = _child("bypass", store, engine, "--family", str(family), "--kind", chosen.kind)
        run = _run([*argv, "--seed", str(chosen.params.get("seed", 0))], home, timeout)
        lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
        if run.returncode != 0 or not lines:
            raise RuntimeError(
                f"bypass damage {chosen.kind} failed on the pristine {engine} store:"
                f" exit {run.returncode}\n{_tail(run.stderr, 20)}"
            )
        if "unsupported" not in lines[-1]:
            chosen.description = f"{chosen.kind} (engine bypass): {lines[-1]['done']}"
            return chosen
        if damage is not None:
            raise UnsupportedDamage(f"{damage.kind} on {engine}: {lines[-1]['unsupported']}")
        # No key-value bypass on this engine: start again from the pristine copy.
        shutil.rmtree(store)
        shutil.copytree(source, store, symlinks=True)
        damage, bypass = None, False
    raise RuntimeError(f"no damage could be done to {store}")


def run_trial(
    engine: str,
    seed: int,
    workdir: Path,
    *,
    timeout: float = 30.0,
    keep: bool = False,
    damage: Damage | None = None,
    pristine: _Pristine | None = None,
) -> TrialResult:
    """Run one trial (see the module docstring); *damage* overrides the seeded choice."""
    started = time.monotonic()
    family = _family(seed)
    pristine = pristine or _Pristine(workdir, timeout)
    source = pristine.get(engine, family)
    home = workdir / "trials" / f"{engine}-{seed}"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    store = home / "store"
    shutil.copytree(source, store, symlinks=True)
    rng = random.Random(f"raftstore-damage:{engine}:{seed}")
    chosen = _damage(engine, family, store, source, home, rng, damage, timeout)
    verify_copy, inspect_copy = home / "verify", home / "inspect"
    shutil.copytree(store, verify_copy, symlinks=True)
    shutil.copytree(store, inspect_copy, symlinks=True)
    kept_copy = home / "damaged"
    if keep:
        shutil.copytree(store, kept_copy, symlinks=True)
    before = _snapshot(store)
    check = _run(_child("check", store, engine, "--family", str(family)), home, timeout)
    after = _snapshot(store)
    verify_before = _snapshot(verify_copy)
    verify = _cli("verify", verify_copy, home, timeout)
    changed_by_verify = _changes(verify_before, _snapshot(verify_copy))
    inspect = _cli("inspect", inspect_copy, home, timeout)
    outcome, cause, findings, loss_beside_error = classify(engine, check, verify)
    changed_by_failed_open = []
    if outcome == RAFTSTORE_ERROR and cause.get("op") == "open":
        changed_by_failed_open = _changes(before, after)
    problems: list[str] = []
    if outcome in NOT_ALLOWED:
        allowed_crash = (
            outcome == CRASH
            and engine == "lmdb"
            and cause.get("signal") == "SIGABRT"
            and verify["status"] == "failed"
        )
        if not allowed_crash:
            what = cause.get("signal") or cause.get("type") or ""
            what = f" ({what})" if what and what != outcome else ""
            problems.append(f"{outcome}{what} at {cause.get('op')}")
    for command, report in (("verify", verify), ("inspect", inspect)):
        if report["status"] in _BROKEN_CLI:
            problems.append(f"{command} {report['status']} {report.get('signal', '')}".strip())
    result = TrialResult(
        engine=engine,
        seed=seed,
        family=family,
        damage=asdict(chosen),
        outcome=outcome,
        allowed=not problems,
        problems=problems,
        cause=cause,
        findings=findings,
        loss_beside_error=loss_beside_error,
        verify=verify,
        inspect=inspect,
        changed_by_failed_open=changed_by_failed_open,
        changed_by_verify=changed_by_verify,
        seconds=round(time.monotonic() - started, 2),
    )
    # Keep params small in reports: drop the garbage bytes.
    result.damage["params"] = {
        k: v for k, v in result.damage["params"].items() if k not in ("data", "payload")
    }
    if keep:
        result.kept = str(home)
    else:
        shutil.rmtree(home, ignore_errors=True)
    return result


# -- campaigns --------------------------------------------------------------------------


@dataclass
class CampaignResult:
    """Every trial of a campaign, with the engines it skipped and why."""

    trials: list[TrialResult]
    skipped: dict[str, str]
    seconds: float

    @property
    def failures(self) -> list[TrialResult]:
        """Trials with an outcome that is not allowed."""
        return [t for t in self.trials if not t.allowed]


def campaign_engines(requested: Iterable[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The engines to damage (requested, else the defaults plus ``wal`` when available)."""
    import raftstore

    infos = {info.name: info for info in raftstore.available_engines()}
    wanted = list(requested) if requested else [*DEFAULT_ENGINES, *_OPTIONAL_ENGINES]
    engines: list[str] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        info = infos.get(name)
        if info is None:
            if requested:
                skipped[name] = "not a known engine"
        elif not info.available:
            skipped[name] = f"not usable here: {info.error or info.install_hint}"
        else:
            engines.append(name)
    return engines, skipped


def run_campaign(
    engines: Sequence[str],
    trials: int,
    seed: int,
    workdir: Path,
    *,
    timeout: float = 30.0,
    jobs: int = 2,
    keep: bool = False,
    stop_after: int | None = None,
    progress: Callable[[TrialResult], None] | None = None,
) -> CampaignResult:
    """Run *trials* trials per engine, seeds ``seed .. seed + trials - 1``, *jobs* at a time.

    Stops starting new trials once *stop_after* trials were not allowed.
    """
    started = time.monotonic()
    _no_core_dumps()
    pristine = _Pristine(workdir, timeout)
    work = [(engine, seed + number) for number in range(trials) for engine in engines]
    results: list[TrialResult] = []
    skipped: dict[str, str] = {}
    failed = 0
    lock = threading.Lock()

    def one(item: tuple[str, int]) -> TrialResult | None:
        nonlocal failed
        if (stop_after is not None and failed >= stop_after) or item[0] in skipped:
            return None
        try:
            result = run_trial(
                item[0], item[1], workdir, timeout=timeout, keep=keep, pristine=pristine
            )
        except BuildError as exc:
            with lock:
                skipped[item[0]] = str(exc)
            return None
        with lock:
            failed += not result.allowed
            results.append(result)
            if progress is not None:
                progress(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for future in [pool.submit(one, item) for item in work]:
            future.result()
    results.sort(key=lambda t: (t.engine, t.seed))
    return CampaignResult(results, skipped, round(time.monotonic() - started, 1))


def _no_core_dumps() -> None:
    """Crashing children should not litter core files."""
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - platform dependent
        pass


# -- reporting ---------------------------------------------------------------------------


def _target_class(target: str) -> str:
    return re.sub(r"\d+", "N", target)


def signature(trial: TrialResult) -> str:
    """What a finding is, for grouping: engine, outcome, error or signal, step, damage, target."""
    cause = trial.cause
    if trial.outcome in NOT_ALLOWED and not trial.problems[0].startswith(("verify", "inspect")):
        what = cause.get("signal") or cause.get("type") or ""
        if what == trial.outcome:
            what = ""
        parts = [trial.outcome, str(what), "at " + _op_class(str(cause.get("op", "")))]
    else:
        parts = [trial.problems[0]]
    damage = f"{trial.damage['kind']} {_target_class(trial.damage['target'])}"
    return " | ".join([trial.engine, *[p for p in parts if p], damage])


def _op_class(op: str) -> str:
    return re.sub(r"\(\d+\)", "(i)", op)


def _row(engine: str, trials: list[TrialResult]) -> list[str]:
    counts = Counter(t.outcome for t in trials)
    bad = [t for t in trials if t.outcome != CORRECT]
    flagged = sum(1 for t in bad if t.verify["status"] == "failed")
    verify_broken = sum(
        1 for t in trials if t.verify["status"] in _BROKEN_CLI or t.inspect["status"] in _BROKEN_CLI
    )
    return [
        engine,
        str(len(trials)),
        *(str(counts.get(o, 0)) for o in OUTCOMES),
        f"{flagged}/{len(bad)}",
        str(verify_broken),
        str(sum(1 for t in trials if not t.allowed)),
    ]


def _notes(trial: TrialResult) -> list[str]:
    """Allowed-but-notable facts about *trial*."""
    notes = []
    if trial.loss_beside_error:
        notes.append("acknowledged data missing (LogNotFoundError or 0/None) beside a loud error")
    if trial.outcome != CORRECT and trial.verify["status"] == "ok":
        notes.append(f"verify exit 0 (clean) on a {trial.outcome} trial")
    if trial.changed_by_failed_open:
        notes.append("a failed read-write open changed engine files")
    if trial.changed_by_verify:
        notes.append("the read-only verify changed engine files")
    return notes


def _changed_summary(changes: list[str]) -> str:
    kinds = sorted({_target_class(change) for change in changes})
    return ", ".join(kinds)


def render_markdown(result: CampaignResult) -> str:
    """The outcome table per engine, then every trial that is not allowed, grouped."""
    header = [
        "engine",
        "trials",
        *OUTCOMES,
        "verify FAILED when not correct",
        "verify/inspect crash/hang/traceback",
        "not allowed",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    engines = sorted({t.engine for t in result.trials})
    by_engine = {e: [t for t in result.trials if t.engine == e] for e in engines}
    for engine in engines:
        lines.append("| " + " | ".join(_row(engine, by_engine[engine])) + " |")
    out = ["\n".join(lines), ""]
    for engine, reason in result.skipped.items():
        out.append(f"- {engine}: skipped ({' '.join(reason.split())[:800]})")
    for engine in engines:
        errors = Counter(
            f"{t.cause.get('type')} at {_op_class(str(t.cause.get('op')))}"
            for t in by_engine[engine]
            if t.outcome == RAFTSTORE_ERROR
        )
        if errors:
            listed = ", ".join(f"{what} x{n}" for what, n in errors.most_common())
            out.append(f"- {engine} raftstore errors: {listed}")
        statuses = Counter(
            str(t.verify["status"]) for t in by_engine[engine] if t.outcome != CORRECT
        )
        if statuses:
            listed = ", ".join(f"{what} x{n}" for what, n in statuses.most_common())
            out.append(f"- {engine} verify on trials that were not correct data: {listed}")
    failures = result.failures
    if failures:
        out.append(f"\n## {len(failures)} trial(s) with an outcome that is not allowed\n")
        groups: dict[str, list[TrialResult]] = {}
        for trial in failures:
            groups.setdefault(signature(trial), []).append(trial)
        for key, members in sorted(
            groups.items(), key=lambda kv: (kv[0].split(" | ")[0], -len(kv[1]), kv[0])
        ):
            out.append(f"### {key} ({len(members)})\n")
            out.extend(_describe(trial) for trial in members)
            out.append("")
    else:
        out.append("\nNo outcome that is not allowed.")
    noted: dict[tuple[str, str], list[TrialResult]] = {}
    for trial in result.trials:
        if trial.allowed:
            for note in _notes(trial):
                noted.setdefault((trial.engine, note), []).append(trial)
    if noted:
        out.append("\n## Allowed trials worth a look\n")
        for (engine, note), members in sorted(noted.items()):
            out.append(f"- {engine}: {note}: {len(members)} trial(s), e.g.")
            for trial in members[:3]:
                changed = (
                    trial.changed_by_failed_open if "open" in note else trial.changed_by_verify
                )
                extra = f" [{_changed_summary(changed)}]" if "changed" in note else ""
                out.append(
                    f"  - seed {trial.seed}: {trial.description} -> {trial.outcome}"
                    f" ({trial.cause.get('type')} at {trial.cause.get('op')}){extra}"
                    f" `{repro_command(trial.engine, trial.seed)}`"
                )
    return "\n".join(out)


def _cli_text(report: dict[str, Any]) -> str:
    text = str(report["status"]) + (f" {report['signal']}" if report.get("signal") else "")
    if report.get("stderr") and report["status"] != "ok":
        text += "; stderr: " + " ".join(str(report["stderr"]).split())[:300]
    return text


def _describe(trial: TrialResult) -> str:
    cause = trial.cause
    what = cause.get("signal") or f"{cause.get('module', '')}.{cause.get('type')}".lstrip(".")
    if what in (WRONG, LOSS, f".{WRONG}", f".{LOSS}"):
        what = ""
    message = cause.get("message") or cause.get("stderr") or ""
    message = " ".join(str(message).split())[:500]
    verify = trial.verify
    verify_text = verify["status"] + (f" {verify['signal']}" if verify.get("signal") else "")
    if verify.get("first"):
        verify_text += f"; first problem: {verify['first']}"
    elif verify.get("stderr"):
        verify_text += "; stderr: " + " ".join(str(verify["stderr"]).split())[:300]
    findings = ", ".join(f"{k} x{n}" for k, n in sorted(trial.findings.items()))
    return (
        f"- seed {trial.seed} (family {trial.family}): {trial.description}\n"
        f"  - {trial.outcome}: {what + ' ' if what else ''}at {cause.get('op')}: {message}\n"
        f"  - all findings: {findings or 'none'}\n"
        f"  - verify: {verify_text[:500]} (exit {verify.get('exit')})\n"
        f"  - inspect: {_cli_text(trial.inspect)}\n"
        f"  - not allowed: {'; '.join(trial.problems)}\n"
        f"  - `{repro_command(trial.engine, trial.seed)}`"
    )


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
