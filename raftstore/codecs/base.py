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


def log_from_fields(fields: Any, codec: str) -> Log:
    """Build a `Log` from a decoded 6-sequence, checking every field's type.

    Raises `CorruptionError` when *fields* is not
    ``(index, term, type, data, extensions, appended_at)`` with the right types.
    """
    try:
        index, term, kind, data, extensions, appended_at = fields
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"{codec} record is not a 6-field log entry: {fields!r:.80}") from exc
    if (
        type(index) is not int
        or type(term) is not int
        or type(kind) is not int
        or type(data) is not bytes
        or type(extensions) is not bytes
        or type(appended_at) is not int
        or index < 1
        or term < 0
        or not 0 <= kind < len(_LOG_TYPES)
    ):
        raise CorruptionError(
            f"{codec} record has fields of the wrong type or range: {fields!r:.80}"
        )
    return Log(index, term, _LOG_TYPES[kind], data, extensions, appended_at)
