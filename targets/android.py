"""Phones on adb (Snapdragon, MediaTek, Tensor, Exynos): profile and run artifacts with the
native benchmark programs the user builds for Android, thermal-aware.

For each measurement vitbench
1. reads the phone's state and waits (bounded) until the thermal status is NONE and the
   battery is below a temperature threshold, recording every poll;
2. pushes the artifact and the runner, once per content hash (sync STAT + sha256sum on the
   phone), and a small wrapper shell script that launches the runner (optionally pinned to the
   big cores with taskset) and samples its VmHWM from /proc/PID/status until it exits;
3. runs the runner for warm-up + measured executions (again, longer, if the first run was
   shorter than the settings' minimum seconds), parses per-execution times, load time, first
   inference and, where the runner writes one, the ETDump (time in delegates vs CPU kernels);
4. reads the state again; in sustained mode it runs round after round and says when
   throttling starts;
5. removes what it pushed (``keep_on_device`` keeps the hash-addressed artifact and runner
   until :meth:`AndroidTarget.close`).

A phone that drops off the bus fails its own cell as ``infrastructure`` (retryable) with the
executions measured before the drop; the others go on.
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import Artifact, ArtifactError, sha256_path
from harness.errors import UserError
from targets.adb import (
    AdbClient,
    AdbError,
    AdbServerUnreachable,
    DeviceGone,
    DeviceNotFound,
    ShellResult,
)
from targets.android_device import (
    PhoneInfo,
    PhoneState,
    cpu_mask,
    device_info_command,
    parse_device_info,
    parse_state,
    state_command,
)
from targets.android_runners import (
    Runner,
    RunnerError,
    RunnerOutput,
    check_runner_abi,
    help_flags,
    parse_output,
    resolve_runner,
    runner_args,
    shell_join,
)
from targets.base import Device, Profile, ProfileSettings, TargetError
from targets.etdump import BackendTimes

WORK_DIR = "/data/local/tmp/vitbench"
MARK = "vitbench-"

# Launches the runner in the background, samples its peak resident set (VmHWM, kB) until it
# exits, then prints the marks vitbench reads. POSIX sh: runs under Android's mksh and toybox.
WRAPPER = """\
#!/system/bin/sh
# vitbench: run a benchmark program and watch its peak memory (VmHWM of /proc/PID/status)
cd "$(dirname "$0")" || exit 127
"$@" &
pid=$!
echo "$pid" > pid
echo "vitbench-pid $pid"
hwm=0
while grep -q '^State:[[:space:]]*[^Z[:space:]]' "/proc/$pid/status" 2>/dev/null; do
  v=$(sed -n 's/^VmHWM:[^0-9]*\\([0-9]*\\).*/\\1/p' "/proc/$pid/status" 2>/dev/null)
  [ -n "$v" ] && hwm=$v
  sleep 0.02
