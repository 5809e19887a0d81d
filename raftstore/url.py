"""Parsing of store targets: ``ENGINE://PATH?opt=value`` URLs and plain paths."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from raftstore.errors import ConfigurationError

__all__ = ["Target", "parse_target"]

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9_+.-]*)://(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target: the engine it names (if any), its path and its query options."""

    engine: str | None
    path: Path | None
    options: dict[str, str] = field(default_factory=dict)


def parse_target(target: object) -> Target:
    """Split *target* into engine, path and query options.

    - ``"lmdb:///var/lib/raft"`` -> engine ``lmdb``, path ``/var/lib/raft``.
      Everything between ``://`` and the first ``?`` is the path, verbatim
      (no percent-decoding); an empty path means "no path" (``memory://``).
    - ``"ENGINE://PATH?a=1&b=x"`` -> options ``{"a": "1", "b": "x"}`` (strings,
      coerced later to the engine's declared types).
    - Anything else (a string without ``://`` or an `os.PathLike`) is a plain path.

    Raises `ConfigurationError` for an empty target, a malformed query or a
    repeated option.
    """
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if isinstance(target, bytes):
        raise ConfigurationError("target must be a str or a path, not bytes; decode it first")
    if not isinstance(target, str):
        raise ConfigurationError(
            f"target must be a URL like 'lmdb:///path' or a path, got {type(target).__name__}"
        )
    if not target or "\x00" in target:
        raise ConfigurationError(
            f"target must be a non-empty path or URL without NUL, got {target!r}"
        )
    if not target.strip():
        raise ConfigurationError(
            f"target {target!r} is blank; give a store path or a URL like 'lmdb:///path'"
        )
    match = _URL.match(target)
    if match is None:
        if "://" in target:
            scheme = target.partition("://")[0]
            raise ConfigurationError(
                f"target {target!r} looks like a URL but {scheme!r} is not an engine name;"
                " write ENGINE://PATH, e.g. 'lmdb:///var/lib/raft'"
            )
        return Target(None, Path(target))
    engine = match.group(1).lower()
    rest = match.group(2)
    path_text, question, query = rest.partition("?")
    options: dict[str, str] = {}
    if question:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError as exc:
            raise ConfigurationError(f"malformed query string in {target!r}: {exc}") from exc
        for name, value in pairs:
            if name in options:
                raise ConfigurationError(f"option {name!r} is given twice in {target!r}")
            options[name] = value
    if path_text and not path_text.strip():
        raise ConfigurationError(
            f"the path in {target!r} is blank; give a store path, e.g. '{engine}:///var/lib/raft'"
        )
    return Target(engine, Path(path_text) if path_text else None, options)
