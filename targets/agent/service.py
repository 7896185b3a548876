"""The agent's actions and its main loop: read one request, answer in JSON lines, exit.

``main`` is started by ``python -m targets.agent`` on this machine (built-in and plugin
runtimes) and by the zipapp's ``__main__`` on another host (built-ins only); the request
and answer are described in targets/agent/protocol.py.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import platform
import signal
import sys
import time
import traceback
from typing import Any

from harness.timing import LoopSettings, timed_loop
from targets.agent.coreml import coreml_spec_summary
from targets.agent.lifeline import end_with_input, read_request
from targets.agent.memory import MemoryProbe
from targets.agent.probes import (
    cpu_busy_fraction,
    environment,
    machine,
    thermal_state,
    wait_for_nominal,
)
from targets.agent.protocol import (
    AGENT_VERSION,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    PROTOCOL,
    AgentError,
    check_request,
    emit,
    first_line,
    make_inputs,
)
from targets.agent.registry import RuntimeSet
from targets.agent.runtimes import Runtime


def describe(runtimes: RuntimeSet) -> dict[str, Any]:
    """The machine, its thermal state and which runtimes (and numpy) this Python can import."""
    import importlib.util

    return {
        "environment": environment(),
        "machine": machine(),
        "thermal": thermal_state(),
        "runtimes": {name: runtimes.get(name).installed() for name in runtimes.names()},
        "broken_runtimes": runtimes.broken,
        "numpy": importlib.util.find_spec("numpy") is not None,
        "python_executable": sys.executable,
        "platform": sys.platform,
    }


def _open(req: dict[str, Any], runtimes: RuntimeSet) -> Runtime:
    art = req["artifact"]
    runtime = runtimes.open(req["runtime"], req.get("settings", {}), art.get("options"))
    runtime.check(art["path"])
    return runtime


# -- profile ----------------------------------------------------------------------------------


def _thermal_wait(settings: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    thermal = wait_for_nominal(float(settings.get("thermal_wait_s", 0)))
    if thermal["waited_s"] > 0.05:
        emit("stage", stage="thermal_wait", ms=thermal["waited_s"] * 1e3)
    if thermal["state"] not in (None, "nominal"):
        warnings.append(
            f"thermal state still {thermal['state']} after waiting {thermal['waited_s']:.0f} s"
        )
    return thermal


def _timed(stage: str, fn: Any, failure: str) -> tuple[Any, float]:
    """``fn()`` and its time in ms, streamed as a stage; its failure is the model's."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - the runtime's refusal is the model's failure
        raise AgentError(f"{failure}: {first_line(exc)}") from None
    ms = (time.perf_counter() - t0) * 1e3
    emit("stage", stage=stage, ms=ms)
    return out, ms


def _warm_load_ms(runtime: Runtime, path: str) -> float:
    gc.collect()
    t0 = time.perf_counter()
    handle = runtime.load(path)
    ms = (time.perf_counter() - t0) * 1e3
    del handle
    return ms


def _environment(
    before: dict[str, Any], thermal: dict[str, Any], runtime: Runtime, mem: MemoryProbe
) -> dict[str, Any]:
    after = environment()
    env = dict(before)
    env["load_average_before"] = env.pop("load_average")
    env["load_average_after"] = after["load_average"]
    env["thermal_max_c_after"] = after["thermal_max_c"]
    env["thermal_state_before_wait"] = thermal["state_before_wait"]
    env["thermal_wait_s"] = thermal["waited_s"]
    env["thermal_state_after"] = after["thermal_state"]
    env["threads"] = runtime.threads
    env["runtime_version"] = runtime.version()
    env["memory_method"] = mem.method
    return env


def _compute_shares(facts: dict[str, Any], metrics: dict[str, float], warnings: list[str]) -> None:
    """Core ML's compute plan: cost shares per compute unit, and a Neural Engine fallback."""
    plan = facts.get("compute_plan") or {}
    share = plan.get("cost_share")
    if not share:
        return
    metrics.update(
        compute_share_npu=share["neural_engine"],
        compute_share_gpu=share["gpu"],
        compute_share_cpu=share["cpu"],
    )
    if plan.get("neural_engine_fallback"):
        ops = plan["off_neural_engine"]
        listed = ", ".join(f"{k} x{v}" for k, v in list(ops.items())[:5])
        warnings.append(
            f"{sum(ops.values())} operations fall back from the Neural Engine ({listed})"
        )


