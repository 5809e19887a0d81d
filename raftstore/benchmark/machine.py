"""The machine and library versions a report was measured with."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from typing import Any

__all__ = ["describe_environment", "environment"]

_PACKAGES = ("raftstore", "lmdb", "rocksdict", "plyvel", "msgpack", "cbor2", "pysyncobj")


def environment() -> dict[str, Any]:
    """Python, platform, CPU, memory and the versions of the packages measured."""
    versions: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        import lmdb

        versions["LMDB (C)"] = ".".join(str(part) for part in lmdb.version())
    except ImportError:
        pass
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(ValueError, OSError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    load = None
    with contextlib.suppress(OSError):
        load = round(os.getloadavg()[0], 2)
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "load_1min": load,
        "versions": versions,
    }


def describe_environment(env: dict[str, Any]) -> str:
    """*env* in one line of words."""
    versions = ", ".join(
        f"{name} {version}" for name, version in env["versions"].items() if version
    )
    cpu = env["cpu"] or "unknown CPU"
    return (
        f"{env['implementation']} {env['python']} on {env['platform']}; {env['cpus']} x {cpu},"
        f" {env['memory_gib']} GiB; {versions}"
    )
