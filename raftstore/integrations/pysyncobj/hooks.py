"""The hooks that wire `RaftStoreJournal` into PySyncObj, process-wide and idempotently.

PySyncObj has no constructor argument for a journal: ``SyncObj.__init__``
calls ``createJournal(conf.journalFile)``, a name bound inside
``pysyncobj.syncobj``. `install_hooks` replaces that name, wraps
``SyncObj.__init__`` (so path mode can read the rest of the conf and close a
journal whose SyncObj failed to start) and wraps ``TCPTransport.send`` and
``TCPTransport._onTick`` (group commit).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pysyncobj import syncobj as _syncobj_module
from pysyncobj.journal import Journal
from pysyncobj.transport import TCPTransport

from raftstore.integrations.pysyncobj.journal import RaftStoreJournal, _live_journals

__all__ = ["PathJournalFactory", "install_hooks", "set_path_journal_factory"]

_HOOK_MARK = "_raftstore_hook"
# Messages that promise nothing about the sender's log: a leader's entries
# (it may replicate before its own write; the commit index waits for it)
# and the forwarding of client commands.
_SEND_BEFORE_SYNC = frozenset({"append_entries", "apply_command", "apply_command_response"})
_hook_lock = threading.Lock()

#: ``factory(journal_file, conf)`` -> the journal for ``SyncObjConf(journalFile=journal_file)``.
PathJournalFactory = Callable[[str, Any], Journal]
_path_journal_factory: PathJournalFactory | None = None


@dataclass
class _Construction:
    """The conf of the ``SyncObj`` being constructed, and the journal made for it."""

    conf: Any
    journal: Journal | None = None


_constructing: contextvars.ContextVar[_Construction | None] = contextvars.ContextVar(
    "raftstore_pysyncobj_constructing", default=None
)


def set_path_journal_factory(factory: PathJournalFactory | None) -> None:
    """Make ``journalFile=<path>`` confs use *factory* (None: PySyncObj's own journals again).

    Used by `raftstore.integrations.pysyncobj.install`; installs the hooks first.
    """
    global _path_journal_factory
    install_hooks()
    _path_journal_factory = factory


def install_hooks() -> None:
    """Teach PySyncObj to use a `RaftStoreJournal` and to make it durable in time.

    Process-wide and idempotent. ``SyncObjConf(journalFile=journal)`` with a
    `RaftStoreJournal` then uses that journal; any other ``journalFile``
    (None, a path) keeps PySyncObj's own behaviour, unless path mode is
    installed (`raftstore.integrations.pysyncobj.install`). Two hooks on
    ``TCPTransport`` (and every subclass that does not override them)
    flush the node's own journal:

    - ``send``: before a message leaves the node, so no acknowledgement or
      vote gets ahead of the log and vote it reports. Exceptions, which wait
      only for a pending term, vote or truncation: a leader's
      ``append_entries`` (Raft allows a leader to replicate before its own
      disk write; Ongaro's thesis, 10.2.1) and the forwarding of client
      commands, which report nothing durable.
    - ``_onTick`` (run at the end of every SyncObj tick, before it waits for
      the network): so a leader syncs its new entries while its followers
      sync theirs, instead of one after the other. The commit index never
      passes an entry that is not synced (`RaftStoreJournal.setRaftCommitIndex`).
    """
    with _hook_lock:
        create = _syncobj_module.createJournal
        if not getattr(create, _HOOK_MARK, False):
            _syncobj_module.createJournal = _make_create_journal(create)
        init = _syncobj_module.SyncObj.__init__
        if not getattr(init, _HOOK_MARK, False):
            _syncobj_module.SyncObj.__init__ = _make_init(init)
        send = TCPTransport.send
        if not getattr(send, _HOOK_MARK, False):
            TCPTransport.send = _make_send(send)
        on_tick = TCPTransport._onTick
        if not getattr(on_tick, _HOOK_MARK, False):
            TCPTransport._onTick = _make_on_tick(on_tick)


def _make_create_journal(previous: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(previous)
    def create_journal(journalFile: object = None) -> Any:
        if isinstance(journalFile, RaftStoreJournal):
            return journalFile
        factory = _path_journal_factory
        if factory is not None and isinstance(journalFile, str | os.PathLike):
            construction = _constructing.get()
            journal = factory(
                os.fspath(journalFile), None if construction is None else construction.conf
            )
            if construction is not None:
                construction.journal = journal
            return journal
        return previous(journalFile)

    setattr(create_journal, _HOOK_MARK, True)
    return create_journal


def _flush_journal_of(transport: object, message: object = None) -> None:
    """Flush the journal of *transport*'s SyncObj if it has anything pending."""
    journal = getattr(getattr(transport, "_syncObj", None), "_SyncObj__raftLog", _live_journals)
    if isinstance(journal, RaftStoreJournal):
        if journal._dirty and (
            journal._barrier
            or type(message) is not dict
            or message.get("type") not in _SEND_BEFORE_SYNC
        ):
            journal.flush()
    elif journal is _live_journals:
        # A PySyncObj whose internals moved: flush every journal rather than none.
        for each in list(_live_journals):
            if each._dirty:
                each.flush()


def _make_send(previous: Callable[..., bool]) -> Callable[..., bool]:
    @functools.wraps(previous)
    def send(self: Any, node: Any, message: Any) -> bool:
        _flush_journal_of(self, message)
        return previous(self, node, message)

    setattr(send, _HOOK_MARK, True)
    return send


def _make_on_tick(previous: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(previous)
    def on_tick(self: Any) -> None:
        _flush_journal_of(self)
        previous(self)

    setattr(on_tick, _HOOK_MARK, True)
    return on_tick


def _make_init(previous: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(previous)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        conf = kwargs["conf"] if "conf" in kwargs else args[2] if len(args) > 2 else None
        construction = _Construction(conf)
        token = _constructing.set(construction)
        try:
            previous(self, *args, **kwargs)
        except BaseException:
            # A SyncObj that failed to start is never destroyed: release the
            # store its journal opened, or a retry in this process finds it locked.
            journal = construction.journal
            if isinstance(journal, RaftStoreJournal) and journal.owns_store:
                with contextlib.suppress(Exception):
                    journal.store.close()
            raise
        finally:
            _constructing.reset(token)

    setattr(__init__, _HOOK_MARK, True)
    return __init__
