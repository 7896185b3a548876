"""This machine as a target: ONNX Runtime (CPU), ExecuTorch (XNNPACK and portable) and
PyTorch eager (the baseline), each measured in a fresh worker process.

The host target is the reference every other target is compared with, and the one CI runs.
Each measurement runs the profiling agent (targets/agent.py) as a new process, so a cold load
is really cold and the peak memory is that run's own.
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import Artifact, ArtifactError
from harness.errors import UserError
from targets.agent import concrete_shape, cpu_model
from targets.base import Device, Profile, ProfileSettings, TargetError
from targets.worker import AgentAnswer, local_agent_command, local_agent_env, run_agent

# artifact format -> runtimes that can run it here (first is the default)
RUNTIMES_FOR_FORMAT = {"onnx": ("ort",), "executorch": ("executorch",), "pt2": ("torch",)}
# ExecuTorch delegates whose kernels ship in the host's ExecuTorch runtime
HOST_DELEGATES = (None, "", "xnnpack", "portable")


class HostTarget:
    name = "host"

    def devices(self) -> list[Device]:
        return [Device(
            target=self.name, name="host", chipset=cpu_model(),
            os=f"{platform.system()} {platform.release()}",
            attributes={"hostname": platform.node(), "machine": platform.machine(),
                        "cores": os.cpu_count(), "runtimes": ["ort", "executorch", "torch"]},
        )]

    def unavailable_reason(self) -> str:
        return ""

    # -- what it runs -------------------------------------------------------------------
    def accepts(self, artifact: Artifact) -> bool:
        return not self.refusal(artifact)

    def refusal(self, artifact: Artifact) -> str:
        """Why this target cannot run ``artifact`` ("" when it can)."""
        fmt = artifact.format
        if fmt not in RUNTIMES_FOR_FORMAT:
            where = {"coreml": "the apple target (macOS)"}.get(fmt, "a device target")
            return f"the host target runs onnx, executorch (xnnpack/portable) and pt2 artifacts, not {fmt}; use {where}"
        if fmt == "executorch" and artifact.delegate not in HOST_DELEGATES:
            where = {"coreml": "the apple target", "qnn": "the aihub or android target",
                     "mediatek": "the android target"}.get(artifact.delegate or "", "a device target")
            return f"ExecuTorch programs delegated to {artifact.delegate} do not run on this machine; use {where}"
        return ""

    def runtime_for(self, artifact: Artifact, runtime: str | None) -> str:
        reason = self.refusal(artifact)
        if reason:
            raise UserError(reason)
        allowed = RUNTIMES_FOR_FORMAT[artifact.format]
        if runtime is None:
            return allowed[0]
        if runtime not in allowed:
            raise UserError(
                f"runtime {runtime!r} cannot run a {artifact.format} artifact; use {' or '.join(allowed)} "
                f"(runtimes by format: {', '.join(f'{f}: {r[0]}' for f, r in RUNTIMES_FOR_FORMAT.items())})")
        return runtime

    # -- measuring ----------------------------------------------------------------------
    def _request(self, artifact: Artifact, runtime: str, settings: ProfileSettings) -> dict[str, Any]:
        return agent_request(artifact, runtime, settings)

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        runtime = self.runtime_for(artifact, settings.runtime)
        artifact.verify()
        check_batch(artifact, settings.batch_size)
        answer = run_agent(local_agent_command(), {"action": "profile", **self._request(artifact, runtime, settings)},
                           timeout_s=settings.timeout_s, env=local_agent_env())
        return profile_from_answer(self.name, device, artifact, runtime, settings, answer)

    def infer(self, artifact: Artifact, device: Device, inputs: list[np.ndarray],
              settings: ProfileSettings | None = None) -> list[np.ndarray]:
        settings = settings or ProfileSettings()
        runtime = self.runtime_for(artifact, settings.runtime)
        artifact.verify()
        check_inputs(artifact, inputs)
        with tempfile.TemporaryDirectory(prefix="vitbench-infer-") as tmp:
            in_path, out_path = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
            np.savez(in_path, **{f"input_{i}": np.asarray(x) for i, x in enumerate(inputs)})
            req = {"action": "infer", **self._request(artifact, runtime, settings),
                   "inputs_path": str(in_path), "outputs_path": str(out_path)}
            run_agent(local_agent_command(), req, timeout_s=settings.timeout_s, env=local_agent_env(),
                      what="inference worker")
            with np.load(out_path) as z:
                return [z[f"output_{i}"] for i in range(len(inputs))]


def agent_request(artifact: Artifact, runtime: str, settings: ProfileSettings, path: str | None = None,
                  **extra_settings: Any) -> dict[str, Any]:
    """The agent's request for ``artifact`` (at ``path`` on the agent's host: default its own)."""
    return {
        "runtime": runtime,
        "artifact": {"path": path or str(artifact.path), "format": artifact.format, "inputs": artifact.inputs},
        "settings": {"loop": settings.to_dict()["loop"], "threads": settings.threads,
                     "batch_size": settings.batch_size, "options": settings.options, **extra_settings},
    }


def profile_from_answer(target: str, device: Device, artifact: Artifact, runtime: str, settings: ProfileSettings,
                        answer: AgentAnswer, environment: dict[str, Any] | None = None,
                        compute_unit: str = "cpu") -> Profile:
    """A Profile from the agent's answer: its samples, metrics, facts and environment."""
    res = answer.result or {}
    env = {**res.get("environment", {}), **(environment or {})}
    prof = Profile.from_samples(
        target, device, artifact.sha256, runtime, res.get("samples_ms", answer.samples_ms),
        metrics=res.get("metrics", {}), units={"runtime_import_ms": "ms"}, compute_unit=compute_unit,
        environment=env, settings=settings.to_dict(),
        details={"facts": res.get("facts", {}), "loop": res.get("loop", {}), "worker_wall_s": answer.wall_s,
                 "artifact": {"path": str(artifact.path), "format": artifact.format,
                              "delegate": artifact.delegate, "precision": artifact.precision}},
    )
    prof.warnings.extend(res.get("warnings", []))
    busy = env.get("cpu_busy_before")
    if busy is not None and busy > BUSY_WARNING:
        prof.warnings.append(f"other processes kept {busy:.0%} of the CPU busy just before the run")
    return prof


