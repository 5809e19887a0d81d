"""The msgpack codec (the default): a 6-element msgpack array per entry."""

from __future__ import annotations

from typing import ClassVar

import msgpack

from raftstore.codecs.base import log_from_fields
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

    def decode(self, data: bytes | memoryview) -> Log:
        """Decode one record; raises `CorruptionError` for anything else."""
        try:
            # raw=False and strict_map_key=True are msgpack's defaults;
            # spelling them out costs a third of the call.
            fields = self._unpackb(data, use_list=False)
        except Exception as exc:  # msgpack raises many unrelated types
            raise CorruptionError(f"msgpack record cannot be decoded: {exc}") from exc
        return log_from_fields(fields, "msgpack")
