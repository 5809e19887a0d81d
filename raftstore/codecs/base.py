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

__all__ = ["Codec", "bounded_error", "describe", "log_from_fields"]

_LOG_TYPES: tuple[LogType, ...] = tuple(LogType)


@runtime_checkable
class Codec(Protocol):
    """Encodes a validated `Log` to bytes and decodes it back, field for field.

    ``decode`` raises `CorruptionError` for bytes that are not a record,
    never the codec library's own exception. Instances need not be
    thread-safe: a store calls ``encode`` only under its write lock.

    Optional: ``encode_parts(log) -> list[bytes]``, pieces whose
    concatenation is ``encode(log)`` with ``log.data`` itself among them
    (not a copy). The store then frames a large entry with one copy of its
    data instead of two.
    """

    name: ClassVar[str]

    def encode(self, log: Log) -> bytes: ...

    def decode(self, data: bytes | memoryview) -> Log: ...


_LOG_TYPE_COUNT = len(_LOG_TYPES)


_MAX_UINT64 = 2**64 - 1
_MIN_INT64 = -(2**63)
_MAX_INT64 = 2**63 - 1


def log_from_fields(fields: Any, codec: str) -> Log:
    """Build a `Log` from a decoded 6-sequence, checking every field's type and range.

    Raises `CorruptionError` when *fields* is not
    ``(index, term, type, data, extensions, appended_at)`` with the right types
    and values a store could have written.
    """
    try:
        index, term, kind, data, extensions, appended_at = fields
    except (TypeError, ValueError) as exc:
        raise CorruptionError(
            f"{codec} record is not a 6-field log entry: {describe(fields)}"
        ) from exc
    # One flat condition: this runs for every entry read.
    if (
        type(index) is int
        and type(term) is int
        and type(kind) is int
        and type(data) is bytes
        and type(extensions) is bytes
        and type(appended_at) is int
        and 0 < index <= _MAX_UINT64
        and 0 <= term <= _MAX_UINT64
        and 0 <= kind < _LOG_TYPE_COUNT
        and _MIN_INT64 <= appended_at <= _MAX_INT64
    ):
        return Log(index, term, _LOG_TYPES[kind], data, extensions, appended_at)
    raise CorruptionError(
        f"{codec} record has fields of the wrong type or range: {describe(fields)}"
    )


def describe(value: Any) -> str:
    """*value* for an error message, in at most 160 characters.

    Never calls ``repr`` on a container: a damaged record can decode to a
    structure whose repr is gigabytes long or nested past the recursion limit.
    """
    text = _describe(value, 0)
    return text if len(text) <= 160 else text[:157] + "..."


def _describe(value: Any, depth: int) -> str:
    """*value* for an error message, nested containers cut at depth 2."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        bits = int.bit_length(value)
        return str(int.__int__(value)) if bits <= 64 else f"<int of {bits} bits>"
    if isinstance(value, (bytes, bytearray, memoryview)):
        head = bytes(value[:16])
        return f"{head!r}" + (f"... ({len(value)} bytes)" if len(value) > 16 else "")
    if isinstance(value, str):
        return repr(value[:32]) + (f"... ({len(value)} characters)" if len(value) > 32 else "")
    if isinstance(value, (tuple, list)):
        if depth >= 2:
            return f"<{type(value).__name__} of {len(value)}>"
        items = ", ".join(_describe(item, depth + 1) for item in value[:6])
        more = f", ... ({len(value)} items)" if len(value) > 6 else ""
        return f"{type(value).__name__}({items}{more})"
    return f"<{type(value).__name__}>"


def bounded_error(exc: BaseException) -> str:
    """*exc*'s type and the start of its message, for an error message."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
