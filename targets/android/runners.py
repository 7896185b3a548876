"""The native benchmark programs that run an artifact on a phone, how vitbench calls them and
how it reads what they print.

- ExecuTorch ``executor_runner`` (examples/portable/executor_runner, built for Android with the
  XNNPACK, QNN or MediaTek backends linked in) for ``.pte``. Called with ``--model_path``,
  ``--num_executions`` and, where the build has them, ``--cpu_threads``, ``--print_output=none``
  and ``--etdump_path`` (builds with the event tracer). It logs through ET_LOG: with the posix
  PAL (``-DEXECUTORCH_PAL_DEFAULT=posix``) the lines reach stderr; with the android PAL they
  go to logcat, and vitbench reads them from ``logcat --pid`` of the runner.
  Per execution it prints ``Iteration i of N: X ms`` (runners from 2025 on); older runners
  print only ``Model executed successfully N time(s) in X ms.``, so vitbench takes the per
  execution times from the ETDump (``Method::execute`` events) or, failing that, records the
  mean alone and says so.
- ONNX Runtime ``onnxruntime_perf_test`` (onnxruntime/test/perftest, ORT's Android build) for
  ``.onnx``. Called with ``-m times -r N -I -s -v`` (``-I`` generates the inputs; ``-v``
  prints ``iteration:i,time_cost:S`` for every run after its own warm-up run), ``-x THREADS``
  and ``-e cpu|nnapi|qnn|xnnpack``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from targets.android.device import ABI_MACHINE

KINDS = ("executorch", "onnxruntime")
FORMAT_KIND = {"executorch": "executorch", "onnx": "onnxruntime"}
ENV_RUNNER = {
    "executorch": "VITBENCH_ANDROID_EXECUTOR_RUNNER",
    "onnxruntime": "VITBENCH_ANDROID_ORT_PERF_TEST",
}
MACHINE_NAMES = {183: "aarch64 (arm64-v8a)", 40: "arm (armeabi-v7a)", 62: "x86-64", 3: "x86"}


class RunnerError(UserError):
    """A runner that is missing, built for another ABI, or not meant for the artifact."""


@dataclass(frozen=True)
class Runner:
    kind: str  # "executorch" | "onnxruntime"
    path: Path
    extra_files: tuple[Path, ...] = ()  # shared libraries pushed beside it (libQnnHtp.so, ...)

    @property
    def name(self) -> str:
        return self.path.name


def runner_kind(path: Path, declared: str | None = None) -> str:
    if declared:
        if declared not in KINDS:
            raise RunnerError(f"unknown runner kind {declared!r}; use one of {', '.join(KINDS)}")
        return declared
    return "onnxruntime" if "perf_test" in path.name else "executorch"


def resolve_runner(
    artifact_format: str, options: dict[str, Any], configured: dict[str, str] | None = None
) -> Runner:
    """The runner for an artifact: ``options["runner"]``, else the target's configured one for
    the format, else the environment variable."""
    want = FORMAT_KIND.get(artifact_format)
    if want is None:
        raise RunnerError(
            f"phones on adb run executorch (.pte) and onnx artifacts, not {artifact_format!r}"
        )
    spec = options.get("runner") or (configured or {}).get(want) or os.environ.get(ENV_RUNNER[want])
    if not spec:
        prog = "executor_runner" if want == "executorch" else "onnxruntime_perf_test"
        raise RunnerError(
            f"no runner for {artifact_format} artifacts: build {prog} for Android "
            f"(README, 'Android phones') and pass --runner PATH or set {ENV_RUNNER[want]}"
        )
    path = Path(spec).expanduser()
    if not path.is_file():
        raise RunnerError(f"runner {path} does not exist")
    kind = runner_kind(path, options.get("runner_kind"))
    if kind != want:
        raise RunnerError(
            f"runner {path.name} ({kind}) cannot run a {artifact_format} artifact; "
            f"it needs {'executor_runner' if want == 'executorch' else 'onnxruntime_perf_test'}"
        )
    extra = tuple(Path(p).expanduser() for p in options.get("runner_files", ()))
    for p in extra:
        if not p.is_file():
            raise RunnerError(f"runner file {p} does not exist")
    return Runner(kind, path, extra)


def elf_machine(path: Path) -> int | None:
    """ELF ``e_machine`` of a file; None when it is not an ELF file."""
    with open(path, "rb") as fh:
        head = fh.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] == 1 else "big"
    return int.from_bytes(head[18:20], order)


def check_runner_abi(runner: Runner, abi: str, abis: Sequence[str] = ()) -> str:
    """Refuse a runner built for a CPU the phone cannot run (``abi``: its primary ABI,
    ``abis``: ro.product.cpu.abilist). '' for an ELF of the primary ABI; a note for one of
    the others the phone lists (a 32-bit ARM build on an arm64 phone that also runs
    armeabi-v7a: it runs, slower than an arm64 build) and for a shell script (a wrapper that
    sets library paths), which runs on any ABI."""
    with open(runner.path, "rb") as fh:
        magic = fh.read(2)
    machine = elf_machine(runner.path)
    if machine is None:
        if magic == b"#!":
            return f"{runner.name} is a script; its ABI is not checked"
        raise RunnerError(
            f"runner {runner.path} is not an executable for Android (no ELF header); "
            "build it with the Android NDK toolchain"
        )
    want = ABI_MACHINE.get(abi)
    if want is None or machine == want:
        return ""
    built = ("32-bit " if machine in (40, 3) else "") + MACHINE_NAMES.get(
        machine, f"machine {machine}"
    )
    if any(ABI_MACHINE.get(a) == machine for a in abis):
        return (
            f"{runner.name} is built for {built}, which this {abi} phone also runs: it runs, "
            f"but slower than a {abi} build; rebuild it with -DANDROID_ABI={abi} for numbers "
            "that represent the phone"
        )
    runs = f" (it runs only {', '.join(abis)})" if abis else ""
    raise RunnerError(
        f"runner {runner.path.name} is built for {built}, the phone is {abi}{runs}: "
        f"rebuild it with -DANDROID_ABI={abi}"
    )


def help_flags(text: str) -> set[str]:
    """Flag names a gflags ``--help`` lists ("    -num_executions (...) type: uint32")."""
    return set(re.findall(r"^\s+-(\w+) \(", text, flags=re.M))


BASE_ET_FLAGS = {"model_path", "num_executions"}


def runner_args(
    runner: Runner,
    model: str,
    executions: int,
    threads: int | None,
    *,
    flags: set[str] | None = None,
    etdump: str | None = None,
    ort_ep: str = "cpu",
    inputs: list[str] | None = None,
    output_prefix: str | None = None,
) -> list[str]:
    """The runner's command line (without the runner itself)."""
    if runner.kind == "executorch":
        flags = flags or BASE_ET_FLAGS
        args = [f"--model_path={model}", f"--num_executions={executions}"]
        if threads is not None and "cpu_threads" in flags:
            args.append(f"--cpu_threads={threads}")
        if "print_output" in flags:
            args.append("--print_output=none")
        if etdump and "etdump_path" in flags:
            args.append(f"--etdump_path={etdump}")
        if inputs:
            args.append(f"--inputs={','.join(inputs)}")
        if output_prefix:
            args.append(f"--output_file={output_prefix}")
        return args
    args = ["-m", "times", "-r", str(executions), "-I", "-s", "-v", "-e", ort_ep]
    if threads is not None:
        args += ["-x", str(threads)]
    return args + [model]


