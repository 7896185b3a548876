"""This machine as a target: ONNX Runtime (CPU), ExecuTorch (XNNPACK and portable), PyTorch
eager (the baseline), Core ML on a Mac, and every runtime a plugin registers under
``vitbench.runtimes``; each measurement in a fresh worker process.

The host target is the reference every other target is compared with, the one CI runs, and
the one export-time parity runs on. Each measurement runs the profiling agent
(``python -m targets.agent``) as a new process, so a cold load is really cold and the peak
memory is that run's own. What it accepts is what the agent's runtimes run here
(targets/agent/registry.py).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifact import Artifact
from harness.environment import tool_versions
from harness.errors import UserError
from harness.target import Device, Profile, ProfileSettings, Target
from targets.agent.client import (
    agent_request,
    check_batch,
    check_inputs,
    local_agent_command,
    local_agent_env,
    profile_from_answer,
    run_agent,
)
from targets.agent.probes import cpu_model
from targets.agent.registry import RuntimeSet, installed_runtimes
from targets.agent.runtimes import STOCK_DELEGATES

DELEGATE_ELSEWHERE = {
    "qnn": "QNN needs a Snapdragon device (the aihub or android target)",
    "mediatek": "NeuroPilot needs a MediaTek Dimensity device (the android target)",
}


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


class HostTarget(Target):
    name = "host"

    @functools.cached_property
    def runtimes(self) -> RuntimeSet:
        """The agent's runtimes on this machine: built-ins plus ``vitbench.runtimes`` plugins."""
        return installed_runtimes()

    def formats(self) -> list[str]:
        """The artifact formats this machine runs (Core ML predicts only on macOS)."""
        return [f for f in self.runtimes.formats() if f != "coreml" or sys.platform == "darwin"]

    def devices(self) -> list[Device]:
        runnable = [r for f in self.formats() for r in self.runtimes.for_format(f)]
        return [
            Device(
                target=self.name,
                name="host",
                chipset=cpu_model(),
                os=f"{platform.system()} {platform.release()}",
                attributes={
                    "hostname": platform.node(),
                    "machine": platform.machine(),
                    "cores": os.cpu_count(),
                    "runtimes": list(dict.fromkeys(runnable)),
                },
            )
        ]

    # -- what it runs -------------------------------------------------------------------
    def refusal(self, artifact: Artifact) -> str:
        """Why this target cannot run ``artifact`` ("" when it can)."""
        fmt = artifact.format
        if fmt == "executorch" and artifact.delegate == "coreml":
            return (
                "Core ML predicts only on macOS (ExecuTorch's Core ML delegate: the apple target)"
            )
        if fmt == "coreml" and sys.platform != "darwin":
            return "Core ML predicts only on macOS"
        if fmt not in self.formats():
            return self._unknown_format(fmt)
        if fmt == "executorch" and artifact.delegate not in STOCK_DELEGATES:
            return DELEGATE_ELSEWHERE.get(
                artifact.delegate or "",
                f"ExecuTorch programs delegated to {artifact.delegate} do not run on this "
                "machine; use a device target",
            )
        return ""

    def _unknown_format(self, fmt: str) -> str:
        kinds = [f"{f} (xnnpack/portable)" if f == "executorch" else f for f in self.formats()]
        text = f"the host target runs {_listed(kinds)} artifacts, not {fmt}; use a device target"
        if self.runtimes.broken:
            broken = "; ".join(f"{k}: {v}" for k, v in self.runtimes.broken.items())
            text += f" (runtime plugins that failed to load: {broken})"
        return text

    def where(self, artifact: Artifact, device: Device) -> str:
        runtime = self.runtime_for(artifact, None)
        package = self.runtimes.get(runtime).requirement()
        return f"{package} {tool_versions([package])[package]} ({runtime}) on this host"

    def runtime_for(self, artifact: Artifact, runtime: str | None) -> str:
        reason = self.refusal(artifact)
        if reason:
            raise UserError(reason)
        allowed = self.runtimes.for_format(artifact.format)
        if runtime is None:
            return allowed[0]
        if runtime not in allowed:
            by_format = ", ".join(f"{f}: {self.runtimes.for_format(f)[0]}" for f in self.formats())
            raise UserError(
                f"runtime {runtime!r} cannot run a {artifact.format} artifact; use "
                f"{' or '.join(allowed)} (runtimes by format: {by_format})"
            )
        return runtime

    # -- measuring ----------------------------------------------------------------------
    def _request(
        self, artifact: Artifact, runtime: str, settings: ProfileSettings
    ) -> dict[str, Any]:
        return agent_request(artifact, runtime, settings)

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        runtime = self.runtime_for(artifact, settings.runtime)
        artifact.verify()
        check_batch(artifact, settings.batch_size)
        answer = run_agent(
            local_agent_command(),
            {"action": "profile", **self._request(artifact, runtime, settings)},
            timeout_s=settings.timeout_s,
            env=local_agent_env(),
        )
        return profile_from_answer(self.name, device, artifact, runtime, settings, answer)

    def infer(
        self,
        artifact: Artifact,
        device: Device,
        inputs: list[np.ndarray],
        allow_data_upload: bool = False,  # inputs stay on this machine
        settings: ProfileSettings | None = None,
    ) -> list[np.ndarray]:
        settings = settings or ProfileSettings()
        runtime = self.runtime_for(artifact, settings.runtime)
        artifact.verify()
        check_inputs(artifact, inputs)
        with tempfile.TemporaryDirectory(prefix="vitbench-infer-") as tmp:
            in_path, out_path = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
            np.savez(in_path, **{f"input_{i}": np.asarray(x) for i, x in enumerate(inputs)})
            req = {
                "action": "infer",
                **self._request(artifact, runtime, settings),
                "inputs_path": str(in_path),
                "outputs_path": str(out_path),
            }
            run_agent(
                local_agent_command(),
                req,
                timeout_s=settings.timeout_s,
                env=local_agent_env(),
                what="inference worker",
            )
            with np.load(out_path) as z:
                return [z[f"output_{i}"] for i in range(len(inputs))]
