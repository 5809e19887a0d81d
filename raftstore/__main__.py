"""``python -m raftstore``: the ``raftstore`` command."""

import sys

from raftstore.cli import main

sys.exit(main())
