"""Run a read-only operation in a child process, so a crashing engine cannot take the caller down.

Some damage makes a storage engine kill its process rather than raise: LMDB
asserts (SIGABRT) on some zeroed pages. ``raftstore verify`` and ``inspect``
read through `run_isolated`: the work runs in a forked child, its result (or
its raftstore error) comes back through a pipe, and a child that dies by a
signal, exits without an answer, or goes quiet for longer than the timeout
becomes `EngineCrashedError`, a `CorruptionError`.

Only for operations that write nothing: a child killed half-way must not
leave anything behind. Where ``os.fork`` is missing the function simply runs
in this process.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import select
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from raftstore.errors import CorruptionError, RaftStoreError

__all__ = ["DEFAULT_TIMEOUT", "EngineCrashedError", "run_isolated"]

T = TypeVar("T")

#: Seconds a child may go without an answer or a progress report.
DEFAULT_TIMEOUT = 300.0
_LENGTH = struct.Struct(">Q")
#: Bytes of the child's stderr kept (its last words, when it crashes).
_MAX_ERRORS = 64 * 1024


class EngineCrashedError(CorruptionError):
    """The engine crashed (or hung) reading the store: its files are damaged."""


def _send(fd: int, message: Any) -> None:
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # whatever it was, say so as a raftstore error
        data = pickle.dumps(("error", RaftStoreError(f"cannot return the result: {exc}")))
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _child(
    fd: int, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        if "progress" in kwargs:
            kwargs["progress"] = lambda done, total: _send(fd, ("progress", done, total))
        result: Any = ("ok", func(*args, **kwargs))
    except RaftStoreError as exc:
        exc.__cause__ = exc.__context__ = None
        exc.__traceback__ = None
        result = ("error", exc)
    except OSError as exc:
        result = ("error", OSError(exc.errno, exc.strerror, exc.filename))
    except BaseException as exc:  # reported to the parent, never lost
        result = ("error", RaftStoreError(f"{type(exc).__name__}: {exc}"))
    _send(fd, result)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)} without an answer"
    return f"ended with wait status {status}"


def run_isolated(
    func: Callable[..., T],
    *args: Any,
    timeout: float | None = DEFAULT_TIMEOUT,
    **kwargs: Any,
) -> T:
    """Return ``func(*args, **kwargs)`` computed in a forked child process.

    The result must be picklable. A raftstore error (or OSError) raised by
    *func* is raised here again. A ``progress`` keyword, when given, is a
    ``progress(done, total)`` callable: the child's calls are relayed to it,
    and each one restarts the *timeout* (seconds without an answer or a
    progress report; None waits forever). Raises `EngineCrashedError` when
    the child dies by a signal, exits without an answer, or times out (it is
    then killed).
    """
    if not hasattr(os, "fork"):
        return func(*args, **kwargs)
    progress = kwargs.get("progress")
    read_fd, write_fd = os.pipe()
    err_read, err_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 0
        try:
            os.close(read_fd)
            os.close(err_read)
            # The engine's last words (an LMDB assertion) go to the parent,
            # which puts them in its one-line error; no faulthandler dump.
            os.dup2(err_write, 2)
            faulthandler.disable()
            _child(write_fd, func, args, kwargs)
        except BaseException:  # the parent reports a missing answer
            status = 70
        finally:
            os._exit(status)
    os.close(write_fd)
    os.close(err_write)
    errors = bytearray()
    try:
        answer = _receive(read_fd, err_read, errors, pid, progress, timeout)
    finally:
        os.close(read_fd)
        os.close(err_read)
    if errors:  # warnings and the like from a child that answered
        sys.stderr.write(errors.decode("utf-8", "replace"))
    kind, value = answer[0], answer[1]
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    raise value


def _last_words(errors: bytearray) -> str:
    lines = [line.strip() for line in errors.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    return f": {lines[-1][:300]}" if lines else ""


def _receive(
    fd: int,
    err_fd: int,
    errors: bytearray,
    pid: int,
    progress: Callable[[int, int], None] | None,
    timeout: float | None,
) -> tuple[Any, ...]:
    buffer = bytearray()
    deadline = None if timeout is None else time.monotonic() + timeout
    reaped = False
    watched = [fd, err_fd]
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(watched, [], [], wait)
            if err_fd in ready:
                chunk = os.read(err_fd, 1 << 16)
                if chunk:
                    errors += chunk
                    del errors[: max(0, len(errors) - _MAX_ERRORS)]
                else:
                    watched.remove(err_fd)
                continue
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                reaped = True
                raise EngineCrashedError(
                    f"the engine did not finish reading this store within {timeout:g} s and"
                    " was stopped: the file is damaged (or the store is far larger than the"
                    " timeout allows)"
                )
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                _, status = os.waitpid(pid, 0)
                reaped = True
                if err_fd in watched:  # whatever the child said before it died
                    while chunk := os.read(err_fd, 1 << 16):
                        errors += chunk
                last = _last_words(errors)
                errors.clear()
                raise EngineCrashedError(
                    f"the engine crashed reading this store: the file is damaged"
                    f" (the reading process {_describe(status)}{last})"
                )
            buffer += chunk
            while len(buffer) >= _LENGTH.size:
                (length,) = _LENGTH.unpack_from(buffer)
                if len(buffer) < _LENGTH.size + length:
                    break
                message = pickle.loads(bytes(buffer[_LENGTH.size : _LENGTH.size + length]))
                del buffer[: _LENGTH.size + length]
                if message[0] == "progress":
                    if progress is not None:
                        progress(message[1], message[2])
                    if deadline is not None and timeout is not None:
                        deadline = time.monotonic() + timeout
                    continue
                os.waitpid(pid, 0)
                reaped = True
                return tuple(message)
    finally:
        if not reaped:  # interrupted (Ctrl-C) or a bad message: stop the child
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
