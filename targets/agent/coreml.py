"""Core ML in the agent: reading a model's spec, summarising its compute plan, and the
runtime that predicts with it.

Reading a Core ML model (its spec) works wherever coremltools installs. Compiling, loading,
predicting and the compute plan exist only on macOS: CoreMLRuntime refuses any other system,
and everything past that check is verified only on a Mac.
"""

from __future__ import annotations

import platform
import sys
from collections import Counter
from typing import Any

from targets.agent.protocol import AgentError, first_line
from targets.agent.runtimes import Runtime

COMPUTE_UNITS = ("ALL", "CPU_AND_NE", "CPU_AND_GPU", "CPU_ONLY")
DEVICE_KINDS = ("neural_engine", "gpu", "cpu")


def _count_block_ops(block: Any, ops: Counter) -> None:
    for op in block.operations:
        ops[op.type] += 1
        for inner in op.blocks:
            _count_block_ops(inner, ops)


def _feature(desc: Any) -> dict[str, Any]:
    from coremltools.proto import FeatureTypes_pb2

    kind = desc.type.WhichOneof("Type")
    out: dict[str, Any] = {"name": desc.name, "type": kind}
    if kind == "multiArrayType":
        arr = desc.type.multiArrayType
        out["shape"] = [int(d) for d in arr.shape]
        out["dtype"] = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()
    return out


def coreml_spec_summary(path: str) -> dict[str, Any]:
    """Inputs, outputs and the operation histogram of a .mlpackage / .mlmodel (any system)."""
    import coremltools as ct

    spec = ct.utils.load_spec(path)
    kind = spec.WhichOneof("Type")
    ops: Counter = Counter()
    if kind == "mlProgram":
        for fn in spec.mlProgram.functions.values():
            for block in fn.block_specializations.values():
                _count_block_ops(block, ops)
    elif kind == "neuralNetwork":
        for layer in spec.neuralNetwork.layers:
            ops[layer.WhichOneof("layer")] += 1
    return {
        "model_type": kind,
        "spec_version": int(spec.specificationVersion),
        "inputs": [_feature(d) for d in spec.description.input],
        "outputs": [_feature(d) for d in spec.description.output],
        "operations": dict(sorted(ops.items())),
        "operation_count": int(sum(ops.values())),
    }


def summarize_compute_plan(
    rows: list[tuple[str, str, float | None]], compute_units: str
) -> dict[str, Any]:
    """(operation type, device kind, estimated cost) per operation -> counts and cost shares
    per compute device, and whether the model falls back from the Neural Engine (some
    operation placed elsewhere although the Neural Engine was allowed). Constants are not
    operations."""
    ops = dict.fromkeys(DEVICE_KINDS, 0)
    cost = dict.fromkeys(DEVICE_KINDS, 0.0)
    off_ne: Counter = Counter()
    for op_type, device, weight in rows:
        if op_type == "const":
            continue
        device = device if device in ops else "cpu"
        ops[device] += 1
        cost[device] += float(weight or 0.0)
        if device != "neural_engine":
            off_ne[op_type] += 1
    total_cost, total_ops = sum(cost.values()), sum(ops.values())
    if total_cost > 0:
        share, basis = {k: v / total_cost for k, v in cost.items()}, "estimated cost"
    else:
        share, basis = {k: v / max(total_ops, 1) for k, v in ops.items()}, "operation count"
    ne_allowed = compute_units in ("ALL", "CPU_AND_NE")
    return {
        "compute_units": compute_units,
        "operations": ops,
        "cost_share": share,
        "share_basis": basis,
        "off_neural_engine": dict(off_ne.most_common()) if ne_allowed else {},
        "neural_engine_fallback": bool(ne_allowed and off_ne),
    }


def coreml_compute_plan(compiled_path: str, compute_units: str) -> dict[str, Any]:
    """MLComputePlan (macOS 14.4+) for a compiled model. Verified only on a Mac."""
    import coremltools as ct
    from coremltools.models.compute_device import (
        MLGPUComputeDevice,
        MLNeuralEngineComputeDevice,
    )
    from coremltools.models.compute_plan import MLComputePlan

    plan = MLComputePlan.load_from_path(compiled_path, compute_units=ct.ComputeUnit[compute_units])
    program = plan.model_structure.program
    if program is None:
        return {"error": "not an ML program: Core ML gives no per-operation plan"}
    rows = []
    for op in program.functions["main"].block.operations:
        usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
        cost = plan.get_estimated_cost_for_mlprogram_operation(op)
        dev = usage.preferred_compute_device if usage else None
        if isinstance(dev, MLNeuralEngineComputeDevice):
            kind = "neural_engine"
        elif isinstance(dev, MLGPUComputeDevice):
            kind = "gpu"
        else:
            kind = "cpu"
        rows.append((op.operator_name, kind, cost.weight if cost else None))
    return summarize_compute_plan(rows, compute_units)


class CoreMLRuntime(Runtime):
    """Core ML through coremltools, one compute-unit setting per measurement. The first load
    is MLModel on the .mlpackage (Core ML compiles it and specialises it for the device: the
    on-device compile an app pays on first launch); the warm load reopens the compiled
    .mlmodelc with CompiledMLModel, as an app does on later launches."""

    name, formats, package = "coreml", ("coreml",), "coremltools"

    def setup(self) -> None:
        if sys.platform != "darwin":
            raise AgentError(
                f"Core ML predicts only on macOS (this host runs {platform.system()}); "
                "profile Core ML artifacts on a Mac",
                "model",
            )
        unit = str(self.options.get("compute_units") or "ALL").upper()
        if unit not in COMPUTE_UNITS:
            raise AgentError(
                f"unknown compute units {unit!r}; one of {', '.join(COMPUTE_UNITS)}", "request"
            )
        # verified only on a Mac from here on
        import coremltools as ct

        self.ct = ct
        self.compute_units = unit
        self._first = None  # the first MLModel: owns the compiled .mlmodelc
        self._inputs: list[str] = []
        self._outputs: list[str] = []

    def version(self) -> str:
        return self.ct.__version__

    def load(self, path):
        units = self.ct.ComputeUnit[self.compute_units]
        if self._first is None:
            model = self.ct.models.MLModel(path, compute_units=units)
            spec = model.get_spec().description
            self._inputs = [d.name for d in spec.input]
            self._outputs = [d.name for d in spec.output]
            self._first = model
            return model
        compiled = self._first.get_compiled_model_path()
        return self.ct.models.CompiledMLModel(compiled, compute_units=units)

    def run(self, handle, inputs):
        out = handle.predict(dict(zip(self._inputs, inputs, strict=True)))
        return [out[name] for name in self._outputs]

    def facts(self, path, handle):
        facts: dict[str, Any] = {
            "compute_units": self.compute_units,
            "spec": coreml_spec_summary(path),
        }
        try:
            compiled = self._first.get_compiled_model_path()
            facts["compute_plan"] = coreml_compute_plan(compiled, self.compute_units)
        except Exception as exc:  # noqa: BLE001 - MLComputePlan needs macOS 14.4+: recorded
            facts["compute_plan_error"] = f"{type(exc).__name__}: {first_line(exc)}"
        return facts
