"""Registries of engines and codecs: built-ins, runtime registrations, entry points.

Each entry is a dotted ``"module:attribute"`` path (or an object registered
at runtime) plus the modules it needs and the extra that installs them.
Nothing is imported until an entry is used, and the entry-point groups
``raftstore.engines`` and ``raftstore.codecs`` are read only when a name is
not found among the built-ins and registrations (or when listing).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from raftstore.codecs.base import Codec
from raftstore.engines.base import Engine, EngineOption
from raftstore.errors import (
    ConfigurationError,
    EngineUnavailableError,
    UnknownCodecError,
    UnknownEngineError,
)

__all__ = [
    "DEFAULT_CODEC",
    "DEFAULT_ENGINE",
    "BackendInfo",
    "available_codecs",
    "available_engines",
    "coerce_options",
    "create_codec",
    "get_engine_class",
    "register_codec",
    "register_engine",
]

#: The engine a new store gets when none is named (fixed, never "whatever is installed").
DEFAULT_ENGINE = "lmdb"
#: The codec a new store gets when none is named.
DEFAULT_CODEC = "msgpack"

Kind = Literal["engine", "codec"]
_NAME = re.compile(r"^[a-z][a-z0-9_+.-]*$")


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """One known engine or codec, as listed by `available_engines` / `available_codecs`."""

    name: str
    kind: Kind
    #: Importable here.
    available: bool
    #: What to run to make it available (None when it is).
    install_hint: str | None
    description: str
    #: ``"builtin"``, ``"registered"`` or ``"entry point"``.
    source: str
    #: Why it is unavailable, when it is not.
    error: str | None = None


@dataclass(slots=True)
class _Entry:
    name: str
    target: str | Any
    requires: tuple[str, ...]
    install_hint: str | None
    description: str
    source: str
    loaded: Any = None


_BUILTIN_ENGINES = [
    _Entry(
        "memory",
        "raftstore.engines.memory:MemoryEngine",
        (),
        None,
        "in-process sorted dicts; nothing survives close",
        "builtin",
    ),
    _Entry(
        "lmdb",
        "raftstore.engines.lmdb:LmdbEngine",
        ("lmdb",),
        "pip install raftstore",
        "LMDB memory-mapped B+tree (the default)",
        "builtin",
    ),
    _Entry(
        "rocksdb",
        "raftstore.engines.rocksdb:RocksDBEngine",
        ("rocksdict",),
        "pip install 'raftstore[rocksdb]'",
        "RocksDB LSM tree via rocksdict",
        "builtin",
    ),
    _Entry(
        "leveldb",
        "raftstore.engines.leveldb:LevelDBEngine",
        ("plyvel",),
        "pip install 'raftstore[leveldb]'",
        "LevelDB LSM tree via plyvel",
        "builtin",
    ),
    _Entry(
        "wal",
        "raftstore.engines.wal:WalEngine",
        (),
        None,
        "raftstore's own segment log: one write + one fdatasync per batch (monotonic)",
        "builtin",
    ),
]
_BUILTIN_CODECS = [
    _Entry(
        "msgpack",
        "raftstore.codecs.msgpack:MsgpackCodec",
        ("msgpack",),
        "pip install raftstore",
        "msgpack array (the default)",
        "builtin",
    ),
    _Entry(
        "pickle",
        "raftstore.codecs.pickle:PickleCodec",
        (),
        None,
        "pickled tuple, opcodes checked on load; trusted stores only",
        "builtin",
    ),
    _Entry(
        "cbor",
        "raftstore.codecs.cbor:CborCodec",
        ("cbor2",),
        "pip install 'raftstore[cbor]'",
        "CBOR array via cbor2",
        "builtin",
    ),
]

_lock = threading.RLock()
_entries: dict[Kind, dict[str, _Entry]] = {
    "engine": {entry.name: entry for entry in _BUILTIN_ENGINES},
    "codec": {entry.name: entry for entry in _BUILTIN_CODECS},
}
_entry_points_read: set[Kind] = set()
_GROUPS: dict[Kind, str] = {"engine": "raftstore.engines", "codec": "raftstore.codecs"}


def _check_name(name: object, kind: Kind) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"{kind} name must be lowercase letters, digits and _+.- starting with a letter,"
            f" got {name!r}"
        )
    return name


def _read_entry_points(kind: Kind) -> None:
    """Add installed plug-ins of *kind* (names only; nothing is imported)."""
    if kind in _entry_points_read:
        return
    _entry_points_read.add(kind)
    # Imported here: importlib.metadata (and the email package it pulls in)
    # would double the time of `import raftstore`.
    import importlib.metadata

    for point in importlib.metadata.entry_points(group=_GROUPS[kind]):
        if point.name in _entries[kind] or not _NAME.match(point.name):
            continue
        dist = point.dist.name if point.dist is not None else "its package"
        _entries[kind][point.name] = _Entry(
            point.name,
            point.value,
            (),
            f"pip install {dist}",
            f"plug-in from {dist}",
            "entry point",
        )


def _lookup(kind: Kind, name: object) -> _Entry:
    with _lock:
        if isinstance(name, str) and name in _entries[kind]:
            return _entries[kind][name]
        _read_entry_points(kind)
        if isinstance(name, str) and name in _entries[kind]:
            return _entries[kind][name]
        known = ", ".join(sorted(_entries[kind]))
    error = UnknownEngineError if kind == "engine" else UnknownCodecError
    raise error(f"unknown {kind} {name!r}; known {kind}s: {known}")


def _load(kind: Kind, entry: _Entry) -> Any:
    if entry.loaded is not None:
        return entry.loaded
    if not isinstance(entry.target, str):
        entry.loaded = entry.target
        return entry.loaded
    module_name, _, attribute = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module_name
        hint = entry.install_hint or "install the package that provides it"
        raise EngineUnavailableError(
            f"{kind} {entry.name!r} needs the {missing} package: {hint}"
        ) from exc
    except Exception as exc:
        # A plug-in that fails to import is unavailable; it never breaks the others.
        text = str(exc)[:200]
        raise EngineUnavailableError(
            f"{kind} {entry.name!r} failed to load from {module_name}:"
            f" {type(exc).__name__}: {text}; fix or uninstall the package that provides it"
        ) from exc
    try:
        loaded = getattr(module, attribute) if attribute else module
    except AttributeError as exc:
        raise EngineUnavailableError(
            f"{kind} {entry.name!r}: {module_name} has no attribute {attribute!r}"
        ) from exc
    entry.loaded = loaded
    return loaded


def get_engine_class(name: str) -> type[Engine]:
    """The engine class registered as *name*, imported on first use.

    Raises `UnknownEngineError` (listing the known names) or
    `EngineUnavailableError` (naming what to install).
    """
    engine = _load("engine", _lookup("engine", name))
    if not (isinstance(engine, type) and issubclass(engine, Engine)):
        raise ConfigurationError(f"engine {name!r} is {engine!r}, not a raftstore Engine subclass")
    return engine


def create_codec(name: str) -> Codec:
    """A new instance of the codec registered as *name*.

    Raises `UnknownCodecError` or `EngineUnavailableError`.
    """
    factory = _load("codec", _lookup("codec", name))
    codec = factory()
    if not isinstance(codec, Codec):
        raise ConfigurationError(f"codec {name!r} built {codec!r}, which has no encode/decode")
    return codec


def _register(
    kind: Kind,
    name: str,
    target: Any,
    requires: tuple[str, ...],
    install_hint: str | None,
    description: str,
    replace: bool,
) -> None:
    _check_name(name, kind)
    with _lock:
        existing = _entries[kind].get(name)
        if existing is not None and _same_target(existing, target):
            # The same thing again (a plug-in module that registers itself on
            # import and also declares its entry point): nothing to do.
            if not isinstance(target, str):
                existing.loaded = target
            return
        if existing is not None and not replace:
            raise ConfigurationError(
                f"{kind} {name!r} is already registered ({existing.source}); pass replace=True"
            )
        _entries[kind][name] = _Entry(
            name, target, tuple(requires), install_hint, description, "registered"
        )


def _same_target(entry: _Entry, target: Any) -> bool:
    """True when *target* is what *entry* already names (as an object or ``module:attr``)."""
    if entry.target is target or (entry.loaded is not None and entry.loaded is target):
        return True
    if isinstance(target, str):
        return entry.target == target
    qualified = f"{getattr(target, '__module__', '')}:{getattr(target, '__qualname__', '')}"
    return entry.target == qualified


def register_engine(
    name: str,
    engine: type[Engine] | str,
    *,
    requires: tuple[str, ...] = (),
    install_hint: str | None = None,
    description: str = "",
    replace: bool = False,
) -> None:
    """Register *engine* (an `Engine` subclass or ``"module:Class"``) under *name*.

    *requires* lists modules it imports (checked by `available_engines`
    without importing them); *install_hint* says how to get them.
    """
    if not isinstance(engine, str) and not (
        isinstance(engine, type) and issubclass(engine, Engine)
    ):
        raise ConfigurationError(
            f"register_engine needs an Engine subclass or 'module:Class', got {engine!r}"
        )
    _register("engine", name, engine, requires, install_hint, description, replace)


def register_codec(
    name: str,
    codec: Callable[[], Codec] | str,
    *,
    requires: tuple[str, ...] = (),
    install_hint: str | None = None,
    description: str = "",
    replace: bool = False,
) -> None:
    """Register *codec* (a class or factory returning a `Codec`, or ``"module:Class"``)."""
    if not isinstance(codec, str) and not callable(codec):
        raise ConfigurationError(
            f"register_codec needs a codec class, a factory or 'module:Class', got {codec!r}"
        )
    _register("codec", name, codec, requires, install_hint, description, replace)


def _availability(kind: Kind, entry: _Entry) -> BackendInfo:
    missing = [module for module in entry.requires if importlib.util.find_spec(module) is None]
    error = f"missing module {', '.join(missing)}" if missing else None
    if not missing and entry.source == "entry point":
        try:
            _load(kind, entry)
        except EngineUnavailableError as exc:
            error = str(exc)
    return BackendInfo(
        name=entry.name,
        kind=kind,
        available=error is None,
        install_hint=None if error is None else entry.install_hint,
        description=entry.description,
        source=entry.source,
        error=error,
    )


def _available(kind: Kind) -> list[BackendInfo]:
    with _lock:
        _read_entry_points(kind)
        entries = list(_entries[kind].values())
    return [_availability(kind, entry) for entry in entries]


def available_engines() -> list[BackendInfo]:
    """Every known engine, whether it can be used here, and how to install it if not."""
    return _available("engine")


def available_codecs() -> list[BackendInfo]:
    """Every known codec, whether it can be used here, and how to install it if not."""
    return _available("codec")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce_value(name: str, value: object, expected: type, where: str) -> Any:
    """*value* as *expected* (bool, int, float or str); strings are parsed.

    Raises `ConfigurationError` naming the option when it cannot be.
    """
    if isinstance(value, str) and expected is not str:
        text = value.strip().lower()
        try:
            if expected is bool:
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
                raise ValueError(value)
            if expected is int:
                return int(text.replace("_", ""), 0)
            if expected is float:
                return float(text)
        except ValueError:
            pass
        raise ConfigurationError(
            f"{where} option {name!r} must be {expected.__name__}, got {value!r}"
        )
    if expected is float and type(value) is int:
        return float(value)
    if type(value) is bool and expected is not bool:
        raise ConfigurationError(
            f"{where} option {name!r} must be {expected.__name__}, got {value!r}"
        )
    if not isinstance(value, expected):
        raise ConfigurationError(
            f"{where} option {name!r} must be {expected.__name__}, got {type(value).__name__}"
        )
    return value


def coerce_options(
    engine_name: str, declared: Mapping[str, EngineOption], given: Mapping[str, object]
) -> dict[str, Any]:
    """Every declared option of *engine_name*, from *given* (coerced) or its default.

    Raises `ConfigurationError` for an unknown option (listing the valid
    ones) or a value of the wrong type or range.
    """
    where = f"engine {engine_name!r}"
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) if declared else "none"
        raise ConfigurationError(
            f"{where} has no option {', '.join(map(repr, unknown))}; valid options: {valid}"
        )
    result: dict[str, Any] = {}
    for name, option in declared.items():
        if name not in given:
            result[name] = option.default
            continue
        value = coerce_value(name, given[name], option.type, where)
        if option.check is not None:
            problem = option.check(value)
            if problem:
                raise ConfigurationError(f"{where} option {name!r}={value!r}: {problem}")
        result[name] = value
    return result
