"""What the ``raftstore`` command does, as plain functions: inspect, verify, migrate, compact.

Each function takes a target (``ENGINE://PATH`` or a plain path), does its
work through the public store API and returns a dataclass the command
prints (as text or JSON). None of them ever creates a store at a target it
was asked to read: a target that holds no store raises `StoreNotFoundError`.

- `inspect_store`: what a store holds (read-only).
- `verify_store`: read every record, report damage and gaps (read-only).
- `migrate_store`: copy a store into a new one of any engine and codec.
- `compact_store`: give disk space back after truncation.
- `conformance_module`: the test module ``raftstore conformance`` runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import shutil
import string
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import raftstore
from raftstore._directory import MARKER_FILE, fsync_directory, make_directory, read_marker
from raftstore._open import creating_unfinished, mark_ready, reporting_damage
from raftstore._records import index_key
from raftstore.engines.base import LOGS, STABLE
from raftstore.errors import (
    ConfigurationError,
    CorruptionError,
    InvalidLogError,
    LogNotFoundError,
    RaftStoreError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from raftstore.log import Log, validate_log
from raftstore.registry import create_codec, get_engine_class
from raftstore.store import RaftStore
from raftstore.url import parse_target

__all__ = [
    "UINT64_STABLE_KEYS",
    "CompactReport",
    "DestinationExistsError",
    "MigrationError",
    "MigrationReport",
    "StoreReport",
    "VerifyReport",
    "compact_store",
    "conformance_module",
    "describe_key",
    "describe_value",
    "inspect_store",
    "migrate_store",
    "open_existing",
    "verify_store",
]

#: Stable keys hashicorp/raft stores with ``set_uint64``: shown as integers,
#: and `verify_store` reports them when they are not 8 bytes.
UINT64_STABLE_KEYS = frozenset({b"CurrentTerm", b"LastVoteTerm"})
#: Keys read per engine scan (bounded memory on any store size).
_CHUNK = 4096
#: Most problems a verify report lists one by one (all are counted).
_MAX_LISTED_PROBLEMS = 100
#: Logs copied per destination batch during a migration.
_MIGRATE_BATCH = 1024
_log = logging.getLogger("raftstore")
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


class DestinationExistsError(RaftStoreError, FileExistsError):
    """The migration destination already exists; migrate only creates new stores."""


class MigrationError(RaftStoreError):
    """The copy did not match the source; the destination was removed."""


# -- opening -------------------------------------------------------------------


def _store_path(target: str | os.PathLike[str], *, new: bool = False) -> Path:
    parsed = parse_target(target)
    if parsed.path is None:
        name = parsed.engine or "memory"
        what = "nothing written there would survive" if new else "there is nothing here to read"
        raise ConfigurationError(
            f"{name}:// has no path: an in-memory store lives only inside the process that"
            f" opened it, so {what}; give a store directory"
        )
    return parsed.path


def open_existing(target: str | os.PathLike[str], *, read_only: bool, **options: Any) -> RaftStore:
    """Open the store at *target*, which must already exist; never creates one.

    Raises `StoreNotFoundError` when *target* holds no store (no
    ``raftstore.json``), `StoreLockedError` naming the holder when another
    process owns it, and whatever `raftstore.open` raises otherwise.
    """
    path = _store_path(target)
    if not path.is_dir() or read_marker(path) is None:
        if not path.exists():
            what = "does not exist"
        elif not path.is_dir():
            what = "is a file; a store is a directory"
        else:
            what = f"holds no {MARKER_FILE}"
        raise StoreNotFoundError(f"no raftstore store at {path} ({what})")
    return raftstore.open(target, read_only=read_only, create=False, **options)


# -- presenting keys and values ------------------------------------------------


def describe_key(key: bytes) -> str:
    """*key* as text when it is printable ASCII, else ``0x`` and its hex."""
    text = key.decode("ascii", "replace")
    if key and set(text) <= _PRINTABLE:
        return text
    return "0x" + key.hex()


def describe_value(key: bytes, value: bytes) -> dict[str, Any]:
    """A JSON-ready view of a stable value: its size, hex, text and (8 bytes) integer."""
    view: dict[str, Any] = {"size": len(value), "hex": value.hex(), "text": None, "uint64": None}
    if len(value) == 8:
        view["uint64"] = int.from_bytes(value, "big")
    if key not in UINT64_STABLE_KEYS:
        text = value.decode("utf-8", "replace")
        if set(text) <= _PRINTABLE:
            view["text"] = text
    return view


def _describe_log(log: Log, preview: int = 48) -> dict[str, Any]:
    data = log.data[:preview]
    text = data.decode("utf-8", "replace")
    return {
        "index": log.index,
        "term": log.term,
        "type": log.type.name,
        "size": len(log.data),
        "data_hex": data.hex(),
        "data_text": text if set(text) <= _PRINTABLE else None,
        "truncated": len(log.data) > preview,
        "extensions_size": len(log.extensions),
        "appended_at": log.appended_at,
    }


# -- scanning ------------------------------------------------------------------


def _scan_keys(store: RaftStore, namespace: str) -> Iterator[bytes]:
    """Every key of *namespace* in order, read in bounded chunks through the engine."""
    low = b"\x00"
    while True:
        chunk = store.kv.scan(namespace, low, None, _CHUNK)
        for key, _ in chunk:
            yield key
        if len(chunk) < _CHUNK:
            return
        low = chunk[-1][0] + b"\x00"


def _log_indexes(store: RaftStore) -> Iterator[int | bytes]:
    """Every log key as an index, or the raw key when it is not 8 bytes."""
    for key in _scan_keys(store, LOGS):
        yield int.from_bytes(key, "big") if len(key) == 8 else key


def _tail(store: RaftStore, count: int) -> list[dict[str, Any]]:
    """The last *count* stored entries, oldest first; a damaged one shows its error."""
    logs: list[dict[str, Any]] = []
    high = store.last_index()
    while len(logs) < count and high > 0:
        # Seek to the previous key: with gaps, stepping index by index could take forever.
        key = store.kv.last_key(LOGS, index_key(high))
        if key is None or len(key) != 8:
            break
        index = int.from_bytes(key, "big")
        try:
            logs.append(_describe_log(store.get_log(index)))
        except LogNotFoundError:
            pass  # deleted by a writer since the seek
        except CorruptionError as exc:
            logs.append({"index": index, "error": str(exc)})
        high = index - 1
    logs.reverse()
    return logs


# -- inspect -------------------------------------------------------------------


@dataclass(slots=True)
class StoreReport:
    """What `inspect_store` found."""

    target: str
    path: str
    engine: str
    codec: str
    format: int
    first_index: int
    last_index: int
    entries: int
    disk_usage: int
    stable: list[dict[str, Any]] = field(default_factory=list)
    tail: list[dict[str, Any]] = field(default_factory=list)
    #: Reader slots of dead processes the engine cleared when it opened the
    #: store (LMDB: a process killed inside a read pins old pages until then).
    stale_readers_cleared: int = 0
    #: The commit index persisted with the last ``store_logs`` (0 when none).
    commit_index: int = 0
    #: `RaftStore.stats` of the handle inspect opened.
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def inspect_store(target: str | os.PathLike[str], *, tail: int = 5) -> StoreReport:
    """Describe the store at *target*: engine, codec, bounds, size, stable state, last *tail* logs.

    Opens the store read-only (beside a running writer where the engine
    allows it). Raises `StoreNotFoundError` when there is no store.
    """
    with open_existing(target, read_only=True) as store:
        assert store.path is not None
        first, last = store.first_index(), store.last_index()
        entries = sum(1 for _ in _scan_keys(store, LOGS))
        stable = []
        for key, value in store.iter_stable():
            stable.append(
                {"key": describe_key(key), "key_hex": key.hex(), **describe_value(key, value)}
            )
        logs = _tail(store, tail)
        return StoreReport(
            target=str(target),
            path=str(store.path),
            engine=store.engine,
            codec=store.codec,
            format=store.format_version,
            first_index=first,
            last_index=last,
            entries=entries,
            disk_usage=store.disk_usage(),
            stable=stable,
            tail=logs,
            stale_readers_cleared=int(getattr(store.kv, "stale_readers_cleared", 0)),
            commit_index=store.get_commit_index(),
            stats=store.stats(),
        )


# -- verify --------------------------------------------------------------------


@dataclass(slots=True)
class VerifyReport:
    """What `verify_store` found; ``ok`` is True when nothing is wrong."""

    target: str
    engine: str | None = None
    codec: str | None = None
    first_index: int = 0
    last_index: int = 0
    entries: int = 0
    stable_keys: int = 0
    #: ``[low, high]`` ranges of missing indexes between first and last, inclusive.
    gaps: list[list[int]] = field(default_factory=list)
    #: Damaged records: ``{"where": "log 12", "problem": "..."}``, at most 100 listed.
    problems: list[dict[str, str]] = field(default_factory=list)
    #: Every damaged record, including those not listed.
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        """True when no record is damaged and the index range has no gap."""
        return self.problem_count == 0 and not self.gaps

    def add_problem(self, where: str, problem: str) -> None:
        """Count a damaged record and list it while the list is short."""
        self.problem_count += 1
        if len(self.problems) < _MAX_LISTED_PROBLEMS:
            self.problems.append({"where": where, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data, with ``ok``."""
        return {"ok": self.ok, **asdict(self)}