done
wait "$pid"
rc=$?
echo "vitbench-vmhwm-kb $hwm"
echo "vitbench-exit $rc"
"""

RUNTIME = {"executorch": "executorch", "onnxruntime": "ort"}
COMPUTE_UNIT = {"qnn": "npu", "mediatek": "npu", "neuron": "npu", "nnapi": "npu", "vulkan": "gpu",
                "xnnpack": "cpu", "portable": "cpu", "cpu": "cpu", None: "cpu"}


@dataclass(frozen=True)
class AndroidOptions:
    """``ProfileSettings.options`` this target reads (all optional)."""

    runner: str | None = None  # path to the runner binary (else the target's or the env's)
    runner_kind: str | None = None  # "executorch" | "onnxruntime" when the name does not say
    runner_files: tuple[str, ...] = ()  # shared libraries pushed beside the runner
    wait_cool: bool = True
    max_wait_s: float = 300.0
    poll_s: float = 10.0
    max_battery_c: float = 38.0
    pin_big_cores: bool = False
    sustained_s: float = 0.0  # > 0: rounds until this much inference time, throttling onset
    max_rounds: int = 100
    throttle_ratio: float = 1.10  # a round's median this much above the first round's: throttled
    etdump: bool = True
    ort_ep: str | None = None  # onnxruntime_perf_test -e; default from settings.compute_unit
    env: dict[str, str] = field(default_factory=dict)
    keep_on_device: bool = False
    parity: bool = False  # also run the seeded inputs and compare with the reference beside the artifact

    @classmethod
    def from_settings(cls, settings: ProfileSettings) -> AndroidOptions:
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in settings.options.items() if k in known}
        if "runner_files" in kw:
            kw["runner_files"] = tuple(kw["runner_files"])
        return cls(**kw)


@dataclass
class RunResult:
    output: RunnerOutput
    exit_code: int
    peak_kb: int | None
    pid: int | None
    text: str
    etdump: BackendTimes | None = None


@dataclass
class _Measured:
    """Everything one profile read from the phone, before it becomes a Profile."""

    info: PhoneInfo
    runs: list[RunResult]
    rounds: list[dict[str, Any]]  # sustained mode only
    samples: list[float]
    state_before: PhoneState
    state_after: PhoneState
    wait: dict[str, Any]
    pinned: list[int]
    warnings: list[str]


class _PhoneLost(Exception):
    def __init__(self, serial: str, detail: str, output: str = ""):
        super().__init__(f"phone {serial} disconnected ({detail})")
        self.output = output


class Phone:
    """One phone through the adb client; failures of the link become ``_PhoneLost``."""

    def __init__(self, client: AdbClient, serial: str):
        self.client, self.serial = client, serial

    @contextmanager
    def _link(self) -> Iterator[None]:
        try:
            yield
        except DeviceGone as exc:
            raise _PhoneLost(self.serial, str(exc), exc.stdout + exc.stderr) from None
        except DeviceNotFound as exc:
            raise _PhoneLost(self.serial, str(exc).split(" (")[0]) from None
        except AdbServerUnreachable as exc:
            raise _PhoneLost(self.serial, str(exc)) from None

    def sh(self, command: str, timeout: float | None = None) -> ShellResult:
        with self._link():
            return self.client.shell(self.serial, command, timeout=timeout)

    def info(self) -> PhoneInfo:
        return parse_device_info(self.serial, self.sh(device_info_command()).stdout)

    def state(self) -> PhoneState:
        return parse_state(self.sh(state_command()).stdout)

    def push(self, local: Path, remote: str, mode: int = 0o644) -> None:
        with self._link():
            self.client.push(self.serial, local, remote, mode)

    def pull(self, remote: str, local: Path) -> None:
        with self._link():
            self.client.pull(self.serial, remote, local)

    def remote_size(self, remote: str) -> int | None:
        with self._link():
            st = self.client.stat(self.serial, remote)
        return st.size if st.exists else None


class AndroidTarget:
    """Phones the adb server sees. ``address``: "host:port" of the adb server (default
    ANDROID_ADB_SERVER_PORT or 127.0.0.1:5037); ``runners``: {"executorch": path,
    "onnxruntime": path, "onnx_infer": path} used when the settings name none."""

    name = "android"

    def __init__(self, address: str | None = None, runners: dict[str, str] | None = None,
                 work_dir: str = WORK_DIR, timeout: float = 30.0):
        self.client = AdbClient(address, timeout=timeout)
        self.runners = dict(runners or {})
        self.work_dir = work_dir.rstrip("/")
        self._hashes: dict[tuple[str, float, int], str] = {}
        self._on_phone: dict[str, set[str]] = {}  # serial -> hash-addressed files kept there
        self._info: dict[str, PhoneInfo] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._flags: dict[tuple[str, str], set[str]] = {}  # (serial, runner sha256) -> its gflags

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
            except _PhoneLost:
                continue  # unplugged between the listing and the question
        return out

    def attached(self) -> list[dict[str, Any]]:
        """Every phone the server lists, usable or not (unauthorized, offline), for the CLI."""
        rows = []
        for entry in self.client.devices():
            row: dict[str, Any] = {"serial": entry.serial, "state": entry.state}
            if entry.state == "device":
                try:
                    row |= self._phone_info(entry.serial).to_dict()
                except _PhoneLost:
                    row["state"] = "gone"
            rows.append(row)
        return rows

    def device(self, serial: str) -> Device:
        """The attached phone with this serial; a clear error when it is not there."""
        entries = self.client.devices()
        states = {e.serial: e.state for e in entries}
        if serial not in states:
            listed = ", ".join(states) or "none"
            raise UserError(f"no phone {serial!r} on the adb server at {self.client.address} (attached: {listed}); "
                            "check with `adb devices`", exit_code=1)
        if states[serial] != "device":
            raise UserError(f"phone {serial} is {states[serial]}: unlock it and accept the USB debugging prompt, "
                            "then check `adb devices`", exit_code=1)
        try:
            return self._device(self._phone_info(serial))
        except _PhoneLost as exc:
            raise TargetError(str(exc)) from None

    def _phone_info(self, serial: str) -> PhoneInfo:
        if serial not in self._info:
            self._info[serial] = Phone(self.client, serial).info()
        return self._info[serial]

    def _device(self, info: PhoneInfo) -> Device:
        return Device(target=self.name, name=f"{info.model} ({info.serial})", chipset=info.chipset,
                      os=f"Android {info.android}", attributes=info.to_dict())

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
            hits = [d for d in phones if want in {
                d.name.lower(), d.id.lower(), d.chipset.lower(), *(str(d.attributes.get(k, "")).lower()
                                                                 for k in ("serial", "model", "chipset_name", "soc_model"))}]
            picked += [d for d in hits if d not in picked]
            if not hits:
                unmatched.append(sel)
        return picked, unmatched

    def accepts(self, artifact: Artifact) -> bool:
        return not self.refusal(artifact)

    def refusal(self, artifact: Artifact) -> str:
        """Why no phone on adb can run ``artifact`` ("" when one can)."""
        if artifact.format not in ("executorch", "onnx"):
            return f"phones on adb run executorch (.pte) and onnx artifacts, not {artifact.format}"
        if artifact.format == "executorch" and artifact.delegate in ("coreml", "mps"):
            return f"ExecuTorch programs delegated to {artifact.delegate} run on Apple devices, not on Android phones"
        return ""

    # -- profile --------------------------------------------------------------------------

    def profile(self, artifact: Artifact, device: Device, settings: ProfileSettings) -> Profile:
        opts = AndroidOptions.from_settings(settings)
        if why := self.refusal(artifact):
            raise ArtifactError(why)
        artifact.verify()
        runner = resolve_runner(artifact.format, settings.options, self.runners)
        serial = _serial(device)
        phone = Phone(self.client, serial)
        samples: list[float] = []  # what was measured so far: kept if the cell fails
        try:
            info = self._phone_info(serial)
            _check_delegate_fits(artifact, info)
            abi_note = check_runner_abi(runner, info.abi)
            warnings: list[str] = []
            with self._workspace(phone, opts.keep_on_device) as ws:
                state_before, wait = self._wait_cool(phone, opts)
                if not wait["cooled"]:
                    warnings.append(f"phone still hot after waiting {wait['waited_s']:.0f} s "
                                    f"({state_before.describe()}): numbers may be throttled")
                model = ws.push_cached(artifact.path)
                remote_runner = ws.push_cached(runner.path, executable=True)
                for extra in runner.extra_files:
                    ws.push_cached(extra, next_to=remote_runner)
                flags = ws.runner_flags(runner, remote_runner)
                pinned = state_before.big_cores() if opts.pin_big_cores else []
                measure = _Measure(self, ws, runner, remote_runner, model, flags, settings, opts, pinned, samples)
                runs, rounds = measure.run()
                measured = _Measured(info, runs, rounds, samples, state_before, phone.state(), wait, pinned, warnings)
        except _PhoneLost as exc:
            raise TargetError(f"{exc} while profiling {artifact.path.name}; measured {len(samples)} executions "
                              "before; re-run to resume", kind="infrastructure", samples_ms=samples) from None
        prof = self._profile(artifact, device, settings, opts, runner, measured)
        prof.details["runner"]["abi_check"] = abi_note or f"ELF for {info.abi}"
        if opts.parity:
            try:
                result = self.parity(artifact, device)
            except UserError as exc:  # the latency numbers stand; say why parity is missing
                prof.warnings.append(f"parity not checked: {exc}")
                return prof
            prof.metrics |= {"parity_max_abs": result.max_abs, "parity_cosine": result.cosine,
                             "parity_top1": result.top1}
            prof.units |= {"parity_max_abs": "abs", "parity_cosine": "cosine", "parity_top1": "fraction"}
            prof.details["parity"] = result.to_dict()
            prof.warnings += [f"parity ({artifact.precision}): {f}" for f in result.failures(artifact.precision)]
        return prof

    def _profile(self, artifact: Artifact, device: Device, settings: ProfileSettings, opts: AndroidOptions,
                 runner: Runner, m: _Measured) -> Profile:
        runs, rounds, warnings, info = m.runs, m.rounds, m.warnings, m.info
        state_before, state_after = m.state_before, m.state_after
        first, last = runs[0], runs[-1]
        metrics: dict[str, float] = {}
        units: dict[str, str] = {"thermal_wait_s": "s"}
        if first.output.load_ms is not None:
            metrics["load_cold_ms"] = first.output.load_ms
        if len(runs) > 1 and last.output.load_ms is not None:
            metrics["load_warm_ms"] = last.output.load_ms
        if first.output.first_inference_ms is not None:
            metrics["first_inference_ms"] = first.output.first_inference_ms
        peaks = [r.peak_kb for r in runs if r.peak_kb]
        if peaks:
            metrics["peak_memory_mb"] = max(peaks) / 1024
        metrics["thermal_wait_s"] = m.wait["waited_s"]
        unit = self._compute_unit(artifact, settings, opts, info)
        details: dict[str, Any] = {
            "runner": {"kind": runner.kind, "name": runner.name, "sha256": self._sha(runner.path)},
            "runs": [{"executions": len(r.output.samples_ms), "load_ms": r.output.load_ms, "peak_kb": r.peak_kb,
                      "runner_summary": r.output.summary} for r in runs],
        }
        dumps = [r.etdump for r in runs if r.etdump]
        if dumps:
            d, skip = dumps[-1], self._warmup(settings)
            details["etdump"] = d.to_dict() | {"delegate": artifact.delegate, "warmup_executions": skip}
            measured = max(d.executions - skip, 1)
            metrics["etdump_delegate_ms"] = sum(d.delegate_ms[skip:]) / measured
            metrics["etdump_cpu_kernels_ms"] = sum(d.operator_ms[skip:]) / measured
            units |= {"etdump_delegate_ms": "ms", "etdump_cpu_kernels_ms": "ms"}
            share = d.delegated_share(skip)
            if unit == "cpu":
                metrics["compute_share_cpu"] = 1.0
            else:
                metrics[f"compute_share_{unit}"] = share
                metrics["compute_share_cpu"] = 1.0 - share
        if not all(r.output.per_iteration for r in runs):
            warnings.append(f"{runner.name} printed no per-execution times and wrote no ETDump: the samples are "
                            "per-process means, so percentiles are not per execution; use a newer runner")
        if rounds:
            details["sustained"] = rounds
            onset = next((r for r in rounds if r["throttled"]), None)
            if onset is not None:
                metrics["throttle_onset_s"] = onset["start_s"]
                units["throttle_onset_s"] = "s"
                warnings.append(f"throttling from round {onset['round']} (after {onset['start_s']:.1f} s of inference): "
                                f"{onset['why']}")
        env = {
            "serial": info.serial, "phone": info.to_dict(), "adb_server": self.client.address,
            "state_before": state_before.to_dict(), "state_after": state_after.to_dict(),
            "thermal_wait": m.wait, "threads": settings.threads if settings.threads is not None else "runner default",
            "pinned_cpus": m.pinned, "screen": state_before.screen, "os": f"Android {info.android}",
            "thermal_state": f"{state_before.thermal_name} -> {state_after.thermal_name}",
            "governor": ", ".join(sorted({c.governor for c in state_before.cpus if c.governor})),
        }
        if state_before.screen and state_before.screen != "Awake":
            warnings.append(f"screen is {state_before.screen}: the phone may be in a power-saving state")
        if (state_after.thermal_status or 0) > (state_before.thermal_status or 0):
            warnings.append(f"thermal status rose during the run: {state_before.thermal_name} -> {state_after.thermal_name}")
        return Profile.from_samples(
            self.name, device, artifact.sha256, RUNTIME[runner.kind], m.samples, metrics=metrics, units=units,
            compute_unit=unit, environment=env, warnings=warnings, settings=settings.to_dict(), details=details,
        )

    @staticmethod
    def _warmup(settings: ProfileSettings) -> int:
        return max(0, settings.loop.warmup_iterations)

    @staticmethod
    def _compute_unit(artifact: Artifact, settings: ProfileSettings, opts: AndroidOptions, info: PhoneInfo) -> str:
        if artifact.format == "onnx":
            return COMPUTE_UNIT.get(_ort_ep(settings, opts, info), "cpu")
        return COMPUTE_UNIT.get(artifact.delegate, "npu")

    def _wait_cool(self, phone: Phone, opts: AndroidOptions) -> tuple[PhoneState, dict[str, Any]]:
        start = time.monotonic()
        polls = []
        while True:
            state = phone.state()
            t = time.monotonic() - start
            polls.append({"t_s": round(t, 3), "thermal_status": state.thermal_status, "battery_c": state.battery_c})
            cooled = state.is_cool(opts.max_battery_c)
            if cooled or not opts.wait_cool or t + opts.poll_s > opts.max_wait_s:
                return state, {"waited_s": round(t, 3), "cooled": cooled, "polls": polls,
                               "max_battery_c": opts.max_battery_c, "enabled": opts.wait_cool}
            time.sleep(opts.poll_s)

    # -- infer ----------------------------------------------------------------------------

    def infer(self, artifact: Artifact, device: Device, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs for ``inputs`` from an executor_runner-style program (``--inputs`` raw
        files, ``--output_file`` prefix). ``onnxruntime_perf_test`` writes no outputs, so ONNX
        needs such a program for ONNX named as runners["onnx_infer"] or
        VITBENCH_ANDROID_ONNX_INFER_RUNNER."""
        if why := self.refusal(artifact):
            raise ArtifactError(why)
        artifact.verify()
        if artifact.format == "onnx":
            path = self.runners.get("onnx_infer") or os.environ.get("VITBENCH_ANDROID_ONNX_INFER_RUNNER")
            if not path:
                raise RunnerError("onnxruntime_perf_test cannot write outputs; for parity of an ONNX artifact on a phone "
                                  "name a runner that takes --model_path/--inputs/--output_file like executor_runner "
                                  "(VITBENCH_ANDROID_ONNX_INFER_RUNNER)")
            runner = resolve_runner("executorch", {"runner": path, "runner_kind": "executorch"})
        else:
            runner = resolve_runner(artifact.format, {}, self.runners)
        serial = _serial(device)
        phone = Phone(self.client, serial)
        out_shape = (artifact.outputs[0].get("shape") if artifact.outputs else None) or None
        outputs: list[np.ndarray] = []
        try:
            check_runner_abi(runner, self._phone_info(serial).abi)
            with self._workspace(phone, keep=False) as ws, tempfile.TemporaryDirectory() as tmp:
                model = ws.push_cached(artifact.path)
                remote_runner = ws.push_cached(runner.path, executable=True)
                flags = ws.runner_flags(runner, remote_runner) | {"inputs", "output_file"}
                for i, x in enumerate(inputs):
                    local_in = Path(tmp) / f"input-{i}.bin"
                    np.ascontiguousarray(x, dtype=np.float32).tofile(local_in)
                    phone.push(local_in, f"{ws.run_dir}/input-{i}.bin")
                    args = runner_args(runner, model, 1, None, flags=flags, inputs=[f"{ws.run_dir}/input-{i}.bin"],
                                       output_prefix=f"{ws.run_dir}/output-{i}")
                    res = ws.launch(runner, remote_runner, args, timeout=300.0)
                    if res.exit_code != 0:
                        raise _runner_failed(runner, serial, res, [])
                    local_out = Path(tmp) / f"output-{i}.bin"
                    try:
                        phone.pull(f"{ws.run_dir}/output-{i}-0.bin", local_out)
                    except AdbError:
                        raise TargetError(f"{runner.name} wrote no output file on {serial}", kind="model") from None
                    y = np.fromfile(local_out, dtype=np.float32)
                    shape = [x.shape[0], *out_shape[1:]] if out_shape else [x.shape[0], -1]
                    outputs.append(y.reshape(shape))
        except _PhoneLost as exc:
            raise TargetError(f"{exc} while running {artifact.path.name}; re-run to resume",
                              kind="infrastructure") from None
        return outputs

    def parity(self, artifact: Artifact, device: Device):
        """Parity of the artifact on the phone against the PyTorch reference stored beside it."""
        from harness.parity import REFERENCE_FILE, compare, load_reference

        if not (artifact.folder / REFERENCE_FILE).is_file():
            raise ArtifactError(f"{artifact.folder} has no {REFERENCE_FILE}; export with reference outputs")
        inputs, reference = load_reference(artifact.folder)
        return compare(reference, self.infer(artifact, device, inputs))

    # -- files on the phone ---------------------------------------------------------------

    def _sha(self, path: Path) -> str:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime, st.st_size)
        if key not in self._hashes:
            self._hashes[key] = sha256_path(path)
        return self._hashes[key]

    @contextmanager
    def _workspace(self, phone: Phone, keep: bool) -> Iterator[_Workspace]:
        """A run folder on the phone for one cell. One measurement per phone at a time (two
        would bias each other), so what an earlier cell left (the phone dropped before it could
        clean up) is removed first."""
        with self._locks.setdefault(phone.serial, threading.Lock()):
            ws = _Workspace(self, phone, f"{self.work_dir}/runs/{uuid.uuid4().hex[:12]}")
            phone.sh(f"rm -rf {self.work_dir}/runs; mkdir -p {ws.run_dir}")
            try:
                yield ws
            finally:
                ws.cleanup(keep)

    def close(self) -> None:
        """Remove the artifacts and runners kept on phones (``keep_on_device``)."""
        for serial, remotes in list(self._on_phone.items()):
            dirs = sorted({r.rsplit("/", 1)[0] for r in remotes})
            try:
                Phone(self.client, serial).sh("rm -rf " + shell_join(dirs))
            except (_PhoneLost, AdbError):
                pass
            self._on_phone.pop(serial, None)

    def __enter__(self) -> AndroidTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Workspace:
    """One cell's files on one phone: a run folder, plus hash-addressed artifact and runner."""

    def __init__(self, target: AndroidTarget, phone: Phone, run_dir: str):
        self.target, self.phone, self.run_dir = target, phone, run_dir
        self.pushed: list[str] = []  # hash-addressed files this cell put on the phone
        self.wrapper: str | None = None

    def push_cached(self, local: Path, executable: bool = False, next_to: str | None = None) -> str:
        """Put ``local`` on the phone under its content hash unless it is there already."""
        sha = self.target._sha(local)
        folder = next_to.rsplit("/", 1)[0] if next_to else f"{self.target.work_dir}/files/{sha[:16]}"
        remote = f"{folder}/{local.name}"
        kept = self.target._on_phone.setdefault(self.phone.serial, set())
        if remote in kept or remote in self.pushed:
            return remote
        if self.phone.remote_size(remote) == local.stat().st_size:
            have = self.phone.sh(f"sha256sum {shell_join([remote])}").stdout.split()
            if have and have[0] == sha:
                self.pushed.append(remote)
                return remote
        self.phone.sh(f"mkdir -p {shell_join([folder])}")
        self.phone.push(local, remote, 0o755 if executable else 0o644)
        self.pushed.append(remote)
        return remote

    def runner_flags(self, runner: Runner, remote_runner: str) -> set[str]:
        """Flags an executor_runner build accepts (gflags --help), so optional ones
        (cpu_threads, print_output, etdump_path) are passed only where they exist."""
        if runner.kind != "executorch":
            return set()
        key = (self.phone.serial, self.target._sha(runner.path))
        if key not in self.target._flags:
            text = self.phone.sh(f"{shell_join([remote_runner])} --help 2>&1 | head -200", timeout=60).stdout
            self.target._flags[key] = help_flags(text)
        return set(self.target._flags[key])

    def launch(self, runner: Runner, remote_runner: str, args: list[str], timeout: float,
               pin: list[int] | None = None, env: dict[str, str] | None = None) -> RunResult:
        if self.wrapper is None:
            with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as fh:
                fh.write(WRAPPER)
            try:
                self.wrapper = f"{self.run_dir}/run.sh"
                self.phone.push(Path(fh.name), self.wrapper, 0o755)
            finally:
                os.unlink(fh.name)
        lib_dir = remote_runner.rsplit("/", 1)[0]
        exports = {"LD_LIBRARY_PATH": f"{lib_dir}:$LD_LIBRARY_PATH", "ADSP_LIBRARY_PATH": f"{lib_dir};/vendor/dsp/cdsp;/vendor/lib/rfsa/adsp;/system/lib/rfsa/adsp;/dsp"}
        exports |= env or {}
        prefix = " ".join(f'export {k}="{v}";' for k, v in exports.items())
        pin_words = ["taskset", cpu_mask(pin)] if pin else []
        command = f"{prefix} sh {self.wrapper} " + shell_join([*pin_words, remote_runner, *args])
        try:
            res = self.phone.sh(command, timeout=timeout)
        except TimeoutError:
            self.phone.sh(f"kill -9 $(cat {self.run_dir}/pid) 2>/dev/null")
            raise TargetError(f"{runner.name} on {self.phone.serial} did not finish within {timeout:.0f} s",
                              kind="measurement") from None
        except _PhoneLost as exc:
            lost = _split_marks(exc.output)[0]
            exc.partial = parse_output(runner.kind, lost)  # type: ignore[attr-defined]
            raise
        text, marks = _split_marks(res.stdout + "\n" + res.stderr)
        output = parse_output(runner.kind, text)
        pid = int(marks["pid"]) if marks.get("pid", "").isdigit() else None
        if runner.kind == "executorch" and not output.samples_ms and output.load_ms is None and pid:
            # android PAL: ET_LOG went to logcat, not to stderr
            log = self.phone.sh(f"logcat -d -v raw --pid={pid} 2>/dev/null").stdout
            text += "\n" + log
            output = parse_output(runner.kind, text)
        code = int(marks["exit"]) if marks.get("exit", "").lstrip("-").isdigit() else res.exit_code
        peak = int(marks["vmhwm-kb"]) if marks.get("vmhwm-kb", "").isdigit() and int(marks["vmhwm-kb"]) else None
        return RunResult(output, code, peak, pid, text)

    def cleanup(self, keep: bool) -> None:
        kept = self.target._on_phone.setdefault(self.phone.serial, set())
        doomed = [self.run_dir]
        if keep:
            kept.update(self.pushed)
        else:
            doomed += sorted({r.rsplit("/", 1)[0] for r in self.pushed if r not in kept})
        try:
            self.phone.sh("rm -rf " + shell_join(doomed))
        except (_PhoneLost, AdbError):
            pass  # the phone is gone: nothing to clean until it is back


