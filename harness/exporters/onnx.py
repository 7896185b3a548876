"""ONNX: one self-contained ``.onnx`` file (no external data), opset 18, from the
``torch.export`` program through the dynamo exporter; optionally a dynamic batch axis.
Parity runs here through ONNX Runtime's CPU provider."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
from pathlib import Path
from typing import Any

from harness.artifact import Artifact, ExportSpec
from harness.errors import UserError
from harness.exporters import Exporter
from harness.exporters.common import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_program,
    histogram,
    io_description,
    lowering_error,
)

MODEL_FILE = "model.onnx"
OPSET = 18
PRECISIONS = ("fp32",)


class OnnxExporter(Exporter):
    name = "onnx"

    def unavailable_reason(self) -> str:
        missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
        return f"{', '.join(missing)} not installed: pip install onnx onnxscript" if missing else ""

    def precisions(self, delegate: str | None = None) -> tuple[str, ...]:
        return PRECISIONS

    def resolve(self, spec: ExportSpec) -> ExportSpec:
        if spec.delegate:
            raise UserError(
                f"onnx takes no delegate (got {spec.delegate!r}); execution providers are chosen "
                "at run time"
            )
        precision = spec.precision or "fp32"
        if precision not in PRECISIONS:
            raise UserError(f"onnx does not support {precision}; it takes {', '.join(PRECISIONS)}")
        options = {"opset": OPSET, "dynamic_batch": False, **spec.options}
        if int(options["opset"]) not in (17, 18):
            raise UserError(f"onnx opset {options['opset']} is not supported; use 17 or 18")
        return dataclasses.replace(spec, precision=precision, options=options)

    def export(
        self, model: Any, spec: ExportSpec, out_dir: Path, calibration: Any = None
    ) -> Artifact:
        import torch

        spec = self.resolve(spec)
        dynamic = bool(spec.options["dynamic_batch"])
        program = export_program(model, spec, dynamic_batch=dynamic)
        path = Path(out_dir) / MODEL_FILE
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its steps
                onnx_program = torch.onnx.export(
                    program,
                    dynamo=True,
                    opset_version=int(spec.options["opset"]),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    verbose=False,
                    external_data=False,
                    optimize=True,
                )
                onnx_program.save(str(path), external_data=False)
        except Exception as exc:  # noqa: BLE001 - an unsupported operator is the model's
            raise lowering_error("the ONNX exporter", exc) from None
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        manifest = {
            **io_description(model, spec, dynamic_batch=dynamic),
            "lowering": {
                "operators": histogram(n.op_type for n in graph.node),
                "nodes": len(graph.node),
                "opset": int(spec.options["opset"]),
            },
        }
        return Artifact(path=path, manifest=manifest)
