"""A local Patroni Raft DCS cluster: three `patroni_node` processes started through the launcher.

Each node is ``python -m raftstore pysyncobj-run --engine E tests/patroni_node.py ...``,
so its journal comes from path mode, as a Patroni started by the launcher gets
it. Loopback only, ports chosen free, every wait bounded; `running_patroni_cluster`
kills every node on exit.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pysyncobj_cluster import HOST, NodeProcess, free_ports

NODE_SCRIPT = Path(__file__).with_name("patroni_node.py")
#: Bounds on what the tests wait for (seconds): generous, for a loaded 2-CPU machine.
START_TIMEOUT = 60.0
LEADER_TIMEOUT = 60.0
CONVERGE_TIMEOUT = 60.0
REQUEST_TIMEOUT = 40.0


def launcher_command(engine: str | None) -> list[str]:
    """The command that runs `patroni_node` under ``raftstore pysyncobj-run``."""
    engine_args = [] if engine is None else ["--engine", engine]
    return [sys.executable, "-m", "raftstore", "pysyncobj-run", *engine_args, str(NODE_SCRIPT)]


class PatroniCluster:
    """Three KVStoreTTL nodes, each with its own Raft data directory under *root*."""

    def __init__(self, root: Path, engine: str | None, size: int = 3) -> None:
        self.root = root
        addresses = [f"{HOST}:{port}" for port in free_ports(size)]
        self.nodes: list[NodeProcess] = []
        for number, address in enumerate(addresses):
            data_dir = root / f"node{number}"
            data_dir.mkdir(parents=True, exist_ok=True)
            partners = [other for other in addresses if other != address]
            self.nodes.append(
                NodeProcess(
                    address, partners, ["--data-dir", str(data_dir)], launcher_command(engine)
                )
            )

    def start(self, nodes: Sequence[NodeProcess] | None = None) -> None:
        for node in nodes or self.nodes:
            node.start(timeout=START_TIMEOUT)

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def node(self, address: str) -> NodeProcess:
        return next(node for node in self.nodes if node.address == address)

    def alive(self) -> list[NodeProcess]:
        return [node for node in self.nodes if node.alive]

    def wait_for(
        self, what: str, predicate: Callable[[], bool], timeout: float, every: float = 0.2
    ) -> None:
        """Poll *predicate* until true; fail with every node's status after *timeout*."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                details = []
                for node in self.nodes:
                    state: object = "down"
                    if node.alive:
                        with contextlib.suppress(Exception):
                            state = node.request("status", timeout=5)
                    details.append(f"{node.address}: {state}")
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}:\n" + "\n".join(details)
                )
            time.sleep(every)

    def leader(self, timeout: float = LEADER_TIMEOUT) -> NodeProcess:
        """The node every live node agrees leads, once they agree and it says it leads."""
        found: list[NodeProcess] = []

        def agreed() -> bool:
            statuses = [node.request("status", timeout=10) for node in self.alive()]
            leaders = {status["leader"] for status in statuses}
            if len(leaders) != 1 or None in leaders:
                return False
            leader = self.node(next(iter(leaders)))
            if not leader.alive or leader.request("status", timeout=10)["state"] != 2:
                return False
            found[:] = [leader]
            return True

        self.wait_for("an agreed leader", agreed, timeout)
        return found[0]

    def followers(self, leader: NodeProcess) -> list[NodeProcess]:
        return [node for node in self.alive() if node is not leader]

    def dumps(self) -> dict[str, dict[str, Any]]:
        return {node.address: node.request("dump", timeout=10)["data"] for node in self.alive()}

    def wait_holding(
        self,
        expected: dict[str, str],
        absent: Sequence[str] = (),
        timeout: float = CONVERGE_TIMEOUT,
    ) -> None:
        """Wait until every live node holds *expected* (key -> value) and none of *absent*."""

        def holding() -> bool:
            for data in self.dumps().values():
                if any(data.get(key) != value for key, value in expected.items()):
                    return False
                if any(key in data for key in absent):
                    return False
            return True

        self.wait_for(
            f"{len(expected)} keys, {len(absent)} absent, on every node", holding, timeout
        )


@contextlib.contextmanager
def running_patroni_cluster(root: Path, engine: str | None) -> Iterator[PatroniCluster]:
    """A started `PatroniCluster`, every node killed on exit whatever happens."""
    cluster = PatroniCluster(root, engine)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
