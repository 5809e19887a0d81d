"""A power cut under a 3-node Patroni Raft DCS: PySyncObj's FileJournal against raftstore journals.

Per trial and journal:

1. A fresh ext4 image (with its journal) is loop-mounted; three Patroni
   ``KVStoreTTL`` nodes (``tests/patroni_node.py``) keep their Raft data
   directories on it: on PySyncObj's own ``FileJournal``, or through
   ``raftstore pysyncobj-run --engine E`` on a raftstore store.
2. Once they agree on a leader, ``--writes`` keys are set one at a time
   through the leader; each ``set`` returned is an acknowledged write.
3. Right after the last acknowledgement all three processes are SIGSTOPped,
   the image is copied while the loop device writes nothing (what the
   filesystem had handed to its block device: the state after a power cut),
   and the processes are killed. ``tests/power_loss_rig.py`` does the
   image, mount and copy work.
4. The copy is ``e2fsck -fy``'d and mounted, and the three nodes restart on
   it with the same addresses. Once they agree on a leader and have applied
   what they committed, the leader's keys are compared with the
   acknowledged ones: **lost** counts acknowledged writes it does not hold.

Needs root, loop devices, ``mkfs.ext4``, ``e2fsck``, ``mount``, ``losetup``,
Patroni (``pip install 'raftstore[patroni]'``); prints the reason and exits 0
where any is missing. What it cannot show: reordered or torn device writes
and a disk's volatile cache (see ``tests/power_loss_rig.py``). Example::

    sudo .venv/bin/python bench/patroni_power_cut.py --trials 2 --writes 30

Prints a markdown table: per journal and trial, the acknowledged writes,
how many the restarted cluster lost, and whether it came back healthy (a
leader, every node applied).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(_TESTS))

import power_loss_rig as rig  # noqa: E402
from pysyncobj_cluster import HOST, NodeError, NodeProcess, free_ports  # noqa: E402

import raftstore  # noqa: E402

JOURNALS = ("file", "lmdb", "rocksdb", "leveldb")
NODE_SCRIPT = _TESTS / "patroni_node.py"
START_TIMEOUT = 60.0
LEADER_TIMEOUT = 90.0
REQUEST_TIMEOUT = 40.0


@dataclass
class Trial:
    """One power cut: what was acknowledged, and what the restarted cluster held."""

    journal: str
    trial: int
    acknowledged: int
    lost: int
    healthy: bool
    note: str = ""


def _command(journal: str) -> list[str]:
    if journal == "file":
        return [sys.executable, str(NODE_SCRIPT)]
    return [
        sys.executable,
        "-m",
        "raftstore",
        "pysyncobj-run",
        "--engine",
        journal,
        str(NODE_SCRIPT),
    ]


def _nodes(addresses: Sequence[str], root: Path, journal: str) -> list[NodeProcess]:
    nodes = []
    for number, address in enumerate(addresses):
        data_dir = root / f"node{number}"
        data_dir.mkdir(parents=True, exist_ok=True)
        partners = [other for other in addresses if other != address]
        nodes.append(
            NodeProcess(address, partners, ["--data-dir", str(data_dir)], _command(journal))
        )
    return nodes


@contextlib.contextmanager
def _running(nodes: list[NodeProcess]) -> Iterator[list[NodeProcess]]:
    try:
        for node in nodes:
            node.start(timeout=START_TIMEOUT)
        yield nodes
    finally:
        for node in nodes:
            with contextlib.suppress(OSError):
                if node.proc is not None and node.proc.poll() is None:
                    node.proc.send_signal(signal.SIGCONT)
            node.kill()


def _leader(nodes: list[NodeProcess], timeout: float = LEADER_TIMEOUT) -> NodeProcess | None:
    """The node all of *nodes* agree leads, with everything committed applied; None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(NodeError):
            statuses = [node.request("status", timeout=10) for node in nodes]
            leaders = {status["leader"] for status in statuses}
            settled = all(status["applied"] == status["commit"] for status in statuses)
            if len(leaders) == 1 and None not in leaders and settled:
                leader = next(node for node in nodes if node.address in leaders)
                if leader.request("status", timeout=10)["state"] == 2:
                    return leader
        time.sleep(0.2)
    return None


def _all_stopped(pid: int) -> bool:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return True
    for task in tasks:
        with contextlib.suppress(FileNotFoundError):
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
            if state not in ("T", "t", "Z", "X"):
                return False
    return True


