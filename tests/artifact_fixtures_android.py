"""Small artifacts for the Android tests, made without an exporter.

An ExecuTorch artifact here is a .npy weight matrix W (classes x channels) named model.pte:
the stand-in executor_runner "runs" it as mean-over-pixels then W (tests/android_runners).
An ONNX artifact is a real ONNX model of the same function (GlobalAveragePool, Flatten,
MatMul). Both get a manifest like an exporter writes and, optionally, reference outputs for
harness.parity's seeded inputs.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import numpy as np

from harness.artifacts import Artifact, sha256_path
from harness.parity import save_reference, seeded_inputs

RUNNERS = Path(__file__).parent / "android_runners"
SHAPE = (1, 3, 16, 16)
CLASSES = 5


def weights(seed: int = 0, classes: int = CLASSES, channels: int = SHAPE[1]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((classes, channels)).astype(np.float32)


def reference_function(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    feats = x.reshape(x.shape[0], w.shape[1], -1).mean(axis=2)
    return (feats @ w.T).astype(np.float32)


def onnx_bytes(w: np.ndarray) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "wt"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [SHAPE[0], w.shape[0]])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")],
    )
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def make_artifact(folder: Path, fmt: str = "executorch", *, w: np.ndarray | None = None, content: bytes | None = None,
                  delegate: str | None = "xnnpack", precision: str = "fp32", reference_w: np.ndarray | None = None,
                  reference: bool = True) -> Artifact:
    """An artifact in ``folder``; ``content`` replaces the model bytes (a crash marker, junk);
    ``reference_w`` computes the reference outputs with other weights (a wrong export)."""
    folder.mkdir(parents=True, exist_ok=True)
    w = weights() if w is None else w
    name = "model.pte" if fmt == "executorch" else "model.onnx"
    if content is None:
        if fmt == "executorch":
            buf = io.BytesIO()
            np.save(buf, w, allow_pickle=False)
            content = buf.getvalue()
        else:
            content = onnx_bytes(w)
    path = folder / name
    path.write_bytes(content)
    manifest = {
        "file": name, "format": fmt, "sha256": sha256_path(path), "size": path.stat().st_size,
        "delegate": delegate if fmt == "executorch" else None, "precision": precision,
        "inputs": [{"name": "x", "shape": list(SHAPE), "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [SHAPE[0], w.shape[0]], "dtype": "float32"}],
    }
    art = Artifact(path=path, manifest=manifest)
    art.write_manifest()
    if reference:
        inputs = seeded_inputs(SHAPE, count=2, seed=7)
        rw = w if reference_w is None else reference_w
        save_reference(folder, [reference_function(rw, x) for x in inputs], SHAPE, 2, 7)
    return art


def install_runners(dest: Path) -> dict[str, Path]:
    """The stand-in runners as executables whose #! line is this Python (they import numpy)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for src, name in (("executor_runner.py", "executor_runner"), ("onnxruntime_perf_test.py", "onnxruntime_perf_test")):
        text = (RUNNERS / src).read_text().replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1)
        p = dest / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        out[name] = p
    return out


def elf_file(path: Path, machine: int) -> Path:
    """A file with just an ELF64 header for ``machine`` (183 aarch64, 62 x86-64)."""
    head = bytearray(64)
    head[:4] = b"\x7fELF"
    head[4], head[5], head[6] = 2, 1, 1  # 64-bit, little-endian, version 1
    head[16:18] = (2).to_bytes(2, "little")  # ET_EXEC
    head[18:20] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(head))
    os.chmod(path, 0o755)
    return path
