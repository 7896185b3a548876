"""vitbench profiling agent: measures one artifact in this process and answers in JSON.

A small self-contained program: the standard library, ``timing.py`` (shipped beside it; in a
vitbench checkout it is ``harness/timing.py``) and the runtime it measures (ONNX Runtime,
the ExecuTorch runtime, PyTorch, Core ML). The host target runs it as a fresh worker
process for every measurement, so a cold load is really cold and the peak memory is that
run's own; the Apple and remote targets copy it to another machine and run it there.

Protocol: one JSON request on stdin, then JSON lines on stdout:

    {"event": "hello", "agent_version": ..., "protocol": 1, ...}
    {"event": "stage", "stage": "load_cold", "ms": ...}        (load, first inference)
    {"event": "sample", "ms": ...}                              (one per timed iteration)
    {"event": "result", ...}                                    (the last line on success)
    {"event": "error", "kind": ..., "message": ...}             (the last line on failure)

Samples are streamed as they are taken so that a worker that crashes or hangs keeps what it
measured. A request the agent does not understand is refused, and a request from a vitbench
of another agent version is refused with both versions named. A request may carry
``deadline_s``: the agent then ends itself (SIGALRM) after that long, so an agent on a remote
host never outlives the vitbench that started it.

Actions: ``describe`` (the machine, its thermal state, which runtimes are installed),
``profile``, ``infer`` (inputs/outputs as .npz files on the agent's host) and ``inspect``
(a Core ML model's inputs, outputs and operation histogram; any system with coremltools).

The result of ``profile`` (the schema any other measuring program must answer with, e.g. the
XCTest bundle that measures Core ML on an iPhone; see README "Apple devices"):

    samples_ms      [float]   every timed iteration, in order
    metrics         {name: float}   load_cold_ms, load_warm_ms, first_inference_ms,
                    peak_memory_mb, runtime_import_ms, planned_memory_mb (ExecuTorch),
                    compute_share_npu / _gpu / _cpu (Core ML compute plan: estimated cost)
    facts           runtime-specific: providers / threads / delegates; for Core ML
                    compute_units, spec {inputs, outputs, operations}, compute_plan
                    {operations {neural_engine, gpu, cpu}, cost_share, off_neural_engine
                    {op type: count}, neural_engine_fallback}
    environment     what could bias the numbers: cpu, cores, threads, os, load averages,
                    thermal_state before/after (nominal | fair | serious | critical | null),
                    thermal_wait_s, runtime_version, memory_method
    loop            warmup_iterations, warmup_seconds, measure_seconds
    runtime         "ort" | "executorch" | "torch" | "coreml"
    warnings        [str]     e.g. "thermal state still serious after waiting 120 s"
"""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(_HERE, "timing.py")):  # shipped to another host: timing.py lies beside it
    sys.path.insert(0, _HERE)
    from timing import LoopSettings, timed_loop  # type: ignore[no-redef]
else:  # inside a vitbench checkout
    from harness.timing import LoopSettings, timed_loop

AGENT_VERSION = "1.1"
PROTOCOL = 1
ACTIONS = ("describe", "profile", "infer", "inspect")

# exit codes
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 3


class AgentError(Exception):
    def __init__(self, message: str, kind: str = "model"):
        super().__init__(message)
        self.kind = kind


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


# -- what could bias a number --------------------------------------------------------------

