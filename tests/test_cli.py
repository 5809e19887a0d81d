"""End-to-end tests of the ``raftstore`` command: real stores, a subprocess per run, JSON parsed."""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore import Log, LogType, admin, cli
from raftstore._records import FORMAT_VERSION
from raftstore._terminal import Progress, format_bytes, render_table
from raftstore.engines.base import LOGS, META, STABLE, WriteBatch
from raftstore.errors import CorruptionError, StoreLockedError, StoreNotFoundError
from raftstore.store import index_key

AVAILABLE = {info.name for info in raftstore.available_engines() if info.available}
PERSISTENT = [
    pytest.param(
        name, marks=pytest.mark.skipif(name not in AVAILABLE, reason=f"{name} is not installed")
    )
    for name in ("lmdb", "rocksdb", "leveldb")
]
PAIRS = [
    pytest.param(
        source,
        destination,
        codec,
        id=f"{source}-to-{destination}",
        marks=pytest.mark.skipif(
            not {source, destination} <= AVAILABLE, reason="engine not installed"
        ),
    )
    for (source, destination), codec in zip(
        itertools.permutations(("lmdb", "rocksdb", "leveldb"), 2),
        itertools.cycle(("cbor", "pickle", "msgpack")),
        strict=False,
    )
]
#: An appended_at every populated entry carries (2023-11-14T22:13:20Z).
WHEN = 1_700_000_000_000_000_000


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """Run ``python -m raftstore ARGS`` with output captured (not a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "raftstore", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )


def run_json(*args: str) -> Any:
    """Run a command with ``--json``, check it exited 0 and return the parsed output."""
    result = run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: Any, code: int, *fragments: str) -> None:
    """The run failed with *code* and said so in exactly one line on stderr."""
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("raftstore: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def populate(path: Path, engine: str, codec: str = "msgpack") -> None:
    """A store with logs 101..300 (1..100 truncated away), every log type and stable state."""
    with raftstore.open(path, engine=engine, codec=codec) as store:
        store.store_logs(
            Log(
                index=index,
                term=1 + index // 100,
                type=LogType(index % len(LogType)),
                data=b"entry %d" % index,
                extensions=b"ext" if index % 7 == 0 else b"",
                appended_at=WHEN,
            )
            for index in range(1, 301)
        )
        store.delete_range(1, 100)
        store.set_uint64(b"CurrentTerm", 3)
        store.set_uint64(b"LastVoteTerm", 3)
        store.set(b"LastVoteCand", b"node-2")
        store.set(b"\x00binary", b"\xff\x00")


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., Path]:
    """``make_store(engine)``: a populated store in a new directory; returns its path."""
    counter = itertools.count()

    def make(engine: str, codec: str = "msgpack") -> Path:
        path = tmp_path / f"{engine}-{next(counter)}"
        populate(path, engine, codec)
        return path

    return make


def contents(target: str | Path) -> tuple[list[Log], dict[bytes, bytes]]:
    """Every log and stable pair of the store at *target*."""
    with raftstore.open(target, read_only=True) as store:
        return list(store.iter_logs()), dict(store.iter_stable())


# -- help, engines ---------------------------------------------------------------


def test_top_level_help_lists_commands_and_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("engines", "inspect", "verify", "migrate", "compact", "conformance", "demo"):
        assert command in result.stdout
    assert "exit codes" in result.stdout


@pytest.mark.parametrize(
    "command", ["demo", "engines", "inspect", "verify", "migrate", "compact", "conformance"]
)
def test_every_subcommand_help_shows_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert f"raftstore {command}" in out.split("example:")[1]


def test_bench_is_a_subcommand() -> None:
    result = run("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: raftstore bench" in result.stdout
    assert "raftstore bench --quick" in result.stdout.split("example:")[1]


def test_demo_still_runs() -> None:
    result = run("demo", "--count", "20")
    assert result.returncode == 0, result.stderr
    assert "stored 20 logs" in result.stdout


def test_demo_refuses_an_existing_store_and_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / "node"
    with raftstore.open(path) as store:
        store.store_logs([Log(i, 9) for i in range(1251, 5001)])
        store.set_uint64(b"CurrentTerm", 9)
        store.set(b"LastVoteCand", b"node-3")
    result = run("demo", str(path))
    assert_one_line_error(result, cli.EXIT_EXISTS, "already holds a raftstore store")
    with raftstore.open(path) as store:
        assert (store.first_index(), store.last_index()) == (1251, 5000)
        assert store.get_uint64(b"CurrentTerm") == 9
        assert store.get(b"LastVoteCand") == b"node-3"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert_one_line_error(run("demo", str(tmp_path / "other")), cli.EXIT_EXISTS, "files")
    fresh = run("demo", str(tmp_path / "new"), "--count", "20")
    assert fresh.returncode == 0, fresh.stderr


def test_engines_json_lists_engines_codecs_and_capabilities() -> None:
    listing = run_json("engines")
    engines = {row["name"]: row for row in listing["engines"]}
    codecs = {row["name"]: row for row in listing["codecs"]}
    assert {"memory", "lmdb", "rocksdb", "leveldb"} <= set(engines)
    assert {"msgpack", "pickle", "cbor"} <= set(codecs)
    assert engines["lmdb"]["available"] is True
    assert engines["lmdb"]["persistent"] is True
    assert engines["lmdb"]["concurrent_readers"] is True
    assert "map_size" in engines["lmdb"]["options"]
    assert engines["memory"]["persistent"] is False
    for row in listing["engines"] + listing["codecs"]:
        assert row["available"] or row["install_hint"], row


def test_engines_table_is_plain_text_when_not_a_tty() -> None:
    result = run("engines")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout
    assert "lmdb (default)" in result.stdout
    assert "msgpack (default)" in result.stdout


# -- inspect ---------------------------------------------------------------------


@pytest.mark.parametrize("engine", PERSISTENT)
def test_inspect_json(engine: str, make_store: Callable[..., Path]) -> None:
    path = make_store(engine, "cbor")
    report = run_json("inspect", f"{engine}://{path}", "--tail", "3")
    assert report["engine"] == engine
    assert report["codec"] == "cbor"
    assert report["format"] == FORMAT_VERSION
    assert (report["first_index"], report["last_index"], report["entries"]) == (101, 300, 200)
    assert report["disk_usage"] > 0
    stable = {item["key"]: item for item in report["stable"]}
    assert stable["CurrentTerm"]["uint64"] == 3
    assert stable["LastVoteTerm"]["uint64"] == 3
    assert stable["LastVoteCand"]["text"] == "node-2"
    assert stable["0x0062696e617279"]["hex"] == "ff00"
    assert [log["index"] for log in report["tail"]] == [298, 299, 300]
    last = report["tail"][-1]
    assert last["data_text"] == "entry 300"
    assert last["type"] == LogType(300 % len(LogType)).name
    assert last["appended_at"] == WHEN


def test_inspect_text_shows_stable_state_and_tail(make_store: Callable[..., Path]) -> None:
    path = make_store("lmdb")
    result = run("inspect", str(path), "--tail", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "lmdb, codec msgpack, format 2" in out
    assert "101..300 (200 entries)" in out
    assert "3 (uint64)" in out
    assert "'entry 300'" in out
    assert "2023-11-14T22:13:20Z" in out
    assert "\x1b" not in out


def test_inspect_tail_skips_gaps(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db") as store:
        store.store_logs([Log(index, 1) for index in (1, 2, 5, 9)])
    report = run_json("inspect", str(tmp_path / "db"), "--tail", "3")
    assert [log["index"] for log in report["tail"]] == [2, 5, 9]
    assert report["entries"] == 4


def test_inspect_tail_steps_over_huge_gaps_and_shows_damage(tmp_path: Path) -> None:
    with raftstore.open(tmp_path / "db") as store:
        store.store_logs([Log(1, 1), Log(2, 1), Log(2**63, 2), Log(2**64 - 1, 2)])
        store.kv.write(WriteBatch(puts=[(LOGS, index_key(2**63), b"\x00")]))
    report = run_json("inspect", str(tmp_path / "db"), "--tail", "3")
    assert [log["index"] for log in report["tail"]] == [2, 2**63, 2**64 - 1]
    assert "too short" in report["tail"][1]["error"]
    text = run("inspect", str(tmp_path / "db"))
    assert text.returncode == 0, text.stderr
    damaged = next(line for line in text.stdout.splitlines() if line.startswith(f"{2**63} "))
    assert f"damaged: log {2**63}: record is 1 bytes" in damaged


def test_inspect_empty_store(tmp_path: Path) -> None:
    raftstore.open(tmp_path / "db", engine="lmdb").close()
    report = run_json("inspect", str(tmp_path / "db"))
    assert (report["first_index"], report["last_index"], report["entries"]) == (0, 0, 0)
    assert report["tail"] == []
    assert report["stable"] == []


def test_inspect_of_memory_is_a_usage_error() -> None:
    assert_one_line_error(run("inspect", "memory://"), cli.EXIT_USAGE, "in-memory")


def test_inspect_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert_one_line_error(run("inspect", str(tmp_path / "file")), cli.EXIT_NO_STORE, "is a file")


# -- a target with no store ------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "verify", "compact"])
@pytest.mark.parametrize("where", ["missing", "empty-dir", "other-dir", "url"])
def test_no_store_is_reported_and_nothing_is_created(
    command: str, where: str, tmp_path: Path
) -> None:
    path = tmp_path / "target"
    target = str(path)
    if where == "empty-dir":
        path.mkdir()
    elif where == "other-dir":
        path.mkdir()
        (path / "notes.txt").write_text("not a store")
    elif where == "url":
        target = f"rocksdb://{path}"
    before = sorted(p.name for p in path.iterdir()) if path.exists() else None
    result = run(command, target)
    assert_one_line_error(result, cli.EXIT_NO_STORE, "no raftstore store", str(path))
    after = sorted(p.name for p in path.iterdir()) if path.exists() else None
    assert after == before


def test_wrong_engine_in_url_is_a_usage_error(make_store: Callable[..., Path]) -> None:
    path = make_store("lmdb")
    assert_one_line_error(run("inspect", f"leveldb://{path}"), cli.EXIT_USAGE, "'lmdb'")


# -- locked stores ----------------------------------------------------------------


@pytest.mark.parametrize("engine", PERSISTENT)
def test_locked_store_names_the_holder(engine: str, make_store: Callable[..., Path]) -> None:
    path = make_store(engine)
    with raftstore.open(path):
        compact = run("compact", str(path))
        assert_one_line_error(compact, cli.EXIT_LOCKED, f"process {os.getpid()}")
        # Shell terms, not Python keywords.
        assert "Stop that process" in compact.stderr
        assert "read_only" not in compact.stderr
        migrate = run("migrate", str(path), str(path.parent / "copy"))
        assert_one_line_error(migrate, cli.EXIT_LOCKED, f"process {os.getpid()}")
        assert not (path.parent / "copy").exists()
        inspect = run("inspect", str(path), "--json")
        if raftstore.registry.get_engine_class(engine).supports_read_only:
            # Readers beside a running writer are fine where the engine allows them.
            assert inspect.returncode == 0, inspect.stderr
            assert json.loads(inspect.stdout)["last_index"] == 300
        else:
            assert_one_line_error(inspect, cli.EXIT_LOCKED, f"process {os.getpid()}")


# -- verify ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", PERSISTENT)
def test_verify_clean_store(engine: str, make_store: Callable[..., Path]) -> None:
    path = make_store(engine)
    report = run_json("verify", str(path))
    assert report["ok"] is True
    assert (report["entries"], report["stable_keys"]) == (200, 4)
    assert report["gaps"] == []
    assert report["problems"] == []
    text = run("verify", str(path))
    assert text.returncode == 0
    assert "OK" in text.stdout


def damage(path: Path) -> None:
    """Damage the store at *path* below the store layer, in every way verify must notice."""
    with raftstore.open(path) as store:
        kv = store.kv
        good = kv.get(LOGS, index_key(150))
        assert good is not None
        flipped = bytes([good[0] ^ 0xFF]) + good[1:]
        store.set(b"junk", b"\x01\x02\x03")  # a record with a valid checksum
        junk = kv.get(STABLE, b"junk")
        candidate = kv.get(STABLE, b"LastVoteCand")
        assert junk is not None
        assert candidate is not None
        kv.write(
            WriteBatch(
                deletes=[(LOGS, index_key(200), index_key(209)), (STABLE, b"junk", b"junk")],
                puts=[
                    (LOGS, index_key(120), flipped),  # checksum mismatch
                    (LOGS, index_key(130), good),  # a record that holds another index
                    (LOGS, index_key(140), junk),  # checksum fine, not a log entry
                    (LOGS, index_key(150), b"\x00"),  # too short to hold a checksum
                    (STABLE, b"LastVoteCand", candidate[:-1] + bytes([candidate[-1] ^ 1])),
                ],
            )
        )
        store.set(b"CurrentTerm", b"abc")  # not an 8-byte uint64


@pytest.mark.parametrize("engine", PERSISTENT)
def test_verify_catches_damage_and_gaps(engine: str, make_store: Callable[..., Path]) -> None:
    path = make_store(engine)
    damage(path)
    result = run("verify", str(path), "--json")
    assert result.returncode == cli.EXIT_FAILED, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["gaps"] == [[200, 209]]
    assert report["entries"] == 190
    problems = {item["where"]: item["problem"] for item in report["problems"]}
    assert set(problems) == {
        "log 120",
        "log 130",
        "log 140",
        "log 150",
        "stable key CurrentTerm",
        "stable key LastVoteCand",
    }
    assert "checksum" in problems["log 120"]
    assert "checksum" in problems["stable key LastVoteCand"]
    # Format 2 checksums cover the key: a record under another index fails its checksum.
    assert "checksum" in problems["log 130"]
    assert "too short" in problems["log 150"]
    assert "8-byte" in problems["stable key CurrentTerm"]
    assert report["problem_count"] == 6
    text = run("verify", str(path))
    assert text.returncode == cli.EXIT_FAILED
    assert "gap       logs 200..209 missing (10)" in text.stdout
    assert "damaged   log 120: " in text.stdout
    assert "FAILED: 6 damaged record(s), 1 gap(s)" in text.stdout


@pytest.mark.parametrize("engine", ["rocksdb", "leveldb"])
def test_verify_reports_damaged_engine_files_as_a_finding(
    engine: str, make_store: Callable[..., Path]
) -> None:
    # Issue 12: a block checksum mismatch used to be one error line (exit 6)
    # and nothing on stdout with --json.
    path = make_store(engine)
    assert run("compact", str(path)).returncode == 0  # LevelDB keeps a small store in its log
    tables = sorted(p for p in (path / "data").iterdir() if p.suffix in (".sst", ".ldb"))
    assert tables, "the store has no table file to damage"
    damaged = bytearray(tables[0].read_bytes())
    damaged[100] ^= 0xFF
    tables[0].write_bytes(bytes(damaged))
    result = run("verify", str(path), "--json")
    assert result.returncode == cli.EXIT_FAILED, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["problems"][0]["where"] == "engine files"
    assert "restore" in report["problems"][0]["problem"]
    text = run("verify", str(path))
    assert text.returncode == cli.EXIT_FAILED
    assert "FAILED" in text.stdout


def test_verify_reports_a_damaged_meta_record(make_store: Callable[..., Path]) -> None:
    path = make_store("lmdb")
    with raftstore.open(path) as store:
        meta = store.kv.get(META, b"raftstore")
        assert meta is not None
        store.kv.write(WriteBatch(puts=[(META, b"raftstore", meta[:-1] + b"!")]))
    result = run("verify", str(path), "--json")
    assert result.returncode == cli.EXIT_FAILED
    report = json.loads(result.stdout)
    assert report["problems"][0]["where"] == "meta"
    assert_one_line_error(run("inspect", str(path)), cli.EXIT_DAMAGED, "meta record")


# -- migrate -----------------------------------------------------------------------


@pytest.mark.parametrize(("source_engine", "destination_engine", "codec"), PAIRS)
def test_migrate_every_engine_pair(
    source_engine: str, destination_engine: str, codec: str, make_store: Callable[..., Path]
) -> None:
    source = make_store(source_engine)
    destination = source.parent / f"{source.name}-to-{destination_engine}"
    report = run_json(
        "migrate", str(source), f"{destination_engine}://{destination}", "--codec", codec
    )
    assert (report["source_engine"], report["source_codec"]) == (source_engine, "msgpack")
    assert (report["engine"], report["codec"]) == (destination_engine, codec)
    assert (report["first_index"], report["last_index"]) == (101, 300)
    assert (report["entries"], report["stable_keys"]) == (200, 4)
    assert report["sampled"] == 200
    assert contents(destination) == contents(source)
    inspected = run_json("inspect", str(destination))
    assert (inspected["engine"], inspected["codec"]) == (destination_engine, codec)
    assert run_json("verify", str(destination))["ok"] is True


def test_migrate_defaults_to_the_source_engine_and_codec(make_store: Callable[..., Path]) -> None:
    source = make_store("lmdb", "pickle")
    destination = source.parent / "copy"
    destination.mkdir()  # an empty directory is accepted
    result = run("migrate", str(source), str(destination))
    assert result.returncode == 0, result.stderr
    assert "copied 200 entries" in result.stdout
    # Not a TTY: progress is plain lines on stderr, no carriage returns or escapes.
    assert "copying logs: 200/200 done" in result.stderr
    assert "\r" not in result.stderr
    assert "\x1b" not in result.stderr
    with raftstore.open(destination, read_only=True) as copy:
        assert (copy.engine, copy.codec) == ("lmdb", "pickle")
    assert contents(destination) == contents(source)


def test_migrate_refuses_an_existing_destination(make_store: Callable[..., Path]) -> None:
    source = make_store("lmdb")
    destination = make_store("lmdb")
    before = contents(destination)
    result = run("migrate", str(source), str(destination))
    assert_one_line_error(result, cli.EXIT_EXISTS, "already exists")
    assert contents(destination) == before
    occupied = source.parent / "occupied"
    occupied.mkdir()
    (occupied / "file").write_text("x")
    assert_one_line_error(run("migrate", str(source), str(occupied)), cli.EXIT_EXISTS)
    assert [p.name for p in occupied.iterdir()] == ["file"]


@pytest.mark.parametrize("prepared", [False, True], ids=["new-path", "empty-dir"])
def test_migrate_failure_removes_the_partial_destination(
    prepared: bool, make_store: Callable[..., Path]
) -> None:
    source = make_store("lmdb")
    with raftstore.open(source) as store:
        store.kv.write(WriteBatch(puts=[(LOGS, index_key(250), b"\x00")]))
    destination = source.parent / "copy"
    if prepared:
        destination.mkdir()
    result = run("migrate", str(source), f"rocksdb://{destination}", "--quiet")
    assert_one_line_error(result, cli.EXIT_DAMAGED, "log 250")
    if prepared:
        assert list(destination.iterdir()) == []
    else:
        assert not destination.exists()
    assert run_json("inspect", str(source))["entries"] == 200  # the source is untouched


def test_migrate_into_memory_is_a_usage_error(make_store: Callable[..., Path]) -> None:
    source = make_store("lmdb")
    result = run("migrate", str(source), "memory://")
    assert_one_line_error(result, cli.EXIT_USAGE, "nothing written there would survive")


def test_migrate_of_a_missing_source(tmp_path: Path) -> None:
    result = run("migrate", str(tmp_path / "nope"), str(tmp_path / "copy"))
    assert_one_line_error(result, cli.EXIT_NO_STORE, "no raftstore store")
    assert not (tmp_path / "nope").exists()
    assert not (tmp_path / "copy").exists()


def test_migrate_with_an_unknown_codec_leaves_nothing(make_store: Callable[..., Path]) -> None:
    source = make_store("lmdb")
    result = run("migrate", str(source), str(source.parent / "copy"), "--codec", "nosuch")
    assert_one_line_error(result, cli.EXIT_UNAVAILABLE, "nosuch", "msgpack")
    assert not (source.parent / "copy").exists()


def test_migrate_check_failure_removes_the_destination(
    make_store: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_store("lmdb")
    destination = source.parent / "copy"
    real_store_logs = raftstore.RaftStore.store_logs

    def store_logs_dropping_one(self: raftstore.RaftStore, logs: Any) -> None:
        # The copy is built beside the destination under a temporary name.
        if self.path is not None and self.path.name.startswith(".copy.migrating-"):
            logs = [log for log in logs if log.index != 222]
        real_store_logs(self, logs)

    monkeypatch.setattr(raftstore.RaftStore, "store_logs", store_logs_dropping_one)
    with pytest.raises(admin.MigrationError, match="199 entries != 200"):
        admin.migrate_store(source, destination)
    assert not destination.exists()
    assert sorted(p.name for p in source.parent.iterdir()) == [source.name]


_KILLED_MIGRATE = """
import os, signal, sys
import raftstore
from raftstore import admin
real = raftstore.RaftStore.store_logs
calls = []
def store_logs(self, logs):
    real(self, logs)
    if self.path is not None and ".migrating-" in self.path.name:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
