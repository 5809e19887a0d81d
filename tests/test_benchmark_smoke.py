"""Smoke runs of the benchmark machinery: tiny sizes, no assertion on any timing."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import raftstore
from raftstore import benchmark
from raftstore._records import FORMAT_VERSION, record_format
from raftstore.engines.base import LOGS
from raftstore.errors import ConfigurationError, UnknownEngineError
from raftstore.registry import create_codec
from raftstore.store import index_key

ROOT = Path(__file__).resolve().parent.parent


def _engines() -> str:
    names = [info.name for info in raftstore.available_engines() if info.available]
    return ",".join(name for name in names if name in ("memory", "lmdb", "rocksdb", "leveldb"))


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="raftstore")
    benchmark.add_subcommand(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_raw_records_match_the_store_format() -> None:
    # The raw baselines write records by hand: they must be the store's bytes.
    log = benchmark.build_logs(7, 1)[0]
    with raftstore.open("memory://", codec="msgpack") as store:
        store.store_log(log)
        record = store.kv.get(LOGS, index_key(7))
    payload = create_codec("msgpack").encode(log)
    assert record == record_format(FORMAT_VERSION).frame(LOGS, index_key(7), payload)


def test_bench_command_runs_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = _parse(
        "--smoke",
        "--engines",
        _engines(),
        "--codecs",
        "msgpack",
        "--json",
        str(out),
        "--dir",
        str(tmp_path / "stores"),
    )
    assert args.func is benchmark.run
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "append_64, unsynced (entries/s, higher is better)" in printed
    assert "get_random" in printed
    # A user reads a legend, a summary in words and the settings in words; no team goals.
    assert "How to read the tables" in printed
    assert "x raw      row median / its raw twin's median" in printed
    assert "On this machine, in this run" in printed
    assert "which to pick" in printed
    assert "writes synced and unsynced" in printed
    assert "[True, False]" not in printed
    assert "MISSED" not in printed
    assert "team goals" not in printed
    assert "disk: 4 KiB overwrite + fdatasync" in printed
    assert "disk: 256 B append + fdatasync" in printed
    report = json.loads(out.read_text())
    assert report["schema"] == benchmark.SCHEMA_VERSION
    workloads = {result["workload"] for result in report["results"]}
    assert workloads == set(benchmark.WORKLOADS)
    kinds = {result["kind"] for result in report["results"]}
    assert {"raftstore", "raw"} <= kinds
    stores = [r for r in report["results"] if r["kind"] == "raftstore"]
    assert all(r["value"] > 0 and r["samples"] for r in stores)
    assert all(r["ratio_to_raw"] is not None for r in stores if r["workload"] != "rss")
    # Ratios are ratios of the medians, so they agree with the figures beside them.
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in report["results"]:
        by_table.setdefault((row["workload"], row["case"]), []).append(row)
    for rows in by_table.values():
        raw = {(r["engine"], r["codec"]): r for r in rows if r["kind"] == "raw"}
        for row in rows:
            twin = raw.get((row["engine"], row["codec"]))
            if row["kind"] == "raftstore" and twin is not None and row["unit"] == "entries/s":
                assert row["ratio_to_raw"] == pytest.approx(row["value"] / twin["value"])
    assert report["targets"] == []  # the team's goals only with --targets
    assert not any((tmp_path / "stores").iterdir())  # every store was removed


def test_targets_are_there_when_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = _parse(
        "--smoke",
        "--engines",
        "lmdb",
        "--codecs",
        "msgpack",
        "--workloads",
        "append_64,get_random",
        "--no-baselines",
        "--targets",
        "--json",
        str(out),
    )
    assert args.func(args) == 0
    assert "team goals" in capsys.readouterr().out
    assert {target["target"] for target in json.loads(out.read_text())["targets"]}


def test_bench_options_select_the_matrix() -> None:
    args = _parse("--quick", "--engines", "memory", "--codecs", "msgpack", "--no-sync")
    config = benchmark.config_from_args(args)
    assert config.engines == ["memory"]
    assert config.codecs == ["msgpack"]
    assert config.syncs == [False]
    assert config.sizes is benchmark.QUICK
    with pytest.raises(ConfigurationError, match="unknown workload"):
        benchmark.config_from_args(_parse("--workloads", "nope"))
    with pytest.raises(UnknownEngineError, match="unknown engine nosuch"):
        benchmark.config_from_args(_parse("--engines", "nosuch"))


def _raftstore(*argv: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``raftstore ARGV`` in a fresh interpreter, after running *prelude* there."""
    code = f"import sys\n{prelude}\nfrom raftstore.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )


