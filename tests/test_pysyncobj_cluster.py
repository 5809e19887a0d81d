"""Real PySyncObj clusters on raftstore journals: three subprocess nodes on loopback.

Every scenario runs on LMDB, RocksDB and LevelDB. Nodes are killed with SIGKILL
(no chance to flush), so anything that comes back comes from the stores.
Waits are bounded; the recovery times are printed (``pytest -s``) but never
asserted on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pysyncobj  # noqa: F401 - CI installs every extra: a missing one must fail, not skip
import pytest
from pysyncobj_cluster import Cluster, NodeProcess, running_cluster

import raftstore

ENGINES = ["lmdb", "rocksdb", "leveldb"]

# Each scenario takes a few seconds; the bound only catches a wedged cluster.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
# Generous election timeouts (1-2.5 s): a busy CI machine that stalls a node
# for a moment must not start an election the scenario did not ask for.
ELECTION_TIMEOUT = 1.0


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    info = {backend.name: backend for backend in raftstore.available_engines()}[name]
    if not info.available:
        pytest.fail(f"engine {name!r} is not usable here: the cluster tests need it")
    return name


@pytest.fixture
def cluster(tmp_path: Path, engine: str) -> Iterator[Cluster]:
    with running_cluster(tmp_path, engine=engine, election_timeout=ELECTION_TIMEOUT) as started:
        yield started


def _report(name: str, engine: str, **seconds: float) -> None:
    timings = ", ".join(f"{key} {value:.2f}s" for key, value in seconds.items())
    print(f"\n[recovery] {name} ({engine}): {timings}")


def _followers(cluster: Cluster, leader: NodeProcess) -> list[NodeProcess]:
    return [node for node in cluster.nodes if node is not leader]


def _tails_match(nodes: list[NodeProcess], count: int = 20) -> bool:
    tails = [node.request("tail", count=count)["tail"] for node in nodes]
    return all(tail == tails[0] for tail in tails)


def test_replicates_counter_and_dict(cluster: Cluster) -> None:
    leader = cluster.leader()
    follower = _followers(cluster, leader)[0]
    assert leader.request("inc", count=300)["ok"] == 300
    assert follower.request("inc", count=50)["ok"] == 50  # forwarded to the leader
    follower.request("set", key="colour", value="green")
    cluster.wait_converged(350)
    for node in cluster.nodes:
        assert node.request("dump")["kv"] == {"colour": "green"}
    cluster.wait_for("identical journal tails", lambda: _tails_match(cluster.nodes))
    for status in cluster.statuses():
        # Group commit: far fewer fsyncs than entries.
        assert 0 < status["fsyncs"] < status["last_index"]


def test_killed_follower_catches_up(cluster: Cluster, engine: str) -> None:
    leader = cluster.leader()
    assert leader.request("inc", count=200)["ok"] == 200
    cluster.wait_converged(200)
    follower = _followers(cluster, leader)[0]
    follower.kill()
    assert leader.request("inc", count=300)["ok"] == 300  # a majority is still up
    begun = time.monotonic()
    follower.start()
    cluster.wait_converged(500)
    _report("follower SIGKILL + restart", engine, catch_up=time.monotonic() - begun)
    cluster.wait_for("identical journal tails", lambda: _tails_match(cluster.nodes))


def test_killed_leader_is_replaced_and_rejoins(cluster: Cluster, engine: str) -> None:
    old = cluster.leader()
    assert old.request("inc", count=200)["ok"] == 200
    cluster.wait_converged(200)
    old.kill()
    begun = time.monotonic()
    survivors = _followers(cluster, old)
    new = cluster.leader(among=survivors)
    elected = time.monotonic() - begun
    assert new is not old
    assert new.request("inc", count=100)["ok"] == 100
    begun = time.monotonic()
    old.start()
    cluster.wait_converged(300)
    rejoined = time.monotonic() - begun
    cluster.leader()  # all three agree on one leader again
    _report("leader SIGKILL", engine, new_leader=elected, old_leader_rejoin=rejoined)
    cluster.wait_for("identical journal tails", lambda: _tails_match(cluster.nodes))


def _all_dumps_are(cluster: Cluster, state: dict[str, object]) -> bool:
    dumps = [node.request("dump") for node in cluster.nodes]
    return all({"counter": d["counter"], "kv": d["kv"]} == state for d in dumps)


def test_whole_cluster_restart_recovers_state(cluster: Cluster, engine: str) -> None:
    leader = cluster.leader()
    assert leader.request("inc", count=1500)["ok"] == 1500
    leader.request("set", key="k", value=[1, 2, 3])
    state = {"counter": 1500, "kv": {"k": [1, 2, 3]}}
    cluster.wait_for("the state on every node", lambda: _all_dumps_are(cluster, state))
    terms = {status["term"] for status in cluster.statuses()}
    for node in cluster.nodes:
        node.kill()
    begun = time.monotonic()
    for node in cluster.nodes:
        node.start()
    # The committed state comes back from the stores alone (replayed up to
    # each node's stored commit index, the rest once a new leader commits).
    cluster.wait_for("the state back on every node", lambda: _all_dumps_are(cluster, state))
    restored_after = time.monotonic() - begun
    new_leader = cluster.leader()
    elected_after = time.monotonic() - begun
    for status in cluster.statuses():
        assert status["term"] >= max(terms)  # the term survived the restart
    assert new_leader.request("inc", count=10)["ok"] == 10
    cluster.wait_converged(1510)
    _report(
        "all three SIGKILL + restart",
        engine,
        state_restored=restored_after,
        leader_elected=elected_after,
    )


def test_lagging_node_installs_snapshot(tmp_path: Path, engine: str) -> None:
    args = ["--compaction-entries", "150"]
    with running_cluster(
        tmp_path, engine=engine, extra_args=args, election_timeout=ELECTION_TIMEOUT
    ) as cluster:
        leader = cluster.leader()
        assert leader.request("inc", count=100)["ok"] == 100
        cluster.wait_converged(100)
        lagging = _followers(cluster, leader)[0]
        lagging.kill()
        assert leader.request("inc", count=900)["ok"] == 900
        # The live nodes compact past everything the lagging node holds.
        cluster.wait_for(
            "log compaction on the live nodes",
            lambda: all(status["first_index"] > 150 for status in cluster.statuses()),
        )
        begun = time.monotonic()
        lagging.start()
        before = lagging.request("status")
        cluster.wait_converged(1000)
        caught_up = time.monotonic() - begun
        assert before["first_index"] <= 101, before
        # Its journal was cleared and restarted from the snapshot's entries
        # (PySyncObj restores the counter just before it clears the journal).
        cluster.wait_for(
            "the lagging journal to restart past the compacted prefix",
            lambda: lagging.request("status")["first_index"] > 150,
        )
        _report("lagging node snapshot install", engine, converged=caught_up)
        assert leader.request("inc", count=10)["ok"] == 10
        cluster.wait_converged(1010)


def test_old_leader_truncates_uncommitted_tail(cluster: Cluster, engine: str) -> None:
    old = cluster.leader()
    assert old.request("inc", count=100)["ok"] == 100
    cluster.wait_converged(100)
    committed_last = old.request("status")["last_index"]
    old_term = old.request("status")["term"]
    followers = _followers(cluster, old)
    for node in followers:
        node.kill()
    # Alone, the old leader appends entries no one else will ever see.
    old.request("inc", count=40, wait=False)
    cluster.wait_for(
        "the old leader to append its uncommitted tail",
        lambda: old.request("status")["last_index"] >= committed_last + 40,
    )
    time.sleep(0.5)  # no follower to send to: the end-of-tick flush writes them
    old.kill()
    store_path = Path(old.extra_args[old.extra_args.index("--path") + 1])
    with raftstore.open(store_path) as store:
        stale_last = store.last_index()
        assert stale_last >= committed_last + 40
        assert store.get_log(stale_last).term == old_term
    for node in followers:
        node.start()
    new = cluster.leader(among=followers)
    assert new.request("inc", count=30)["ok"] == 30
    cluster.wait_converged(130, nodes=followers)
    begun = time.monotonic()
    old.start()
    cluster.wait_converged(130)  # the 40 uncommitted increments are gone everywhere
    rejoined = time.monotonic() - begun
    cluster.wait_for("identical journal tails", lambda: _tails_match(cluster.nodes, 60))
    tail = old.request("tail", count=60)["tail"]
    assert all(term > old_term for index, term in tail if index > committed_last)
    _report("old leader with uncommitted tail", engine, truncated_and_rejoined=rejoined)