def profile(req: dict[str, Any], runtimes: RuntimeSet) -> dict[str, Any]:
    settings = req.get("settings", {})
    loop = LoopSettings(**settings.get("loop", {}))
    path = req["artifact"]["path"]
    name = os.path.basename(path)
    warnings: list[str] = []
    thermal = _thermal_wait(settings, warnings)
    env_before = environment()
    env_before["cpu_busy_before"] = cpu_busy_fraction()
    t0 = time.perf_counter()
    runtime = _open(req, runtimes)
    import_ms = (time.perf_counter() - t0) * 1e3
    arrays = make_inputs(req["artifact"]["inputs"], int(settings.get("batch_size", 1)))
    inputs = [runtime.to_native(a) for a in arrays]

    mem = MemoryProbe()
    mem.start()
    failure = f"{runtime.name} cannot load {name}"
    handle, load_cold = _timed("load_cold", functools.partial(runtime.load, path), failure)
    one = functools.partial(runtime.run, handle, inputs)
    _, first = _timed("first_inference", one, f"{runtime.name} failed on the first inference")
    samples, loop_info = timed_loop(
        one,
        loop,
        on_sample=lambda ms: emit("sample", ms=ms),
    )
    peak = mem.peak_above_baseline()
    facts = runtime.facts(path, handle)
    del handle
    metrics = {
        "load_cold_ms": load_cold,
        "load_warm_ms": _warm_load_ms(runtime, path),
        "first_inference_ms": first,
        "peak_memory_mb": peak / 1e6,
        "runtime_import_ms": import_ms,
    }
    if "planned_memory_bytes" in facts:
        metrics["planned_memory_mb"] = facts["planned_memory_bytes"] / 1e6
    _compute_shares(facts, metrics, warnings)
    return {
        "samples_ms": samples,
        "metrics": metrics,
        "facts": facts,
        "environment": _environment(env_before, thermal, runtime, mem),
        "loop": loop_info,
        "runtime": runtime.name,
        "warnings": warnings,
    }


# -- infer, inspect ---------------------------------------------------------------------------


def infer(req: dict[str, Any], runtimes: RuntimeSet) -> dict[str, Any]:
    import numpy as np

    runtime = _open(req, runtimes)
    handle = runtime.load(req["artifact"]["path"])
    with np.load(req["inputs_path"]) as z:
        batches = [z[f"input_{i}"] for i in range(len(z.files))]
    outputs = {}
    for i, batch in enumerate(batches):
        out = runtime.run(handle, [runtime.to_native(np.ascontiguousarray(batch))])
        outputs[f"output_{i}"] = runtime.to_numpy(out[0])
    np.savez(req["outputs_path"], **outputs)
    return {"outputs_path": req["outputs_path"], "count": len(batches), "runtime": runtime.name}


def answer(req: dict[str, Any], runtimes: RuntimeSet) -> dict[str, Any]:
    """The result of a checked request."""
    action = req["action"]
    if action == "describe":
        return describe(runtimes)
    if action == "inspect":
        return {"spec": coreml_spec_summary(req["artifact"]["path"])}
    return profile(req, runtimes) if action == "profile" else infer(req, runtimes)


# -- main -------------------------------------------------------------------------------------


def _set_deadline(req: Any) -> None:
    deadline = req.get("deadline_s") if isinstance(req, dict) else None
    if isinstance(deadline, (int, float)) and deadline > 0 and sys.platform != "win32":
        signal.alarm(math.ceil(deadline))  # SIGALRM ends the process: no agent outlives its caller


def _serve(req: Any, runtimes: RuntimeSet) -> int:
    try:
        check_request(req, runtimes.names())
        result = answer(req, runtimes)
    except AgentError as exc:
        emit("error", kind=exc.kind, message=str(exc))
        return EXIT_REFUSED if exc.kind == "request" else EXIT_FAILED
    except MemoryError:
        emit("error", kind="model", message="out of memory")
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - report, with the traceback on stderr
        traceback.print_exc()
        emit("error", kind="measurement", message=f"{type(exc).__name__}: {first_line(exc)}")
        return EXIT_FAILED
    emit("result", **result)
    return EXIT_OK


def _why(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else first_line(exc)


def main(runtimes: RuntimeSet) -> int:
    """Answer one request. The entry points call targets.agent.lifeline.hold_to_parent first,
    before anything slow is imported."""
    emit(
        "hello",
        agent_version=AGENT_VERSION,
        protocol=PROTOCOL,
        python=platform.python_version(),
        platform=sys.platform,
        pid=os.getpid(),
    )
    raw, _ = read_request()
    try:
        req = json.loads(raw or b"null")
    except ValueError as exc:  # not JSON, or not UTF-8
        emit("error", kind="request", message=f"the request is not JSON ({_why(exc)})")
        return EXIT_REFUSED
    if isinstance(req, dict) and req.get("hold_stdin"):
        end_with_input()  # the caller keeps stdin open while it waits: its end is the caller's
    if sys.version_info < (3, 10):  # noqa: UP036 - the agent runs on hosts with other Pythons
        emit(
            "error",
            kind="infrastructure",
            message=f"the agent needs Python 3.10+; {sys.executable} on this host is "
            f"{platform.python_version()}: install a newer Python there and name it as the "
            "host's python",
        )
        return EXIT_FAILED
    _set_deadline(req)
    return _serve(req, runtimes)
