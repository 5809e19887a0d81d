"""Path mode: ``SyncObjConf(journalFile=P)`` gets a `RaftStoreJournal` in the store ``P.raftstore``.

For programs that configure their journal by path and cannot be edited
(Patroni builds its ``SyncObjConf`` inline). `install` is process-wide; the
``raftstore pysyncobj-run`` launcher calls it before it runs the program.
On first start, a PySyncObj ``FileJournal`` at P is imported into the new
store (P and P.meta are left as they are).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import raftstore
from raftstore._directory import DirectoryLock
from raftstore.errors import ConfigurationError, StorageError
from raftstore.integrations.pysyncobj import hooks
from raftstore.integrations.pysyncobj.filejournal import is_file_journal
from raftstore.integrations.pysyncobj.journal import RaftStoreJournal
from raftstore.registry import create_codec, get_engine_class

__all__ = [
    "STORE_SUFFIX",
    "install",
    "installed_settings",
    "journal_store_path",
    "open_path_journal",
    "remove_journal",
    "uninstall",
]

#: Path mode keeps the journal configured as ``journalFile=P`` in the store ``P + STORE_SUFFIX``.
STORE_SUFFIX = ".raftstore"

_log = logging.getLogger("raftstore.integrations.pysyncobj")
_lock = threading.Lock()
_settings: dict[str, Any] | None = None


def journal_store_path(journal_file: str | os.PathLike[str]) -> str:
    """The store path mode uses for ``journalFile=journal_file``: that path + ``".raftstore"``."""
    return os.fspath(journal_file) + STORE_SUFFIX


def install(engine: str = "lmdb", codec: str | None = None, **open_options: Any) -> None:
    """From now on, a ``SyncObj`` whose conf names ``journalFile=P`` journals to ``P.raftstore``.

    The store is ``raftstore.open(P + ".raftstore", engine=engine,
    codec=codec, sync=False, **open_options)`` (``sync=False``: the journal's
    group commit syncs it; pass ``sync=True`` to sync every write). The
    journal's dump file is the conf's ``fullDumpFile``; the journal owns the
    store and closes it when its SyncObj is destroyed. When the store does
    not exist yet and P holds a PySyncObj ``FileJournal``, its entries, term,
    vote and commit index are first copied into the store (as ``raftstore
    migrate P P.raftstore`` does; P and P.meta are left untouched). A
    ``journalFile`` of None keeps PySyncObj's in-memory journal, and a
    `RaftStoreJournal` object is used as given.

    Process-wide. Calling it again with the same arguments does nothing;
    with different ones it raises `ConfigurationError` (journals already
    open keep their store). Raises `UnknownEngineError`,
    `UnknownCodecError` or `EngineUnavailableError` for an engine or codec
    that cannot be used here.
    """
    global _settings
    if not isinstance(engine, str):
        raise ConfigurationError(f"engine must be an engine name, got {engine!r:.40}")
    if engine == "memory":
        raise ConfigurationError(
            "path mode keeps journals on disk; for an in-memory journal leave journalFile=None"
        )
    get_engine_class(engine)
    if codec is not None:
        create_codec(codec)
    settings: dict[str, Any] = {"engine": engine, "codec": codec, **open_options}
    settings.setdefault("sync", False)
    with _lock:
        if _settings is not None:
            if _settings == settings:
                return
            raise ConfigurationError(
                f"raftstore path mode is already installed with {_describe(_settings)};"
                f" it cannot be installed again with {_describe(settings)} in the same process"
            )
        hooks.set_path_journal_factory(_journal_for_conf)
        _settings = settings
    _log.info("raftstore path mode installed: %s", _describe(settings))


def uninstall() -> None:
    """Undo `install`: ``journalFile=P`` means PySyncObj's ``FileJournal`` again.

    For tests and tools; journals already open keep their store.
    """
    global _settings
    with _lock:
        hooks.set_path_journal_factory(None)
        _settings = None


def installed_settings() -> dict[str, Any] | None:
    """The arguments `install` was called with (``sync`` included), or None when not installed."""
    with _lock:
        return None if _settings is None else dict(_settings)


def _describe(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in settings.items())


def _journal_for_conf(journal_file: str, conf: Any) -> RaftStoreJournal:
    settings = installed_settings()
    if settings is None:  # uninstalled between the check and now
        raise ConfigurationError("raftstore path mode is not installed")
    dump_file = getattr(conf, "fullDumpFile", None)
    if dump_file is None:
        _log.warning(
            "SyncObjConf(journalFile=%r) has no fullDumpFile: after log compaction a restarted"
            " node has nothing to restore its state from",
            journal_file,
        )
    return open_path_journal(journal_file, dump_file=dump_file, **settings)


def open_path_journal(
    journal_file: str | os.PathLike[str],
    *,
    dump_file: str | os.PathLike[str] | None = None,
    engine: str = "lmdb",
    codec: str | None = None,
    sync: bool = False,
    **open_options: Any,
) -> RaftStoreJournal:
    """The journal path mode gives ``journalFile=journal_file``, without installing anything.

    Opens (creating, and importing a ``FileJournal`` at *journal_file* on
    first start) the store `journal_store_path` names; the journal owns it.
    Raises `StoreLockedError` when that store is open elsewhere, in this
    process too (a second journal on one path), and `CorruptionError` when
    the ``FileJournal`` to import is damaged (nothing is created then).
    """
    journal_file = os.fspath(journal_file)
    store_path = journal_store_path(journal_file)
    if not os.path.lexists(store_path) and is_file_journal(journal_file):
        from raftstore import admin

        report = admin.migrate_store(journal_file, store_path, engine=engine, codec=codec)
        _log.warning(
            "imported PySyncObj FileJournal %s (%d entries) into %s; %s and %s.meta are left"
            " as they were: remove them once you no longer want to go back",
            journal_file,
            report.entries,
            store_path,
            journal_file,
            journal_file,
        )
    store = raftstore.open(store_path, engine=engine, codec=codec, sync=sync, **open_options)
    try:
        return RaftStoreJournal(store, dump_file=dump_file, owns_store=True)
    except BaseException:
        store.close()
        raise


def remove_journal(journal_file: str | os.PathLike[str]) -> None:
    """Remove everything journalling to ``journalFile=journal_file`` kept: the store and the files.

    Removes the store ``journal_file + ".raftstore"`` (a directory, which
    ``os.remove`` cannot remove), and a ``FileJournal`` at *journal_file* with
    its ``.meta`` (left there by an import, they would otherwise be imported
    again into the next new store). The dump file (``fullDumpFile``) is not
    touched. Missing pieces are fine. Raises `StoreLockedError` while a
    journal (in this process or another) has the store open, and
    `ConfigurationError` when ``journal_file + ".raftstore"`` is not a
    directory.
    """
    journal_file = os.fspath(journal_file)
    store_path = Path(journal_store_path(journal_file))
    if store_path.is_symlink() or (store_path.exists() and not store_path.is_dir()):
        raise ConfigurationError(f"{store_path} is not a store directory; not removing it")
    if store_path.is_dir():
        lock = DirectoryLock(store_path)
        try:
            shutil.rmtree(store_path)
        except OSError as exc:
            raise StorageError(f"cannot remove {store_path}: {exc}") from exc
        finally:
            lock.release()
    for path in (journal_file, journal_file + ".meta"):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot remove {path}: {exc}") from exc
