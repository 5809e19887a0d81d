"""The msgpack codec (the default): a 6-element msgpack array per entry."""

from __future__ import annotations

from typing import ClassVar

import msgpack

from raftstore.codecs.base import bounded_error, log_from_fields
from raftstore.errors import CorruptionError
from raftstore.log import Log

__all__ = ["MsgpackCodec"]


class MsgpackCodec:
    """``[index, term, type, data, extensions, appended_at]`` as msgpack, bin type for bytes."""

    name: ClassVar[str] = "msgpack"

    def __init__(self) -> None:
        # One reused Packer: building one per call doubles the encode cost.
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self._unpackb = msgpack.unpackb

    def encode(self, log: Log) -> bytes:
        """Encode *log*; the store has already validated it."""
        result: bytes = self._pack(
            (log.index, log.term, int(log.type), log.data, log.extensions, log.appended_at)
        )
        return result

    def encode_parts(self, log: Log) -> list[bytes]:
        """``encode(log)`` as pieces whose concatenation it is, ``log.data`` itself among them.

        Lets the store frame a large entry with one copy of its data, not two.
        """
        pack = self._pack
        size = len(log.data)
        if size < 256:
            header = b"\xc4" + size.to_bytes(1, "big")
        elif size < 65536:
            header = b"\xc5" + size.to_bytes(2, "big")
        else:
            header = b"\xc6" + size.to_bytes(4, "big")
        head = b"\x96" + pack(log.index) + pack(log.term) + pack(int(log.type)) + header
        return [head, log.data, pack(log.extensions) + pack(log.appended_at)]

    def decode(self, data: bytes | memoryview) -> Log:
        """Decode one record; raises `CorruptionError` for anything else."""
        try:
            # raw=False and strict_map_key=True are msgpack's defaults;
            # spelling them out costs a third of the call.
            fields = self._unpackb(data, use_list=False)
        except Exception as exc:  # msgpack raises many unrelated types
            raise CorruptionError(
                f"msgpack record cannot be decoded: {bounded_error(exc)}"
            ) from exc
        return log_from_fields(fields, "msgpack")
