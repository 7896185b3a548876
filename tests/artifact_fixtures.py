"""Small real artifacts for target tests: the test ViT exported to ONNX (torch.onnx.export,
dynamo, one file) with its manifest and reference outputs, the way the exporter lays them
out. Swap for the real exporter (harness.exporters.onnx) once it lands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.artifacts import Artifact, path_size, sha256_path
from harness.model import build_model
from harness.parity import save_reference, seeded_inputs
from tests.conftest import small_config

REFERENCE_COUNT = 3
REFERENCE_SEED = 7


def _with_manifest(path: Path, fmt: str, inp: tuple[str, tuple], out: tuple[str, list]) -> Artifact:
    art = Artifact(path, {
        "file": path.name, "format": fmt, "sha256": sha256_path(path), "size": path_size(path),
        "inputs": [{"name": inp[0], "shape": list(inp[1]), "dtype": "float32"}],
        "outputs": [{"name": out[0], "shape": list(out[1]), "dtype": "float32"}],
        "precision": "fp32", "exporter": "tests.artifact_fixtures",
    })
    art.write_manifest()
    return art


def export_onnx(folder: Path, **config) -> Artifact:
    """``folder/model.onnx`` + ``manifest.json`` + ``reference.npz`` for the small test ViT."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = small_config(**config)
    model = build_model(cfg).eval()
    shape = (1, cfg.in_chans, cfg.img_size, cfg.img_size)
    path = folder / "model.onnx"
    torch.onnx.export(model, (torch.from_numpy(seeded_inputs(shape, 1)[0]),), str(path), dynamo=True,
                      external_data=False, input_names=["pixel_values"], output_names=["logits"], verbose=False)
    inputs = seeded_inputs(shape, REFERENCE_COUNT, REFERENCE_SEED)
    with torch.no_grad():
        outputs = [model(torch.from_numpy(x)).numpy() for x in inputs]
    save_reference(folder, outputs, shape, REFERENCE_COUNT, REFERENCE_SEED)
    return _with_manifest(path, "onnx", ("pixel_values", shape), ("logits", [1, cfg.num_classes]))


def export_pt2(folder: Path, **config) -> Artifact:
    """``folder/model.pt2`` (torch.export) + ``manifest.json`` for the small test ViT."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = small_config(**config)
    shape = (1, cfg.in_chans, cfg.img_size, cfg.img_size)
    program = torch.export.export(build_model(cfg).eval(), (torch.from_numpy(seeded_inputs(shape, 1)[0]),))
    path = folder / "model.pt2"
    torch.export.save(program, str(path))
    return _with_manifest(path, "pt2", ("x", shape), ("output", [1, cfg.num_classes]))


def fake_pte(folder: Path) -> Artifact:
    """An ExecuTorch-format artifact (bytes are not a real program: only its format matters)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.pte"
    path.write_bytes(np.arange(64, dtype=np.uint8).tobytes())
    art = Artifact(path, {"file": path.name, "format": "executorch", "sha256": sha256_path(path),
                          "size": path_size(path), "delegate": "xnnpack", "precision": "fp32"})
    art.write_manifest()
    return art
