"""What vitbench and the profiling agent say to each other.

One JSON request on stdin, then JSON lines on stdout:

    {"event": "hello", "agent_version": ..., "protocol": 1, ...}
    {"event": "stage", "stage": "load_cold", "ms": ...}        (load, first inference)
    {"event": "sample", "ms": ...}                              (one per timed iteration)
    {"event": "result", ...}                                    (the last line on success)
    {"event": "error", "kind": ..., "message": ...}             (the last line on failure)

Samples are streamed as they are taken so that an agent that crashes or hangs keeps what it
measured. A request the agent does not understand is refused, and a request from a vitbench
of another agent version is refused with both versions named. A request may carry
``deadline_s``: the agent then ends itself (SIGALRM) after that long, so an agent on a remote
host never outlives the vitbench that started it. A request may carry ``hold_stdin: true``: the
request is then one line, the caller keeps stdin open while it waits, and the agent ends at
once when stdin ends (the caller died; targets/agent/lifeline.py).

Actions: ``describe`` (the machine, its thermal state, which runtimes are installed),
``profile``, ``infer`` (inputs/outputs as .npz files on the agent's host) and ``inspect``
(a Core ML model's inputs, outputs and operation histogram; any system with coremltools).
``profile`` and ``infer`` name a ``runtime`` and an ``artifact``: its ``path`` on the agent's
host, ``format``, ``inputs`` (the manifest's) and ``options`` (the manifest's export options).

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
    runtime         "ort" | "executorch" | "torch" | "coreml" | a plugin runtime's name
    warnings        [str]     e.g. "thermal state still serious after waiting 120 s"
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection
from typing import Any

AGENT_VERSION = "1.3"  # 1.3: one-line request, stdin held open (hold_stdin)
PROTOCOL = 1
ACTIONS = ("describe", "profile", "infer", "inspect")

# exit codes
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 3


class AgentError(Exception):
    """A refusal or failure the agent reports as an ``error`` event. ``kind``: "request" (not
    understood), "model" (the artifact cannot run), "infrastructure" (this host lacks
    something), "measurement"."""

    def __init__(self, message: str, kind: str = "model"):
        super().__init__(message)
        self.kind = kind


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


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
            raise AgentError(
                f"input dimension {i} is symbolic ({d!r}); only the batch may be", "request"
            )
    return out


def make_inputs(specs: list[dict[str, Any]], batch_size: int, seed: int = 0) -> list[Any]:
    """Seeded random inputs of the artifact's input shapes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        shape = concrete_shape(spec["shape"], batch_size)
        arrays.append(rng.standard_normal(shape).astype(spec.get("dtype", "float32")))
    return arrays


def _check_versions(req: dict[str, Any]) -> None:
    if req.get("protocol") != PROTOCOL:
        raise AgentError(
            f"protocol {req.get('protocol')!r} is not understood (this agent speaks {PROTOCOL})",
            "request",
        )
    if req.get("agent_version") != AGENT_VERSION:
        raise AgentError(
            f"version mismatch: vitbench expects agent {req.get('agent_version')!r}, "
            f"this agent is {AGENT_VERSION!r}; re-copy the agent from the same vitbench",
            "request",
        )


def _check_artifact(req: dict[str, Any]) -> None:
    art = req.get("artifact")
    if (
        not isinstance(art, dict)
        or not isinstance(art.get("path"), str)
        or not isinstance(art.get("inputs"), list)
    ):
        raise AgentError("the request's artifact needs a path and inputs", "request")
    if not isinstance(art.get("options", {}), dict):
        raise AgentError("the request's artifact options must be an object", "request")
    if not os.path.exists(art["path"]):
        raise AgentError(f"artifact {art['path']} does not exist on this host", "request")


def check_request(req: Any, runtimes: Collection[str]) -> None:
    """Refuse (AgentError, kind "request") what this agent does not understand; ``runtimes``
    are the names it offers."""
    if not isinstance(req, dict):
        raise AgentError("the request is not a JSON object", "request")
    _check_versions(req)
    action = req.get("action")
    if action not in ACTIONS:
        raise AgentError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}", "request")
    if action in ("profile", "infer") and req.get("runtime") not in runtimes:
        raise AgentError(
            f"unknown runtime {req.get('runtime')!r}; this agent runs {', '.join(runtimes)}",
            "request",
        )
    if action != "describe":
        _check_artifact(req)
    if action == "inspect" and req["artifact"].get("format") != "coreml":
        raise AgentError(
            f"inspect reads Core ML models, not {req['artifact'].get('format')!r}", "request"
        )
