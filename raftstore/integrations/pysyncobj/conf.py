"""`syncobj_conf`: a ``SyncObjConf`` whose journal is a `RaftStoreJournal` on a given store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pysyncobj.config import SyncObjConf

from raftstore.errors import ConfigurationError
from raftstore.integrations.pysyncobj.journal import RaftStoreJournal
from raftstore.store import RaftStore

__all__ = ["default_dump_file", "syncobj_conf"]


def default_dump_file(store: RaftStore) -> str | None:
    """Where `syncobj_conf` puts PySyncObj's ``fullDumpFile``: next to the store.

    ``<store path>.pysyncobj-dump``; None for an in-memory store (PySyncObj
    then keeps the dump in memory).
    """
    if store.path is None:
        return None
    path = Path(store.path)
    return str(path.with_name(path.name + ".pysyncobj-dump"))


def syncobj_conf(store: RaftStore, **kwargs: Any) -> SyncObjConf:
    """A ``SyncObjConf`` whose journal is a `RaftStoreJournal` on *store*.

    *kwargs* are ``SyncObjConf`` fields. ``fullDumpFile`` defaults to
    `default_dump_file` (without one, a cluster restarted after log
    compaction comes back with nothing applied). ``journalFile`` is set
    here and cannot be passed. The journal is ``conf.journalFile`` (its
    `RaftStoreJournal.fsync_count` says how many fsyncs it made). Open the
    store with ``sync=False``: group commit syncs it once per batch.
    """
    if "journalFile" in kwargs:
        raise ConfigurationError(
            "syncobj_conf sets journalFile to the raftstore journal; do not pass it"
        )
    if "fullDumpFile" not in kwargs:
        kwargs["fullDumpFile"] = default_dump_file(store)
    journal = RaftStoreJournal(store, dump_file=kwargs["fullDumpFile"])
    conf = SyncObjConf(journalFile=journal, **kwargs)
    return conf
