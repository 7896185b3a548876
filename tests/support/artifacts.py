"""Artifacts for target tests, written by vitbench's own exporter.

:func:`exported` exports the small test ViT through :func:`harness.export.export_artifact`
(the real exporters, export-time parity and the content-addressed cache) and copies the
result into the test's folder: model file, ``manifest.json`` (input ``pixels``, output
``logits``) and ``reference.npz``, exactly what ``vitbench export`` writes. Every test
session shares one cache (all its processes), so each (format, delegate, precision, config,
seed) is exported once per session and later tests get a verified copy.

The other helpers damage a copy the way a real failure would: :func:`replace_model` (junk or
a crash marker in place of the program, manifest updated so the hash matches),
:func:`wrong_reference` (reference outputs from another model: a wrong export) and
:func:`without_reference`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from harness.artifact import Artifact, ExportSpec, path_size, sha256_path
from harness.export import export_artifact
from harness.model import ViTConfig, build_model
from harness.parity import REFERENCE_FILE, load_reference, save_reference
from tests.support.models import small_config

# set by tests/conftest.py for the whole session (every xdist worker shares the folder; the
# cache's file locks keep concurrent exports of one key apart)
EXPORTS_ENV = "VITBENCH_TEST_EXPORTS"
_CACHE: Path | None = None


def session_cache() -> Path:
    """The export cache shared by this test session: $VITBENCH_TEST_EXPORTS, else a folder
    of this process's own (removed when it exits)."""
    global _CACHE
    if os.environ.get(EXPORTS_ENV):
        return Path(os.environ[EXPORTS_ENV])
    if _CACHE is None:
        import atexit

        _CACHE = Path(tempfile.mkdtemp(prefix="vitbench-test-exports-"))
        atexit.register(shutil.rmtree, _CACHE, True)
    return _CACHE


def small_model(cfg: ViTConfig | None = None, seed: int = 0) -> torch.nn.Module:
    """The small test ViT with weights drawn from ``seed`` (the config's seed)."""
    return build_model(replace(cfg or small_config(), seed=seed)).eval()


def exported(
    folder: str | Path,
    fmt: str,
    *,
    delegate: str | None = None,
    precision: str | None = None,
    cfg: ViTConfig | None = None,
    seed: int = 0,
    **options,
) -> Artifact:
    """A copy in ``folder`` of the small test ViT exported as ``fmt`` by the real exporter
    (defaults as ``vitbench export`` fills them: executorch -> xnnpack, coreml -> fp16)."""
    spec = ExportSpec(fmt, delegate=delegate, precision=precision or "", options=options)
    if precision is None:
        spec = ExportSpec(fmt, delegate=delegate, options=options)
    return export_artifact(small_model(cfg, seed), spec, cache=session_cache(), out=folder)


def replace_model(artifact: Artifact, content: bytes) -> Artifact:
    """``artifact`` with its model file replaced by ``content`` (and a manifest that matches,
    so only a runtime can tell)."""
    path = artifact.path
    if path.is_dir():
        shutil.rmtree(path)
    path.write_bytes(content)
    manifest = {**artifact.manifest, "sha256": sha256_path(path), "size": path_size(path)}
    out = Artifact(path, manifest)
    out.write_manifest()
    return out


def wrong_reference(artifact: Artifact, seed: int = 1) -> Artifact:
    """``artifact`` whose reference outputs come from the same ViT with other weights: what
    a broken export looks like to parity."""
    inputs, _ = load_reference(artifact.folder)
    model = small_model(ViTConfig.from_dict(artifact.manifest["model"]["config"]), seed)
    with torch.no_grad():
        outputs = [model(torch.from_numpy(x)).numpy() for x in inputs]
    with np.load(artifact.folder / REFERENCE_FILE) as z:
        shape, count, ref_seed = tuple(z["shape"]), int(z["count"]), int(z["seed"])
    save_reference(artifact.folder, outputs, shape, count, ref_seed)
    return artifact


def without_reference(artifact: Artifact) -> Artifact:
    """``artifact`` with no ``reference.npz`` (an export from before parity was kept)."""
    (artifact.folder / REFERENCE_FILE).unlink(missing_ok=True)
    return artifact


def relabel(artifact: Artifact, **fields) -> Artifact:
    """``artifact`` with manifest ``fields`` changed (``delegate="qnn"``): a program lowered
    for an SDK this machine lacks (QNN, Core ML on Linux) cannot be built here, so the
    exporter's XNNPACK program stands in, labelled the way that exporter labels its own."""
    out = Artifact(artifact.path, {**artifact.manifest, **fields})
    out.write_manifest()
    return out
