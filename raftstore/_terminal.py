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

__all__ = ["Progress", "format_bytes", "format_duration", "is_terminal", "render_table"]

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


def format_duration(seconds: float) -> str:
    """*seconds* as ``m:ss`` (or ``h:mm:ss`` from an hour on)."""
    whole = max(int(seconds + 0.5), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A progress report for *total* units of work, written to *stream* (stderr).

    On a terminal: one line redrawn in place at most ten times a second,
    fitted to the terminal's width (``label [####....] 42% 420/1,000 310/s
    ETA 0:02 status``). Not on a terminal: one plain line at every tenth of
    the work and one per `status`, so logs stay readable. ``total`` may be 0
    (nothing to do). Call `update` (or `advance`) as work gets done, `status`
    to say what is being done now, and `finish` once at the end.

    *counts* False leaves out ``done/total`` and the rate, for units that mean
    nothing to a reader (the benchmark's rounds).
    """

    #: Widest the bar itself gets; the rest of the line is the figures.
    BAR_WIDTH = 30
    #: No ETA before this much time has passed: early rates are noise.
    ETA_AFTER = 1.0

    def __init__(
        self, label: str, total: int, stream: TextIO | None = None, *, counts: bool = True
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = sys.stderr if stream is None else stream
        self.tty = is_terminal(self.stream)
        self.counts = counts
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._last_tenth = -1
        self._updated = self._started
        self._status = ""
        self.done = 0

    def _elapsed(self) -> float:
        return self._updated - self._started

    def _rate(self) -> str:
        elapsed = self._elapsed()
        return f"{self.done / elapsed:,.0f}/s" if elapsed > 0 else "-"

    def eta(self) -> float | None:
        """Seconds left at the rate so far; None before there is a rate to go by."""
        elapsed = self._elapsed()
        if not self.done or self.done >= self.total or elapsed < self.ETA_AFTER:
            return None
        return max(self.total - self.done, 0) * elapsed / self.done

    def _eta_text(self) -> str:
        left = self.eta()
        return "" if left is None else f"ETA {format_duration(left)}"

    def update(self, done: int, total: int | None = None) -> None:
        """Record that *done* units are complete (of *total*, if it changed) and redraw."""
        if total is not None:
            self.total = max(total, 0)
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
            line = f"{self.label}: "
            line += f"{done:,}/{self.total:,} ({tenth * 10}%)" if self.counts else f"{tenth * 10}%"
            eta = self._eta_text()
            self.stream.write(f"{line}, {eta}\n" if eta else f"{line}\n")
            self.stream.flush()

    def advance(self, units: int = 1) -> None:
        """Count *units* more as done."""
        self.update(min(self.done + units, self.total) if self.total else self.done + units)

    def status(self, text: str) -> None:
        """Say what is being done now: at the bar's end on a terminal, else one line."""
        self._status = text
        self._updated = time.monotonic()
        if self.tty:
            self._last_draw = self._updated
            self._draw()
            return
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        eta = self._eta_text()
        tail = f" ({eta})" if eta else ""
        self.stream.write(f"{self.label}: {fraction:4.0%} {text}{tail}\n")
        self.stream.flush()

    def _line(self, columns: int) -> str:
        """The bar's line, at most *columns* - 1 characters (the last column would wrap)."""
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        figures = [f"{fraction:4.0%}"]
        if self.counts:
            figures += [f"{self.done:,}/{self.total:,}", self._rate()]
        eta = self._eta_text()
        if eta:
            figures.append(eta)
        tail = " " + " ".join(figures)
        room = columns - 1
        width = min(self.BAR_WIDTH, room - len(self.label) - len(tail) - 3)
        if width < 5:
            return f"{self.label}{tail}"[:room]
        filled = int(width * fraction)
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}]{tail}"
        if self._status and len(line) + 2 < room:
            line += "  " + self._status
        return line[:room]

    def _draw(self) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        self.stream.write(f"\r{self._line(columns)}\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        """Write the final state (the bar at its end, or a closing line)."""
        self._updated = time.monotonic()
        elapsed = self._elapsed()
        self._status = f"done in {format_duration(elapsed)}"
        if self.tty:
            self._draw()
            self.stream.write("\n")
        elif self.counts:
            self.stream.write(
                f"{self.label}: {self.done:,}/{self.total:,} done in {elapsed:.1f} s\n"
            )
        else:
            self.stream.write(f"{self.label}: done in {elapsed:.1f} s\n")
        self.stream.flush()
