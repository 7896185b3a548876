"""One cell's measurement on one phone: wait until it is cool, put the artifact and the
runner there, run the runner (a first run, a longer one when the first was shorter than the
settings' minimum time, or the rounds of sustained mode), read the phone's state after.

What it read is a :class:`Measured`; the samples measured so far stay in
:attr:`Measurement.samples`, so a cell that fails midway keeps them."""

from __future__ import annotations

import math
import signal
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.artifact import Artifact
from harness.errors import UserError
from harness.target import ProfileSettings, TargetError
from targets.android.adb import AdbError
from targets.android.device import PhoneInfo, PhoneState
from targets.android.etdump import BackendTimes
from targets.android.options import AndroidOptions
from targets.android.phone import Phone, PhoneLost
from targets.android.runners import Runner, runner_args
from targets.android.thermal import ThermalWait, sustained_round, wait_cool
from targets.android.workspace import PhoneFiles, RunResult, Workspace


@dataclass(frozen=True)
class Measured:
    """Everything one cell read from the phone, before it becomes a Profile."""

    info: PhoneInfo
    runs: tuple[RunResult, ...]
    rounds: tuple[dict[str, Any], ...]  # sustained mode only
    samples: tuple[float, ...]
    wait: ThermalWait  # its ``state`` is the state before the runs
    state_after: PhoneState
    pinned: tuple[int, ...]

    @property
    def state_before(self) -> PhoneState:
        return self.wait.state


@dataclass(frozen=True)
class _Placed:
    """Where one cell's files are on the phone, and how its runner is called there."""

    ws: Workspace
    model: str  # the artifact's path on the phone
    runner: str  # the runner's path on the phone
    flags: frozenset[str]
    pinned: tuple[int, ...]
    ort_ep: str


def warmup_executions(settings: ProfileSettings) -> int:
    return max(0, settings.loop.warmup_iterations)