@dataclass
class _Measure:
    """The runs of one profile: a first run, a longer one if the first was too short, or the
    rounds of sustained mode. ``samples`` fills as runs finish, so a failure keeps them."""

    target: AndroidTarget
    ws: _Workspace
    runner: Runner
    remote_runner: str
    model: str  # the artifact's path on the phone
    flags: set[str]
    settings: ProfileSettings
    opts: AndroidOptions
    pinned: list[int]
    samples: list[float]

    def __post_init__(self) -> None:
        self.info = self.target._phone_info(self.ws.phone.serial)
        self.warmup = AndroidTarget._warmup(self.settings)

    def run(self) -> tuple[list[RunResult], list[dict[str, Any]]]:
        loop = self.settings.loop
        n = max(1, min(loop.min_iterations, loop.max_iterations))
        if self.opts.sustained_s > 0:
            return self._sustained(n)
        first = self._once(n)
        runs = [first]
        measured = sum(first.output.samples_ms[self.warmup:])
        if measured < loop.min_seconds * 1e3 and n < loop.max_iterations and first.output.per_iteration:
            per = measured / max(n, 1) or 1.0
            n2 = min(loop.max_iterations, max(n + 1, math.ceil(loop.min_seconds * 1e3 / per * 1.1)))
            del self.samples[:]
            runs.append(self._once(n2))
        return runs, []

    def _once(self, n: int) -> RunResult:
        etdump = None
        if self.runner.kind == "executorch" and self.opts.etdump and "etdump_path" in self.flags:
            etdump = f"{self.ws.run_dir}/model.etdump"
        args = runner_args(self.runner, self.model, self.warmup + n, self.settings.threads, flags=self.flags,
                           etdump=etdump, ort_ep=_ort_ep(self.settings, self.opts, self.info))
        try:
            res = self.ws.launch(self.runner, self.remote_runner, args, timeout=self.settings.timeout_s,
                                 pin=self.pinned, env=self.opts.env)
        except _PhoneLost as exc:
            partial = getattr(exc, "partial", None)
            if partial is not None:
                self.samples.extend(partial.samples_ms[self.warmup:])
            raise
        out = res.output
        if etdump and res.exit_code == 0:
            res.etdump = self._etdump(etdump)
            if res.etdump and not out.samples_ms and res.etdump.execute_ms:
                out.samples_ms = list(res.etdump.execute_ms)
                out.first_inference_ms = out.samples_ms[0]
        if res.exit_code == 0 and not out.samples_ms and out.summary.get("mean_ms") is not None:
            out.samples_ms = [out.summary["mean_ms"]] * (1 + self.warmup)
            out.per_iteration = False
        self.samples.extend(out.samples_ms[self.warmup:] if out.per_iteration else out.samples_ms[:1])
        if res.exit_code != 0:
            raise _runner_failed(self.runner, self.ws.phone.serial, res, self.samples)
        if not out.samples_ms:
            raise TargetError(f"{self.runner.name} on {self.ws.phone.serial} printed no timings; "
                              f"last lines: {_tail(res.text)}", kind="measurement")
        return res

    def _etdump(self, remote: str) -> BackendTimes | None:
        from targets.etdump import backend_times, read_etdump

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model.etdump"
            try:
                self.ws.phone.pull(remote, local)
                return backend_times(read_etdump(local))
            except (AdbError, UserError):
                return None

    def _sustained(self, n: int) -> tuple[list[RunResult], list[dict[str, Any]]]:
        runs: list[RunResult] = []
        rounds: list[dict[str, Any]] = []
        elapsed_ms = 0.0
        base_p50, base_status = None, None
        while elapsed_ms < self.opts.sustained_s * 1e3 and len(rounds) < self.opts.max_rounds:
            res = self._once(n)
            runs.append(res)
            measured = res.output.samples_ms[self.warmup:] or res.output.samples_ms
            state = self.ws.phone.state()
            p50 = float(np.median(measured))
            base_p50 = p50 if base_p50 is None else base_p50
            base_status = state.thermal_status if base_status is None else base_status
            why = []
            if (state.thermal_status or 0) > (base_status or 0):
                why.append(f"thermal {state.thermal_name}")
            if p50 > base_p50 * self.opts.throttle_ratio:
                why.append(f"p50 {p50 / base_p50 - 1:+.0%} over round 1")
            rounds.append({"round": len(rounds) + 1, "start_s": round(elapsed_ms / 1e3, 3), "executions": len(measured),
                           "p50_ms": p50, "thermal_status": state.thermal_status, "battery_c": state.battery_c,
                           "cpu_khz": {c.cpu: c.cur_khz for c in state.cpus}, "throttled": bool(why),
                           "why": ", ".join(why)})
            elapsed_ms += sum(measured)
        return runs, rounds


