"""Engine and codec registries, option coercion, the factory's argument checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import raftstore
from raftstore import (
    ConfigurationError,
    EngineUnavailableError,
    UnknownCodecError,
    UnknownEngineError,
)
from raftstore.engines.base import EngineOption
from raftstore.engines.memory import MemoryEngine
from raftstore.registry import coerce_options


def test_builtins_listed_and_available() -> None:
    engines = {info.name: info for info in raftstore.available_engines()}
    codecs = {info.name: info for info in raftstore.available_codecs()}
    assert {"memory", "lmdb", "rocksdb", "leveldb"} <= set(engines)
    assert {"msgpack", "pickle", "cbor"} <= set(codecs)
    # CI installs every extra: all must be usable here.
    assert all(info.available for info in [*engines.values(), *codecs.values()])
    assert engines["rocksdb"].install_hint is None


def test_unknown_names_list_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownEngineError, match="lmdb") as info:
        raftstore.open(tmp_path / "db", engine="nosuch")
    assert isinstance(info.value, LookupError)
    assert "memory" in str(info.value)
    with pytest.raises(UnknownCodecError, match="msgpack"):
        raftstore.open("memory://", codec="nosuch")
    assert not (tmp_path / "db").exists(), "a failed open must not create anything"


def test_missing_dependency_names_the_extra() -> None:
    raftstore.register_engine(
        "needs-missing",
        "raftstore_no_such_module:Engine",
        install_hint="pip install 'raftstore[missing]'",
        replace=True,
    )
    infos = {info.name: info for info in raftstore.available_engines()}
    with pytest.raises(EngineUnavailableError, match=r"raftstore\[missing\]") as info:
        raftstore.open("needs-missing://")
    assert isinstance(info.value, ImportError)
    assert isinstance(info.value.__cause__, ImportError)
    assert infos["needs-missing"].available is True  # no requires declared: found at use


def test_unavailable_requirement_reported_without_import() -> None:
    raftstore.register_engine(
        "requires-missing",
        "raftstore.engines.memory:MemoryEngine",
        requires=("raftstore_no_such_module",),
        install_hint="pip install x",
        replace=True,
    )
    infos = {info.name: info for info in raftstore.available_engines()}
    assert infos["requires-missing"].available is False
    assert infos["requires-missing"].install_hint == "pip install x"


class _TaggedMemory(MemoryEngine):
    name = "tagged"
    options = {
        "tag": EngineOption(str, "none", "a label"),
        "level": EngineOption(int, 1, "a level", lambda v: None if v >= 0 else "must be >= 0"),
        "fast": EngineOption(bool, False, "a flag"),
        "ratio": EngineOption(float, 0.5, "a ratio"),
    }


def test_register_engine_and_options() -> None:
    raftstore.register_engine("tagged", _TaggedMemory, replace=True)
    raftstore.register_engine("tagged", _TaggedMemory)  # the same class again: a no-op
    with pytest.raises(ConfigurationError, match="already registered"):
        raftstore.register_engine("tagged", MemoryEngine)
    with raftstore.open("tagged://?level=3&fast=yes&ratio=2", tag="x") as store:
        assert store.engine == "tagged"
        engine = store.kv
        assert isinstance(engine, _TaggedMemory)
    with pytest.raises(ConfigurationError, match="valid options: fast, level, ratio, tag"):
        raftstore.open("tagged://?nope=1")
    with pytest.raises(ConfigurationError, match="level"):
        raftstore.open("tagged://?level=-1")
    with pytest.raises(ConfigurationError, match="given both"):
        raftstore.open("tagged://?level=1", level=2)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"level": "0x10"}, {"level": 16}),
        ({"fast": "ON"}, {"fast": True}),
        ({"fast": "0"}, {"fast": False}),
        ({"ratio": 3}, {"ratio": 3.0}),
        ({}, {"tag": "none", "level": 1, "fast": False, "ratio": 0.5}),
    ],
)
def test_coercion(given: dict[str, object], expected: dict[str, object]) -> None:
    result = coerce_options("tagged", _TaggedMemory.options, given)
    assert {k: result[k] for k in expected} == expected


@pytest.mark.parametrize(
    "given",
    [
        {"level": "ten"},
        {"level": True},
        {"level": 1.5},
        {"fast": "maybe"},
        {"fast": 1},
        {"ratio": "x"},
        {"tag": 5},
    ],
)
def test_bad_option_values(given: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        coerce_options("tagged", _TaggedMemory.options, given)


def test_register_rejects_bad_input() -> None:
    with pytest.raises(ConfigurationError):
        raftstore.register_engine("Bad Name", MemoryEngine)
    with pytest.raises(ConfigurationError):
        raftstore.register_engine("notanengine", object)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        raftstore.register_codec("notacodec", 42)  # type: ignore[arg-type]


def test_register_codec() -> None:
    from raftstore.codecs.pickle import PickleCodec

    raftstore.register_codec("pickle2", PickleCodec, replace=True)
    with raftstore.open("memory://", codec="pickle2") as store:
        assert store.codec == "pickle2"
        store.store_log(raftstore.Log(1, 1, data=b"x"))
        assert store.get_log(1).data == b"x"


def test_entry_point_plugins_load_lazily(tmp_path: Path) -> None:
    """A plug-in installed with entry points is found by name and imported only when used."""
    dist = tmp_path / "site" / "raftstore_demo_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: raftstore-demo-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[raftstore.engines]\nplugmem = raftstore_demo_plugin:Engine\n"
        "[raftstore.codecs]\nplugpickle = raftstore_demo_plugin:Codec\n"
    )
    (tmp_path / "site" / "raftstore_demo_plugin.py").write_text(
        "from raftstore.engines.memory import MemoryEngine as Engine\n"
        "from raftstore.codecs.pickle import PickleCodec as Codec\n"
    )
    code = (
        "import sys, raftstore\n"
        "assert 'raftstore_demo_plugin' not in sys.modules\n"
        "with raftstore.open('plugmem://', codec='plugpickle') as s:\n"
        "    s.store_log(raftstore.Log(1, 2, data=b'p'))\n"
        "    assert s.get_log(1).term == 2\n"
        "names = [i.name for i in raftstore.available_engines()]\n"
        "assert 'plugmem' in names, names\n"
        "print('ok')\n"
    )
    env = {"PYTHONPATH": str(tmp_path / "site")}
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_import_is_light() -> None:
    code = (
        "import sys, raftstore\n"
        "heavy = {"
        "'lmdb', 'rocksdict', 'plyvel', 'cbor2', 'msgpack', 'pysyncobj'"
        "} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "kwargs",
    [{"sync": "yes"}, {"read_only": 1}, {"codec": 5}, {"create": None}],
)
def test_open_argument_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        raftstore.open("memory://", **kwargs)  # type: ignore[arg-type]


def test_url_and_keyword_conflicts(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="names engine"):
        raftstore.open(f"lmdb://{tmp_path}/db", engine="memory")
    with pytest.raises(ConfigurationError, match="sync"):
        raftstore.open("memory://?sync=true", sync=False)
    with raftstore.open("memory://?sync=false&codec=pickle") as store:
        assert store.codec == "pickle"
    with pytest.raises(ConfigurationError):
        raftstore.open("memory://somewhere")
    with pytest.raises(ConfigurationError):
        raftstore.open("lmdb://")
