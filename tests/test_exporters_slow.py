"""`lite` at 224x224 to every format this machine can produce (issue 3's acceptance): each
with a manifest, the runnable ones passing parity. Slow: `nox -s slow`."""

from __future__ import annotations

import pytest

from harness.artifact import Artifact, ExportSpec
from harness.export import export_artifact
from harness.model import build_model, preset_config

pytestmark = pytest.mark.slow

SPECS = [
    (ExportSpec("onnx"), "passed"),
    (ExportSpec("executorch", "xnnpack", "fp32"), "passed"),
    (ExportSpec("executorch", "xnnpack", "int8"), "passed"),
    (ExportSpec("executorch", "coreml", "fp16"), "pending"),
    (ExportSpec("coreml", precision="fp16"), "pending"),
    (ExportSpec("pt2"), "passed"),
]


@pytest.fixture(scope="module")
def lite():
    return build_model(preset_config("lite"))


@pytest.mark.parametrize("spec,parity", SPECS, ids=[s.label for s, _ in SPECS])
def test_lite_exports(lite, tmp_path_factory, spec, parity):
    art = export_artifact(lite, spec, cache=tmp_path_factory.mktemp("cache"))
    m = art.manifest
    assert m["parity"]["status"] == parity
    assert m["inputs"][0]["shape"] == [1, 3, 224, 224] and m["outputs"][0]["shape"] == [1, 2]
    assert m["size"] > 10e6 and m["lowering"]
    if spec.format == "executorch":
        assert m["lowering"]["matmul_flops_delegated_share"] >= 0.95
    Artifact.load(art.folder).verify()
