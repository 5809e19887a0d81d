"""The LMDB engine (py-lmdb), raftstore's embedded default.

One named LMDB database per namespace in one environment. Every write batch
is one LMDB write transaction: committed whole or aborted whole. With
``sync=True`` LMDB fsyncs the data and the meta page at every commit. With
``sync=False`` (``MDB_NOSYNC``) commits reach the page cache only, and
`sync` flushes them: a killed process loses nothing (the page cache
survives it), but a crash of the machine before a `sync` may lose the
latest commits and, as LMDB's own documentation warns, may corrupt the
database.

LMDB's map is a fixed-size window on the file; when a write does not fit,
the transaction aborts (nothing half-written), the map is doubled and the
write is retried, up to ``max_map_size``. The file never shrinks on its
own: `compact` rewrites it.

Never use LMDB's append mode here: it silently skips a key that is not
greater than the last one, which is exactly a Raft conflict rewrite.

LMDB trusts its file: a truncated ``data.mdb`` is mapped past its end (the
process dies of SIGBUS), an empty one is silently initialised as a new
database, and its meta pages carry no checksum (a damaged transaction id
makes it fall back to the previous commit). So before LMDB maps an existing
file, `check_data_file` reads the two meta pages and the pages they point
to itself and raises `CorruptionError` on what it finds wrong; see its
docstring for what it can and cannot see.
"""

from __future__ import annotations

import contextlib
import errno
import operator
import os
import shutil
import stat
import struct
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import lmdb

from raftstore.engines.base import LOGS, NAMESPACES, Engine, EngineOption, WriteBatch, between
from raftstore.errors import CorruptionError, StorageError, StoreLockedError

__all__ = ["DataFileSummary", "LmdbEngine", "check_data_file"]

_MIB = 1024 * 1024
_namespace_of = operator.itemgetter(0)
_key_value_of = operator.itemgetter(1, 2)

#: What to do about a damaged or missing data file, in every such message.
_REMEDY = (
    "restore the store's files from a backup, or remove the store and rejoin the"
    " cluster as a new node"
)
_DATA_FILE = "data.mdb"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

# -- LMDB's on-disk layout (lmdb.h / mdb.c of LMDB 0.9, native byte order) -----
#
# A page starts with MDB_page's header: mp_pgno (pgno_t = size_t), mp_pad,
# mp_flags, mp_lower, mp_upper (uint16; an overflow page holds its page count
# as uint32 where mp_lower/mp_upper are). Pages 0 and 1 are meta pages: the
# header, then MDB_meta: mm_magic, mm_version (uint32), mm_address (void *),
# mm_mapsize (size_t), mm_dbs[2] (MDB_db of the free-page and main
# databases; the free one's md_pad holds the page size), mm_last_pg
# (pgno_t), mm_txnid (size_t). Commit N writes meta page N % 2.
_MDB_MAGIC = 0xBEEFC0DE
_MDB_DATA_VERSION = 1
_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_META = 0x01, 0x02, 0x04, 0x08
_F_BIGDATA, _F_SUBDATA = 0x01, 0x02
_PAGE_HEADER = struct.Struct("@NHHHH")
_OVERFLOW_COUNT = struct.Struct("@I")
_OVERFLOW_COUNT_AT = struct.calcsize("@NHH")
_DB = struct.Struct("@IHHNNNNN")
_META = struct.Struct("@IIPN" + "IHHNNNNN" * 2 + "NN")
_NODE = struct.Struct("@HHHH")
_SIZE_T = struct.Struct("@N")
_PTR = struct.Struct("@H")
_P_INVALID = (1 << (8 * _SIZE_T.size)) - 1
_MIN_PAGE, _MAX_PAGE = 512, 0x10000
#: Deepest B-tree believed (LMDB's own cursor stack is 32 deep).
_MAX_DEPTH = 32
#: Most pages read to list free pages when the file is shorter than its meta says.
_MAX_FREE_WALK = 1 << 16


@dataclass(frozen=True, slots=True)
class _Db:
    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int

    @classmethod
    def unpack(cls, fields: tuple[int, ...]) -> _Db:
        _pad, flags, depth, branch, leaf, overflow, entries, root = fields
        return cls(flags, depth, branch, leaf, overflow, entries, root)


@dataclass(frozen=True, slots=True)
class _Meta:
    page: int
    page_size: int
    free: _Db
    main: _Db
    last_pg: int
    txnid: int


@dataclass(frozen=True, slots=True)
class DataFileSummary:
    """What `check_data_file` read from a healthy data file."""

    page_size: int
    txnid: int
    last_page: int
    size: int
    #: Root page of each named database (``None`` when it is empty).
    roots: dict[str, int | None]