BUSY_WARNING = 0.25  # share of CPU time others used just before a measurement that earns a warning


def _dims(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_batch(artifact: Artifact, batch_size: int) -> None:
    for spec in artifact.inputs:
        first = spec["shape"][0] if spec["shape"] else None
        if isinstance(first, int) and first != batch_size:
            raise UserError(f"artifact {artifact.path.name} has a fixed batch of {first}; batch size {batch_size} "
                            "needs an export with a dynamic batch (--dynamic-batch)")


def check_inputs(artifact: Artifact, inputs: list[np.ndarray]) -> None:
    """Each input batch must fit the artifact's input shape (a symbolic batch fits any size)."""
    if not artifact.inputs:
        raise ArtifactError(f"{artifact.path}: the manifest lists no inputs")
    want = artifact.inputs[0]["shape"]
    for i, x in enumerate(inputs):
        x = np.asarray(x)
        try:
            fixed = concrete_shape(want, x.shape[0] if x.ndim else 0)
        except Exception as exc:  # noqa: BLE001 - AgentError for symbolic inner dims
            raise UserError(f"artifact input {_dims(want)}: {exc}") from None
        if list(x.shape) != fixed:
            raise UserError(f"input {i} has shape {_dims(list(x.shape))} but the artifact takes {_dims(want)}")
        dtype = artifact.inputs[0].get("dtype", "float32")
        if str(x.dtype) != dtype:
            raise UserError(f"input {i} has dtype {x.dtype} but the artifact takes {dtype}")


__all__ = ["HostTarget", "TargetError"]
