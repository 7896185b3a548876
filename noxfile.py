"""Sessions: tests (default suite), slow, lint, demo (the main job on the built-in default),
bench. Every session installs with constraints.txt, which pins torch to the CPU build."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install("-c", "constraints.txt", "-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The default suite: everything not marked slow, one worker per core (at most four),
    each test file on one worker (its module fixtures made once). The workers share one
    export cache (tests/conftest.py). `nox -s tests -- -n 0` runs it in one process."""
    _install(session)
    workers = ("-n", "auto", "--maxprocesses", "4", "--dist", "loadfile")
    session.run("pytest", "-m", "not slow", *workers, *session.posargs)


@nox.session(python=PYTHON)
def slow(session: nox.Session) -> None:
    """Tests marked slow (large exports, training)."""
    _install(session)
    session.run("pytest", "-m", "slow", *session.posargs, success_codes=[0, 5])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("-c", "constraints.txt", "ruff")
    paths = ("harness", "targets", "reports", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", *paths)
    session.run("ruff", "check", *paths)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job on the built-in default."""
    _install(session, extras="dev")
    session.run("vitbench", "models")
    session.run("vitbench", "info", "lite")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks in bench/: each prints ratios measured side by side in one run."""
    _install(session)
    import glob

    for script in sorted(glob.glob("bench/bench_*.py")):
        session.run("python", script, *session.posargs)


@nox.session(name="builtin-models", python=PYTHON)
def builtin_models(session: nox.Session) -> None:
    """Rebuild the built-in X-ray pair with vitbench's own train and compress commands and
    check it against its model card (`-- --write` ships the rebuilt pair and card)."""
    _install(session)
    session.run("python", "-m", "harness.model.builtin.build", *session.posargs)
