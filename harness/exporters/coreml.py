"""Core ML: an ML Program ``.mlpackage`` converted by coremltools from the ``torch.export``
program; fp16 by default (fp32 on request), minimum deployment target iOS 17 (options
``minimum_deployment_target=macOS14`` etc.). coremltools converts on macOS and Linux x86_64;
prediction needs macOS, so parity there runs in-process and elsewhere waits for a Mac."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import platform
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
from harness.exporters.executorch import coreml_unavailable

MODEL_FILE = "model.mlpackage"
PRECISIONS = ("fp16", "fp32")
DEPLOYMENT_TARGETS = ("iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15")
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


class CoreMLExporter(Exporter):
    name = "coreml"

    def unavailable_reason(self) -> str:
        return coreml_unavailable()

    def precisions(self, delegate: str | None = None) -> tuple[str, ...]:
        return PRECISIONS

    def resolve(self, spec: ExportSpec) -> ExportSpec:
        if spec.delegate:
            raise UserError(
                f"coreml takes no delegate (got {spec.delegate!r}); for the ExecuTorch Core ML "
                "delegate use --format executorch --delegate coreml"
            )
        precision = spec.precision or "fp16"
        if precision not in PRECISIONS:
            raise UserError(
                f"coreml does not support {precision}; it takes {', '.join(PRECISIONS)}"
            )
        if spec.options.get("dynamic_batch"):
            raise UserError("--dynamic-batch is for onnx; this Core ML export has a fixed batch")
        options = {"minimum_deployment_target": "iOS17", "compute_units": "ALL", **spec.options}
        if options["minimum_deployment_target"] not in DEPLOYMENT_TARGETS:
            raise UserError(
                f"unknown minimum_deployment_target {options['minimum_deployment_target']!r}; "
                f"valid: {', '.join(DEPLOYMENT_TARGETS)}"
            )
        if options["compute_units"] not in COMPUTE_UNITS:
            raise UserError(
                f"unknown compute_units {options['compute_units']!r}; valid: "
                f"{', '.join(COMPUTE_UNITS)}"
            )
        reason = coreml_unavailable()
        if reason:  # a missing SDK: this host's, not the model's
            raise UserError(reason, kind="infrastructure")
        return dataclasses.replace(spec, precision=precision, options=options)

    def export(
        self, model: Any, spec: ExportSpec, out_dir: Path, calibration: Any = None
    ) -> Artifact:
        import coremltools as ct

        spec = self.resolve(spec)
        program = export_program(model, spec).run_decompositions({})
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # progress bars
                mlmodel = ct.convert(
                    program,
                    convert_to="mlprogram",
                    minimum_deployment_target=getattr(
                        ct.target, spec.options["minimum_deployment_target"]
                    ),
                    compute_precision=ct.precision.FLOAT16
                    if spec.precision == "fp16"
                    else ct.precision.FLOAT32,
                    compute_units=getattr(ct.ComputeUnit, spec.options["compute_units"]),
                )
        except Exception as exc:  # noqa: BLE001 - an unsupported operator is the model's
            raise lowering_error("coremltools", exc) from None
        mlspec = mlmodel.get_spec()
        ct.utils.rename_feature(mlspec, mlspec.description.input[0].name, INPUT_NAME)
        ct.utils.rename_feature(mlspec, mlspec.description.output[0].name, OUTPUT_NAME)
        renamed = ct.models.MLModel(
            mlspec, weights_dir=mlmodel.weights_dir, skip_model_load=platform.system() != "Darwin"
        )
        path = Path(out_dir) / MODEL_FILE
        renamed.save(str(path))
        ops = [
            op.type
            for fn in mlspec.mlProgram.functions.values()
            for block in fn.block_specializations.values()
            for op in block.operations
            if op.type != "const"
        ]
        manifest = {
            **io_description(model, spec),
            "lowering": {
                "operators": histogram(ops),
                "nodes": len(ops),
                "spec_version": int(mlspec.specificationVersion),
            },
        }
        return Artifact(path=path, manifest=manifest)
