"""PySyncObj on raftstore: a durable, crash-safe journal with group commit.

PySyncObj's own ``FileJournal`` never fsyncs, keeps the whole log in memory
and rereads the whole file at start. `RaftStoreJournal` keeps the log in a
raftstore store instead. Two ways to use it:

- **In code**: `syncobj_conf` wires a journal on a store you opened into a
  ``SyncObjConf``::

      import raftstore
      from raftstore.integrations.pysyncobj import syncobj_conf

      store = raftstore.open("lmdb:///var/lib/node1/raft", sync=False)
      conf = syncobj_conf(store, connectionRetryTime=1.0)
      obj = MySyncObj("127.0.0.1:4321", ["127.0.0.1:4322", "127.0.0.1:4323"], conf)

- **Path mode**, for programs that configure ``journalFile=P`` and cannot be
  edited (Patroni): `install` makes every such journal a `RaftStoreJournal`
  in the store ``P + ".raftstore"``, importing an existing ``FileJournal``
  at P on first start. ``raftstore pysyncobj-run PROGRAM`` does it for a
  whole program. `remove_journal` removes such a store (a directory).

Modules: `journal` (the journal and its lazy slices), `hooks` (what is
patched into PySyncObj), `conf` (`syncobj_conf`), `pathmode` (`install`),
`filejournal` (reading and importing ``FileJournal`` files), `launcher`
(``raftstore pysyncobj-run``).

Importing this package imports ``pysyncobj``; a missing package raises
`raftstore.EngineUnavailableError` naming the extra to install.
"""

from __future__ import annotations

from raftstore.errors import EngineUnavailableError

try:
    from pysyncobj import syncobj as _syncobj  # noqa: F401  # imports its journal and transport
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise EngineUnavailableError(
        "raftstore.integrations.pysyncobj needs the pysyncobj package:"
        " pip install 'raftstore[pysyncobj]'"
    ) from _exc

from raftstore.integrations.pysyncobj.conf import default_dump_file, syncobj_conf
from raftstore.integrations.pysyncobj.filejournal import (
    FileJournalContents,
    import_file_journal,
    is_file_journal,
    read_file_journal,
)
from raftstore.integrations.pysyncobj.hooks import install_hooks
from raftstore.integrations.pysyncobj.journal import (
    COMMIT_INDEX_KEY,
    TERM_VOTE_KEY,
    JournalSlice,
    RaftStoreJournal,
)
from raftstore.integrations.pysyncobj.pathmode import (
    install,
    installed_settings,
    journal_store_path,
    open_path_journal,
    remove_journal,
    uninstall,
)

__all__ = [
    "COMMIT_INDEX_KEY",
    "TERM_VOTE_KEY",
    "FileJournalContents",
    "JournalSlice",
    "RaftStoreJournal",
    "default_dump_file",
    "import_file_journal",
    "install",
    "install_hooks",
    "installed_settings",
    "is_file_journal",
    "journal_store_path",
    "open_path_journal",
    "read_file_journal",
    "remove_journal",
    "syncobj_conf",
    "uninstall",
]