def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _command(argv: list[str]) -> str | None:
    """A system tool's output, or None when it is missing or fails."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        brand = _command(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def thermal_celsius() -> float | None:
    temps = []
    base = "/sys/class/thermal"
    if os.path.isdir(base):
        for zone in os.listdir(base):
            t = _read(f"{base}/{zone}/temp")
            if t and t.lstrip("-").isdigit():
                temps.append(int(t) / 1000)
    return max(temps) if temps else None


def cpu_busy_fraction(interval_s: float = 0.25) -> float | None:
    """Share of this machine's CPU time spent busy (not idle or waiting on I/O) over
    ``interval_s``, from /proc/stat (Linux); None elsewhere. Taken while vitbench itself is idle,
    it is the other load a measurement competes with; unlike the load average it does not lag
    behind the previous measurement."""
    def snap() -> tuple[int, int] | None:
        line = (_read("/proc/stat") or "").splitlines()[:1]
        if not line or not line[0].startswith("cpu "):
            return None
        vals = [int(v) for v in line[0].split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals[:8]), idle

    a = snap()
    if a is None:
        return None
    time.sleep(interval_s)
    b = snap()
    total, idle = b[0] - a[0], b[1] - a[1]
    return round(1 - idle / total, 3) if total > 0 else None


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cores_total": os.cpu_count(),
        "cores_usable": usable_cores(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_mhz_max": None,
        "thermal_max_c": thermal_celsius(),
        "thermal_state": thermal_state()["state"],
    }
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    if khz and khz.isdigit():
        env["cpu_mhz_max"] = int(khz) / 1000
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        env["load_average"] = None
    return env


# -- the machine and its thermal state ------------------------------------------------------
#
# Branches under `sys.platform == "darwin"` use macOS tools (sysctl, sw_vers, pmset) and the
# Objective-C runtime; they are verified only on a Mac. Everything else is the Linux path
# (servers, ARM boards), tested on every run.

THERMAL_STATES = ("nominal", "fair", "serious", "critical")  # NSProcessInfoThermalState order


def _macos_thermal_state() -> str | None:
    """NSProcessInfo.thermalState through the Objective-C runtime (ctypes, no PyObjC).
    Verified only on a Mac."""
    import ctypes
    import ctypes.util

    try:
        objc = ctypes.cdll.LoadLibrary(ctypes.util.find_library("objc"))
        ctypes.cdll.LoadLibrary(ctypes.util.find_library("Foundation"))
    except OSError:
        return None
    objc.objc_getClass.restype = ctypes.c_void_p
    objc.objc_getClass.argtypes = [ctypes.c_char_p]
    objc.sel_registerName.restype = ctypes.c_void_p
    objc.sel_registerName.argtypes = [ctypes.c_char_p]
    send_ptr = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(("objc_msgSend", objc))
    send_long = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)(("objc_msgSend", objc))
    info = send_ptr(objc.objc_getClass(b"NSProcessInfo"), objc.sel_registerName(b"processInfo"))
    if not info:
        return None
    state = send_long(info, objc.sel_registerName(b"thermalState"))
    return THERMAL_STATES[state] if 0 <= state < len(THERMAL_STATES) else None


def parse_pmset_therm(text: str) -> str | None:
    """`pmset -g therm`: a CPU speed limit under 100 % or a recorded warning level means the
    Mac is throttling ("serious"); "No thermal warning level" and full speed mean nominal."""
    limit = None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "CPU_Speed_Limit" and value.strip().isdigit():
            limit = int(value.strip())
    warned = any("warning level" in ln.lower() and "no " not in ln.lower() for ln in text.splitlines())
    if limit is not None and limit < 100 or warned:
        return "serious"
    if limit == 100 or "No thermal warning level" in text:
        return "nominal"
    return None


def thermal_state() -> dict[str, Any]:
    """{"state": nominal | fair | serious | critical | None, "source": ...}. Linux has no
    such state (the temperature is recorded instead), so it is None there."""
    if sys.platform == "darwin":  # verified only on a Mac
        state = _macos_thermal_state()
        if state:
            return {"state": state, "source": "NSProcessInfo.thermalState"}
        text = _command(["pmset", "-g", "therm"])
        if text:
            return {"state": parse_pmset_therm(text), "source": "pmset -g therm"}
    return {"state": None, "source": None}


def wait_for_nominal(max_wait_s: float, poll_s: float = 2.0) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) until the thermal state is nominal; an unknown state is
    not waited for. Returns the state before and after and how long it waited."""
    before = thermal_state()["state"]
    state, start = before, time.monotonic()
    while state not in (None, "nominal") and time.monotonic() - start < max_wait_s:
        time.sleep(min(poll_s, max(0.0, max_wait_s - (time.monotonic() - start))))
        state = thermal_state()["state"]
    return {"state_before_wait": before, "state": state, "waited_s": time.monotonic() - start}