def verify_store(
    target: str | os.PathLike[str], *, progress: Callable[[int, int], None] | None = None
) -> VerifyReport:
    """Read and check every record of the store at *target*.

    Checks the marker file and the meta record (by opening the store), every
    log record (checksum, decoding, the index it holds, field ranges), every
    stable record (checksum; ``CurrentTerm``/``LastVoteTerm`` are 8 bytes),
    and the index range for gaps. Damage goes into the report, never raises;
    a store that cannot be opened at all because its meta record is damaged
    is reported as one problem. *progress(done, total)* is called as log
    indexes are covered. Raises `StoreNotFoundError`, `StoreLockedError` and
    the like when the store cannot be looked at.
    """
    report = VerifyReport(target=str(target))
    try:
        with reporting_damage():
            store = open_existing(target, read_only=True)
    except (CorruptionError, UnsupportedFormatError) as exc:
        # Damage that stops the store from opening: its meta record, its
        # marker, or the engine's own files (a block checksum, a lost file).
        text = str(exc)
        where = "meta" if "meta record" in text else "engine files"
        report.add_problem(where, text)
        return report
    with store:
        report.engine, report.codec = store.engine, store.codec
        _verify_logs(store, report, progress)
        for key in _scan_keys(store, STABLE):
            report.stable_keys += 1
            where = f"stable key {describe_key(key)}"
            try:
                value = store.get(key)
            except CorruptionError as exc:
                report.add_problem(where, str(exc))
                continue
            if value is not None and key in UINT64_STABLE_KEYS and len(value) != 8:
                report.add_problem(where, f"holds {len(value)} bytes, not an 8-byte uint64")
    return report