def _stop(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + rig.STOP_TIMEOUT
    for node in nodes:
        assert node.proc is not None
        while not _all_stopped(node.proc.pid):
            if time.monotonic() > deadline:
                raise rig.RigError(f"{node.address} did not stop within {rig.STOP_TIMEOUT} s")
            time.sleep(0.001)


def run_trial(journal: str, trial: int, writes: int, workdir: Path) -> Trial:
    """One cut; see the module docstring."""
    image, copy = workdir / "disk.img", workdir / "copy.img"
    mount, copy_mount = workdir / "mnt", workdir / "copy-mnt"
    addresses = [f"{HOST}:{port}" for port in free_ports(3)]
    acknowledged: dict[str, str] = {}
    try:
        rig.make_image(image, "journal")
        with rig.loop_mount(image, mount) as device:
            nodes = _nodes(addresses, mount, journal)
            with _running(nodes):
                leader = _leader(nodes)
                if leader is None:
                    return Trial(journal, trial, 0, 0, False, "no leader before the cut")
                for number in range(writes):
                    key, value = f"/service/cut/{number}", f"value-{trial}-{number}"
                    reply = leader.request("set", timeout=REQUEST_TIMEOUT, key=key, value=value)
                    if not reply["result"]:
                        break
                    acknowledged[key] = value
                _stop(nodes)
                if not rig.copy_image(image, copy, device):
                    return Trial(journal, trial, len(acknowledged), 0, False, "no quiet copy")
        fsck = rig._run(["e2fsck", "-fy", str(copy)])
        if fsck.returncode >= 4:  # 1 and 2: errors corrected
            return Trial(journal, trial, len(acknowledged), 0, False, "e2fsck failed")
        with rig.loop_mount(copy, copy_mount):
            nodes = _nodes(addresses, copy_mount, journal)
            try:
                with _running(nodes):
                    leader = _leader(nodes)
                    if leader is None:
                        return Trial(journal, trial, len(acknowledged), 0, False, "no leader after")
                    held: dict[str, Any] = leader.request("dump", timeout=REQUEST_TIMEOUT)["data"]
            except NodeError as exc:
                first_line = str(exc).strip().splitlines()[-1][:120]
                return Trial(journal, trial, len(acknowledged), 0, False, f"refused: {first_line}")
        lost = sum(1 for key, value in acknowledged.items() if held.get(key) != value)
        return Trial(journal, trial, len(acknowledged), lost, True)
    finally:
        for point, backing in ((copy_mount, copy), (mount, image)):
            rig.unmount(point, backing)
        image.unlink(missing_ok=True)
        copy.unlink(missing_ok=True)


def _unavailable(journals: Sequence[str], workdir: Path) -> str | None:
    if importlib.util.find_spec("patroni") is None:
        return "Patroni is not installed: pip install 'raftstore[patroni]'"
    usable = {info.name: info.available for info in raftstore.available_engines()}
    missing = [name for name in journals if name != "file" and not usable.get(name)]
    if missing:
        return f"engines not usable here: {', '.join(missing)}"
    return rig.probe(workdir)


def _versions() -> str:
    from importlib.metadata import version

    return (
        f"Python {platform.python_version()}, Patroni {version('patroni')},"
        f" pysyncobj {version('pysyncobj')}, raftstore {raftstore.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journals", nargs="+", choices=JOURNALS, default=list(JOURNALS))
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--writes", type=int, default=30)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="patroni-power-cut-"))
    try:
        reason = _unavailable(args.journals, workdir)
        if reason is not None:
            print(f"skipped: {reason}")
            return 0
        trials = []
        for trial in range(1, args.trials + 1):
            for journal in args.journals:
                result = run_trial(journal, trial, args.writes, workdir)
                trials.append(result)
                print(f"# {result}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n{_versions()}; ext4 with its journal on a loop device; {args.writes} writes\n")
    print("| journal | trial | acknowledged writes | lost after the cut | came back healthy |")
    print("|---|---:|---:|---:|---|")
    for result in trials:
        name = (
            "PySyncObj FileJournal" if result.journal == "file" else f"raftstore {result.journal}"
        )
        healthy = "yes" if result.healthy else f"no ({result.note})"
        print(f"| {name} | {result.trial} | {result.acknowledged} | {result.lost} | {healthy} |")
    raftstore_losses = sum(result.lost for result in trials if result.journal != "file")
    return 1 if raftstore_losses else 0


if __name__ == "__main__":
    sys.exit(main())