raftstore.RaftStore.store_logs = store_logs
admin.migrate_store(sys.argv[1], sys.argv[2])
"""


def test_a_killed_migrate_leaves_nothing_that_opens_as_a_store(tmp_path: Path) -> None:
    source = tmp_path / "source"
    with raftstore.open(source) as store:
        for start in range(1, 10_001, 1000):
            store.store_logs([Log(i, 1, data=b"x" * 16) for i in range(start, start + 1000)])
        store.set_uint64(b"CurrentTerm", 9)
    destination = tmp_path / "copy"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MIGRATE, str(source), str(destination)],
        timeout=120,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not destination.exists()
    (leftover,) = [p for p in tmp_path.iterdir() if ".migrating-" in p.name]
    # Three batches of 1024 were copied, then the kill: never a usable store.
    with pytest.raises(raftstore.StoreNotFoundError, match="never finished"):
        raftstore.open(leftover, read_only=True)
    with pytest.raises(raftstore.CorruptionError, match="interrupted"):
        raftstore.open(leftover)
    verify = run("verify", str(leftover))
    assert verify.returncode != cli.EXIT_OK


# -- compact -----------------------------------------------------------------------


@pytest.mark.parametrize("engine", PERSISTENT)
def test_compact_reports_size_before_and_after(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "db"
    with raftstore.open(path, engine=engine, sync=False) as store:
        for start in range(1, 4001, 500):
            store.store_logs(Log(i, 1, data=os.urandom(512)) for i in range(start, start + 500))
        store.delete_range(1, 3990)
    report = run_json("compact", str(path))
    assert report["engine"] == engine
    assert report["before"] > 0
    assert report["after"] > 0
    assert report["reclaimed"] == report["before"] - report["after"]
    if engine == "lmdb":
        assert report["after"] < report["before"]
    assert [log.index for log in contents(path)[0]] == list(range(3991, 4001))
    text = run("compact", str(path))
    assert text.returncode == 0, text.stderr
    assert " -> " in text.stdout


# -- conformance ----------------------------------------------------------------------

BROKEN_ENGINE = '''
"""An engine that loses the last put of every batch: the suite must fail it."""
import raftstore
from raftstore.engines.memory import MemoryEngine


class LossyEngine(MemoryEngine):
    name = "lossy"

    def write(self, batch):
        if len(batch.puts) > 1:
            batch.puts = batch.puts[:-1]
        super().write(batch)


raftstore.register_engine("lossy", LossyEngine)
'''


def test_conformance_passes_on_a_good_engine() -> None:
    result = run("conformance", "lmdb", "--codec", "cbor", "-k", "reopen_keeps or codec_mismatch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_conformance_fails_on_a_broken_engine(tmp_path: Path) -> None:
    (tmp_path / "lossy_engine.py").write_text(textwrap.dedent(BROKEN_ENGINE))
    result = run(
        "conformance",
        "lossy",
        "--import",
        "lossy_engine",
        "-k",
        "large_batch_is_atomic or last_index_counts",
        cwd=tmp_path,  # --import finds modules in the current directory
    )
    assert result.returncode == cli.EXIT_FAILED, result.stdout + result.stderr
    assert "failed" in result.stdout


def test_conformance_with_a_module_that_does_not_import(tmp_path: Path) -> None:
    result = run("conformance", "lmdb", "--import", "no_such_module", cwd=tmp_path)
    assert_one_line_error(result, cli.EXIT_USAGE, "no_such_module")


def test_conformance_of_an_unknown_engine() -> None:
    assert_one_line_error(run("conformance", "nosuch"), cli.EXIT_UNAVAILABLE, "lmdb")


def test_conformance_module_is_valid_python() -> None:
    source = admin.conformance_module("memory", codec="pickle", imports=("json",))
    compile(source, "<generated>", "exec")
    assert "raftstore.open('memory://', engine='memory', **kw)" in source
    assert "kw.setdefault('codec', 'pickle')" in source


# -- the importable layer --------------------------------------------------------------


def test_admin_functions_work_without_the_command(make_store: Callable[..., Path]) -> None:
    path = make_store("lmdb")
    report = admin.inspect_store(path, tail=1)
    assert report.entries == 200
    assert report.tail[0]["index"] == 300
    verified = admin.verify_store(path)
    assert verified.ok
    assert verified.to_json()["ok"] is True
    with pytest.raises(StoreNotFoundError):
        admin.inspect_store(path.parent / "missing")
    with raftstore.open(path), pytest.raises(StoreLockedError):
        admin.compact_store(path)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreNotFoundError("x"), cli.EXIT_NO_STORE),
        (StoreLockedError("x"), cli.EXIT_LOCKED),
        (CorruptionError("x"), cli.EXIT_DAMAGED),
        (admin.DestinationExistsError("x"), cli.EXIT_EXISTS),
        (admin.MigrationError("x"), cli.EXIT_FAILED),
        (raftstore.UnknownEngineError("x"), cli.EXIT_UNAVAILABLE),
        (raftstore.ConfigurationError("x"), cli.EXIT_USAGE),
        (raftstore.StorageError("x"), cli.EXIT_STORAGE),
        (PermissionError("x"), cli.EXIT_STORAGE),
    ],
)
def test_exit_codes(error: BaseException, code: int) -> None:
    assert cli.exit_code_for(error) == code


def test_main_turns_errors_into_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["verify", str(tmp_path / "none")]) == cli.EXIT_NO_STORE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1


# -- terminal output ---------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def styled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.mark.usefixtures("styled")
def test_progress_redraws_in_place_on_a_terminal() -> None:
    stream = FakeTerminal()
    progress = Progress("copying", 100, stream)
    progress.update(50)
    progress.update(100)  # within a tenth of a second: drawn by finish()
    progress.finish()
    out = stream.getvalue()
    assert out.startswith("\rcopying [")
    assert out.count("\r") == 2
    assert "100%" in out
    assert out.endswith("\n")


def test_progress_is_plain_lines_otherwise() -> None:
    stream = io.StringIO()
    progress = Progress("copying", 100, stream)
    for done in range(0, 101, 5):
        progress.update(done)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "copying: 0/100 (0%)"
    assert lines[-1].startswith("copying: 100/100 done in ")
    assert len(lines) == 11
    assert "\r" not in stream.getvalue()


@pytest.mark.usefixtures("styled")
def test_table_is_bold_only_on_a_terminal() -> None:
    rows = [["lmdb", "yes"], ["leveldb", "no"]]
    plain = render_table(["name", "ok"], rows, io.StringIO())
    assert plain.splitlines() == ["name     ok", "-------  ---", "lmdb     yes", "leveldb  no"]
    assert render_table(["name", "ok"], rows, FakeTerminal()).startswith("\x1b[1m")


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
