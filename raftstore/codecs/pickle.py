"""The pickle codec: a pickled tuple per entry.

Pickle runs code while loading: use it only for stores whose files you trust
as much as your own code.
"""

from __future__ import annotations

import pickle
from typing import ClassVar

from raftstore.codecs.base import log_from_fields
from raftstore.errors import CorruptionError
from raftstore.log import Log

__all__ = ["PickleCodec"]


class PickleCodec:
    """``(index, term, type, data, extensions, appended_at)`` pickled with protocol 5."""

    name: ClassVar[str] = "pickle"

    def encode(self, log: Log) -> bytes:
        """Encode *log* as a tuple of plain ints and bytes (never the dataclass)."""
        return pickle.dumps(
            (log.index, log.term, int(log.type), log.data, log.extensions, log.appended_at),
            protocol=5,
        )

    def decode(self, data: bytes | memoryview) -> Log:
        """Decode one record; raises `CorruptionError` for anything else."""
        try:
            fields = pickle.loads(data)
        except Exception as exc:  # unpickling can raise nearly anything
            raise CorruptionError(f"pickle record cannot be decoded: {exc!r:.120}") from exc
        return log_from_fields(fields, "pickle")
