"""The everyday loops, one session each (see CONTRIBUTING.md)."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "types", "fast"]

PATHS = ["raftstore", "tests", "bench"]
EXTRAS = ".[all,test,docs]"


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", *PATHS)
    session.run("ruff", "format", "--check", *PATHS)


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on the package, then on the tests and the benchmarks."""
    session.install("-e", EXTRAS)
    session.run("mypy")
    session.run("mypy", "--strict", "tests", "bench")


@nox.session
def fast(session: nox.Session) -> None:
    """The tests without the slow ones."""
    session.install("-e", EXTRAS)
    session.run("python", "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, as CI runs it."""
    session.install("-e", EXTRAS)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly."""
    session.install("-e", EXTRAS)
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "--site-dir",
        session.create_tmp(),
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """A smoke run of the benchmark."""
    session.install("-e", EXTRAS)
    session.run("raftstore", "bench", "--quick", "--engines", "lmdb", "--codecs", "msgpack")
