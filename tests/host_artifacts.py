"""Small artifacts for target tests, made with the runtimes' own export APIs (onnx, pt2,
executorch with XNNPACK, coreml as an .mlpackage)."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.artifacts import Artifact, path_size, sha256_path
from harness.model import build_model
from tests.conftest import small_config


def make_artifact(folder: Path, fmt: str, cfg=None) -> Artifact:
    cfg = cfg or small_config()
    model = build_model(cfg)
    x = torch.randn(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    folder.mkdir(parents=True, exist_ok=True)
    ep = torch.export.export(model, (x,))
    delegate = None
    if fmt == "onnx":
        path = folder / "model.onnx"
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["image"], output_names=["logits"],
                          external_data=False)
    elif fmt == "pt2":
        path = folder / "model.pt2"
        torch.export.save(ep, str(path))
    elif fmt == "executorch":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        path = folder / "model.pte"
        prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
        path.write_bytes(prog.buffer)
        delegate = "xnnpack"
    elif fmt == "coreml":  # conversion works on Linux; prediction needs macOS
        import coremltools as ct

        path = folder / "model.mlpackage"
        ml = ct.convert(ep.run_decompositions({}), inputs=[ct.TensorType(name="image", shape=x.shape)],
                        outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                        minimum_deployment_target=ct.target.macOS14)
        ml.save(str(path))
    else:
        raise ValueError(fmt)
    manifest = {"file": path.name, "format": fmt, "delegate": delegate, "precision": "fp32",
                "sha256": sha256_path(path), "size": path_size(path),
                "inputs": [{"name": "image", "shape": list(x.shape), "dtype": "float32"}],
                "outputs": [{"name": "logits", "shape": [1, cfg.num_classes], "dtype": "float32"}]}
    art = Artifact(path, manifest)
    art.write_manifest()
    return art