def machine() -> dict[str, Any]:
    """Machine model, chip, OS and memory: what names a device."""
    if sys.platform == "darwin":  # verified only on a Mac
        mem = _command(["sysctl", "-n", "hw.memsize"]) or ""
        version = _command(["sw_vers", "-productVersion"]) or platform.mac_ver()[0]
        return {"model": _command(["sysctl", "-n", "hw.model"]), "chip": cpu_model(),
                "os": f"macOS {version}", "os_build": _command(["sw_vers", "-buildVersion"]),
                "memory_bytes": int(mem) if mem.isdigit() else None, "arch": platform.machine(),
                "neural_engine": platform.machine() == "arm64"}
    model = (_read("/proc/device-tree/model") or _read("/sys/devices/virtual/dmi/id/product_name") or "").strip("\0")
    mem = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    pretty = None
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    return {"model": model or None, "chip": cpu_model(), "os": f"{platform.system()} {platform.release()}",
            "distribution": pretty, "memory_bytes": mem, "arch": platform.machine(), "neural_engine": False}


# -- memory ---------------------------------------------------------------------------------

class MemoryProbe:
    """Peak resident memory of this process above a baseline.

    Linux: VmRSS for the baseline and VmHWM for the peak, with the high-water mark reset
    (``/proc/self/clear_refs`` = 5) at the baseline so imports do not count. Elsewhere:
    ``ru_maxrss``, which cannot be reset (the method is recorded beside the number)."""

    def __init__(self) -> None:
        self.linux = os.path.exists("/proc/self/status")
        self.method = "ru_maxrss"
        self.baseline = 0

    def _status_kb(self, key: str) -> int | None:
        for line in (_read("/proc/self/status") or "").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return None

    def start(self) -> None:
        gc.collect()
        if self.linux:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")
                self.method = "vmhwm-reset"
            except OSError:
                self.method = "vmhwm"
            self.baseline = (self._status_kb("VmRSS") or 0) * 1024
        else:
            import resource

            scale = 1 if sys.platform == "darwin" else 1024
            self.baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def peak_above_baseline(self) -> int:
        if self.linux:
            return max(0, (self._status_kb("VmHWM") or 0) * 1024 - self.baseline)
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale - self.baseline)


# -- runtimes -------------------------------------------------------------------------------

class Runtime:
    """Load an artifact, make inputs, run one inference."""

    name = ""
    formats: tuple[str, ...] = ()

    def __init__(self, threads: int | None, options: dict[str, Any]):
        self.threads = threads or usable_cores()
        self.options = options

    def version(self) -> str:
        return ""

    def check(self, path: str) -> None:
        """Refuse (AgentError) an artifact this runtime cannot run here, before timing starts."""

    def load(self, path: str) -> Any:
        raise NotImplementedError

    def to_native(self, array: Any) -> Any:
        return array

    def run(self, handle: Any, inputs: list[Any]) -> list[Any]:
        raise NotImplementedError

    def to_numpy(self, out: Any) -> Any:
        import numpy as np

        return np.asarray(out)

    def facts(self, path: str, handle: Any) -> dict[str, Any]:
        """Runtime-specific numbers recorded beside the measurement."""
        return {}