class Measurement:
    """The runs of one profile of ``artifact`` with ``runner`` on ``phone``."""

    def __init__(
        self,
        files: PhoneFiles,
        phone: Phone,
        artifact: Artifact,
        runner: Runner,
        settings: ProfileSettings,
        opts: AndroidOptions,
    ):
        self.files, self.phone, self.artifact, self.runner = files, phone, artifact, runner
        self.settings, self.opts = settings, opts
        self.warmup = warmup_executions(settings)
        self.samples: list[float] = []  # grows as runs finish: what a failure keeps

    def measure(self, info: PhoneInfo) -> Measured:
        with self.files.workspace(self.phone, self.opts.keep_on_device) as ws:
            wait = wait_cool(self.phone, self.opts)
            placed = self._place(ws, wait.state, info)
            if self.opts.sustained_s > 0:
                runs, rounds = self._sustained(placed, wait.state)
            else:
                runs, rounds = self._timed(placed), []
            after = self.phone.state()
        return Measured(
            info, tuple(runs), tuple(rounds), tuple(self.samples), wait, after, placed.pinned
        )

    def _place(self, ws: Workspace, before: PhoneState, info: PhoneInfo) -> _Placed:
        model = ws.push_cached(self.artifact.path)
        remote_runner = ws.push_cached(self.runner.path, executable=True)
        for extra in self.runner.extra_files:
            ws.push_cached(extra, next_to=remote_runner)
        flags = frozenset(ws.runner_flags(self.runner, remote_runner))
        pinned = tuple(before.big_cores()) if self.opts.pin_big_cores else ()
        ort_ep = self.opts.execution_provider(self.settings, info)
        return _Placed(ws, model, remote_runner, flags, pinned, ort_ep)

    def _executions(self) -> int:
        loop = self.settings.loop
        return max(1, min(loop.min_iterations, loop.max_iterations))

    def _timed(self, placed: _Placed) -> list[RunResult]:
        """A first run; a longer one in its place when it measured less than min_seconds."""
        loop = self.settings.loop
        n = self._executions()
        first = self._once(placed, n)
        measured = sum(first.output.samples_ms[self.warmup :])
        too_short = measured < loop.min_seconds * 1e3 and n < loop.max_iterations
        if not (too_short and first.output.per_iteration):
            return [first]
        per = measured / max(n, 1) or 1.0
        n2 = min(loop.max_iterations, max(n + 1, math.ceil(loop.min_seconds * 1e3 / per * 1.1)))
        self.samples = []
        return [first, self._once(placed, n2)]

    def _sustained(
        self, placed: _Placed, baseline: PhoneState
    ) -> tuple[list[RunResult], list[dict[str, Any]]]:
        """Rounds until ``sustained_s`` of inference, each judged against ``baseline``, the
        phone's state before round 1."""
        n = self._executions()
        runs: list[RunResult] = []
        rounds: list[dict[str, Any]] = []
        elapsed_ms = 0.0
        while elapsed_ms < self.opts.sustained_s * 1e3 and len(rounds) < self.opts.max_rounds:
            res = self._once(placed, n)
            runs.append(res)
            measured = res.output.samples_ms[self.warmup :] or res.output.samples_ms
            state = self.phone.state()
            rounds.append(
                sustained_round(
                    rounds, elapsed_ms, measured, state, self.opts.throttle_ratio, baseline
                )
            )
            elapsed_ms += sum(measured)
        return runs, rounds

    def _once(self, placed: _Placed, n: int) -> RunResult:
        etdump = None
        if self.runner.kind == "executorch" and self.opts.etdump and "etdump_path" in placed.flags:
            etdump = f"{placed.ws.run_dir}/model.etdump"
        args = runner_args(
            self.runner,
            placed.model,
            self.warmup + n,
            self.settings.threads,
            flags=set(placed.flags),
            etdump=etdump,
            ort_ep=placed.ort_ep,
        )
        try:
            res = placed.ws.launch(
                self.runner,
                placed.runner,
                args,
                timeout=self.settings.timeout_s,
                pin=list(placed.pinned),
                env=self.opts.env,
            )
        except PhoneLost as exc:
            if exc.partial is not None:
                self.samples.extend(exc.partial.samples_ms[self.warmup :])
            raise
        if etdump and res.exit_code == 0:
            res = self._with_etdump(res, self._read_etdump(etdump))
        out = res.output
        if res.exit_code == 0 and not out.samples_ms and out.summary.get("mean_ms") is not None:
            out = replace(
                out, samples_ms=[out.summary["mean_ms"]] * (1 + self.warmup), per_iteration=False
            )
            res = replace(res, output=out)
        self.samples.extend(
            out.samples_ms[self.warmup :] if out.per_iteration else out.samples_ms[:1]
        )
        if res.exit_code != 0:
            raise runner_failed(self.runner, self.phone.serial, res, self.samples)
        if not out.samples_ms:
            raise TargetError(
                f"{self.runner.name} on {self.phone.serial} printed no timings; "
                f"last lines: {tail(res.text)}",
                kind="measurement",
            )
        return res

    @staticmethod
    def _with_etdump(res: RunResult, dump: BackendTimes | None) -> RunResult:
        """``res`` with its ETDump; its per-execution times stand in for the runner's when
        it printed none."""
        res = replace(res, etdump=dump)
        if dump and not res.output.samples_ms and dump.execute_ms:
            times = list(dump.execute_ms)
            res = replace(
                res, output=replace(res.output, samples_ms=times, first_inference_ms=times[0])
            )
        return res

    def _read_etdump(self, remote: str) -> BackendTimes | None:
        from targets.android.etdump import backend_times, read_etdump

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "model.etdump"
            try:
                self.phone.pull(remote, local)
                return backend_times(read_etdump(local))
            except (AdbError, UserError):
                return None


def tail(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "(nothing)"


def runner_failed(runner: Runner, serial: str, res: RunResult, samples: list[float]) -> TargetError:
    code = res.exit_code
    if code > 128 and code - 128 in signal.valid_signals():
        how = f"crashed with {signal.Signals(code - 128).name}"
    else:
        how = f"exited with code {code}"
    return TargetError(
        f"{runner.name} {how} on {serial} after {len(res.output.samples_ms)} "
        f"executions: {tail(res.text)}",
        kind="model",
        samples_ms=samples,
    )
