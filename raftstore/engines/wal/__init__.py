"""The ``wal`` engine: raftstore's own segment log (monotonic; see docs/wal.md).

- `raftstore.engines.wal.segment`: segment files, frames, batch commit and recovery scan.
- `raftstore.engines.wal.stable`: the manifest (segment list, stable and meta tables).
- `raftstore.engines.wal.spare`: the next segment file, preallocated in the background.
- `raftstore.engines.wal.engine`: `WalEngine`, the key-value `Engine` the store drives.
"""

from __future__ import annotations

from raftstore.engines.wal.engine import WalEngine

__all__ = ["WalEngine"]
