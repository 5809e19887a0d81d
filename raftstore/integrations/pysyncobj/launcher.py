"""``raftstore pysyncobj-run``: run a PySyncObj program, unchanged, with path mode installed.

The program runs in this process, after `raftstore.integrations.pysyncobj.install`,
so every ``SyncObjConf(journalFile=P)`` it builds journals to ``P.raftstore``.
PROGRAM is, in this order of preference:

- ``-m MODULE``: run like ``python -m MODULE`` (``runpy.run_module``);
- the name of a console script of an installed distribution (``patroni``,
  ``patroni_raft_controller``), found through its entry point;
- a path to a Python script (``runpy.run_path``).

``sys.argv`` is what the program would see if run directly, and its exit
status (``SystemExit``, or a console script's return value) is returned.
"""

from __future__ import annotations

import importlib.metadata
import os
import runpy
import shutil
import sys
from collections.abc import Callable, Sequence

from raftstore.errors import ConfigurationError
from raftstore.integrations.pysyncobj.pathmode import install

__all__ = ["exit_status", "find_console_script", "run_program"]


def exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives: None is 0, an int itself, else 1.

    A code that is neither None nor an int is printed to stderr first, as
    the interpreter does.
    """
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def find_console_script(name: str) -> Callable[[], object] | None:
    """The function the console script *name* of an installed distribution runs, or None."""
    for entry_point in importlib.metadata.entry_points(group="console_scripts", name=name):
        function: Callable[[], object] = entry_point.load()
        return function
    return None


def run_program(
    program: Sequence[str],
    *,
    module: Sequence[str] | None = None,
    engine: str = "lmdb",
    codec: str | None = None,
) -> int:
    """Install path mode with *engine* and *codec*, run the program, return its exit status.

    *module* is ``[MODULE, ARGS...]`` for ``-m``; otherwise *program* is
    ``[PROGRAM, ARGS...]`` (a leading ``--`` is dropped). Raises
    `ConfigurationError` when no program is given or PROGRAM is neither a
    console script nor a file, and what `install` raises.
    """
    if module is not None and program:
        raise ConfigurationError("give either -m MODULE or PROGRAM, not both")
    arguments = list(module if module is not None else program)
    if module is None and arguments[:1] == ["--"]:
        del arguments[0]
    if not arguments:
        raise ConfigurationError(
            "no program to run: raftstore pysyncobj-run [--engine E] [--codec C]"
            " PROGRAM [ARGS...] (or -m MODULE [ARGS...]), e.g. raftstore pysyncobj-run"
            " patroni /etc/patroni.yml"
        )
    name, args = arguments[0], arguments[1:]
    if module is None:
        function = None if os.sep in name else find_console_script(name)
        if function is None and not os.path.isfile(name):
            raise ConfigurationError(
                f"{name!r} is neither a console script of an installed distribution nor a"
                " script file; for a module use -m MODULE"
            )
    install(engine=engine, codec=codec)
    try:
        if module is not None:
            sys.argv = [name, *args]  # run_module puts the module's file in argv[0]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        elif function is not None:
            sys.argv = [shutil.which(name) or name, *args]
            return exit_status(function())
        else:
            sys.argv = [name, *args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(name)))
            runpy.run_path(name, run_name="__main__")
    except SystemExit as exc:
        return exit_status(exc.code)
    return 0
