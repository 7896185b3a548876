"""ExecuTorch: a ``.pte`` program, lowered to one delegate.

Delegates and the precisions each takes (the first is the default):

=========  ============  =====================================================================
xnnpack    fp32, int8    CPU (Arm and x86); int8 (linear layers) through the XNNPACK quantizer
                         and pt2e calibration on given images or seeded ones
coreml     fp16, fp32    Apple CPU/GPU/Neural Engine through the Core ML delegate
qnn        fp16, int8    Qualcomm HTP; needs the QNN SDK (QNN_SDK_ROOT); option chipset=SM8650
mediatek   int8          MediaTek APU; needs NeuroPilot (mtk_converter); option platform=mt6989
portable   fp32          ExecuTorch's portable kernels, no delegate
=========  ============  =====================================================================

A missing SDK is reported by :meth:`ExecuTorchExporter.resolve`, before anything that could
start a download is imported. The manifest's ``lowering`` holds, per backend, the delegated
operators, the operators left to the portable runtime, and the share of the model's linear /
matmul FLOPs that run inside a delegate.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifact import Artifact, ExportSpec
from harness.errors import UserError
from harness.exporters import Exporter
from harness.exporters.common import (
    export_program,
    histogram,
    io_description,
    lowering_error,
    matmul_flops,
    op_name,
)

MODEL_FILE = "model.pte"


@dataclass(frozen=True)
class Delegate:
    name: str
    precisions: tuple[str, ...]  # the first is the default


DELEGATES: dict[str, Delegate] = {
    "xnnpack": Delegate("xnnpack", ("fp32", "int8")),
    "coreml": Delegate("coreml", ("fp16", "fp32")),
    "qnn": Delegate("qnn", ("fp16", "int8")),
    "mediatek": Delegate("mediatek", ("int8",)),
    "portable": Delegate("portable", ("fp32",)),
}

QNN_CHIPSETS = (
    "SM8350",
    "SM8450",
    "SM8475",
    "SM8550",
    "SM8650",
    "SM8750",
    "SM8850",
    "SC8380XP",
    "QCS9100",
    "QCM6490",
    "SA8255",
    "SA8295",
)
MEDIATEK_PLATFORMS = ("mt6989", "mt6991", "mt6993")
DEFAULT_OPTIONS = {
    "qnn": {"chipset": "SM8650"},
    "mediatek": {"platform": "mt6989"},
    "coreml": {"minimum_deployment_target": "iOS17"},
}


def coreml_unavailable() -> str:
    """Why coremltools cannot convert here ("" when it can)."""
    system, machine = platform.system(), platform.machine()
    if not (system == "Darwin" or (system == "Linux" and machine in ("x86_64", "AMD64"))):
        return f"coremltools converts only on macOS and Linux x86_64, not {system} {machine}"
    if importlib.util.find_spec("coremltools") is None:
        return "coremltools is not installed: pip install coremltools==9.0"
    return ""


def delegate_unavailable(name: str) -> str:
    """Why a delegate cannot lower here ("" when it can). Imports nothing heavy."""
    if name == "coreml":
        return coreml_unavailable()
    if name == "qnn":
        root = os.environ.get("QNN_SDK_ROOT")
        if not root:
            return (
                "the QNN delegate needs the Qualcomm AI Engine Direct SDK: install it "
                "(qpm or softwarecenter.qualcomm.com) and set QNN_SDK_ROOT to its folder"
            )
        if not Path(root).is_dir():
            return (
                f"QNN_SDK_ROOT={root} is not a folder; point it at the Qualcomm AI Engine Direct "
                "SDK"
            )
        return ""
    if name == "mediatek":
        missing = [
            m for m in ("mtk_converter", "mtk_neuron") if importlib.util.find_spec(m) is None
        ]
        if missing:
            return (
                f"the MediaTek delegate needs NeuroPilot ({', '.join(missing)} not importable): "
                "install "
                "the NeuroPilot Express SDK wheels (mtk_converter, mtk_neuron) from MediaTek's "
                "portal"
            )
        return ""
    return ""


class ExecuTorchExporter(Exporter):
    name = "executorch"

    def unavailable_reason(self) -> str:
        if importlib.util.find_spec("executorch") is None:
            return "executorch is not installed: pip install executorch"
        return ""

    def delegates(self) -> dict[str, str]:
        """Each delegate (xnnpack first, the default) and why it cannot be used here ("" when
        it can)."""
        return {name: delegate_unavailable(name) for name in DELEGATES}

    def precisions(self, delegate: str | None = None) -> tuple[str, ...]:
        d = DELEGATES.get(delegate or "xnnpack")
        return d.precisions if d else ()

    def resolve(self, spec: ExportSpec) -> ExportSpec:
        """Fill the defaults (delegate xnnpack, the delegate's first precision, its options)
        and refuse what cannot work, at once."""
        delegate = spec.delegate or "xnnpack"
        if delegate not in DELEGATES:
            raise UserError(
                f"unknown executorch delegate {delegate!r}; valid: {', '.join(DELEGATES)}"
            )
        d = DELEGATES[delegate]
        precision = spec.precision or d.precisions[0]
        if precision not in d.precisions:
            raise UserError(
                f"executorch/{delegate} does not support {precision}; "
                f"it takes {', '.join(d.precisions)}"
            )
        if spec.options.get("dynamic_batch"):
            raise UserError("--dynamic-batch is for onnx; ExecuTorch programs have a fixed batch")
        options = {**DEFAULT_OPTIONS.get(delegate, {}), **spec.options}
        if delegate == "qnn" and str(options["chipset"]).upper() not in QNN_CHIPSETS:
            raise UserError(
                f"unknown QNN chipset {options['chipset']!r}; valid: {', '.join(QNN_CHIPSETS)}"
            )
        if delegate == "mediatek" and str(options["platform"]).lower() not in MEDIATEK_PLATFORMS:
            raise UserError(
                f"unknown MediaTek platform {options['platform']!r}; valid: "
                f"{', '.join(MEDIATEK_PLATFORMS)}"
            )
        reason = delegate_unavailable(delegate)
        if reason:  # a missing SDK: this host's, not the model's
            raise UserError(reason, kind="infrastructure")
        return dataclasses.replace(spec, delegate=delegate, precision=precision, options=options)

    # -- export ---------------------------------------------------------------------------
    def export(
        self, model: Any, spec: ExportSpec, out_dir: Path, calibration: np.ndarray | None = None
    ) -> Artifact:
        spec = self.resolve(spec)
        program = export_program(model, spec)
        if spec.precision == "int8" and spec.delegate == "xnnpack":
            program = quantize_xnnpack(program, model, spec, calibration)
        edge = lower(program, model, spec, calibration)
        summary = delegation_summary(edge.exported_program().graph_module)
        try:
            et = edge.to_executorch()
        except Exception as exc:  # noqa: BLE001
            raise lowering_error(f"executorch/{spec.delegate}", exc) from None
        path = Path(out_dir) / MODEL_FILE
        with open(path, "wb") as fh:
            et.write_to_file(fh)
        manifest = {**io_description(model, spec), "lowering": summary}
        return Artifact(path=path, manifest=manifest)


# -- the steps ----------------------------------------------------------------------------


def calibration_batches(calibration: np.ndarray, batch_size: int):
    import torch

    n = (len(calibration) // batch_size) * batch_size
    for i in range(0, max(n, batch_size), batch_size):
        chunk = calibration[i : i + batch_size]
        if len(chunk) < batch_size:
            chunk = np.resize(chunk, (batch_size, *calibration.shape[1:]))
        yield torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))


def QUANTIZED_OPS() -> tuple[Any, ...]:  # noqa: N802 - a constant that needs torch
    import torch

    return (torch.ops.aten.linear.default,)


def quantize_xnnpack(program: Any, model: Any, spec: ExportSpec, calibration: np.ndarray | None):
    """Static int8 (per-channel weights, per-tensor activations) with the XNNPACK quantizer,
    calibrated on ``calibration`` (N, C, H, W)."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if calibration is None or len(calibration) == 0:
        raise UserError("int8 needs calibration images (--calibration), none were given")
    # Linear layers only: they hold ~98% of a ViT's FLOPs. Quantizing the residual adds and
    # attention products costs accuracy for little speed, and the patch-embedding conv is the
    # one layer whose input range depends on how images are normalised (every linear input
    # follows a LayerNorm or GELU), so leaving it fp32 keeps int8 robust to that.
    config = get_symmetric_quantization_config(is_per_channel=True)
    quantizer = XNNPACKQuantizer()
    for op in QUANTIZED_OPS():
        quantizer.set_operator_type(op, config)
    try:
        prepared = prepare_pt2e(program.module(), quantizer)
        with torch.no_grad():
            for batch in calibration_batches(calibration, spec.batch_size):
                prepared(batch)
        converted = convert_pt2e(prepared)
        example = next(calibration_batches(calibration, spec.batch_size))
        return torch.export.export(converted, (example,), strict=False)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise lowering_error("the XNNPACK int8 quantizer", exc) from None


def partitioners(spec: ExportSpec, model: Any, calibration: np.ndarray | None) -> list[Any]:
    if spec.delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return [XnnpackPartitioner()]
    if spec.delegate == "coreml":
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner

        specs = CoreMLBackend.generate_compile_specs(
            minimum_deployment_target=getattr(ct.target, spec.options["minimum_deployment_target"]),
            compute_precision=ct.precision.FLOAT16
            if spec.precision == "fp16"
            else ct.precision.FLOAT32,
        )
        return [CoreMLPartitioner(compile_specs=specs)]
    if spec.delegate == "mediatek":
        from executorch.backends.mediatek import NeuropilotPartitioner
        from executorch.exir.backend.compile_spec_schema import CompileSpec

        return [
            NeuropilotPartitioner(
                [CompileSpec("platform-config", str(spec.options["platform"]).lower().encode())]
            )
        ]
    return []


def quantize_for_npu(program: Any, spec: ExportSpec, calibration: np.ndarray | None):
    """QNN int8 and MediaTek: their own quantizers (only reached with the SDK installed)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if spec.delegate == "qnn":
        from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer, QuantDtype

        quantizer = QnnQuantizer()
        quantizer.set_default_quant_config(QuantDtype.use_8a8w)
    else:
        from executorch.backends.mediatek import NeuropilotQuantizer

        quantizer = NeuropilotQuantizer()
    prepared = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for batch in calibration_batches(calibration, spec.batch_size):
            prepared(batch)
    converted = convert_pt2e(prepared)
    return torch.export.export(
        converted, (next(calibration_batches(calibration, spec.batch_size)),), strict=False
    )


def qnn_compiler_specs(spec: ExportSpec) -> list[Any]:
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
    from executorch.backends.qualcomm.utils.utils import (
        generate_htp_compiler_spec,
        generate_qnn_executorch_compiler_spec,
    )

    backend = generate_htp_compiler_spec(use_fp16=spec.precision == "fp16")
    return generate_qnn_executorch_compiler_spec(
        soc_model=getattr(QcomChipset, str(spec.options["chipset"]).upper()),
        backend_options=backend,
    )


def lower(program: Any, model: Any, spec: ExportSpec, calibration: np.ndarray | None):
    """The edge program, lowered to the spec's delegate."""
    from executorch.exir import to_edge_transform_and_lower

    try:
        if spec.precision == "int8" and spec.delegate in ("qnn", "mediatek"):
            program = quantize_for_npu(program, spec, calibration)
        if spec.delegate == "qnn":  # QNN runs its own passes around the partitioner
            from executorch.backends.qualcomm.utils.utils import to_edge_transform_and_lower_to_qnn

            example = tuple(a for a in program.example_inputs[0])
            return to_edge_transform_and_lower_to_qnn(
                program.module(), example, qnn_compiler_specs(spec)
            )
        return to_edge_transform_and_lower(
            program, partitioner=partitioners(spec, model, calibration)
        )
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - a lowering failure names the operator
        raise lowering_error(f"executorch/{spec.delegate}", exc) from None


_PLUMBING = {"getitem", "executorch_call_delegate"}


def delegation_summary(graph_module: Any) -> dict[str, Any]:
    """Per backend: delegated subgraphs and operators; the operators left outside any
    delegate; the linear/matmul FLOPs inside delegates vs in total."""
    backends: dict[str, dict[str, Any]] = {}
    outside: list[str] = []
    flops_total = flops_delegated = 0
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module"):
            lowered = getattr(graph_module, node.target)
            entry = backends.setdefault(lowered.backend_id, {"subgraphs": 0, "ops": []})
            entry["subgraphs"] += 1
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function":
                    entry["ops"].append(op_name(inner))
                    f = matmul_flops(inner)
                    flops_total += f
                    flops_delegated += f
        elif node.op == "call_function" and op_name(node) not in _PLUMBING:
            outside.append(op_name(node))
            flops_total += matmul_flops(node)
    delegated_count = sum(len(b["ops"]) for b in backends.values())
    return {
        "backends": {
            k: {
                "subgraphs": v["subgraphs"],
                "delegated_ops": len(v["ops"]),
                "operators": histogram(v["ops"]),
            }
            for k, v in backends.items()
        },
        "delegated_ops": delegated_count,
        "non_delegated_ops": len(outside),
        "non_delegated": histogram(outside),
        "matmul_flops": flops_total,
        "matmul_flops_delegated": flops_delegated,
        "matmul_flops_delegated_share": (flops_delegated / flops_total) if flops_total else None,
    }
