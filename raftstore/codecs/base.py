"""The codec interface and the field check shared by every codec.

A codec turns a `Log` into bytes and back. It never sees keys, checksums or
the store: the store frames every record with a checksum before it reaches
the engine, so a codec only ever decodes bytes that were written by itself
(or that are corrupt in a way the checksum did not catch).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from raftstore.errors import CorruptionError
from raftstore.log import Log, LogType

__all__ = ["Codec", "log_from_fields"]

_LOG_TYPES: tuple[LogType, ...] = tuple(LogType)


@runtime_checkable
class Codec(Protocol):
    """Encodes a validated `Log` to bytes and decodes it back, field for field.

    ``decode`` raises `CorruptionError` for bytes that are not a record,
    never the codec library's own exception. Instances need not be
    thread-safe: a store calls ``encode`` only under its write lock.
    """

    name: ClassVar[str]

    def encode(self, log: Log) -> bytes: ...

    def decode(self, data: bytes | memoryview) -> Log: ...


_LOG_TYPE_COUNT = len(_LOG_TYPES)


def log_from_fields(fields: Any, codec: str) -> Log:
    """Build a `Log` from a decoded 6-sequence, checking every field's type.

    Raises `CorruptionError` when *fields* is not
    ``(index, term, type, data, extensions, appended_at)`` with the right types.
    """
    try:
        index, term, kind, data, extensions, appended_at = fields
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"{codec} record is not a 6-field log entry: {fields!r:.80}") from exc
    # One flat condition: this runs for every entry read.
    if (
        type(index) is int
        and type(term) is int
        and type(kind) is int
        and type(data) is bytes
        and type(extensions) is bytes
        and type(appended_at) is int
        and index > 0
        and term >= 0
        and 0 <= kind < _LOG_TYPE_COUNT
    ):
        return Log(index, term, _LOG_TYPES[kind], data, extensions, appended_at)
    raise CorruptionError(f"{codec} record has fields of the wrong type or range: {fields!r:.80}")