class _DataFile:
    """Bounded reads of an LMDB data file, every problem a `CorruptionError`."""

    def __init__(self, fd: int, path: Path, size: int) -> None:
        self.fd, self.path, self.size = fd, path, size
        self.page_size = 0

    def damaged(self, problem: str) -> CorruptionError:
        return CorruptionError(f"LMDB data file {self.path} {problem}: {_REMEDY}")

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset + length > self.size:
            raise self.damaged(
                f"is too short: {what} lies at bytes {offset}..{offset + length} but the file"
                f" holds {self.size} bytes (truncated?)"
            )
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as exc:
            raise StorageError(f"cannot read LMDB data file {self.path}: {exc}") from exc
        if len(data) != length:
            raise self.damaged(f"shrank while being read ({what})")
        return data

    def meta(self, page: int, page_size: int) -> _Meta:
        raw = self.read(page * page_size, _PAGE_HEADER.size + _META.size, f"meta page {page}")
        _pgno, _pad, flags, _lower, _upper = _PAGE_HEADER.unpack_from(raw)
        fields = _META.unpack_from(raw, _PAGE_HEADER.size)
        magic, version = fields[0], fields[1]
        if not flags & _P_META or magic != _MDB_MAGIC:
            zeroed = " (it is all zeros)" if not any(raw) else ""
            raise self.damaged(f"has a damaged meta page {page}: not an LMDB meta page{zeroed}")
        if version != _MDB_DATA_VERSION:
            raise self.damaged(
                f"has meta page {page} of LMDB data version {version}, not {_MDB_DATA_VERSION}"
                " (written by an incompatible LMDB, or damaged)"
            )
        free, main = _Db.unpack(fields[4:12]), _Db.unpack(fields[12:20])
        size = fields[4]  # the free database's md_pad is mm_psize
        if page == 0:
            if not (_MIN_PAGE <= size <= _MAX_PAGE and size & (size - 1) == 0):
                raise self.damaged(f"has a damaged meta page 0: page size {size}")
        elif size != page_size:
            raise self.damaged(
                f"has a damaged meta page {page}: page size {size}, meta page 0 says {page_size}"
            )
        return _Meta(page, size, free, main, fields[20], fields[21])

    def page(self, pgno: int, meta: _Meta, what: str) -> bytes:
        if not 2 <= pgno <= meta.last_pg:
            raise self.damaged(
                f"is damaged: {what} points to page {pgno}, outside pages 2..{meta.last_pg}"
                f" of meta page {meta.page}"
            )
        raw = self.read(pgno * self.page_size, self.page_size, f"page {pgno} ({what})")
        header_pgno, _pad, flags, _lower, _upper = _PAGE_HEADER.unpack_from(raw)
        if header_pgno != pgno or not flags & (_P_BRANCH | _P_LEAF | _P_OVERFLOW):
            zeroed = "it is all zeros" if not any(raw) else f"its header says page {header_pgno}"
            raise self.damaged(f"is damaged: page {pgno} ({what}) is not a B-tree page ({zeroed})")
        return raw

    def nodes(self, raw: bytes, pgno: int) -> Iterator[tuple[int, int, int, bytes, int]]:
        """``(lo, hi, flags, key, data_offset)`` of each node of a branch or leaf page."""
        _pgno, _pad, _flags, lower, upper = _PAGE_HEADER.unpack_from(raw)
        count = (lower - _PAGE_HEADER.size) // 2
        if lower < _PAGE_HEADER.size or lower > upper or upper > len(raw):
            raise self.damaged(f"is damaged: page {pgno} has a bad node table")
        for i in range(count):
            (at,) = _PTR.unpack_from(raw, _PAGE_HEADER.size + 2 * i)
            if at < upper or at + _NODE.size > len(raw):
                raise self.damaged(f"is damaged: page {pgno} node {i} lies outside its page")
            lo, hi, flags, ksize = _NODE.unpack_from(raw, at)
            start = at + _NODE.size
            if start + ksize > len(raw):
                raise self.damaged(f"is damaged: page {pgno} node {i} key overruns its page")
            yield lo, hi, flags, raw[start : start + ksize], start + ksize

    def check_root(self, db: _Db, meta: _Meta, what: str) -> None:
        if db.root == _P_INVALID:
            if db.depth or db.entries:
                raise self.damaged(
                    f"has a damaged meta page {meta.page}: {what} has no root but"
                    f" {db.entries} entries"
                )
            return
        raw = self.page(db.root, meta, f"root of {what}")
        flags = _PAGE_HEADER.unpack_from(raw)[2]
        if not 1 <= db.depth <= _MAX_DEPTH or (db.depth == 1) != bool(flags & _P_LEAF):
            raise self.damaged(
                f"is damaged: root page {db.root} of {what} does not match its depth {db.depth}"
            )

    def leaves(self, db: _Db, meta: _Meta, what: str, budget: list[int]) -> Iterator[bytes]:
        """Every leaf page of *db*, in key order (at most ``budget[0]`` pages read)."""
        if db.root == _P_INVALID:
            return
        stack = [(db.root, 1)]
        while stack:
            pgno, depth = stack.pop()
            budget[0] -= 1
            if budget[0] < 0 or depth > _MAX_DEPTH:
                raise self.damaged(f"is damaged: {what} has more pages than believable")
            raw = self.page(pgno, meta, what)
            flags = _PAGE_HEADER.unpack_from(raw)[2]
            if flags & _P_LEAF:
                yield raw
                continue
            if not flags & _P_BRANCH:
                raise self.damaged(f"is damaged: page {pgno} of {what} is not a B-tree page")
            children = [
                lo | hi << 16 | node_flags << 32
                for lo, hi, node_flags, _key, _at in self.nodes(raw, pgno)
            ]
            stack.extend((child, depth + 1) for child in reversed(children))

    def last_free_txnid(self, meta: _Meta) -> int:
        """The highest transaction id with a record in *meta*'s free-page database (0: none)."""
        db = meta.free
        if db.root == _P_INVALID:
            return 0
        pgno = db.root
        for _ in range(_MAX_DEPTH):
            raw = self.page(pgno, meta, f"free-page database of meta page {meta.page}")
            nodes = list(self.nodes(raw, pgno))
            if not nodes:
                return 0
            lo, hi, flags, key, _at = nodes[-1]
            if _PAGE_HEADER.unpack_from(raw)[2] & _P_LEAF:
                if len(key) != _SIZE_T.size:
                    raise self.damaged(f"is damaged: free-page record key of {len(key)} bytes")
                return int(_SIZE_T.unpack(key)[0])
            pgno = lo | hi << 16 | flags << 32
        raise self.damaged("is damaged: its free-page database is deeper than believable")

    def free_pages(self, meta: _Meta) -> set[int]:
        """Every page *meta*'s free-page database lists."""
        free: set[int] = set()
        budget = [_MAX_FREE_WALK]
        what = f"free-page database of meta page {meta.page}"
        for raw in self.leaves(meta.free, meta, what, budget):
            pgno = _PAGE_HEADER.unpack_from(raw)[0]
            for lo, hi, flags, _key, at in self.nodes(raw, pgno):
                size = lo | hi << 16
                if flags & _F_BIGDATA:
                    (first,) = _SIZE_T.unpack_from(raw, at)
                    head = self.page(first, meta, what)
                    (count,) = _OVERFLOW_COUNT.unpack_from(head, _OVERFLOW_COUNT_AT)
                    if count * self.page_size < size + _PAGE_HEADER.size:
                        raise self.damaged(f"is damaged: overflow page {first} is too short")
                    value = self.read(
                        first * self.page_size + _PAGE_HEADER.size, size, f"overflow page {first}"
                    )
                else:
                    value = raw[at : at + size]
                ids = len(value) // _SIZE_T.size
                listed = struct.unpack_from(f"@{ids}N", value)
                if not listed or listed[0] != ids - 1:
                    raise self.damaged(f"is damaged: a free-page list in page {pgno}")
                free.update(listed[1:])
        return free

    def named_roots(self, meta: _Meta) -> dict[str, _Db]:
        roots: dict[str, _Db] = {}
        budget = [64]
        for raw in self.leaves(meta.main, meta, "main database", budget):
            pgno = _PAGE_HEADER.unpack_from(raw)[0]
            for _lo, _hi, flags, key, at in self.nodes(raw, pgno):
                if flags & _F_SUBDATA and at + _DB.size <= len(raw):
                    roots[key.decode("utf-8", "replace")] = _Db.unpack(_DB.unpack_from(raw, at))
        return roots


