from __future__ import annotations

import pytest
import torch

from harness.model.config import ViTConfig


def small_config(**kw) -> ViTConfig:
    """A pruned-looking ViT small enough for unit tests: uneven heads and MLP widths."""
    base = dict(img_size=32, patch_size=8, in_chans=3, num_classes=5, embed_dim=64, head_dim=16,
                num_heads=(2, 4, 1), mlp_dims=(128, 64, 32), name="small")
    base.update(kw)
    return ViTConfig(**base)


@pytest.fixture
def small_cfg() -> ViTConfig:
    return small_config()


@pytest.fixture(autouse=True)
def _torch_threads():
    # one thread: two spin against each other on a loaded 2-core machine (30x slower seen)
    torch.set_num_threads(1)
    yield


# -- a third-party exporter, pip-installed into a temporary folder ----------------------------

@pytest.fixture(scope="session")
def installed_plugin(tmp_path_factory):
    """Builds and installs tests/plugin_exporter (a TorchScript exporter registered through
    the ``vitbench.exporters`` entry point) with ``pip install --target``; returns a function
    that runs ``vitbench ARGS...`` in a subprocess that sees it on its path."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from harness.model import build_model, save_checkpoint

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("plugin")
    target = base / "site"
    source = shutil.copytree(root / "tests" / "plugin_exporter", base / "src")  # builds leave files behind
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, timeout=300,
                   env={**os.environ, "PIP_NO_INDEX": "1", "TMPDIR": str(base)})
    checkpoint = save_checkpoint(build_model(small_config()), base / "small-checkpoint")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(root)])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                              env=env, timeout=600)

    run.checkpoint = checkpoint
    return run