def test_bench_unknown_engine_exits_unavailable() -> None:
    done = _raftstore("bench", "--smoke", "--engines", "nosuch")
    assert done.returncode == 5, done.stderr  # EXIT_UNAVAILABLE
    assert "unknown engine nosuch" in done.stderr
    assert "Traceback" not in done.stderr


#: Two plug-in engines with no raw-binding twin: one in memory, one on disk.
_PLUG_INS = """
import raftstore
from raftstore.engines.lmdb import LmdbEngine
from raftstore.engines.memory import MemoryEngine

class PlugInMemory(MemoryEngine):
    name = "plugmem"

class PlugInDisk(LmdbEngine):
    name = "plugdisk"

raftstore.register_engine("plugmem", PlugInMemory)
raftstore.register_engine("plugdisk", PlugInDisk)
"""


@pytest.mark.timeout(180)
def test_bench_runs_a_plug_in_engine_without_a_raw_baseline(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _raftstore(
        "bench",
        "--smoke",
        "--engines",
        "memory,plugmem,plugdisk",
        "--codecs",
        "msgpack",
        "--no-baselines",
        "--json",
        str(out),
        "--dir",
        str(tmp_path / "stores"),
        prelude=_PLUG_INS,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "plugmem/msgpack" in done.stdout
    assert "no raw baseline" in done.stdout
    results = json.loads(out.read_text())["results"]
    plug_ins = [r for r in results if r["engine"] in ("plugmem", "plugdisk")]
    assert {r["workload"] for r in plug_ins} >= {"append_1", "append_64", "get_random", "reopen"}
    assert all(r["kind"] == "raftstore" for r in plug_ins)  # no raw twin invented
    assert all(r["ratio_to_raw"] is None and "no raw baseline" in r["note"] for r in plug_ins)
    memory = [r for r in results if r["engine"] == "memory" and r["kind"] == "raftstore"]
    assert all(r["ratio_to_raw"] is not None for r in memory if r["workload"] != "rss")


def test_tables_and_plot_render(tmp_path: Path) -> None:
    config = benchmark.BenchConfig(
        engines=["memory"],
        codecs=["msgpack"],
        workloads=["append_64", "get_random"],
        syncs=[False],
        sizes=benchmark.SMOKE,
        baselines=False,
        directory=tmp_path,
    )
    report = benchmark.run_benchmarks(config)
    table = benchmark.format_tables(report.results)
    assert "memory/msgpack" in table
    assert "raw memory (msgpack records)" in table
    assert "entries/s, higher is better" in table
    assert "spread" in table
    assert "How to read the tables" in benchmark.legend(config.sizes.repeats)
    assert "On this machine" in benchmark.summarize(report.results)
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bench.png"
    benchmark.write_plot(report.results, plot)
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_plot_of_a_full_matrix_renders(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    config = benchmark.BenchConfig(
        engines=["memory", "lmdb"],
        codecs=["msgpack"],
        workloads=list(benchmark.WORKLOADS),
        syncs=[True, False],
        sizes=benchmark.SMOKE,
        baselines=True,
        directory=tmp_path,
    )
    report = benchmark.run_benchmarks(config)
    plot = tmp_path / "bench.png"
    benchmark.write_plot(report.results, plot)
    from PIL import Image

    with Image.open(plot) as image:
        width, height = image.size
    assert 900 <= width <= 1100  # legible at page width
    assert height > width  # one row of panels per question


def test_every_workload_is_one_registry_entry() -> None:
    assert list(benchmark.WORKLOADS) == list(benchmark.REGISTRY)
    for name, workload in benchmark.REGISTRY.items():
        assert workload.name == name
        assert benchmark.WORKLOADS[name] == workload.description
        assert workload.family in ("write", "read", "reopen", "rss")
        assert (workload.read_step is not None) == (workload.family == "read")


@pytest.mark.timeout(180)
def test_pytest_benchmark_suite_runs_once() -> None:
    env = dict(
        os.environ,
        RAFTSTORE_BENCH_SCALE="smoke",
        RAFTSTORE_BENCH_CODECS="msgpack",
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "bench"),
            "-q",
            "--benchmark-disable",
            "-p",
            "no:cacheprovider",
            "-x",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
