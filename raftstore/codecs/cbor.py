"""The CBOR codec (``cbor2``, extra ``raftstore[cbor]``): a 6-element CBOR array."""

from __future__ import annotations

from typing import ClassVar

import cbor2

from raftstore.codecs.base import bounded_error, log_from_fields
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

    def encode_parts(self, log: Log) -> list[bytes]:
        """``encode(log)`` as pieces whose concatenation it is, ``log.data`` itself among them.

        Lets the store frame a large entry with one copy of its data, not two.
        """
        dumps = self._dumps
        size = len(log.data)
        if size < 24:
            header = bytes((0x40 + size,))
        elif size < 256:
            header = b"\x58" + size.to_bytes(1, "big")
        elif size < 65536:
            header = b"\x59" + size.to_bytes(2, "big")
        elif size < 2**32:
            header = b"\x5a" + size.to_bytes(4, "big")
        else:
            header = b"\x5b" + size.to_bytes(8, "big")
        head = b"\x86" + dumps(log.index) + dumps(log.term) + dumps(int(log.type)) + header
        return [head, log.data, dumps(log.extensions) + dumps(log.appended_at)]

    def decode(self, data: bytes | memoryview) -> Log:
        """Decode one record; raises `CorruptionError` for anything else."""
        try:
            fields = self._loads(bytes(data) if isinstance(data, memoryview) else data)
        except Exception as exc:  # cbor2 raises several unrelated types
            raise CorruptionError(f"cbor record cannot be decoded: {bounded_error(exc)}") from exc
        if isinstance(fields, list):
            fields = tuple(fields)
        return log_from_fields(fields, "cbor")