def _verify_logs(
    store: RaftStore, report: VerifyReport, progress: Callable[[int, int], None] | None
) -> None:
    first, last = store.first_index(), store.last_index()
    report.first_index, report.last_index = first, last
    total = last - first + 1 if last else 0
    previous = 0
    for index in _log_indexes(store):
        if isinstance(index, bytes):
            report.add_problem(f"log key 0x{index.hex()}", "log key is not 8 bytes")
            continue
        report.entries += 1
        if previous and index > previous + 1:
            report.gaps.append([previous + 1, index - 1])
        previous = index
        where = f"log {index}"
        try:
            log = store.get_log(index)
            validate_log(log)
        except LogNotFoundError:
            report.entries -= 1  # deleted by a writer since the scan saw it
            continue
        except (CorruptionError, InvalidLogError) as exc:
            problem = str(exc)
            report.add_problem(where, problem.removeprefix(f"{where}: "))
        if progress is not None and report.entries % _CHUNK == 0:
            progress(index - first + 1, total)
    if progress is not None:
        progress(total, total)


# -- migrate -------------------------------------------------------------------


@dataclass(slots=True)
class MigrationReport:
    """What `migrate_store` copied and checked."""

    source: str
    destination: str
    source_engine: str
    source_codec: str
    engine: str
    codec: str
    first_index: int
    last_index: int
    entries: int
    stable_keys: int
    #: Entries read back from the destination and compared with the source.
    sampled: int

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def migrate_store(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    engine: str | None = None,
    codec: str | None = None,
    sample: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> MigrationReport:
    """Copy the store at *source* into a new store at *destination*.

    The destination's engine is the one its URL names, else *engine*, else
    the source's; its codec is *codec*, else the source's. It must not exist
    (an empty directory is accepted). The source is opened with its writer
    lock held, so no node writes to it during the copy (`StoreLockedError`
    while one runs). Logs and stable state are copied in batches, synced,
    then the destination is reopened and checked: bounds, entry and stable
    counts, every stable value, and the first, last and *sample* random
    entries. On any failure (a mismatch raises `MigrationError`) the
    destination is removed and the source is untouched.
    *progress(done, total)* is called as log indexes are covered.

    *source* may also be a PySyncObj ``FileJournal`` file (with its
    ``.meta``): its entries, term, vote and commit index are copied as a
    `raftstore.integrations.pysyncobj.RaftStoreJournal` keeps them, onto the
    default engine unless one is named (this needs pysyncobj installed).
    """
    destination_path = _store_path(destination, new=True)
    if destination_path.exists() and not (
        destination_path.is_dir() and not any(destination_path.iterdir())
    ):
        raise DestinationExistsError(
            f"destination {destination_path} already exists; migrate only creates a new store:"
            " choose a new path (or remove it first)"
        )
    dest_engine = parse_target(destination).engine
    if dest_engine is not None and engine is not None and dest_engine != engine:
        raise ConfigurationError(
            f"destination names engine {dest_engine!r} but --engine {engine!r} was given"
        )
    parent = destination_path.parent
    make_directory(parent)
    # The copy is built beside the destination under a temporary name, marked
    # unfinished until it is complete and checked, then renamed into place:
    # a migrate killed at any point leaves nothing that opens as a store.
    building = Path(tempfile.mkdtemp(prefix=f".{destination_path.name}.migrating-", dir=parent))
    try:
        os.chmod(building, 0o755)
        fsync_directory(parent)
        file_journal = isinstance(source, str | os.PathLike) and os.path.isfile(source)
        if file_journal:
            # A PySyncObj FileJournal (a file; a store is a directory): read into memory,
            # checked record by record; the file itself is only read.
            from raftstore.integrations.pysyncobj.filejournal import import_file_journal

            opened = raftstore.open("memory://", codec=codec)
            import_file_journal(source, opened)
        else:
            opened = open_existing(source, read_only=False)
        with opened as src:
            chosen_engine = (
                dest_engine or engine or (raftstore.DEFAULT_ENGINE if file_journal else src.engine)
            )
            chosen_codec = codec or src.codec
            report = _copy_and_check(
                src, building, chosen_engine, chosen_codec, sample, progress, str(source)
            )
        if file_journal:
            report.source_engine = "pysyncobj-filejournal"
        report.destination = str(destination)
        try:
            # Onto a missing path or an empty directory; never onto anything else.
            os.rename(building, destination_path)
        except OSError as exc:
            raise DestinationExistsError(
                f"cannot move the finished copy into {destination_path}: {exc};"
                " nothing was written there"
            ) from exc
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    _log.info("migrated %s to %s (%d entries)", source, destination, report.entries)
    return report


def _copy_and_check(
    src: RaftStore,
    destination: Path,
    engine: str,
    codec: str,
    sample: int,
    progress: Callable[[int, int], None] | None,
    source_name: str,
) -> MigrationReport:
    first, last = src.first_index(), src.last_index()
    total = last - first + 1 if last else 0
    rng = random.Random(0x5EED)
    kept: list[Log] = []
    entries = 0
    stable: dict[bytes, bytes] = {}
    with (
        creating_unfinished(),
        raftstore.open(destination, engine=engine, codec=codec, sync=False) as dst,
    ):
        for key, value in src.iter_stable():
            dst.set(key, value)
            stable[key] = value
        batch: list[Log] = []
        for log in src.iter_logs(first, last) if last else ():
            batch.append(log)
            entries += 1
            # Reservoir sampling: every entry has the same chance to be checked.
            if len(kept) < sample:
                kept.append(log)
            else:
                slot = rng.randrange(entries)
                if slot < sample:
                    kept[slot] = log
            if len(batch) == _MIGRATE_BATCH:
                dst.store_logs(batch)
                batch = []
                if progress is not None:
                    progress(log.index - first + 1, total)
        # The commit index goes with the last batch, as raft stages it.
        commit = src.get_commit_index()
        if commit and batch:
            dst.stage_commit_index(commit)
        dst.store_logs(batch)
        dst.sync()
        if progress is not None:
            progress(total, total)
    mark_ready(Path(destination), engine)
    if last:
        kept.extend((src.get_log(first), src.get_log(last)))
    with open_existing(destination, read_only=True) as check:
        mismatches: list[str] = []
        if (check.first_index(), check.last_index()) != (first, last):
            mismatches.append(
                f"bounds {check.first_index()}..{check.last_index()} != {first}..{last}"
            )
        copied = sum(1 for _ in _scan_keys(check, LOGS))
        if copied != entries:
            mismatches.append(f"{copied} entries != {entries}")
        copied_stable = dict(check.iter_stable())
        if copied_stable != stable:
            mismatches.append(f"stable state differs ({len(copied_stable)} vs {len(stable)} keys)")
        for log in kept:
            try:
                copy = check.get_log(log.index)
            except LogNotFoundError:
                mismatches.append(f"log {log.index} is missing")
                continue
            if copy != log:
                mismatches.append(f"log {log.index} differs")
        if mismatches:
            raise MigrationError(
                "the copy does not match the source (" + "; ".join(mismatches[:5]) + ");"
                " the destination was removed"
            )
        return MigrationReport(
            source=source_name,
            destination=str(destination),
            source_engine=src.engine,
            source_codec=src.codec,
            engine=check.engine,
            codec=check.codec,
            first_index=first,
            last_index=last,
            entries=entries,
            stable_keys=len(stable),
            sampled=len({log.index for log in kept}),
        )


# -- compact -------------------------------------------------------------------


@dataclass(slots=True)
class CompactReport:
    """Disk usage of a store before and after `compact_store`."""

    target: str
    engine: str
    before: int
    after: int

    @property
    def reclaimed(self) -> int:
        """Bytes given back (negative if the engine's files grew)."""
        return self.before - self.after

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data, with ``reclaimed``."""
        return {**asdict(self), "reclaimed": self.reclaimed}


def compact_store(target: str | os.PathLike[str]) -> CompactReport:
    """Give the store's free space back to the file system and report its size before and after.

    LMDB is rewritten by a compacting copy; RocksDB and LevelDB compact
    their whole key range. Needs the writer lock (`StoreLockedError` while a
    node runs); raises `StoreNotFoundError` when there is no store.
    """
    with open_existing(target, read_only=False) as store:
        before = store.disk_usage()
        store.compact()
        store.sync()
        return CompactReport(
            target=str(target), engine=store.engine, before=before, after=store.disk_usage()
        )


# -- conformance ---------------------------------------------------------------


def conformance_module(
    engine: str, *, codec: str | None = None, imports: tuple[str, ...] = ()
) -> str:
    """Source of a pytest module running `raftstore.testing.RaftStoreConformance` on *engine*.

    Every store the suite opens uses *codec* unless the test names its own.
    *imports* are modules imported first (e.g. one that registers the engine);
    one that cannot be imported raises `ConfigurationError`. Raises
    `UnknownEngineError`/`EngineUnavailableError` for an engine that cannot
    be used here, and the same for *codec*.
    """
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import module {module!r}: {exc}") from exc
    engine_class = get_engine_class(engine)
    if codec is not None:
        create_codec(codec)
    target = "tmp_path / 'store'" if engine_class.persistent else f"{engine + '://'!r}"
    lines = [
        '"""Generated by `raftstore conformance`: the conformance suite on one engine."""',
        "",
        *(f"import {module}" for module in imports),
        "import pytest",
        "",
        "import raftstore",
        "from raftstore.testing import RaftStoreConformance",
        "",
        "",
        "class TestConformance(RaftStoreConformance):",
        "    @pytest.fixture",
        "    def open_store(self, tmp_path):",
        "        def open_store(**kw):",
        f"            kw.setdefault('codec', {codec!r})",
        f"            return raftstore.open({target}, engine={engine!r}, **kw)",
        "",
        "        return open_store",
        "",
    ]
    return "\n".join(lines)
