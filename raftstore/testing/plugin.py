"""The pytest plugin: run the conformance suite against an engine with one option.

Installed with raftstore (entry point ``pytest11``), it is inert until asked::

    pytest --raftstore-engine myengine                 # your tests, plus the suite on myengine
    pytest --raftstore-engine myengine --raftstore-codec cbor -k delete_range

``--raftstore-engine`` may be given several times; the engine must be
registered (an entry point, or a module named with ``--raftstore-import``
that calls `raftstore.register_engine`). Subclassing
`raftstore.testing.RaftStoreConformance` remains the way to run the suite
with fixtures of your own.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["pytest_addoption", "pytest_configure"]

_SUITE = Path(__file__).with_name("engine_suite.py")


def pytest_addoption(parser: Any) -> None:
    """Add the ``--raftstore-*`` options."""
    group = parser.getgroup("raftstore", "raftstore conformance suite")
    group.addoption(
        "--raftstore-engine",
        action="append",
        default=[],
        metavar="ENGINE",
        help="run raftstore's conformance suite against ENGINE (repeatable)",
    )
    group.addoption(
        "--raftstore-codec",
        default=None,
        metavar="CODEC",
        help="codec of the stores the suite creates (default: msgpack)",
    )
    group.addoption(
        "--raftstore-import",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (e.g. one that registers the engine)",
    )


def pytest_configure(config: Any) -> None:
    """When an engine is named, import what was asked and collect the suite's module too."""
    if not config.getoption("raftstore_engine"):
        return
    for module in config.getoption("raftstore_import"):
        importlib.import_module(module)
    if str(_SUITE) not in config.args:
        config.args.append(str(_SUITE))
