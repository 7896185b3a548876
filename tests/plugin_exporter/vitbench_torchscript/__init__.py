"""A third-party vitbench exporter: the model traced to TorchScript. It registers itself
through the ``vitbench.exporters`` entry point and uses only vitbench's public pieces; the
artifacts it writes run on the host target through the runtime it registers beside it
(``vitbench.runtimes``: vitbench_torchscript.runtime)."""

from __future__ import annotations

from pathlib import Path

from harness.artifact import Artifact
from harness.exporters import Exporter
from harness.exporters.common import example_input, io_description


class TorchScriptExporter(Exporter):
    name = "torchscript"

    def export(self, model, spec, out_dir, calibration=None):
        import torch

        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), example_input(model, spec))
        path = Path(out_dir) / "model.ts"
        traced.save(str(path))
        manifest = {**io_description(model, spec), "lowering": {"tracer": "torch.jit.trace"}}
        return Artifact(path=path, manifest=manifest)
