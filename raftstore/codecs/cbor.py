"""The CBOR codec (``cbor2``, extra ``raftstore[cbor]``): a 6-element CBOR array."""

from __future__ import annotations

from typing import ClassVar

import cbor2

from raftstore.codecs.base import log_from_fields
from raftstore.errors import CorruptionError
from raftstore.log import Log

__all__ = ["CborCodec"]


class CborCodec:
    """``[index, term, type, data, extensions, appended_at]`` as a CBOR array."""

    name: ClassVar[str] = "cbor"

    def __init__(self) -> None:
        self._dumps = cbor2.dumps
        self._loads = cbor2.loads

    def encode(self, log: Log) -> bytes:
        """Encode *log*; the store has already validated it."""
        result: bytes = self._dumps(
            (log.index, log.term, int(log.type), log.data, log.extensions, log.appended_at)
        )
        return result

    def decode(self, data: bytes | memoryview) -> Log:
        """Decode one record; raises `CorruptionError` for anything else."""
        try:
            fields = self._loads(bytes(data) if isinstance(data, memoryview) else data)
        except Exception as exc:  # cbor2 raises several unrelated types
            raise CorruptionError(f"cbor record cannot be decoded: {exc!r:.120}") from exc
        if isinstance(fields, list):
            fields = tuple(fields)
        return log_from_fields(fields, "cbor")
