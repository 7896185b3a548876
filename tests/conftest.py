from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from harness.model.config import ViTConfig
from tests.support.artifacts import EXPORTS_ENV, session_cache
from tests.support.models import small_config

_EXPORTS = pytest.StashKey[str]()

# vitbench's log (third-party warnings, native runtimes' lines) goes to a throwaway file, not
# to ~/.cache/vitbench; subprocesses the tests start inherit it
os.environ.setdefault("VITBENCH_LOG", os.path.join(tempfile.mkdtemp(prefix="vitbench-log-"), "log"))


def pytest_configure(config):
    """One export cache for the whole test session, made by the main process so that every
    xdist worker (and every subprocess a test starts) shares it: each (model, export) is
    built once and verified on every later hit (tests/support/artifacts.session_cache)."""
    if not hasattr(config, "workerinput"):
        folder = tempfile.mkdtemp(prefix="vitbench-test-exports-")
        os.environ[EXPORTS_ENV] = folder
        config.stash[_EXPORTS] = folder


def pytest_unconfigure(config):
    folder = config.stash.get(_EXPORTS, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(EXPORTS_ENV, None)


@pytest.fixture(scope="session")
def shared_cache() -> Path:
    """The session's export cache, for tests that set $VITBENCH_CACHE to it: plans run
    against it find the artifacts other tests already exported."""
    return session_cache()


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """The small test ViT (tests/support/artifacts.small_model) as a checkpoint folder: a
    plan naming it exports the very model the other tests export, so its artifacts come
    from the session's cache."""
    from harness.model import save_checkpoint
    from tests.support.artifacts import small_model

    return save_checkpoint(small_model(), tmp_path_factory.mktemp("small") / "checkpoint")


@pytest.fixture
def small_cfg() -> ViTConfig:
    return small_config()


@pytest.fixture(autouse=True)
def _torch_threads():
    # one thread: two spin against each other on a loaded 2-core machine (30x slower seen)
    torch.set_num_threads(1)
    yield


# -- plugins registered the way an installed package registers them -----------------------------


@pytest.fixture
def register_plugin(tmp_path, monkeypatch):
    """``register_plugin(group, name, "module:attr")`` makes an entry point visible to
    importlib.metadata for this test: a ``.dist-info`` folder on sys.path, as pip leaves."""
    site = tmp_path / "plugin-site"
    count = [0]

    def register(group: str, name: str, ref: str, dist: str = "vitbench-test-plugin") -> None:
        count[0] += 1
        info = site / f"{dist.replace('-', '_')}_{count[0]}-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0\n")
        (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {ref}\n")

    monkeypatch.syspath_prepend(str(site))
    return register


# -- a third-party exporter, pip-installed into a temporary folder ----------------------------


def _pip_plugin(folder: str, tmp_path_factory):
    """Builds and installs ``tests/FOLDER`` (a package registering vitbench plugins through
    entry points) with ``pip install --target``; returns a function that runs ``vitbench
    ARGS...`` in a subprocess that sees it on its path."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from harness.model import build_model, save_checkpoint

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp(folder)
    target = base / "site"
    source = shutil.copytree(root / "tests" / folder, base / "src")  # builds leave files behind
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INDEX": "1", "TMPDIR": str(base)},
    )
    checkpoint = save_checkpoint(build_model(small_config()), base / "small-checkpoint")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(root)]),
        "VITBENCH_CACHE": str(base / "cache"),
    }

    def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "harness.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            cwd=cwd,
        )

    run.checkpoint = checkpoint
    run.base = base
    return run


@pytest.fixture(scope="session")
def installed_plugin(tmp_path_factory):
    """tests/plugin_exporter: a TorchScript exporter registered through ``vitbench.exporters``."""
    return _pip_plugin("plugin_exporter", tmp_path_factory)


@pytest.fixture(scope="session")
def installed_target_plugin(tmp_path_factory):
    """tests/plugin_target: a target and its subcommand registered through
    ``vitbench.targets`` and ``vitbench.commands``."""
    return _pip_plugin("plugin_target", tmp_path_factory)
