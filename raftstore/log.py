"""The log entry model: `Log` and `LogType`, with hashicorp/raft's values."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from raftstore.errors import InvalidLogError

__all__ = ["MAX_INDEX", "MAX_UINT64", "Log", "LogType", "is_storable", "validate_log"]

MAX_UINT64 = 2**64 - 1
MAX_INDEX = MAX_UINT64
_MIN_INT64 = -(2**63)
_MAX_INT64 = 2**63 - 1


class LogType(enum.IntEnum):
    """The kind of a log entry (values match hashicorp/raft's ``LogType``)."""

    COMMAND = 0
    NOOP = 1
    ADD_PEER_DEPRECATED = 2
    REMOVE_PEER_DEPRECATED = 3
    BARRIER = 4
    CONFIGURATION = 5


@dataclass(frozen=True, slots=True)
class Log:
    """One Raft log entry.

    Construction does not validate (decoding must stay cheap); a store
    validates every entry with `validate_log` before writing anything.

    - ``index``: 1 … 2**64-1.
    - ``term``: 0 … 2**64-1.
    - ``type``: a `LogType` (an int with a `LogType` value is accepted).
    - ``data``, ``extensions``: `bytes`.
    - ``appended_at``: nanoseconds since the Unix epoch (signed 64-bit), 0 = unset.
    """

    index: int
    term: int
    type: LogType = LogType.COMMAND
    data: bytes = b""
    extensions: bytes = b""
    appended_at: int = 0


_LOG_TYPE_VALUES = frozenset(int(t) for t in LogType)


def _plain_int(value: object) -> int | None:
    """*value*'s own int value (never a subclass's overrides), or None when not an int."""
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # int.__int__ reads the value itself: a subclass may override int(),
        # comparisons, repr and pickling, and none of that may reach the disk.
        return int.__int__(value)
    return None


def is_storable(log: object) -> bool:
    """True when *log* passes `validate_log`, checked fast for the common case.

    A plain ``int`` type value (rather than a `LogType`) is not taken by this
    fast path; callers fall back to `validate_log`, which accepts it.
    """
    return (
        type(log) is Log
        and type(log.index) is int
        and 0 < log.index <= MAX_INDEX
        and type(log.term) is int
        and 0 <= log.term <= MAX_UINT64
        and type(log.type) is LogType
        and type(log.data) is bytes
        and type(log.extensions) is bytes
        and type(log.appended_at) is int
        and _MIN_INT64 <= log.appended_at <= _MAX_INT64
    )


def validate_log(log: object, position: int | None = None) -> Log:
    """Check that *log* is a `Log` that can be stored and return it, normalised.

    The returned `Log` holds plain ``int`` index, term and timestamp and a
    `LogType`, whatever ``int`` subclasses *log* held, so what a store
    accepts it gives back equal. Raises `InvalidLogError` naming the field
    (and the batch position, when given) that is wrong.
    """
    where = "" if position is None else f" (batch position {position})"
    if not isinstance(log, Log):
        raise InvalidLogError(
            f"expected a raftstore.Log{where}, got {type(log).__name__}: {_short_repr(log)}"
        )
    index = _plain_int(log.index)
    if index is None or not 1 <= index <= MAX_INDEX:
        raise InvalidLogError(
            f"log index must be an int in 1..2**64-1{where}, got {_short_value(log.index, index)}"
        )
    term = _plain_int(log.term)
    if term is None or not 0 <= term <= MAX_UINT64:
        raise InvalidLogError(
            f"log term must be an int in 0..2**64-1{where} (index {index}),"
            f" got {_short_value(log.term, term)}"
        )
    kind = _plain_int(log.type)
    if kind is None or kind not in _LOG_TYPE_VALUES:
        raise InvalidLogError(
            f"log type must be a LogType{where} (index {index}), got {_short_value(log.type, kind)}"
        )
    if type(log.data) is not bytes:
        raise InvalidLogError(
            f"log data must be bytes{where} (index {index}), got {type(log.data).__name__};"
            " convert it with bytes(...)"
        )
    if type(log.extensions) is not bytes:
        raise InvalidLogError(
            f"log extensions must be bytes{where} (index {index}),"
            f" got {type(log.extensions).__name__}; convert it with bytes(...)"
        )
    appended_at = _plain_int(log.appended_at)
    if appended_at is None or not _MIN_INT64 <= appended_at <= _MAX_INT64:
        raise InvalidLogError(
            f"log appended_at must be int nanoseconds in the signed 64-bit range{where}"
            f" (index {index}), got {_short_value(log.appended_at, appended_at)}"
        )
    if type(log) is Log and is_storable(log):
        return log
    return Log(index, term, LogType(kind), log.data, log.extensions, appended_at)


def _short_value(value: object, as_int: int | None) -> str:
    """*value* for a message: its int value when it is one, else its type; never huge."""
    if as_int is not None:
        return str(as_int) if as_int.bit_length() < 200 else f"an int of {as_int.bit_length()} bits"
    return f"{type(value).__name__}"


def _short_repr(value: object) -> str:
    """A bounded repr: the type name of anything whose repr could be large or raise."""
    if isinstance(value, (int, str, bytes, float, type(None))):
        text = repr(value) if not isinstance(value, int) or value.bit_length() < 200 else "<int>"
        return text[:80]
    return f"<{type(value).__name__}>"