def check_data_file(path: Path) -> DataFileSummary:
    """Check an existing LMDB data file before LMDB maps it; raise `CorruptionError` if damaged.

    Reads, without changing anything: both meta pages (LMDB's magic number,
    data version, page size), the file's size against the pages the newest
    commit uses (pages past the end must be free ones LMDB never wrote: a
    mapped page past the end kills the process with SIGBUS), the roots of
    every database (a zeroed or misplaced root page), and the agreement of
    the two meta pages, which carry no checksum: their transaction ids must
    be consecutive (each commit writes the page of its id's parity), the
    newer must not use fewer pages than the older, and each one's free-page
    database must not hold records of transactions newer than its own (and
    the newer must still hold the older's own record, which LMDB cannot
    reuse yet). That catches a flipped bit in either transaction id that
    would make LMDB fall back to the previous commit, except where a
    commit freed no page (then two valid-looking histories cannot be told
    apart), where the older id is 2 or less (a compaction leaves such
    pairs), and a damaged field that still points at a valid page.

    It does not read every page: a zeroed or damaged page deeper in a tree
    is only found when LMDB reads it (an error, or an assertion that aborts
    the process; ``raftstore verify`` reads in a child process for that).
    """
    file = path / _DATA_FILE
    try:
        fd = os.open(file, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError as exc:
        what = "is missing" if path.is_dir() else "is missing (and so is its directory)"
        raise CorruptionError(
            f"LMDB data file {file} {what}: the store exists (its marker says so) but its"
            f" data is gone; {_REMEDY}"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptionError(
                f"LMDB data file {file} is a symbolic link; raftstore never follows links to"
                f" its own files: put the real file there, or {_REMEDY}"
            ) from exc
        raise StorageError(f"cannot open LMDB data file {file}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CorruptionError(f"LMDB data file {file} is not a regular file; {_REMEDY}")
        return _check_open_file(_DataFile(fd, file, info.st_size))
    finally:
        os.close(fd)


def _check_open_file(data: _DataFile) -> DataFileSummary:
    if data.size == 0:
        raise data.damaged("is empty (0 bytes): its data is gone (LMDB would start it afresh)")
    first = data.meta(0, 0)
    psize = data.page_size = first.page_size
    second = data.meta(1, psize)
    if data.size % psize:
        raise data.damaged(
            f"is {data.size} bytes, not a whole number of {psize}-byte pages (truncated?)"
        )
    older, newer = sorted((first, second), key=lambda m: m.txnid)
    # Commit N writes meta page N % 2, so page 0 holds even ids and page 1
    # odd ones (a fresh file holds 0 on both). The two are consecutive,
    # except after a compaction: the copy holds ids 0 and 1 (2 after
    # `_match_reader_parity`), and while another process keeps LMDB's lock
    # file open the next commit continues from the lock file's id.
    if first.txnid == second.txnid:
        sane = first.txnid == 0
    else:
        sane = (
            first.txnid % 2 == 0
            and second.txnid % 2 == 1
            and (newer.txnid - older.txnid == 1 or older.txnid <= 2)
        )
    if not sane:
        raise data.damaged(
            f"has meta pages that disagree: transaction ids {first.txnid} (meta page 0) and"
            f" {second.txnid} (meta page 1) are not consecutive commits (a damaged meta page;"
            " LMDB would silently use the wrong one)"
        )
    if older.last_pg > newer.last_pg:
        raise data.damaged(
            f"has meta pages that disagree: the older (meta page {older.page}) uses"
            f" {older.last_pg + 1} pages, the newer only {newer.last_pg + 1}"
        )
    for meta in (older, newer):
        data.check_root(meta.free, meta, f"the free-page database of meta page {meta.page}")
        data.check_root(meta.main, meta, f"the main database of meta page {meta.page}")
        last_free = data.last_free_txnid(meta)
        if last_free > meta.txnid:
            raise data.damaged(
                f"has a damaged meta page {meta.page}: it says transaction {meta.txnid} but"
                f" its free pages were recorded by transaction {last_free} (a damaged"
                " transaction id; LMDB would silently fall back to an older commit)"
            )
    if (
        older.txnid
        and newer.txnid == older.txnid + 1
        and data.last_free_txnid(older) == older.txnid
        and data.last_free_txnid(newer) < older.txnid
    ):
        raise data.damaged(
            f"has meta pages that disagree: meta page {newer.page} (transaction {newer.txnid})"
            f" has lost the free pages of transaction {older.txnid} (a damaged transaction id)"
        )
    needed = (newer.last_pg + 1) * psize
    if data.size < needed:
        missing = set(range(data.size // psize, newer.last_pg + 1))
        if not missing <= data.free_pages(newer):
            raise data.damaged(
                f"is too short: {data.size} bytes, but its newest commit uses {needed} (truncated?)"
            )
    roots: dict[str, int | None] = {}
    for name, db in data.named_roots(newer).items():
        data.check_root(db, newer, f"database {name!r}")
        roots[name] = None if db.root == _P_INVALID else db.root
    return DataFileSummary(psize, newer.txnid, newer.last_pg, data.size, roots)


def _meta_txnids(path: Path) -> tuple[int, int] | None:
    """The transaction ids of both meta pages as one read finds them (None: unreadable)."""
    try:
        with open(path / _DATA_FILE, "rb", buffering=0) as f:
            head = f.read(_PAGE_HEADER.size + _META.size)
            psize = _META.unpack_from(head, _PAGE_HEADER.size)[4]
            if not _MIN_PAGE <= psize <= _MAX_PAGE:
                return None
            f.seek(psize)
            second = f.read(_PAGE_HEADER.size + _META.size)
        return (
            int(_META.unpack_from(head, _PAGE_HEADER.size)[-1]),
            int(_META.unpack_from(second, _PAGE_HEADER.size)[-1]),
        )
    except (OSError, struct.error):
        return None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path / _DATA_FILE, follow_symlinks=False)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class _SharedEnv:
    """One LMDB environment shared by every handle on it in this process.

    LMDB must not open the same environment twice in one process (its
    locks are per process), so a read-only handle opened beside this
    process's writer reuses the writer's environment. ``lock`` keeps
    read-only handles' transactions apart from the writer's map resizing.
    """

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: dict[str, lmdb._Database],
        read_only: bool,
        identity: tuple[int, int] | None,
    ) -> None:
        self.env = env
        self.dbs = dbs
        self.read_only = read_only
        self.users = 1
        self.lock = threading.RLock()
        #: (device, inode) of the data file this environment maps: a
        #: read-only environment reopens when the writer replaces the file.
        self.identity = identity
        #: Reader slots of dead processes cleared so far (``reader_check``).
        self.stale_readers_cleared = 0


_shared_envs: dict[str, _SharedEnv] = {}
_shared_envs_lock = threading.Lock()


def _forget_inherited_envs() -> None:
    # A forked child must never use or close its parent's environments
    # (closing one would clear the parent's reader slots): abandon them.
    global _shared_envs, _shared_envs_lock
    _shared_envs = {}
    _shared_envs_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_envs)


class LmdbEngine(Engine):
    """LMDB through py-lmdb: memory-mapped B+tree, readers never block the writer."""

    name: ClassVar[str] = "lmdb"
    persistent: ClassVar[bool] = True
    supports_read_only: ClassVar[bool] = True
    options: ClassVar[Mapping[str, EngineOption]] = {
        "map_size": EngineOption(
            int,
            64 * _MIB,
            "initial map size in bytes; grown automatically",
            between(_MIB, 1 << 48, "bytes"),
        ),
        "max_map_size": EngineOption(
            int,
            1 << 40,
            "largest map size growth may reach, in bytes",
            between(_MIB, 1 << 48, "bytes"),
        ),
        "max_readers": EngineOption(
            int,
            126,
            "most concurrent read transactions (threads and processes)",
            between(1, 1 << 16),
        ),
    }

    def __init__(
        self,
        path: Path | None,
        *,
        sync: bool,
        read_only: bool,
        options: Mapping[str, Any],
        create: bool = True,
    ) -> None:
        super().__init__(path, sync=sync, read_only=read_only, options=options, create=create)
        if path is None:
            raise StorageError("the lmdb engine needs a directory")
        self._options = dict(options)
        self._max_map_size = max(options["max_map_size"], options["map_size"])
        self._writes_since_check = 0
        self._last_check = time.monotonic()
        self._key = os.path.realpath(path)
        self._data_file = os.path.join(str(path), _DATA_FILE)
        with _shared_envs_lock:
            shared = _shared_envs.get(self._key)
            if shared is None:
                env, dbs, identity = self._open(path, options["map_size"])
                shared = _shared_envs[self._key] = _SharedEnv(env, dbs, read_only, identity)
                self._shared = shared
                self._clear_stale_readers()
            elif shared.read_only and not read_only:
                raise StoreLockedError(
                    f"store {path} is open read-only in this process; close those"
                    " handles before opening it for writing"
                )
            else:
                shared.users += 1
        self._shared = shared
        self._env, self._dbs = shared.env, shared.dbs
        # One read transaction reused between writes: beginning one per get
        # costs more than the get. A writer drops it before writing, so it
        # never pins old pages (which would make the file grow). Read-only
        # handles may see another process's writes, so they never reuse one.
        self._reader: lmdb.Transaction | None = None

    #: Write transactions between two `clear_stale_readers` calls (also
    #: called after ``READER_CHECK_SECONDS`` of writes, on open and on compact).
    READER_CHECK_EVERY: ClassVar[int] = 256
    READER_CHECK_SECONDS: ClassVar[float] = 5.0

    def _open(
        self, path: Path, map_size: int
    ) -> tuple[lmdb.Environment, dict[str, lmdb._Database], tuple[int, int] | None]:
        """Check the data file, then open it; returns the file's (device, inode) too."""
        # A read-only handle beside a live writer reads pages the writer is
        # changing (a commit writes its pages before its meta page, and after
        # a compaction it may reuse the older meta page's) or a file compact
        # just replaced: damage is real only when the same failure stays
        # while nothing is committed, for a while.
        seen: tuple[object, ...] | None = None
        stayed = 0
        for _attempt in range(60):
            identity = _file_identity(path)
            if self.create and not (path / _DATA_FILE).exists():
                break  # a new store: LMDB creates the file
            if self.create and (path / _DATA_FILE).stat().st_size == 0:
                break  # a creation killed before LMDB wrote its first pages
            if not path.is_dir():
                raise CorruptionError(
                    f"LMDB data directory {path} is missing: the store exists (its marker"
                    f" says so) but its data is gone; {_REMEDY}"
                )
            before = _meta_txnids(path)
            try:
                check_data_file(path)
            except CorruptionError as exc:
                if not self.read_only:
                    raise
                now = (_meta_txnids(path), _file_identity(path), str(exc))
                stayed = stayed + 1 if now == seen and now[:2] == (before, identity) else 0
                seen = now
                if stayed >= 4:
                    raise
                time.sleep(0.02 * stayed or 0.001)
                continue
            break
        # (Sixty reads raced with commits: a writer committing this fast
        # opened the same file itself, with these checks.)
        env, dbs = self._open_env(path, map_size)
        if identity is None:
            identity = _file_identity(path)
        return env, dbs, identity

    def _open_env(
        self, path: Path, map_size: int
    ) -> tuple[lmdb.Environment, dict[str, lmdb._Database]]:
        try:
            env = lmdb.open(
                str(path),
                map_size=map_size,
                subdir=True,
                readonly=self.read_only,
                create=self.create,
                sync=self.sync_writes,
                metasync=self.sync_writes,
                max_dbs=len(NAMESPACES),
                max_readers=self._options["max_readers"],
                lock=True,
                readahead=False,
            )
        except lmdb.Error as exc:
            if "already open" in str(exc):
                raise StoreLockedError(
                    f"LMDB environment {path} is already open in this process;"
                    " close the other handle first"
                ) from exc
            if isinstance(exc, (lmdb.InvalidError, lmdb.CorruptedError, lmdb.VersionMismatchError)):
                raise CorruptionError(
                    f"LMDB cannot open {path / _DATA_FILE}: {exc}; {_REMEDY}"
                ) from exc
            raise StorageError(f"cannot open LMDB environment {path}: {exc}") from exc
        try:
            dbs = {
                namespace: env.open_db(namespace.encode(), create=self.create)
                for namespace in NAMESPACES
            }
        except lmdb.NotFoundError as exc:
            env.close()
            raise CorruptionError(
                f"LMDB data file {path / _DATA_FILE} lacks raftstore's databases: it is"
                f" damaged or not raftstore's; {_REMEDY}"
            ) from exc
        except lmdb.Error as exc:
            env.close()
            if isinstance(exc, (lmdb.CorruptedError, lmdb.PageNotFoundError)):
                raise CorruptionError(
                    f"LMDB data file {path / _DATA_FILE} is damaged: {exc}; {_REMEDY}"
                ) from exc
            raise StorageError(f"cannot open LMDB databases in {path}: {exc}") from exc
        return env, dbs

    # -- reader slots and replaced files ---------------------------------------

    @property
    def stale_readers_cleared(self) -> int:
        """Reader slots of dead processes this process has cleared on this store."""
        return self._shared.stale_readers_cleared

    def clear_stale_readers(self) -> int:
        """Free the reader slots of processes that died inside a read; returns how many.

        A dead reader's slot pins the pages of its snapshot, so the file
        grows. Called on open, on compact and every ``READER_CHECK_EVERY``
        writes (or ``READER_CHECK_SECONDS`` of writing).
        """
        return self._clear_stale_readers()

    def _clear_stale_readers(self) -> int:
        self._writes_since_check = 0
        self._last_check = time.monotonic()
        try:
            cleared = int(self._shared.env.reader_check())
        except lmdb.Error as exc:
            raise StorageError(f"LMDB reader check of {self.path} failed: {exc}") from exc
        self._shared.stale_readers_cleared += cleared
        return cleared

    def _count_write(self) -> None:
        self._writes_since_check += 1
        if (
            self._writes_since_check >= self.READER_CHECK_EVERY
            or time.monotonic() - self._last_check >= self.READER_CHECK_SECONDS
        ):
            # The write is committed: a failed check must not report it failed.
            with contextlib.suppress(StorageError):
                self._clear_stale_readers()

    def _follow_replaced_file(self) -> None:
        """A read-only handle: reopen when the writer's `compact` replaced the data file.

        Called with the shared lock held and no transaction open in this process.
        """
        shared = self._shared
        try:
            info = os.lstat(self._data_file)
        except OSError:
            info = None  # gone: the next open says so; this snapshot still reads
        if info is None or (info.st_dev, info.st_ino) == shared.identity:
            if self._env is not shared.env:
                self._env, self._dbs = shared.env, shared.dbs
            return
        assert self.path is not None
        shared.env.close()
        env, dbs, identity = self._open(self.path, int(self._options["map_size"]))
        shared.env, shared.dbs, shared.identity = env, dbs, identity
        self._env, self._dbs = env, dbs

    def _newest_meta_root_of(self, namespace: str) -> int:
        """Root page of *namespace* in the newest commit (for tests)."""
        assert self.path is not None
        root = check_data_file(self.path).roots[namespace]
        if root is None:
            raise LookupError(f"database {namespace!r} is empty")
        return root

    def _read_txn(self) -> lmdb.Transaction:
        reader = self._reader
        if reader is not None:
            return reader
        if self.read_only:
            # Released by _done_reading; see _SharedEnv.
            self._shared.lock.acquire()
            try:
                self._follow_replaced_file()
            except BaseException:
                self._shared.lock.release()
                raise
        try:
            logs = self._dbs[LOGS]
            try:
                reader = self._env.begin(db=logs, buffers=False)
            except lmdb.MapResizedError:
                # Another process grew the map: adopt its size and retry.
                self._env.set_mapsize(0)
                reader = self._env.begin(db=logs, buffers=False)
        except lmdb.Error as exc:
            if self.read_only:
                self._shared.lock.release()
            raise StorageError(f"LMDB cannot begin a read transaction: {exc}") from exc
        if not self.read_only:
            self._reader = reader
        return reader

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.abort()

    def _done_reading(self, txn: lmdb.Transaction) -> None:
        if txn is not self._reader:
            txn.abort()
            if self.read_only:
                self._shared.lock.release()

    def get(self, namespace: str, key: bytes) -> bytes | None:
        reader = self._reader
        if reader is not None:
            try:
                # The reader's default database is the logs': passing db=
                # costs a keyword parse and a dict lookup per get.
                if namespace == LOGS:
                    value: bytes | None = reader.get(key)  # type: ignore[assignment]
                else:
                    value = reader.get(key, db=self._dbs[namespace])  # type: ignore[assignment]
                return value
            except lmdb.Error as exc:
                self._drop_reader()
                raise StorageError(f"LMDB get failed: {exc}") from exc
        with self._reading("get") as txn:
            value = txn.get(key, db=self._dbs[namespace])  # type: ignore[assignment]
        return value

    def put(self, namespace: str, key: bytes, value: bytes) -> None:
        self._drop_reader()
        while True:
            try:
                with self._env.begin(write=True, db=self._dbs[namespace]) as txn:
                    txn.put(key, value, overwrite=True, append=False)
                self._count_write()
                return
            except lmdb.MapFullError:
                self._grow_map(WriteBatch(puts=[(namespace, key, value)]))
            except lmdb.Error as exc:
                raise StorageError(f"LMDB write failed, nothing was written: {exc}") from exc

    def write(self, batch: WriteBatch) -> None:
        self._drop_reader()
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    self._apply(txn, batch)
                self._count_write()
                return
            except lmdb.MapFullError:
                self._grow_map(batch)
            except lmdb.Error as exc:
                raise StorageError(f"LMDB write failed, nothing was written: {exc}") from exc

    def _apply(self, txn: lmdb.Transaction, batch: WriteBatch) -> None:
        dbs = self._dbs
        for namespace in batch.clears:
            txn.drop(dbs[namespace], delete=False)
        for namespace, low, high in batch.deletes:
            cursor = txn.cursor(dbs[namespace])
            if cursor.set_range(low):
                # delete() moves the cursor to the next record; an empty key
                # means it ran off the end (LMDB keys are never empty).
                key = cast(bytes, cursor.key())
                while key and key <= high:
                    cursor.delete()
                    key = cast(bytes, cursor.key())
        puts = batch.puts
        if not puts:
            return
        # itemgetter/map keep the per-entry work in C: a batch of logs is
        # the hot path, and it is always one namespace.
        namespaces = set(map(_namespace_of, puts))
        for namespace in namespaces:
            items = puts if len(namespaces) == 1 else [p for p in puts if p[0] == namespace]
            txn.cursor(dbs[namespace]).putmulti(
                map(_key_value_of, items), overwrite=True, append=False
            )

    def _grow_map(self, batch: WriteBatch) -> None:
        current = int(self._env.info()["map_size"])
        needed = 2 * sum(len(key) + len(value) + 64 for _, key, value in batch.puts)
        new_size = max(current * 2, current + needed)
        if current >= self._max_map_size:
            raise StorageError(
                f"LMDB map is full at {current} bytes (max_map_size); nothing was written."
                " Open the store with a larger max_map_size option"
            )
        new_size = min(new_size, self._max_map_size)
        try:
            with self._shared.lock:
                self._env.set_mapsize(new_size)
        except lmdb.Error as exc:
            raise StorageError(f"LMDB could not grow its map to {new_size}: {exc}") from exc

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[lmdb.Transaction]:
        """A read transaction for one call; LMDB errors become `StorageError`."""
        txn = self._read_txn()
        try:
            yield txn
        except lmdb.Error as exc:
            self._drop_reader()
            raise StorageError(f"LMDB {what} failed: {exc}") from exc
        finally:
            self._done_reading(txn)

    def scan(
        self, namespace: str, low: bytes, high: bytes | None, limit: int
    ) -> list[tuple[bytes, bytes]]:
        items: list[tuple[bytes, bytes]] = []
        with self._reading("scan") as txn, txn.cursor(self._dbs[namespace]) as cursor:
            if cursor.set_range(low):
                for key, value in cast("Iterator[tuple[bytes, bytes]]", iter(cursor)):
                    if (high is not None and key > high) or len(items) >= limit:
                        break
                    items.append((key, value))
        return items

    def first_key(self, namespace: str, low: bytes = b"") -> bytes | None:
        with self._reading("seek") as txn, txn.cursor(self._dbs[namespace]) as cursor:
            found = cursor.set_range(low) if low else cursor.first()
            return cast(bytes, cursor.key()) if found else None

    def last_key(self, namespace: str, high: bytes | None = None) -> bytes | None:
        with self._reading("seek") as txn, txn.cursor(self._dbs[namespace]) as cursor:
            if high is None:
                found = cursor.last()
            elif cursor.set_range(high):
                found = cursor.key() == high or cursor.prev()
            else:
                found = cursor.last()
            return cast(bytes, cursor.key()) if found else None

    def sync(self) -> None:
        try:
            self._env.sync(True)
        except lmdb.Error as exc:
            raise StorageError(f"LMDB sync failed: {exc}") from exc

    def close(self) -> None:
        self._drop_reader()
        with _shared_envs_lock:
            self._shared.users -= 1
            if self._shared.users == 0:
                del _shared_envs[self._key]
                with self._shared.lock:
                    try:
                        self._env.close()
                    except lmdb.Error as exc:
                        raise StorageError(f"LMDB close of {self.path} failed: {exc}") from exc

    def compact(self) -> None:
        """Rewrite the data file without its free pages (LMDB never shrinks it in place).

        The compacted copy is written into a fresh directory beside the data
        directory, synced, renamed over ``data.mdb`` and the directory synced,
        so power loss leaves either the old file or the new one. Read-only
        handles in other processes notice the new file at their next read
        and reopen it.
        """
        assert self.path is not None
        if self._shared.users > 1:
            raise StoreLockedError(
                f"cannot compact {self.path} while read-only handles in this process use it"
            )
        self._drop_reader()
        self._clear_stale_readers()
        map_size = int(self._env.info()["map_size"])
        tmp = self.path.with_name(self.path.name + ".compact")
        try:
            _remove_leftover(tmp)
            os.mkdir(tmp, 0o700)  # fails on anything already there, links included
        except OSError as exc:
            raise StorageError(
                f"LMDB compaction of {self.path} failed, nothing was changed: cannot make a"
                f" fresh {tmp}: {exc}"
            ) from exc
        copied = tmp / _DATA_FILE
        try:
            last_txnid = int(self._env.info()["last_txnid"])
            self._env.copy(str(tmp), compact=True)
            _match_reader_parity(tmp, last_txnid, map_size)
            fd = os.open(copied, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except (OSError, lmdb.Error) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StorageError(
                f"LMDB compaction of {self.path} failed, nothing was changed: {exc}"
            ) from exc
        # The copy is complete and synced; swapping it in needs the
        # environment closed. Whatever happens, reopen what is in place.
        self._env.close()
        try:
            os.replace(copied, self.path / _DATA_FILE)
            _fsync_directory(self.path)
        except OSError as exc:
            raise StorageError(f"LMDB compaction of {self.path} failed: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                _fsync_directory(self.path.parent)
            self._env, self._dbs, identity = self._open(self.path, map_size)
            self._shared.env, self._shared.dbs = self._env, self._dbs
            self._shared.identity = identity


def _match_reader_parity(copy: Path, last_txnid: int, map_size: int) -> None:
    """Make the compacted copy's newest meta page the one LMDB readers will pick.

    LMDB's readers choose a meta page by the parity of the transaction id in
    the lock file, which outlives the replaced data file while other
    processes hold it open; the compacted copy restarts its ids (newest on
    meta page 1, an empty database on meta page 0). Without this, a reader
    beside the writer (and the writer itself) could see an empty store
    until the next commit. One commit that changes nothing moves the newest
    meta page over when the parities differ.
    """
    env = lmdb.open(str(copy), map_size=map_size, max_dbs=len(NAMESPACES), readahead=False)
    try:
        if (int(env.info()["last_txnid"]) - last_txnid) % 2:
            meta = env.open_db(NAMESPACES[-1].encode(), create=False)
            with env.begin(write=True, db=meta) as txn:
                txn.put(b"\x00raftstore-compact", b"")
                txn.delete(b"\x00raftstore-compact")
        env.sync(True)
    finally:
        env.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(copy / "lock.mdb")


def _remove_leftover(tmp: Path) -> None:
    """Remove what a killed compaction (or anyone) left at *tmp*, never following a link."""
    try:
        info = os.lstat(tmp)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(tmp)  # removes links inside, never what they point to
    else:
        os.unlink(tmp)  # a file or a link: the link itself, not its target
