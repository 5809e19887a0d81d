"""Integrations of raftstore with existing Raft implementations.

Each integration lives in its own module and imports its Raft library only
when that module is imported, so ``import raftstore`` stays light:

- `raftstore.integrations.pysyncobj`: a durable PySyncObj journal with group
  commit, and path mode for programs that configure their journal by path,
  such as Patroni (``pip install 'raftstore[pysyncobj]'``; the
  ``raftstore pysyncobj-run`` command runs such a program unchanged).
"""

from __future__ import annotations

__all__: list[str] = []
