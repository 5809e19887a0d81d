"""A local PySyncObj cluster of subprocess nodes (`pysyncobj_node`), for tests and benchmarks.

Loopback only, ports chosen free, every wait bounded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

NODE_SCRIPT = Path(__file__).with_name("pysyncobj_node.py")
HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """*count* distinct TCP ports free on the loopback interface right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class NodeError(RuntimeError):
    """A node did not answer, or answered with an error."""


class NodeProcess:
    """One node process; `request` sends an operation and waits for its reply."""

    def __init__(
        self,
        address: str,
        partners: Sequence[str],
        extra_args: Sequence[str],
        command: Sequence[str] = (sys.executable, str(NODE_SCRIPT)),
    ) -> None:
        self.address = address
        self.command = list(command)
        self.partners = list(partners)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._ids = itertools.count(1)
        self.stderr_tail: list[str] = []
        self.open_seconds = 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until its SyncObj exists."""
        assert not self.alive, f"{self.address} is already running"
        command = [*self.command, "--self", self.address]
        for partner in self.partners:
            command += ["--partner", partner]
        command += self.extra_args
        self._replies = queue.Queue()
        self.stderr_tail = []
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        threading.Thread(target=self._read_stdout, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        started = self._wait_reply(lambda m: m.get("event") == "started", timeout)
        self.open_seconds = float(started["open_seconds"])

    def _read_stdout(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        replies = self._replies
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                replies.put(json.loads(line))

    def _read_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.stderr_tail.append(line)
            del self.stderr_tail[:-40]

    def _wait_reply(
        self, match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc is not None and self.proc.poll() is not None):
                # One last look: the reply may have come just before the exit.
                with contextlib.suppress(queue.Empty):
                    message = self._replies.get(timeout=0.2)
                    if match(message):
                        return message
                raise NodeError(
                    f"node {self.address} gave no reply within {timeout}s"
                    f" (exit code {self.proc.poll() if self.proc else None});"
                    f" stderr:\n{''.join(self.stderr_tail)}"
                )
            try:
                message = self._replies.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if match(message):
                return message

    def request(self, op: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send *op* and return the reply; raises `NodeError` on error or timeout."""
        if not self.alive:
            raise NodeError(f"node {self.address} is not running")
        assert self.proc is not None
        assert self.proc.stdin is not None
        request_id = next(self._ids)
        try:
            self.proc.stdin.write(json.dumps({"op": op, "id": request_id, **fields}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise NodeError(f"node {self.address} is gone: {exc}") from exc
        reply = self._wait_reply(lambda m: m.get("id") == request_id, timeout)
        if "error" in reply:
            raise NodeError(f"node {self.address}: {reply['error']}")
        return reply

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """Ask the node to shut down cleanly; returns its last reply."""
        reply = self.request("exit", timeout=timeout)
        assert self.proc is not None
        self.proc.wait(timeout=timeout)
        return reply


class Cluster:
    """Three (or more) nodes on loopback, each with its own store directory."""

    def __init__(
        self,
        root: Path,
        *,
        size: int = 3,
        journal: str = "raftstore",
        engine: str = "lmdb",
        extra_args: Sequence[str] = (),
        election_timeout: float = 0.4,
    ) -> None:
        self.root = root
        ports = free_ports(size)
        addresses = [f"{HOST}:{port}" for port in ports]
        self.nodes: list[NodeProcess] = []
        for number, address in enumerate(addresses):
            path = root / f"node{number}" / "raft"
            args = ["--journal", journal, "--engine", engine, "--path", str(path)]
            args += ["--min-timeout", str(election_timeout), *extra_args]
            partners = [other for other in addresses if other != address]
            self.nodes.append(NodeProcess(address, partners, args))

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        for node in self.nodes:
            node.kill()

    def node(self, address: str) -> NodeProcess:
        return next(node for node in self.nodes if node.address == address)

    def statuses(self, nodes: Sequence[NodeProcess] | None = None) -> list[dict[str, Any]]:
        return [node.request("status", timeout=10) for node in (nodes or self.nodes) if node.alive]

    def wait_for(
        self, what: str, predicate: Callable[[], bool], timeout: float = 30.0, every: float = 0.1
    ) -> float:
        """Poll *predicate* until true; return the seconds it took, fail after *timeout*."""
        begun = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - begun
            if time.monotonic() - begun > timeout:
                details = []
                for node in self.nodes:
                    state = node.request("status", timeout=5) if node.alive else "down"
                    details.append(f"{node.address}: {state}")
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}:\n" + "\n".join(details)
                )
            time.sleep(every)

    def leader(
        self, among: Sequence[NodeProcess] | None = None, timeout: float = 30.0
    ) -> NodeProcess:
        """The node all live members of *among* agree leads, once they agree."""
        candidates = [node for node in (among or self.nodes) if node.alive]
        found: list[NodeProcess] = []

        def agreed() -> bool:
            leaders = {status["leader"] for status in self.statuses(candidates)}
            if len(leaders) != 1 or None in leaders:
                return False
            (address,) = leaders
            leader = self.node(address)
            if not leader.alive or leader.request("status")["state"] != 2:
                return False
            found[:] = [leader]
            return True

        self.wait_for("an agreed leader", agreed, timeout)
        return found[0]

    def wait_converged(
        self, counter: int, nodes: Sequence[NodeProcess] | None = None, timeout: float = 60.0
    ) -> float:
        """Wait until every live node in *nodes* shows *counter*; return the seconds taken."""
        targets = [node for node in (nodes or self.nodes) if node.alive]
        return self.wait_for(
            f"counter == {counter} on {[node.address for node in targets]}",
            lambda: all(status["counter"] == counter for status in self.statuses(targets)),
            timeout,
        )


@contextlib.contextmanager
def running_cluster(root: Path, **kwargs: Any) -> Iterator[Cluster]:
    """A started `Cluster`, killed on exit whatever happens."""
    cluster = Cluster(root, **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
