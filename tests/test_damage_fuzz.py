"""A short run of the file-damage campaign (``bench/damage_fuzz.py`` runs the long one).

Each trial damages a copy of a small store's files, then opens and reads it
in a child process with a hard timeout and runs ``raftstore verify`` in
another (`raftstore.testing.damage`). Only correct data and raftstore
errors are allowed; a failure prints every trial that is not allowed with
its seed and a one-line reproduction.

The first tests check the campaign itself: an undamaged store reads as
correct data, damage the store's checksums catch is a raftstore error, and
the classification of a hang, a crash, a native error, wrong data and
silent loss.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import raftstore
from raftstore.testing import damage
from raftstore.testing.damage import Damage

#: The first trials of ``python bench/damage_fuzz.py`` (its default seed is 1000).
SEED = 1000
TRIALS = 12
#: Seconds each child may take: a small store opens and reads in well under one, but
#: the suite may share the machine with other work; a real hang never ends.
TIMEOUT = 20.0

ENGINES, SKIPPED = damage.campaign_engines()


@pytest.fixture(autouse=True)
def _children_import_this_raftstore(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children (``python -m ...``) import the ``raftstore`` this test imported."""
    root = str(Path(raftstore.__file__).resolve().parent.parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_an_undamaged_store_reads_as_correct_data(engine: str, tmp_path: Path) -> None:
    trial = damage.run_trial(
        engine, SEED, tmp_path, timeout=TIMEOUT, damage=Damage("none", "", "no damage")
    )
    assert trial.outcome == damage.CORRECT, trial
    assert trial.allowed
    assert trial.verify["status"] == "ok", trial.verify


@pytest.mark.parametrize("engine", ENGINES)
def test_a_damaged_record_is_a_raftstore_error(engine: str, tmp_path: Path) -> None:
    """One flipped byte in a log record's value: the store's checksum catches it."""
    flip = Damage("log-value-flip", "record", "log-value-flip", {"seed": 7})
    try:
        trial = damage.run_trial(engine, SEED + 1, tmp_path, timeout=TIMEOUT, damage=flip)
    except damage.UnsupportedDamage as exc:  # a monotonic engine refuses the forged overwrite
        pytest.skip(str(exc))
    assert trial.outcome == damage.RAFTSTORE_ERROR, trial
    assert trial.cause["type"] == "CorruptionError", trial.cause
    assert trial.cause["op"].startswith("get_log("), trial.cause
    assert trial.allowed
    assert trial.verify["status"] == "failed", trial.verify


def _run(lines: list[dict[str, object]], **kwargs: object) -> damage._Run:
    fields: dict[str, object] = {
        "returncode": 0,
        "stdout": "".join(json.dumps(line) + "\n" for line in lines),
        "stderr": "",
        "timed_out": False,
        "seconds": 0.1,
    }
    fields.update(kwargs)
    return damage._Run(**fields)  # type: ignore[arg-type]


def _error(op: str, kind: str, *, ours: bool) -> dict[str, object]:
    error = {"type": kind, "module": "x", "raftstore": ours, "message": "m", "cause": None}
    return {"op": op, "kind": "error", "error": error}


DONE = {"done": True}


@pytest.mark.parametrize(
    ("run", "outcome"),
    [
        (_run([{"at": "open"}, DONE]), damage.CORRECT),
        (
            _run([{"at": "open"}, _error("open", "CorruptionError", ours=True), DONE]),
            "raftstore error",
        ),
        (_run([_error("get_log(3)", "KeyError", ours=False), DONE]), "native error"),
        (_run([{"at": "get_log(4)"}], returncode=-6), "crash"),
        (_run([{"at": "open"}], returncode=None, timed_out=True), "hang"),
        (_run([{"at": "open"}], returncode=1), "native error"),
        (
            _run([{"op": "get(LastVoteCand)", "kind": "wrong data", "detail": "d"}, DONE]),
            "wrong data",
        ),
        (_run([{"op": "last_index", "kind": "silent loss", "detail": "d"}, DONE]), "silent loss"),
        (
            _run(
                [
                    {"op": "get_log(9)", "kind": "silent loss", "detail": "d"},
                    _error("get_log(10)", "CorruptionError", ours=True),
                    DONE,
                ]
            ),
            "raftstore error",
        ),
        (
            _run(
                [
                    {"op": "get_log(9)", "kind": "silent loss", "detail": "d"},
                    _error("store_logs(probe)", "InvalidLogError", ours=True),
                    DONE,
                ]
            ),
            "silent loss",
        ),
        (
            _run(
                [
                    {"op": "get_log(9)", "kind": "wrong data", "detail": "d"},
                    _error("get_log(10)", "CorruptionError", ours=True),
                    DONE,
                ]
            ),
            "wrong data",
        ),
    ],
)
def test_classification(run: damage._Run, outcome: str) -> None:
    assert damage.classify("lmdb", run, {})[0] == outcome


def test_the_crash_of_a_child_names_its_signal_and_step() -> None:
    outcome, cause, _, _ = damage.classify("lmdb", _run([{"at": "get_log(4)"}], returncode=-7), {})
    assert (outcome, cause["signal"], cause["op"]) == ("crash", "SIGBUS", "get_log(4)")


def test_a_child_that_never_ends_is_killed_and_counts_as_a_hang(tmp_path: Path) -> None:
    sleeper = [
        sys.executable,
        "-c",
        'print(\'{"at": "open"}\', flush=True); import time; time.sleep(600)',
    ]
    run = damage._run(sleeper, tmp_path, timeout=1.0)
    assert run.timed_out
    outcome, cause, _, _ = damage.classify("rocksdb", run, {})
    assert (outcome, cause["op"]) == ("hang", "open")


def test_a_child_that_aborts_counts_as_a_crash(tmp_path: Path) -> None:
    run = damage._run([sys.executable, "-c", "import os; os.abort()"], tmp_path, timeout=30.0)
    outcome, cause, _, _ = damage.classify("lmdb", run, {})
    assert (outcome, cause["signal"]) == ("crash", "SIGABRT")


@pytest.mark.skipif(not ENGINES, reason=f"no disk engine is usable here: {SKIPPED}")
def test_a_short_damage_campaign_has_no_outcome_that_is_not_allowed(tmp_path: Path) -> None:
    result = damage.run_campaign(
        ENGINES, TRIALS, SEED, tmp_path, timeout=TIMEOUT, jobs=2, stop_after=4
    )
    if result.skipped:  # the undamaged stores must build and read back
        pytest.fail("\n".join(f"{e}: {why}" for e, why in result.skipped.items()), pytrace=False)
    assert result.trials
    if result.failures:
        pytest.fail("\n" + damage.render_markdown(result), pytrace=False)