VENDOR_DELEGATES = {"qnn": ("qualcomm-", "Snapdragon"), "mediatek": ("mediatek-", "Dimensity"),
                    "neuron": ("mediatek-", "Dimensity")}


def _check_delegate_fits(artifact: Artifact, info: PhoneInfo) -> None:
    """A program lowered to a vendor NPU runs only on that vendor's chips."""
    need = VENDOR_DELEGATES.get(artifact.delegate or "")
    if artifact.format == "executorch" and need and not info.chipset.startswith(need[0]):
        raise TargetError(f"{artifact.path.name} is delegated to {artifact.delegate}, which runs on {need[1]} phones; "
                          f"{info.serial} has {info.chipset_name}", kind="model")


def _serial(device: Device) -> str:
    serial = device.attributes.get("serial")
    if serial:
        return serial
    name = device.name
    return name[name.rfind("(") + 1:-1] if name.endswith(")") and "(" in name else name


def _ort_ep(settings: ProfileSettings, opts: AndroidOptions, info: PhoneInfo) -> str:
    if opts.ort_ep:
        return opts.ort_ep
    unit = (settings.compute_unit or "cpu").lower()
    if unit in ("npu", "all"):
        return "qnn" if info.chipset.startswith("qualcomm") else "nnapi"
    if unit == "gpu":
        return "nnapi"
    return "cpu"


def _split_marks(text: str) -> tuple[str, dict[str, str]]:
    keep, marks = [], {}
    for line in text.splitlines():
        if line.startswith(MARK):
            key, _, value = line[len(MARK):].partition(" ")
            marks[key] = value.strip()
        else:
            keep.append(line)
    return "\n".join(keep), marks


def _tail(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "(nothing)"


def _runner_failed(runner: Runner, serial: str, res: RunResult, samples: list[float]) -> TargetError:
    code = res.exit_code
    if code > 128 and code - 128 in signal.valid_signals():
        how = f"crashed with {signal.Signals(code - 128).name}"
    else:
        how = f"exited with code {code}"
    return TargetError(f"{runner.name} {how} on {serial} after {len(res.output.samples_ms)} executions: {_tail(res.text)}",
                       kind="model", samples_ms=samples)
