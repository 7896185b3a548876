"""pt2: the saved ``torch.export`` program (``torch.export.save``), which Qualcomm AI Hub
accepts as a source model. Parity runs here by loading it back into PyTorch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.artifact import Artifact, ExportSpec
from harness.errors import UserError
from harness.exporters import Exporter
from harness.exporters.common import export_program, histogram, io_description, op_name

MODEL_FILE = "model.pt2"


class PT2Exporter(Exporter):
    name = "pt2"

    def resolve(self, spec: ExportSpec) -> ExportSpec:
        if spec.delegate:
            raise UserError(f"pt2 takes no delegate (got {spec.delegate!r})")
        precision = spec.precision or "fp32"
        if precision != "fp32":
            raise UserError(
                f"pt2 does not support {precision}; it takes fp32 (quantize on the target side)"
            )
        dynamic = bool(spec.options.get("dynamic_batch", False))
        return dataclasses.replace(
            spec, precision=precision, options={**spec.options, "dynamic_batch": dynamic}
        )

    def export(
        self, model: Any, spec: ExportSpec, out_dir: Path, calibration: Any = None
    ) -> Artifact:
        import torch

        spec = self.resolve(spec)
        dynamic = spec.options["dynamic_batch"]
        program = export_program(model, spec, dynamic_batch=dynamic)
        path = Path(out_dir) / MODEL_FILE
        torch.export.save(program, str(path))
        ops = [op_name(n) for n in program.graph.nodes if n.op == "call_function"]
        manifest = {
            **io_description(model, spec, dynamic_batch=dynamic),
            "lowering": {"operators": histogram(ops), "nodes": len(ops)},
        }
        return Artifact(path=path, manifest=manifest)