class OrtRuntime(Runtime):
    name, formats = "ort", ("onnx",)

    def __init__(self, threads, options):
        super().__init__(threads, options)
        import onnxruntime as ort

        self.ort = ort

    def version(self) -> str:
        return self.ort.__version__

    def load(self, path: str) -> Any:
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        level = self.options.get("graph_optimization", "all")
        so.graph_optimization_level = {
            "none": self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": self.ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": self.ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        providers = self.options.get("providers") or ["CPUExecutionProvider"]
        sess = self.ort.InferenceSession(path, sess_options=so, providers=providers)
        self._names = [i.name for i in sess.get_inputs()]
        return sess

    def run(self, handle, inputs):
        return handle.run(None, dict(zip(self._names, inputs, strict=True)))

    def facts(self, path, handle):
        return {"providers": handle.get_providers(), "graph_optimization": self.options.get("graph_optimization", "all"),
                "intra_op_threads": self.threads}


class ExecuTorchRuntime(Runtime):
    name, formats = "executorch", ("executorch",)

    def __init__(self, threads, options):
        super().__init__(threads, options)
        import torch  # the pybindings take torch tensors
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime as EtRuntime

        self.torch = torch
        self.rt = EtRuntime.get()
        portable_lib._unsafe_reset_threadpool(self.threads)
        self._threads_used = portable_lib._threadpool_get_thread_count()

    def version(self) -> str:
        from importlib.metadata import version

        return version("executorch")

    def load(self, path):
        program = self.rt.load_program(path)
        method = program.load_method("forward")
        return (program, method)

    def to_native(self, array):
        return self.torch.from_numpy(array)

    def run(self, handle, inputs):
        return handle[1].execute(inputs)

    def to_numpy(self, out):
        return out.detach().numpy() if hasattr(out, "detach") else super().to_numpy(out)

    def _plan(self, path: str) -> Any:
        """The program's first execution plan (delegates, planned memory), read once."""
        if getattr(self, "_plan_for", None) != path:
            from executorch.exir._serialize._program import deserialize_pte_binary

            with open(path, "rb") as fh:
                self._plan_cache = deserialize_pte_binary(fh.read()).program.execution_plan[0]
            self._plan_for = path
        return self._plan_cache

    def check(self, path):
        """A program delegated to a backend this runtime was built without (Core ML, MPS,
        QNN...) is refused by name instead of failing inside load_method."""
        try:
            delegates = {d.id for d in self._plan(path).delegates}
        except Exception:  # noqa: BLE001 - unreadable here: let the runtime itself say why
            return
        have = set(self.rt.backend_registry.registered_backend_names)
        missing = sorted(delegates - have)
        if missing:
            raise AgentError(
                f"the program is delegated to {', '.join(missing)}, which this ExecuTorch runtime ({self.version()}) "
                f"lacks (it has {', '.join(sorted(have)) or 'no backends'}); install an executorch build with "
                f"{' and '.join(missing)} on this host", "model")

    def facts(self, path, handle):
        facts: dict[str, Any] = {"threadpool_threads": self._threads_used,
                                 "backends_registered": sorted(self.rt.backend_registry.registered_backend_names)}
        try:  # planned (non-constant) memory the program declares
            plan = self._plan(path)
            facts["planned_memory_bytes"] = int(sum(plan.non_const_buffer_sizes))
            facts["delegates"] = [d.id for d in plan.delegates]
        except Exception as exc:  # noqa: BLE001 - a fact we could not read is recorded as such
            facts["planned_memory_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return facts


class TorchRuntime(Runtime):
    """PyTorch eager: the baseline, from a saved ExportedProgram (.pt2)."""

    name, formats = "torch", ("pt2",)

    def __init__(self, threads, options):
        super().__init__(threads, options)
        import torch

        self.torch = torch
        torch.set_num_threads(self.threads)

    def version(self) -> str:
        return self.torch.__version__

    def load(self, path):
        return self.torch.export.load(path).module()

    def to_native(self, array):
        return self.torch.from_numpy(array)

    def run(self, handle, inputs):
        with self.torch.inference_mode():
            out = handle(*inputs)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def to_numpy(self, out):
        return out.detach().numpy()

    def facts(self, path, handle):
        return {"torch_threads": self.torch.get_num_threads()}



# -- Core ML --------------------------------------------------------------------------------
#
# Reading a Core ML model (its spec) works wherever coremltools installs. Compiling, loading,
# predicting and the compute plan exist only on macOS: CoreMLRuntime refuses any other system,
# and everything past that check is verified only on a Mac.

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
    return {"model_type": kind, "spec_version": int(spec.specificationVersion),
            "inputs": [_feature(d) for d in spec.description.input],
            "outputs": [_feature(d) for d in spec.description.output],
            "operations": dict(sorted(ops.items())), "operation_count": int(sum(ops.values()))}


def summarize_compute_plan(rows: list[tuple[str, str, float | None]], compute_units: str) -> dict[str, Any]:
    """(operation type, device kind, estimated cost) per operation -> counts and cost shares per
    compute device, and whether the model falls back from the Neural Engine (some operation
    placed elsewhere although the Neural Engine was allowed). Constants are not operations."""
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
    return {"compute_units": compute_units, "operations": ops, "cost_share": share, "share_basis": basis,
            "off_neural_engine": dict(off_ne.most_common()) if ne_allowed else {},
            "neural_engine_fallback": bool(ne_allowed and off_ne)}


def coreml_compute_plan(compiled_path: str, compute_units: str) -> dict[str, Any]:
    """MLComputePlan (macOS 14.4+) for a compiled model. Verified only on a Mac."""
    import coremltools as ct
    from coremltools.models.compute_device import MLGPUComputeDevice, MLNeuralEngineComputeDevice
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
        kind = ("neural_engine" if isinstance(dev, MLNeuralEngineComputeDevice)
                else "gpu" if isinstance(dev, MLGPUComputeDevice) else "cpu")
        rows.append((op.operator_name, kind, cost.weight if cost else None))
    return summarize_compute_plan(rows, compute_units)


class CoreMLRuntime(Runtime):
    """Core ML through coremltools, one compute-unit setting per measurement. The first load
    is MLModel on the .mlpackage (Core ML compiles it and specialises it for the device: the
    on-device compile an app pays on first launch); the warm load reopens the compiled
    .mlmodelc with CompiledMLModel, as an app does on later launches."""

    name, formats = "coreml", ("coreml",)

    def __init__(self, threads, options):
        super().__init__(threads, options)
        if sys.platform != "darwin":
            raise AgentError(f"Core ML predicts only on macOS (this host runs {platform.system()}); "
                             "profile Core ML artifacts on a Mac", "model")
        unit = str(options.get("compute_units") or "ALL").upper()
        if unit not in COMPUTE_UNITS:
            raise AgentError(f"unknown compute units {unit!r}; one of {', '.join(COMPUTE_UNITS)}", "request")
        # verified only on a Mac from here on
        import coremltools as ct

        self.ct = ct
        self.compute_units = unit
        self._first = None  # the first MLModel: owns the compiled .mlmodelc

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
        return self.ct.models.CompiledMLModel(self._first.get_compiled_model_path(), compute_units=units)

    def run(self, handle, inputs):
        out = handle.predict(dict(zip(self._inputs, inputs, strict=True)))
        return [out[name] for name in self._outputs]

    def facts(self, path, handle):
        facts: dict[str, Any] = {"compute_units": self.compute_units, "spec": coreml_spec_summary(path)}
        try:
            facts["compute_plan"] = coreml_compute_plan(self._first.get_compiled_model_path(), self.compute_units)
        except Exception as exc:  # noqa: BLE001 - MLComputePlan needs macOS 14.4+: recorded, not fatal
            facts["compute_plan_error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        return facts


RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (OrtRuntime, ExecuTorchRuntime, TorchRuntime, CoreMLRuntime)}
# runtime -> the package to install for it
PACKAGES = {"ort": "onnxruntime", "executorch": "executorch", "torch": "torch", "coreml": "coremltools"}


# -- requests -------------------------------------------------------------------------------

def concrete_shape(shape: list[Any], batch_size: int) -> list[int]:
    """A manifest shape with symbolic dimensions (strings) replaced: the first by the batch
    size; any other symbolic dimension is refused."""
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int):
            out.append(d)
        elif i == 0:
            out.append(batch_size)
        else:
            raise AgentError(f"input dimension {i} is symbolic ({d!r}); only the batch may be", "request")
    return out


def make_inputs(specs: list[dict[str, Any]], batch_size: int, seed: int = 0) -> list[Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = concrete_shape(spec["shape"], batch_size)
        arrays.append(rng.standard_normal(shape).astype(spec.get("dtype", "float32")))
    return arrays


def check_request(req: Any) -> None:
    if not isinstance(req, dict):
        raise AgentError("the request is not a JSON object", "request")
    if req.get("protocol") != PROTOCOL:
        raise AgentError(f"protocol {req.get('protocol')!r} is not understood (this agent speaks {PROTOCOL})", "request")
    if req.get("agent_version") != AGENT_VERSION:
        raise AgentError(
            f"version mismatch: vitbench expects agent {req.get('agent_version')!r}, this agent is {AGENT_VERSION!r}; "
            "re-copy the agent from the same vitbench", "request")
    if req.get("action") not in ACTIONS:
        raise AgentError(f"unknown action {req.get('action')!r}; one of {', '.join(ACTIONS)}", "request")
    action = req["action"]
    if action in ("profile", "infer") and req.get("runtime") not in RUNTIMES:
        raise AgentError(f"unknown runtime {req.get('runtime')!r}; this agent runs {', '.join(RUNTIMES)}", "request")
    if action != "describe":
        art = req.get("artifact")
        if not isinstance(art, dict) or not isinstance(art.get("path"), str) or not isinstance(art.get("inputs"), list):
            raise AgentError("the request's artifact needs a path and inputs", "request")
        if not os.path.exists(art["path"]):
            raise AgentError(f"artifact {art['path']} does not exist on this host", "request")
    if action == "inspect" and req["artifact"].get("format") != "coreml":
        raise AgentError(f"inspect reads Core ML models, not {req['artifact'].get('format')!r}", "request")


def describe() -> dict[str, Any]:
    """The machine, its thermal state and which runtimes (and numpy) this Python can import."""
    import importlib.util

    available = {name: importlib.util.find_spec(PACKAGES[name]) is not None
                 for name in RUNTIMES}
    return {"environment": environment(), "machine": machine(), "thermal": thermal_state(),
            "runtimes": available, "numpy": importlib.util.find_spec("numpy") is not None,
            "python_executable": sys.executable, "platform": sys.platform}


def open_runtime(name: str, settings: dict[str, Any]) -> Runtime:
    """The runtime, or a refusal that says what to install on this host."""
    try:
        return RUNTIMES[name](settings.get("threads"), settings.get("options", {}))
    except ImportError as exc:
        missing = getattr(exc, "name", None) or PACKAGES[name]
        package = "numpy" if missing == "numpy" else PACKAGES[name]
        raise AgentError(f"{package} is not installed for {sys.executable} on this host ({_first_line(exc)}); "
                         f"install it there: {sys.executable} -m pip install {package}", "infrastructure") from None


def profile(req: dict[str, Any]) -> dict[str, Any]:
    settings = req.get("settings", {})
    loop = LoopSettings(**settings.get("loop", {}))
    art = req["artifact"]
    warnings = []
    thermal = wait_for_nominal(float(settings.get("thermal_wait_s", 0)))
    if thermal["waited_s"] > 0.05:
        emit("stage", stage="thermal_wait", ms=thermal["waited_s"] * 1e3)
    if thermal["state"] not in (None, "nominal"):
        warnings.append(f"thermal state still {thermal['state']} after waiting {thermal['waited_s']:.0f} s")
    env_before = environment()
    env_before["cpu_busy_before"] = cpu_busy_fraction()
    t0 = time.perf_counter()
    runtime = open_runtime(req["runtime"], settings)
    import_ms = (time.perf_counter() - t0) * 1e3
    runtime.check(art["path"])
    arrays = make_inputs(art["inputs"], int(settings.get("batch_size", 1)))
    inputs = [runtime.to_native(a) for a in arrays]

    mem = MemoryProbe()
    mem.start()
    t0 = time.perf_counter()
    try:
        handle = runtime.load(art["path"])
    except Exception as exc:  # noqa: BLE001 - the runtime's refusal is the model's failure
        raise AgentError(f"{runtime.name} cannot load {os.path.basename(art['path'])}: {_first_line(exc)}") from None
    load_cold = (time.perf_counter() - t0) * 1e3
    emit("stage", stage="load_cold", ms=load_cold)
    t0 = time.perf_counter()
    try:
        runtime.run(handle, inputs)
    except Exception as exc:  # noqa: BLE001
        raise AgentError(f"{runtime.name} failed on the first inference: {_first_line(exc)}") from None
    first = (time.perf_counter() - t0) * 1e3
    emit("stage", stage="first_inference", ms=first)

    samples, loop_info = timed_loop(functools.partial(runtime.run, handle, inputs), loop,
                                    on_sample=lambda ms: emit("sample", ms=ms))
    peak = mem.peak_above_baseline()
    facts = runtime.facts(art["path"], handle)
    del handle
    gc.collect()
    t0 = time.perf_counter()
    handle = runtime.load(art["path"])
    load_warm = (time.perf_counter() - t0) * 1e3
    del handle

    metrics = {"load_cold_ms": load_cold, "load_warm_ms": load_warm, "first_inference_ms": first,
               "peak_memory_mb": peak / 1e6, "runtime_import_ms": import_ms}
    if "planned_memory_bytes" in facts:
        metrics["planned_memory_mb"] = facts["planned_memory_bytes"] / 1e6
    env_after = environment()
    env = dict(env_before)
    env["load_average_before"] = env.pop("load_average")
    env["load_average_after"] = env_after["load_average"]
    env["thermal_max_c_after"] = env_after["thermal_max_c"]
    env["thermal_state_before_wait"] = thermal["state_before_wait"]
    env["thermal_wait_s"] = thermal["waited_s"]
    env["thermal_state_after"] = env_after["thermal_state"]
    env["threads"] = runtime.threads
    env["runtime_version"] = runtime.version()
    env["memory_method"] = mem.method
    share = (facts.get("compute_plan") or {}).get("cost_share")
    if share:
        metrics.update(compute_share_npu=share["neural_engine"], compute_share_gpu=share["gpu"],
                       compute_share_cpu=share["cpu"])
        if facts["compute_plan"].get("neural_engine_fallback"):
            ops = facts["compute_plan"]["off_neural_engine"]
            warnings.append(f"{sum(ops.values())} operations fall back from the Neural Engine "
                            f"({', '.join(f'{k} x{v}' for k, v in list(ops.items())[:5])})")
    return {"samples_ms": samples, "metrics": metrics, "facts": facts, "environment": env,
            "loop": loop_info, "runtime": runtime.name, "warnings": warnings}


def infer(req: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    settings = req.get("settings", {})
    runtime = open_runtime(req["runtime"], settings)
    runtime.check(req["artifact"]["path"])
    handle = runtime.load(req["artifact"]["path"])
    with np.load(req["inputs_path"]) as z:
        batches = [z[f"input_{i}"] for i in range(len(z.files))]
    outputs = {}
    for i, batch in enumerate(batches):
        out = runtime.run(handle, [runtime.to_native(np.ascontiguousarray(batch))])
        outputs[f"output_{i}"] = runtime.to_numpy(out[0])
    np.savez(req["outputs_path"], **outputs)
    return {"outputs_path": req["outputs_path"], "count": len(batches), "runtime": runtime.name}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def main() -> int:
    emit("hello", agent_version=AGENT_VERSION, protocol=PROTOCOL, python=platform.python_version(),
         platform=sys.platform, pid=os.getpid())
    try:
        req = json.loads(sys.stdin.read() or "null")
    except json.JSONDecodeError as exc:
        emit("error", kind="request", message=f"the request is not JSON ({exc.msg})")
        return EXIT_REFUSED
    if sys.version_info < (3, 10):  # noqa: UP036 - the agent runs on hosts with other Pythons
        emit("error", kind="infrastructure", message=f"the agent needs Python 3.10+; {sys.executable} on this host "
             f"is {platform.python_version()}: install a newer Python there and name it as the host's python")
        return EXIT_FAILED
    deadline = req.get("deadline_s") if isinstance(req, dict) else None
    if isinstance(deadline, (int, float)) and deadline > 0 and hasattr(signal, "alarm"):
        signal.alarm(math.ceil(deadline))  # SIGALRM ends the process: no agent outlives its caller
    try:
        check_request(req)
        action = req["action"]
        if action == "describe":
            result = describe()
        elif action == "inspect":
            result = {"spec": coreml_spec_summary(req["artifact"]["path"])}
        else:
            result = profile(req) if action == "profile" else infer(req)
    except AgentError as exc:
        emit("error", kind=exc.kind, message=str(exc))
        return EXIT_REFUSED if exc.kind == "request" else EXIT_FAILED
    except MemoryError:
        emit("error", kind="model", message="out of memory")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - report, with the traceback on stderr
        traceback.print_exc()
        emit("error", kind="measurement", message=f"{type(exc).__name__}: {_first_line(exc)}")
        return EXIT_FAILED
    emit("result", **result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
