"""The "remote" target: hosts that run the profiling agent, on this machine or over SSH.

Its devices are the hosts in the hosts file (targets/remote/config.py), each named by what
the agent's ``describe`` action finds there (machine model, chip, OS, memory, thermal state,
installed runtimes). A measurement copies the agent and the artifact to the host
(targets/remote/transport.py, once per content hash), runs the agent there with the same
measurement rules as the host target, and cleans up. RemoteTarget serves any host that runs
Python with ONNX Runtime, ExecuTorch or PyTorch (Linux ARM boards with MediaTek or Qualcomm
chips); AppleTarget (targets/apple.py) is the same machinery with Core ML added.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifact import Artifact
from harness.errors import UserError
from harness.target import Device, Profile, ProfileSettings, Target, TargetError
from targets.agent.client import (
    AgentAnswer,
    agent_request,
    check_batch,
    check_inputs,
    profile_from_answer,
    run_agent,
)
from targets.agent.runtimes import STOCK_DELEGATES
from targets.remote.config import HostConfig, hosts_path, load_hosts
from targets.remote.transport import transport_for

DESCRIBE_TIMEOUT_S = 60.0


def chip_slug(chip: str | None) -> str:
    """The chip as a slug ("Apple M3 Pro" -> "apple-m3-pro"); "" when unknown."""
    return re.sub(r"[^a-z0-9]+", "-", (chip or "").lower()).strip("-")


class RemoteTarget(Target):
    """Any host that runs the agent: ONNX Runtime, ExecuTorch (XNNPACK, portable), PyTorch."""

    name = "remote"
    runtimes_for_format: dict[str, tuple[str, ...]] = {
        "onnx": ("ort",),
        "executorch": ("executorch",),
        "pt2": ("torch",),
    }
    delegates: tuple[str | None, ...] = STOCK_DELEGATES
    thermal_wait_s = 0.0  # how long to wait for a nominal thermal state (settings.options override)
    elsewhere = {
        "coreml": "the apple target",
        "qnn": "the aihub or android target",
        "mediatek": "the android target",
    }

    # -- devices ----------------------------------------------------------------------------
    def hosts(self) -> list[HostConfig]:
        return load_hosts(self.name)

    def unavailable_reason(self) -> str:
        try:
            hosts = self.hosts()
        except UserError as exc:
            return str(exc)
        if hosts:
            return ""
        return (
            f"no {self.name} hosts configured: add one to {hosts_path()} "
            "(README: Apple devices and remote hosts)"
        )

    def devices(self) -> list[Device]:
        """Every configured host; one that cannot be reached now is listed with
        ``attributes["reachable"] = False`` and the reason. Hosts are asked in parallel."""
        hosts = self.hosts()
        if len(hosts) <= 1:
            return [self.describe(h) for h in hosts]
        with ThreadPoolExecutor(max_workers=min(8, len(hosts))) as pool:
            return list(pool.map(self.describe, hosts))

    def describe(self, host: HostConfig) -> Device:
        base = {"ssh": host.destination, "python": host.interpreter}
        try:
            answer = self._run(host, {"action": "describe"}, DESCRIBE_TIMEOUT_S)
        except TargetError as exc:
            return Device(
                self.name, host.name, attributes={**base, "reachable": False, "reason": str(exc)}
            )
        res = answer.result or {}
        m = res.get("machine", {})
        return Device(
            self.name,
            host.name,
            chipset=chip_slug(m.get("chip")),
            os=m.get("os") or "",
            attributes={
                **base,
                "reachable": True,
                "model": m.get("model"),
                "chip": m.get("chip"),
                "memory_bytes": m.get("memory_bytes"),
                "arch": m.get("arch"),
                "platform": res.get("platform"),
                "thermal_state": (res.get("thermal") or {}).get("state"),
                "runtimes": [k for k, ok in res.get("runtimes", {}).items() if ok],
            },
        )

    def host_for(self, device: Device) -> HostConfig:
        hosts = self.hosts()
        for host in hosts:
            if host.name == device.name:
                return host
        raise UserError(
            f"unknown device {device.name!r} on {self.name}; configured: "
            f"{', '.join(h.name for h in hosts) or 'none'} (in {hosts_path()})"
        )

    # -- what it runs ------------------------------------------------------------------------
    def refusal(self, artifact: Artifact) -> str:
        """Why this target cannot run ``artifact`` ("" when it can)."""
        fmt = artifact.format
        if fmt not in self.runtimes_for_format:
            where = self.elsewhere.get(fmt, "a device target")
            runs = ", ".join(self.runtimes_for_format)
            return f"the {self.name} target runs {runs} artifacts, not {fmt}; use {where}"
        if fmt == "executorch" and artifact.delegate not in self.delegates:
            where = self.elsewhere.get(artifact.delegate or "", "a device target")
            return (
                f"the {self.name} target runs ExecuTorch programs delegated to "
                f"{', '.join(d for d in self.delegates if d)}, not {artifact.delegate}; use {where}"
            )
        return ""

    def runtime_for(self, artifact: Artifact, runtime: str | None) -> str:
        reason = self.refusal(artifact)
        if reason:
            raise UserError(reason)
        allowed = self.runtimes_for_format[artifact.format]
        if runtime is None:
            return allowed[0]
        if runtime not in allowed:
            raise UserError(
                f"runtime {runtime!r} cannot run a {artifact.format} artifact on {self.name}; "
                f"use {' or '.join(allowed)}"
            )
        return runtime

    def prepare_settings(self, artifact: Artifact, settings: ProfileSettings) -> ProfileSettings:
        """Target-specific settings (Core ML's compute units); checked before anything runs."""
        return settings

    def compute_unit_of(
        self, artifact: Artifact, settings: ProfileSettings, answer: AgentAnswer
    ) -> str:
        return "cpu"

    # -- measuring ---------------------------------------------------------------------------
    def _run(
        self,
        host: HostConfig,
        request: dict[str, Any],
        timeout_s: float,
        transport=None,
        what: str = "agent",
    ) -> AgentAnswer:
        """One agent run on ``host`` (through ``transport`` when one is open)."""
        if transport is None:
            with transport_for(host) as t:
                return self._run(host, request, timeout_s, t, what)
        return run_agent(
            transport.agent_command(),
            {"deadline_s": timeout_s + 30, **request},
            timeout_s=timeout_s,
            env=transport.agent_env(),
            what=f"{what} on {transport.where}",
            diagnose=transport.diagnose,
        )

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        profiles = self.iter_profiles(artifact, device, [settings])
        try:
            return next(profiles)
        finally:
            profiles.close()  # leaves the transport: clean-up on the host

    def iter_profiles(
        self, artifact: Artifact, device: Device, settings_list: list[ProfileSettings]
    ) -> Iterator[Profile]:
        """Profile ``artifact`` once per settings, copying it to the host once. Each Profile is
        yielded as it finishes, so a later failure keeps the earlier ones."""
        prepared = [self.prepare_settings(artifact, s) for s in settings_list]
        runtime = self.runtime_for(artifact, prepared[0].runtime)
        artifact.verify()
        for s in prepared:
            check_batch(artifact, s.batch_size)
        host = self.host_for(device)
        with transport_for(host) as t:
            path = t.stage(artifact.path, artifact.sha256)
            for settings in prepared:
                wait = float(settings.options.get("thermal_wait_s", self.thermal_wait_s))
                request = {
                    "action": "profile",
                    **agent_request(artifact, runtime, settings, path, thermal_wait_s=wait),
                }
                answer = self._run(host, request, settings.timeout_s + wait, t)
                yield profile_from_answer(
                    self.name,
                    device,
                    artifact,
                    runtime,
                    settings,
                    answer,
                    {"host": host.destination},
                    compute_unit=self.compute_unit_of(artifact, settings, answer),
                )

    def infer(
        self,
        artifact: Artifact,
        device: Device,
        inputs: list[np.ndarray],
        allow_data_upload: bool = False,  # the team's own hosts, over ssh
        settings: ProfileSettings | None = None,
    ) -> list[np.ndarray]:
        """Outputs for ``inputs``. The inputs go to the host for this call only and are
        removed afterwards (use seeded inputs, as parity() does, to keep images here)."""
        settings = self.prepare_settings(artifact, settings or ProfileSettings())
        runtime = self.runtime_for(artifact, settings.runtime)
        artifact.verify()
        check_inputs(artifact, inputs)
        host = self.host_for(device)
        with tempfile.TemporaryDirectory(prefix="vitbench-infer-") as tmp, transport_for(host) as t:
            local_in, local_out = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
            np.savez(local_in, **{f"input_{i}": np.asarray(x) for i, x in enumerate(inputs)})
            path = t.stage(artifact.path, artifact.sha256)
            request = {
                "action": "infer",
                **agent_request(artifact, runtime, settings, path),
                "inputs_path": t.put(local_in),
                "outputs_path": t.scratch_path("outputs.npz"),
            }
            self._run(host, request, settings.timeout_s, t, what="inference agent")
            t.get(request["outputs_path"], local_out)
            with np.load(local_out) as z:
                return [z[f"output_{i}"] for i in range(len(inputs))]
