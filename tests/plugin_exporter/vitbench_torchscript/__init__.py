"""A third-party vitbench exporter: the model traced to TorchScript. It registers itself
through the ``vitbench.exporters`` entry point and uses only vitbench's public pieces."""

from __future__ import annotations

from pathlib import Path

from harness.artifacts import Artifact
from harness.exporters.common import example_input, io_description


class TorchScriptExporter:
    name = "torchscript"

    def unavailable_reason(self) -> str:
        return ""

    def export(self, model, spec, out_dir):
        import torch

        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), example_input(model, spec))
        path = Path(out_dir) / "model.ts"
        traced.save(str(path))
        return Artifact(path=path, manifest={**io_description(model, spec), "lowering": {"tracer": "torch.jit.trace"}})

    def run(self, artifact, inputs):
        """Run the traced program; option ``output_offset`` shifts its outputs (a runtime
        that disagrees with PyTorch, to exercise failed parity)."""
        import torch

        module = torch.jit.load(str(artifact.path))
        offset = float(artifact.manifest.get("options", {}).get("output_offset", 0.0))
        with torch.no_grad():
            return [module(torch.from_numpy(x)).numpy() + offset for x in inputs]

    def where(self, artifact):
        return "torch.jit on this host"
