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
of another agent version is refused with both versions named.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

try:  # inside a vitbench checkout
    from harness.timing import LoopSettings, timed_loop
except ImportError:  # shipped to another host: timing.py lies beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from timing import LoopSettings, timed_loop  # type: ignore[no-redef]

AGENT_VERSION = "1.0"
PROTOCOL = 1
ACTIONS = ("describe", "profile", "infer")

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


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
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
    }
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    if khz and khz.isdigit():
        env["cpu_mhz_max"] = int(khz) / 1000
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        env["load_average"] = None
    return env


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

    def facts(self, path, handle):
        facts: dict[str, Any] = {"threadpool_threads": self._threads_used,
                                 "backends_registered": sorted(self.rt.backend_registry.registered_backend_names)}
        try:  # planned (non-constant) memory the program declares
            from executorch.exir._serialize._program import deserialize_pte_binary

            with open(path, "rb") as fh:
                pte = deserialize_pte_binary(fh.read())
            plan = pte.program.execution_plan[0]
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


RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (OrtRuntime, ExecuTorchRuntime, TorchRuntime)}


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
    if req["action"] != "describe":
        if req.get("runtime") not in RUNTIMES:
            raise AgentError(f"unknown runtime {req.get('runtime')!r}; this agent runs {', '.join(RUNTIMES)}", "request")
        art = req.get("artifact")
        if not isinstance(art, dict) or not isinstance(art.get("path"), str) or not isinstance(art.get("inputs"), list):
            raise AgentError("the request's artifact needs a path and inputs", "request")
        if not os.path.exists(art["path"]):
            raise AgentError(f"artifact {art['path']} does not exist on this host", "request")


def describe() -> dict[str, Any]:
    import importlib.util

    available = {name: importlib.util.find_spec(mod) is not None
                 for name, mod in (("ort", "onnxruntime"), ("executorch", "executorch"), ("torch", "torch"),
                                   ("coreml", "coremltools"))}
    return {"environment": environment(), "runtimes": available}


def profile(req: dict[str, Any]) -> dict[str, Any]:
    settings = req.get("settings", {})
    loop = LoopSettings(**settings.get("loop", {}))
    art = req["artifact"]
    env_before = environment()
    t0 = time.perf_counter()
    runtime = RUNTIMES[req["runtime"]](settings.get("threads"), settings.get("options", {}))
    import_ms = (time.perf_counter() - t0) * 1e3
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
    env["threads"] = runtime.threads
    env["runtime_version"] = runtime.version()
    env["memory_method"] = mem.method
    return {"samples_ms": samples, "metrics": metrics, "facts": facts, "environment": env,
            "loop": loop_info, "runtime": runtime.name}


def infer(req: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    settings = req.get("settings", {})
    runtime = RUNTIMES[req["runtime"]](settings.get("threads"), settings.get("options", {}))
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
    try:
        check_request(req)
        action = req["action"]
        result = describe() if action == "describe" else profile(req) if action == "profile" else infer(req)
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
