"""Phones on adb (Snapdragon, MediaTek, Tensor, Exynos): profile and run artifacts with the
native benchmark programs the user builds for Android, thermal-aware.

For each measurement vitbench
1. reads the phone's state and waits (bounded) until the thermal status is NONE and the
   battery is below a temperature threshold, recording every poll (:mod:`.thermal`);
2. pushes the artifact and the runner, once per content hash (sync STAT + sha256sum on the
   phone), and a small wrapper shell script that launches the runner (optionally pinned to the
   big cores with taskset) and samples its VmHWM from /proc/PID/status until it exits
   (:mod:`.workspace`);
3. runs the runner for warm-up + measured executions (again, longer, if the first run was
   shorter than the settings' minimum seconds), parses per-execution times, load time, first
   inference and, where the runner writes one, the ETDump (time in delegates vs CPU kernels)
   (:mod:`.measurement`);
4. reads the state again; in sustained mode it runs round after round and says when
   throttling starts; all of it becomes one Profile (:mod:`.profile`);
5. removes what it pushed (``keep_on_device`` keeps the hash-addressed artifact and runner
   until :meth:`AndroidTarget.close`).

A phone that drops off the bus fails its own cell as ``infrastructure`` (retryable) with the
executions measured before the drop; the others go on.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifact import Artifact, ArtifactError
from harness.errors import UserError, VitbenchError
from harness.parity import ParityResult
from harness.target import Device, Profile, ProfileSettings, Target, TargetError
from targets.android.adb import AdbClient, AdbError, AdbServerUnreachable, state_advice
from targets.android.device import PhoneInfo
from targets.android.measurement import Measurement, runner_failed
from targets.android.options import AndroidOptions
from targets.android.phone import Phone, PhoneLost
from targets.android.profile import RunnerUsed, build_profile, with_parity
from targets.android.runners import (
    Runner,
    RunnerError,
    check_runner_abi,
    elf_machine,
    resolve_runner,
    runner_args,
    shell_join,
)
from targets.android.workspace import WORK_DIR, PhoneFiles, Workspace

VENDOR_DELEGATES = {
    "qnn": ("qualcomm-", "Snapdragon"),
    "mediatek": ("mediatek-", "Dimensity"),
    "neuron": ("mediatek-", "Dimensity"),
}
SELECTOR_ATTRIBUTES = ("serial", "model", "chipset_name", "soc_model")


class AndroidTarget(Target):
    """Phones the adb server sees. ``address``: "host:port" of the adb server (default
    ANDROID_ADB_SERVER_PORT or 127.0.0.1:5037); ``runners``: {"executorch": path,
    "onnxruntime": path, "onnx_infer": path} used when the settings name none."""

    name = "android"

    def __init__(
        self,
        address: str | None = None,
        runners: dict[str, str] | None = None,
        work_dir: str = WORK_DIR,
        timeout: float = 30.0,
    ):
        self.client = AdbClient(address, timeout=timeout)
        self.runners = dict(runners or {})
        self.files = PhoneFiles(work_dir)
        self._info: dict[str, PhoneInfo] = {}

    @property
    def work_dir(self) -> str:
        return self.files.work_dir

    # -- what is there --------------------------------------------------------------------

    def unavailable_reason(self) -> str:
        try:
            AdbClient(self.client.address, timeout=3.0).version()
        except AdbServerUnreachable as exc:
            return str(exc)
        except (AdbError, OSError) as exc:
            return f"the adb server at {self.client.address} did not answer host:version ({exc})"
        return ""

    def devices(self) -> list[Device]:
        out = []
        for entry in self.client.devices():
            if entry.state != "device":
                continue
            try:
                out.append(self._device(self._phone_info(entry.serial)))
            except PhoneLost:
                continue  # unplugged between the listing and the question
        return out

    def attached(self) -> list[dict[str, Any]]:
        """Every phone the server lists, usable or not (unauthorized, offline: with the
        ``advice`` for its state), for the CLI."""
        rows = []
        for entry in self.client.devices():
            row: dict[str, Any] = {"serial": entry.serial, "state": entry.state}
            if entry.state == "device":
                try:
                    row |= self._phone_info(entry.serial).to_dict()
                except PhoneLost:
                    row["state"] = "gone"
            else:
                row["advice"] = state_advice(entry.state)
            rows.append(row)
        return rows

    def unmatched_reason(self, selector: str) -> str:
        """Why a selector that matched no usable phone names none: the phone with that serial
        is listed but unauthorized or offline, and what to do ("" when no phone has it)."""
        for entry in self.client.devices():
            if entry.state != "device" and selector.lower() in (
                entry.serial.lower(),
                entry.details.get("model", "").lower(),
            ):
                return f"phone {entry.serial} is {entry.state}: {state_advice(entry.state)}"
        return ""

    def device(self, serial: str) -> Device:
        """The attached phone with this serial; a clear error when it is not there."""
        states = {e.serial: e.state for e in self.client.devices()}
        if serial not in states:
            listed = ", ".join(states) or "none"
            raise UserError(
                f"no phone {serial!r} on the adb server at {self.client.address} "
                f"(attached: {listed}); check with `adb devices`",
                exit_code=1,
            )
        if states[serial] != "device":
            raise UserError(
                f"phone {serial} is {states[serial]}: {state_advice(states[serial])}",
                exit_code=1,
            )
        try:
            return self._device(self._phone_info(serial))
        except PhoneLost as exc:
            raise TargetError(str(exc)) from None

    def _phone_info(self, serial: str) -> PhoneInfo:
        if serial not in self._info:
            self._info[serial] = Phone(self.client, serial).info()
        return self._info[serial]

    def _device(self, info: PhoneInfo) -> Device:
        return Device(
            target=self.name,
            name=f"{info.model} ({info.serial})",
            chipset=info.chipset,
            os=f"Android {info.android}",
            attributes=info.to_dict(),
        )

    def select(self, selectors: list[str]) -> tuple[list[Device], list[str]]:
        """Phones that match each selector, and the selectors that matched none. A selector is
        a serial, a model ("Pixel 8"), a device name or id, ``chipset:SLUG``, a chipset name
        ("Dimensity 9300") or an SoC model ("SM8650"), case-insensitive; none: every phone."""
        phones = self.devices()
        if not selectors:
            return phones, []
        picked: list[Device] = []
        unmatched: list[str] = []
        for sel in selectors:
            want = sel.removeprefix("chipset:").lower()
            hits = [d for d in phones if want in _names(d)]
            picked += [d for d in hits if d not in picked]
            if not hits:
                unmatched.append(sel)
        return picked, unmatched

    def refusal(self, artifact: Artifact) -> str:
        """Why no phone on adb can run ``artifact`` ("" when one can)."""
        if artifact.format not in ("executorch", "onnx"):
            return f"phones on adb run executorch (.pte) and onnx artifacts, not {artifact.format}"
        if artifact.format == "executorch" and artifact.delegate in ("coreml", "mps"):
            return (
                f"ExecuTorch programs delegated to {artifact.delegate} run on Apple devices, "
                "not on Android phones"
            )
        return ""

    # -- profile --------------------------------------------------------------------------

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        opts = AndroidOptions.from_settings(settings)
        if why := self.refusal(artifact):
            raise ArtifactError(why)
        artifact.verify()
        runner = resolve_runner(artifact.format, settings.options, self.runners)
        serial = _serial(device)
        measurement = Measurement(
            self.files, Phone(self.client, serial), artifact, runner, settings, opts
        )
        try:
            info = self._phone_info(serial)
            _check_delegate_fits(artifact, info)
            abi_note = check_runner_abi(runner, info.abi, info.abis)
            measured = measurement.measure(info)
        except PhoneLost as exc:
            samples = measurement.samples
            raise TargetError(
                f"{exc} while profiling {artifact.path.name}; measured "
                f"{len(samples)} executions before; re-run to resume",
                kind="infrastructure",
                samples_ms=samples,
            ) from None
        used = RunnerUsed(runner, self.files.sha(runner.path), abi_note or f"ELF for {info.abi}")
        prof = build_profile(
            self.name, self.client.address, artifact, device, settings, opts, used, measured
        )
        if abi_note and elf_machine(runner.path) is not None:  # not the phone's own ABI
            prof = prof.with_warnings(abi_note)
        if not opts.parity:
            return prof
        try:
            result = self.parity(artifact, device, settings)
        except VitbenchError as exc:  # the latency numbers stand; say why parity is missing
            return prof.with_warnings(f"parity not checked: {exc}")
        return with_parity(prof, result)

    # -- infer ----------------------------------------------------------------------------

    def infer(
        self,
        artifact: Artifact,
        device: Device,
        inputs: list[np.ndarray],
        allow_data_upload: bool = False,  # a phone on this machine's USB
        settings: ProfileSettings | None = None,  # the program decides its delegate
    ) -> list[np.ndarray]:
        """Outputs for ``inputs`` from an executor_runner-style program (``--inputs`` raw
        files, ``--output_file`` prefix). ``onnxruntime_perf_test`` writes no outputs, so ONNX
        needs such a program for ONNX named as runners["onnx_infer"] or
        VITBENCH_ANDROID_ONNX_INFER_RUNNER."""
        if why := self.refusal(artifact):
            raise ArtifactError(why)
        artifact.verify()
        runner = self._infer_runner(artifact)
        serial = _serial(device)
        phone = Phone(self.client, serial)
        out_shape = (artifact.outputs[0].get("shape") if artifact.outputs else None) or None
        try:
            info = self._phone_info(serial)
            check_runner_abi(runner, info.abi, info.abis)
            with (
                self.files.workspace(phone, keep=False) as ws,
                tempfile.TemporaryDirectory() as tmp,
            ):
                model = ws.push_cached(artifact.path)
                remote_runner = ws.push_cached(runner.path, executable=True)
                flags = ws.runner_flags(runner, remote_runner) | {"inputs", "output_file"}
                return [
                    _infer_one(ws, runner, remote_runner, model, flags, x, i, Path(tmp), out_shape)
                    for i, x in enumerate(inputs)
                ]
        except PhoneLost as exc:
            raise TargetError(
                f"{exc} while running {artifact.path.name}; re-run to resume", kind="infrastructure"
            ) from None

    def parity(
        self, artifact: Artifact, device: Device, settings: ProfileSettings | None = None
    ) -> ParityResult:
        """:meth:`Target.parity`; outputs of the wrong size fail it with the numbers."""
        try:
            return super().parity(artifact, device, settings)
        except OutputMismatch as exc:
            return ParityResult(
                status="failed",
                precision=self.parity_precision(artifact, settings),
                where=self.where(artifact, device),
                failures=(str(exc),),
            )

    def _infer_runner(self, artifact: Artifact) -> Runner:
        if artifact.format != "onnx":
            return resolve_runner(artifact.format, {}, self.runners)
        path = self.runners.get("onnx_infer") or os.environ.get(
            "VITBENCH_ANDROID_ONNX_INFER_RUNNER"
        )
        if not path:
            raise RunnerError(
                "onnxruntime_perf_test cannot write outputs; for parity of an ONNX "
                "artifact on a phone name a runner that takes --model_path/--inputs/"
                "--output_file like executor_runner "
                "(VITBENCH_ANDROID_ONNX_INFER_RUNNER)"
            )
        return resolve_runner("executorch", {"runner": path, "runner_kind": "executorch"})

    # -- files on the phone ---------------------------------------------------------------

    def close(self) -> None:
        """Remove the artifacts and runners kept on phones (``keep_on_device``)."""
        for serial, dirs in self.files.forget().items():
            try:
                Phone(self.client, serial).sh("rm -rf " + shell_join(dirs))
            except (PhoneLost, AdbError):
                pass

    def __enter__(self) -> AndroidTarget:
        return self


def _infer_one(
    ws: Workspace,
    runner: Runner,
    remote_runner: str,
    model: str,
    flags: set[str],
    x: np.ndarray,
    i: int,
    tmp: Path,
    out_shape: list[int] | None,
) -> np.ndarray:
    """The output for input batch ``x`` (the ``i``-th), through raw files on the phone."""
    phone = ws.phone
    local_in = tmp / f"input-{i}.bin"
    np.ascontiguousarray(x, dtype=np.float32).tofile(local_in)
    phone.push(local_in, f"{ws.run_dir}/input-{i}.bin")
    args = runner_args(
        runner,
        model,
        1,
        None,
        flags=flags,
        inputs=[f"{ws.run_dir}/input-{i}.bin"],
        output_prefix=f"{ws.run_dir}/output-{i}",
    )
    res = ws.launch(runner, remote_runner, args, timeout=300.0)
    if res.exit_code != 0:
        raise runner_failed(runner, phone.serial, res, [])
    local_out = tmp / f"output-{i}.bin"
    try:
        phone.pull(f"{ws.run_dir}/output-{i}-0.bin", local_out)
    except AdbError:
        raise TargetError(
            f"{runner.name} wrote no output file on {phone.serial}", kind="model"
        ) from None
    shape = [x.shape[0], *out_shape[1:]] if out_shape else [x.shape[0], -1]
    return _read_output(local_out, shape, f"{runner.name} on {phone.serial}, input {i}")


class OutputMismatch(TargetError):
    """A runner's output file whose size is not that of the artifact's float32 output."""

    def __init__(self, message: str):
        super().__init__(message, kind="model")


def _read_output(path: Path, shape: list[int], what: str) -> np.ndarray:
    """The float32 array of ``shape`` (-1: any length) in ``path``; :class:`OutputMismatch`
    with the byte counts when the file cannot be one."""
    got = path.stat().st_size
    row = 4 * math.prod(d for d in shape if d != -1)
    if -1 in shape:
        ok, want = got > 0 and got % row == 0, f"a multiple of {row} bytes"
    else:
        ok, want = got == row, f"{row} bytes"
    if not ok:
        dims = "x".join("N" if d == -1 else str(d) for d in shape)
        raise OutputMismatch(f"{what}: expected {want} ({dims} float32), got {got} bytes")
    return np.fromfile(path, dtype=np.float32).reshape(shape)


def _names(d: Device) -> set[str]:
    """What a selector may name a phone by, lower-case."""
    return {
        d.name.lower(),
        d.id.lower(),
        d.chipset.lower(),
        *(str(d.attributes.get(k, "")).lower() for k in SELECTOR_ATTRIBUTES),
    }


def _check_delegate_fits(artifact: Artifact, info: PhoneInfo) -> None:
    """A program lowered to a vendor NPU runs only on that vendor's chips."""
    need = VENDOR_DELEGATES.get(artifact.delegate or "")
    if artifact.format == "executorch" and need and not info.chipset.startswith(need[0]):
        raise TargetError(
            f"{artifact.path.name} is delegated to {artifact.delegate}, which runs "
            f"on {need[1]} phones; {info.serial} has {info.chipset_name}",
            kind="model",
        )


def _serial(device: Device) -> str:
    serial = device.attributes.get("serial")
    if serial:
        return serial
    name = device.name
    return name[name.rfind("(") + 1 : -1] if name.endswith(")") and "(" in name else name
