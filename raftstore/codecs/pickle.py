"""The pickle codec: a pickled tuple per entry.

Before loading, every record's opcodes are checked against the few that
`PickleCodec.encode` writes (integers, bytes, a tuple): anything else, such
as an opcode that imports or calls code, or one that sizes the unpickler's
memo from the data, is a `CorruptionError`. Pickle remains the codec to use
only for stores whose files you trust; msgpack is the default.
"""

from __future__ import annotations

import pickle
from typing import ClassVar

from raftstore.codecs.base import bounded_error, log_from_fields
from raftstore.errors import CorruptionError
from raftstore.log import Log

__all__ = ["PickleCodec"]

# Opcodes `encode` can write (protocol 5, a tuple of ints and bytes), with
# the size of their fixed argument, or of the length prefix of a variable one.
_FIXED_ARGUMENT = {
    0x80: 1,  # PROTO
    0x95: 8,  # FRAME
    0x4B: 1,  # BININT1
    0x4D: 2,  # BININT2
    0x4A: 4,  # BININT
    0x94: 0,  # MEMOIZE (the memo grows by one per opcode, never by a number in the data)
    0x68: 1,  # BINGET (the same bytes object twice, e.g. empty data and extensions)
    0x6A: 4,  # LONG_BINGET
    0x28: 0,  # MARK
    0x74: 0,  # TUPLE
    0x2E: 0,  # STOP
}
_LENGTH_PREFIXED = {
    0x8A: 1,  # LONG1
    0x43: 1,  # SHORT_BINBYTES
    0x42: 4,  # BINBYTES
    0x8E: 8,  # BINBYTES8
}
_STOP = 0x2E


def _check_opcodes(data: bytes | memoryview) -> None:
    """Raise `CorruptionError` unless *data* holds only opcodes `encode` writes, ending in STOP."""
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    fixed = _FIXED_ARGUMENT.get
    prefixed = _LENGTH_PREFIXED.get
    from_bytes = int.from_bytes
    position = 0
    while position < size:
        opcode = data[position]
        position += 1
        step = fixed(opcode)
        if step is not None:
            if opcode == _STOP:
                if position == size:
                    return
                break
            position += step
            continue
        width = prefixed(opcode)
        if width is None:
            raise CorruptionError(
                f"pickle record holds opcode 0x{opcode:02x} at byte {position - 1},"
                " which raftstore never writes"
            )
        position += width + from_bytes(data[position : position + width], "little")
    raise CorruptionError("pickle record does not end where its STOP opcode is")


class _Parts(list[bytes]):
    """A write-only file that keeps each write as it was given."""

    def write(self, data: bytes) -> int:
        self.append(data)
        return len(data)


class PickleCodec:
    """``(index, term, type, data, extensions, appended_at)`` pickled with protocol 5."""

    name: ClassVar[str] = "pickle"

    def encode(self, log: Log) -> bytes:
        """Encode *log* as a tuple of plain ints and bytes (never the dataclass)."""
        return pickle.dumps(
            (log.index, log.term, int(log.type), log.data, log.extensions, log.appended_at),
            protocol=5,
        )

    def encode_parts(self, log: Log) -> list[bytes]:
        """``encode(log)`` as pieces whose concatenation it is, ``log.data`` itself among them.

        The pickler hands a large bytes object to its file as it is, so
        collecting its writes gives the pickle without copying the data.
        """
        parts = _Parts()
        pickle.Pickler(parts, protocol=5).dump(
            (log.index, log.term, int(log.type), log.data, log.extensions, log.appended_at)
        )
        return parts

    def decode(self, data: bytes | memoryview) -> Log:
        """Decode one record; raises `CorruptionError` for anything else."""
        _check_opcodes(data)
        try:
            fields = pickle.loads(data)
        except Exception as exc:  # unpickling can raise nearly anything
            raise CorruptionError(f"pickle record cannot be decoded: {bounded_error(exc)}") from exc
        return log_from_fields(fields, "pickle")
