"""Codecs: exact round-trips of all six fields, and CorruptionError for anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftstore import CorruptionError, Log, LogType
from raftstore.codecs.base import Codec
from raftstore.registry import create_codec

CODECS = ["msgpack", "pickle", "cbor"]

logs = st.builds(
    Log,
    index=st.integers(1, 2**64 - 1),
    term=st.integers(0, 2**64 - 1),
    type=st.sampled_from(list(LogType)),
    data=st.binary(max_size=300),
    extensions=st.binary(max_size=50),
    appended_at=st.integers(-(2**63), 2**63 - 1),
)


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> Codec:
    return create_codec(request.param)


@pytest.mark.parametrize("kind", list(LogType))
def test_every_type_round_trips(codec: Codec, kind: LogType) -> None:
    log = Log(7, 3, kind, b"data", b"ext", 1_732_600_000_123_456_789)
    decoded = codec.decode(codec.encode(log))
    assert decoded == log
    assert type(decoded.type) is LogType


@pytest.mark.parametrize("size", [0, 1, 1 << 20])
def test_data_sizes(codec: Codec, size: int) -> None:
    log = Log(
        2**64 - 1,
        2**64 - 1,
        LogType.CONFIGURATION,
        bytes(range(256)) * (size // 256) + b"x" * (size % 256),
        b"",
        -1,
    )
    assert codec.decode(codec.encode(log)) == log


@given(log=logs)
@settings(max_examples=150, deadline=None)
def test_round_trip_any_log(log: Log) -> None:
    for name in CODECS:
        codec = create_codec(name)
        decoded = codec.decode(codec.encode(log))
        assert decoded == log
        assert type(decoded.data) is bytes
        assert type(decoded.extensions) is bytes


@given(data=st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_decode_or_raise_corruption(data: bytes) -> None:
    for name in CODECS:
        try:
            log = create_codec(name).decode(data)
        except CorruptionError:
            continue
        assert isinstance(log, Log)


@pytest.mark.parametrize(
    "fields",
    [
        (1, 2, 3),
        (0, 1, 0, b"", b"", 0),
        (1, -1, 0, b"", b"", 0),
        (1, 1, 9, b"", b"", 0),
        (1, 1, 0, "text", b"", 0),
        (1, 1, 0, b"", None, 0),
        (1, 1, 0, b"", b"", 1.5),
        ("1", 1, 0, b"", b"", 0),
        {"index": 1},
        None,
    ],
)
def test_wrong_shapes_are_corruption(codec: Codec, fields: object) -> None:
    import pickle

    import cbor2
    import msgpack

    encoded = {
        "msgpack": lambda: msgpack.packb(fields, use_bin_type=True),
        "pickle": lambda: pickle.dumps(fields),
        "cbor": lambda: cbor2.dumps(fields),
    }[codec.name]()
    with pytest.raises(CorruptionError):
        codec.decode(encoded)


def test_truncated_records_are_corruption(codec: Codec) -> None:
    encoded = codec.encode(Log(5, 1, data=b"x" * 100))
    for cut in range(len(encoded)):
        with pytest.raises(CorruptionError):
            codec.decode(encoded[:cut])