def shell_join(words: list[str]) -> str:
    return " ".join(shlex.quote(w) for w in words)


# -- output -----------------------------------------------------------------------------------

_NUM = r"([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
ET_ITERATION = re.compile(r"Iteration (\d+) of (\d+): " + _NUM + " ms")
ET_LOADED = re.compile(r"Model loaded in " + _NUM + " ms")
ET_TOTAL = re.compile(r"Model executed successfully (\d+) time\(s\) in " + _NUM + " ms")
ORT_ITERATION = re.compile(r"^iteration:(\d+),time_cost:" + _NUM, flags=re.M)
ORT_SESSION = re.compile(r"Session creation time cost: " + _NUM + " s")
ORT_FIRST = re.compile(r"First inference time cost: " + _NUM + " ms")
ORT_AVERAGE = re.compile(r"Average inference time cost(?: total)?: " + _NUM + " ms")
ORT_PEAK = re.compile(r"Peak working set size: (\d+) bytes")
ORT_LATENCY = re.compile(r"^(Min|Max|P50|P90|P95|P99|P999) Latency: " + _NUM + " s", flags=re.M)


@dataclass(frozen=True)
class RunnerOutput:
    """What one runner process reported."""

    samples_ms: list[float] = field(default_factory=list)  # every execution, warm-up included
    load_ms: float | None = None
    first_inference_ms: float | None = None
    total_ms: float | None = None
    executions: int | None = None  # how many it says it ran
    per_iteration: bool = True  # False: samples are not per execution (only a mean was printed)
    summary: dict[str, float] = field(default_factory=dict)  # the runner's own statistics

    @property
    def peak_memory_mb(self) -> float | None:
        """The peak memory the runner itself reports (ORT: peak working set); None: none."""
        return self.summary.get("peak_working_set_mb")


def _number(pattern: re.Pattern[str], text: str, scale: float = 1.0) -> float | None:
    m = pattern.search(text)
    return float(m.group(1)) * scale if m else None


def parse_executor_runner(text: str) -> RunnerOutput:
    samples = [float(m.group(3)) for m in ET_ITERATION.finditer(text)]
    executions = total = None
    summary: dict[str, float] = {}
    if m := ET_TOTAL.search(text):
        executions, total = int(m.group(1)), float(m.group(2))
        summary["mean_ms"] = total / max(executions, 1)
    return RunnerOutput(
        samples_ms=samples,
        load_ms=_number(ET_LOADED, text),
        first_inference_ms=samples[0] if samples else None,
        total_ms=total,
        executions=executions,
        summary=summary,
    )


def parse_perf_test(text: str) -> RunnerOutput:
    samples = [float(m.group(2)) * 1e3 for m in ORT_ITERATION.finditer(text)]
    summary: dict[str, float] = {}
    if (mean := _number(ORT_AVERAGE, text)) is not None:
        summary["mean_ms"] = mean
    if m := ORT_PEAK.search(text):
        summary["peak_working_set_mb"] = int(m.group(1)) / 2**20
    for m in ORT_LATENCY.finditer(text):
        summary[f"{m.group(1).lower()}_ms"] = float(m.group(2)) * 1e3
    return RunnerOutput(
        samples_ms=samples,
        load_ms=_number(ORT_SESSION, text, 1e3),
        first_inference_ms=_number(ORT_FIRST, text),
        executions=len(samples) or None,
        summary=summary,
    )


def parse_output(kind: str, text: str) -> RunnerOutput:
    return parse_executor_runner(text) if kind == "executorch" else parse_perf_test(text)
