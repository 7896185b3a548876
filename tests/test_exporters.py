"""Exporters through the one entry point (export_artifact) and the CLI: artifacts, manifests,
lowering summaries, parity, and bad input. Small models keep this fast; `lite` is in
test_exporters_slow.py."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from harness.artifact import Artifact, ExportSpec
from harness.cli import main
from harness.errors import UserError
from harness.export import export_artifact
from harness.exporters.common import LoweringError
from harness.model import build_model, save_checkpoint
from harness.parity import load_reference
from tests.support.models import small_config

ROOT = Path(__file__).resolve().parents[1]


def one_block(**kw):
    """The smallest ViT that still has every operator: one block, 16x16 input."""
    return build_model(small_config(img_size=16, num_heads=(2,), mlp_dims=(32,), **kw))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("VITBENCH_CACHE", str(root))
    return root


def entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


# -- formats ----------------------------------------------------------------------------------


def test_onnx_single_file_dynamic_batch_and_parity(cache):
    model = build_model(small_config())
    art = export_artifact(model, ExportSpec("onnx", options={"dynamic_batch": True}))
    files = sorted(p.name for p in art.folder.iterdir())
    assert files == ["manifest.json", "model.onnx", "reference.npz"]  # no external data file
    m = art.manifest
    assert m["inputs"] == [{"name": "pixels", "shape": ["batch", 3, 32, 32], "dtype": "float32"}]
    assert m["outputs"][0]["shape"] == ["batch", 5]
    assert m["lowering"]["opset"] == 18 and m["lowering"]["operators"]["MatMul"] >= 6
    assert m["parity"]["status"] == "passed" and m["parity"]["max_abs"] < 1e-4
    assert m["tools"]["torch"] == importlib.metadata.version("torch")
    assert m["tools"]["onnx"] == importlib.metadata.version("onnx")
    assert m["model"]["name"] == "small" and len(m["model"]["sha256"]) == 64
    Artifact.load(art.folder).verify()
    # the batch axis really is dynamic
    session = ort.InferenceSession(str(art.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"pixels": x})[0], ref, atol=1e-4)
    inputs, outputs = load_reference(art.folder)
    assert len(inputs) == 8 and outputs[0].shape == (1, 5)


def test_pt2_roundtrip(cache):
    model = build_model(small_config())
    art = export_artifact(model, ExportSpec("pt2"))
    assert art.path.name == "model.pt2" and art.manifest["parity"]["status"] == "passed"
    assert art.manifest["parity"]["max_abs"] == 0.0
    loaded = torch.export.load(str(art.path))
    assert loaded.module()(torch.zeros(1, 3, 32, 32)).shape == (1, 5)


def test_executorch_xnnpack_fp32_delegates_all_matmuls(cache):
    art = export_artifact(one_block(), ExportSpec("executorch"))
    m = art.manifest
    assert (m["delegate"], m["precision"], art.path.name) == ("xnnpack", "fp32", "model.pte")
    low = m["lowering"]
    assert low["backends"]["XnnpackBackend"]["delegated_ops"] > 0
    ops = low["backends"]["XnnpackBackend"]["operators"]
    assert (
        ops["linear"] == 5 and ops["convolution"] == 1
    )  # qkv, proj, fc1, fc2, head; patch embedding
    assert low["matmul_flops_delegated_share"] == 1.0
    assert m["parity"]["status"] == "passed" and "executorch" in m["parity"]["where"]


@pytest.mark.slow
def test_executorch_xnnpack_int8_with_npz_calibration(cache, tmp_path):
    data = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(
        data,
        train_images=rng.integers(0, 255, (12, 28, 28), dtype=np.uint8),
        train_labels=np.zeros((12, 1), np.uint8),
    )
    model = one_block()
    art = export_artifact(model, ExportSpec("executorch", "xnnpack", "int8"), calibration=data)
    m = art.manifest
    assert m["calibration"]["source"] == str(data) and m["calibration"]["count"] == 12
    ops = m["lowering"]["backends"]["XnnpackBackend"]["operators"]
    assert ops.get("quantize_per_tensor", 0) > 0 and ops.get("dequantize_per_channel", 0) > 0
    assert m["parity"]["status"] == "passed" and m["parity"]["tolerance"]["cosine"] == 0.98
    # other calibration data is another artifact
    other = export_artifact(model, ExportSpec("executorch", "xnnpack", "int8"))
    assert other.folder != art.folder and other.manifest["calibration"]["source"].startswith(
        "seeded"
    )


def test_coreml_mlpackage_parity_pending_on_linux(cache):
    art = export_artifact(build_model(small_config()), ExportSpec("coreml", precision="fp16"))
    assert art.path.name == "model.mlpackage" and art.path.is_dir()
    m = art.manifest
    assert m["options"]["minimum_deployment_target"] == "iOS17"
    assert m["lowering"]["operators"]["linear"] == 13 and "const" not in m["lowering"]["operators"]
    if sys.platform != "darwin":
        assert m["parity"] == {
            "status": "pending",
            "where": "a device",
            "reason": "Core ML predicts only on macOS",
        }
    Artifact.load(art.path).verify()


@pytest.mark.slow
def test_executorch_coreml_delegate(cache):
    art = export_artifact(one_block(), ExportSpec("executorch", "coreml", "fp16"))
    low = art.manifest["lowering"]
    assert list(low["backends"]) == ["CoreMLBackend"] and low["non_delegated_ops"] == 0
    assert art.manifest["parity"]["status"] == "pending"


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_export_json_and_text(cache, tmp_path):
    out = tmp_path / "out"
    ckpt = save_checkpoint(build_model(small_config()), tmp_path / "ckpt")
    args = ["export", "--model", str(ckpt), "--format", "pt2"]
    r = CliRunner().invoke(main, [*args, "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["path"] == str(out / "model.pt2") and data["format"] == "pt2"
    assert data["model"]["config"]["img_size"] == 32 and data["model"]["name"] == "small"
    Artifact.load(out).verify()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0
    assert "parity      passed" in r.output and "artifact    " in r.output


def test_cli_exporters_lists_delegates_and_reasons(monkeypatch):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    r = CliRunner().invoke(main, ["exporters", "--json"])
    assert r.exit_code == 0
    rows = {row["name"]: row for row in json.loads(r.output)}
    assert {"onnx", "executorch", "coreml", "pt2"} <= set(rows)
    delegates = rows["executorch"]["delegates"]
    assert delegates["xnnpack"]["available"] is True
    assert delegates["qnn"]["available"] is False and "QNN_SDK_ROOT" in delegates["qnn"]["reason"]
    assert (
        delegates["mediatek"]["available"] is False
        and "mtk_converter" in delegates["mediatek"]["reason"]
    )


# -- bad input: one line, non-zero exit, nothing left in the cache ------------------------------

BAD = [
    (["--format", "tflite"], "unknown exporter 'tflite'; available: coreml, executorch, onnx, pt2"),
    (
        ["--format", "executorch", "--delegate", "tpu"],
        "unknown executorch delegate 'tpu'; valid: xnnpack, coreml",
    ),
    (
        ["--format", "executorch", "--precision", "fp16"],
        "executorch/xnnpack does not support fp16; it takes fp32, int8",
    ),
    (["--format", "onnx", "--precision", "int8"], "onnx does not support int8"),
    (
        ["--format", "coreml", "--precision", "int8"],
        "coreml does not support int8; it takes fp16, fp32",
    ),
    (["--format", "executorch", "--delegate", "qnn"], "QNN_SDK_ROOT"),
    (["--format", "executorch", "--delegate", "mediatek"], "mtk_converter"),
    (
        ["--format", "executorch", "--delegate", "qnn", "-o", "chipset=SM0000"],
        "unknown QNN chipset 'SM0000'",
    ),
    (["--format", "executorch", "--dynamic-batch"], "--dynamic-batch is for onnx"),
    (["--format", "pt2", "-o", "novalue"], "expected KEY=VALUE"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line(cache, monkeypatch, args, message):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    r = CliRunner().invoke(main, ["export", "--model", "tiny", "--img-size", "32", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert r.output.startswith("vitbench: error: ") and r.output.count("\n") == 1
    assert entries(cache) == []


def test_missing_sdk_fails_before_importing_the_backend(tmp_path):
    """qnn and mediatek fail at once: their backends (which could reach for an SDK or a
    download) are never imported."""
    code = (
        "import sys\n"
        "from harness.cli import main\n"
        "for d in ('qnn', 'mediatek'):\n"
        "    try:\n"
        "        main(['export', '--model', 'tiny', '--format', 'executorch', '--delegate', d])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 2, e.code\n"
        "loaded = [m for m in sys.modules if m.startswith(('executorch', 'torch'))]\n"
        "print('LOADED', loaded)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VITBENCH_CACHE": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout
    assert (
        r.stderr.count("vitbench: error: ") == 2
        and "QNN_SDK_ROOT" in r.stderr
        and "NeuroPilot" in r.stderr
    )


def test_qnn_sdk_root_that_is_not_a_folder(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path / "nowhere"))
    r = CliRunner().invoke(
        main, ["export", "--model", "tiny", "--format", "executorch", "--delegate", "qnn"]
    )
    assert r.exit_code == 2 and "is not a folder" in r.output


def test_output_folder_not_writable(cache, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="output folder .* is not writable"):
        export_artifact(build_model(small_config()), ExportSpec("pt2"), out=blocker / "sub")
    assert entries(cache) == []


class Bessel(torch.nn.Module):
    """A model with an operator no exporter here lowers."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.special.i1(x.flatten(1)[:, :8]))


@pytest.mark.parametrize("fmt,op", [("onnx", "bessel_i1"), ("coreml", "alias")])
def test_model_that_fails_to_lower_names_the_operator(cache, fmt, op):
    spec = ExportSpec(
        fmt, precision="fp16" if fmt == "coreml" else "fp32", options={"input_shape": [2, 2, 2]}
    )
    with pytest.raises(
        LoweringError, match=f"cannot lower this model: operator .*{op} is not supported"
    ) as info:
        export_artifact(Bessel(), spec)
    assert "\n" not in str(info.value)
    assert entries(cache) == [] and list((cache / ".tmp").iterdir()) == []
