"""Target parsing: URL form, plain paths, query options."""

from __future__ import annotations

from pathlib import Path

import pytest

import raftstore
from raftstore import ConfigurationError
from raftstore.url import parse_target


@pytest.mark.parametrize(
    ("target", "engine", "path", "options"),
    [
        ("lmdb:///var/lib/raft", "lmdb", Path("/var/lib/raft"), {}),
        ("lmdb://relative/dir", "lmdb", Path("relative/dir"), {}),
        ("memory://", "memory", None, {}),
        (
            "RocksDB:///x?write_buffer_size=1024",
            "rocksdb",
            Path("/x"),
            {"write_buffer_size": "1024"},
        ),
        (
            "lmdb:///x?sync=false&map_size=1_048_576",
            "lmdb",
            Path("/x"),
            {"sync": "false", "map_size": "1_048_576"},
        ),
        ("lmdb:///x?", "lmdb", Path("/x"), {}),
        ("lmdb:///with%20space", "lmdb", Path("/with%20space"), {}),
        ("/plain/path", None, Path("/plain/path"), {}),
        ("plain?dir", None, Path("plain?dir"), {}),
        (Path("/a/b"), None, Path("/a/b"), {}),
    ],
)
def test_parse(
    target: object, engine: str | None, path: Path | None, options: dict[str, str]
) -> None:
    parsed = parse_target(target)
    assert (parsed.engine, parsed.path, parsed.options) == (engine, path, options)


@pytest.mark.parametrize(
    "target",
    ["", b"/bytes/path", 42, None, "lmdb:///x?a=1&a=2", "lmdb:///x?novalue&&", "a\x00b"],
)
def test_bad_targets(target: object) -> None:
    with pytest.raises(ConfigurationError):
        parse_target(target)


@pytest.mark.parametrize("target", ["   ", "\t\n", "://x", " ://x", "lm db:///x", "lmdb://   "])
def test_blank_or_nameless_targets_create_nothing(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # These used to create directories named ':' or '   ' in the working directory.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError):
        raftstore.open(target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["", "   "])
def test_a_blank_engine_name_is_a_configuration_error(engine: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="engine"):
        raftstore.open(tmp_path / "db", engine=engine)
    assert not (tmp_path / "db").exists()
