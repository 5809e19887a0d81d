"""Terminal output for the ``raftstore`` command: tables and a progress bar.

Both look right on a terminal (bold headers, a bar redrawn in place) and
degrade to plain text when the stream is not a TTY (no escape codes, no
carriage returns: a log file or a pipe gets whole lines). ``NO_COLOR`` in the
environment turns styling off even on a terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from typing import TextIO

__all__ = ["Progress", "format_bytes", "is_terminal", "render_table"]

_BOLD, _RESET = "\x1b[1m", "\x1b[0m"


def is_terminal(stream: TextIO) -> bool:
    """True when *stream* is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _styled(stream: TextIO) -> bool:
    return is_terminal(stream) and "NO_COLOR" not in os.environ


def format_bytes(size: int) -> str:
    """*size* in bytes as a short human figure: ``512 B``, ``1.5 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], stream: TextIO | None = None
) -> str:
    """*rows* under *headers* as aligned columns; the header is bold on a terminal."""
    stream = sys.stdout if stream is None else stream
    widths = [len(header) for header in headers]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    head = line(headers).rstrip()
    lines = [f"{_BOLD}{head}{_RESET}" if _styled(stream) else head]
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(line(row).rstrip() for row in rows)
    return "\n".join(lines)


class Progress:
    """A progress report for *total* units of work, written to *stream* (stderr).

    On a terminal: a bar redrawn in place at most ten times a second. Not on
    a terminal: one plain line at every tenth of the work, so logs stay
    readable. ``total`` may be 0 (nothing to do). Call `update` with the
    units done so far and `finish` once at the end.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = sys.stderr if stream is None else stream
        self.tty = is_terminal(self.stream)
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_tenth = -1
        self._updated = self._started
        self.done = 0

    def _rate(self) -> str:
        elapsed = self._updated - self._started
        return f"{self.done / elapsed:,.0f}/s" if elapsed > 0 else "-"

    def update(self, done: int) -> None:
        """Record that *done* units are complete and redraw when it is time."""
        self.done = done
        self._updated = now = time.monotonic()
        if self.tty:
            if now - self._last_draw >= 0.1:
                self._last_draw = now
                self._draw()
            return
        tenth = 10 * done // self.total if self.total else 10
        if tenth > self._last_tenth and tenth < 10:
            self._last_tenth = tenth
            self.stream.write(f"{self.label}: {done:,}/{self.total:,} ({tenth * 10}%)\n")
            self.stream.flush()

    def _draw(self) -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        columns = shutil.get_terminal_size((80, 24)).columns
        counts = f" {fraction:4.0%} {self.done:,}/{self.total:,} {self._rate()}"
        width = max(columns - len(self.label) - len(counts) - 4, 10)
        filled = int(width * fraction)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}]{counts}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        """Write the final state (the bar at its end, or a closing line)."""
        elapsed = self._updated - self._started
        if self.tty:
            self._draw()
            self.stream.write("\n")
        else:
            self.stream.write(
                f"{self.label}: {self.done:,}/{self.total:,} done in {elapsed:.1f} s\n"
            )
        self.stream.flush()
