"""vitbench's side of the agent: start it in a process of its own, send the request, read its
answer as it streams, and turn artifacts and settings into requests and answers into
Profiles.

The process is started from any command line: ``python -m targets.agent`` on this machine
(the host target), or ``ssh HOST python3 agent.pyz`` for a remote one. The request goes to
its stdin; its stdout is read line by line as it comes, so samples streamed before a crash or
a hang are kept in the error.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifact import Artifact, ArtifactError
from harness.errors import UserError
from harness.target import Device, Profile, ProfileSettings, TargetError
from targets.agent.lifeline import PARENT_ENV
from targets.agent.protocol import AGENT_VERSION, PROTOCOL, AgentError, concrete_shape

REPO_ROOT = Path(__file__).resolve().parents[2]
BUSY_WARNING = 0.25  # share of CPU time others used just before a measurement that earns a warning


def local_agent_command(python: str | None = None) -> list[str]:
    """The agent as a fresh Python process on this machine."""
    return [python or sys.executable, "-m", "targets.agent"]


def local_agent_env() -> dict[str, str]:
    """The environment of an agent on this machine: this checkout on its path, and this
    process named as its parent (targets/agent/lifeline.py: it ends when this process does).
    Only a local agent is told: the parent of one started through ssh is sshd over there."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[PARENT_ENV] = str(os.getpid())
    return env


@dataclass
class AgentAnswer:
    hello: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    wall_s: float = 0.0

    def take(self, ev: dict[str, Any]) -> None:
        """Record one event of the agent's stream."""
        kind = ev.get("event")
        if kind == "sample":
            self.samples_ms.append(float(ev["ms"]))
        elif kind == "stage":
            self.stages[ev["stage"]] = float(ev["ms"])
        elif kind == "hello":
            self.hello = ev
        elif kind == "result":
            self.result = ev
        elif kind == "error":
            self.error = ev


Diagnose = Callable[[int, list[str], AgentAnswer], TargetError | None]


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_agent(
    command: Sequence[str],
    request: dict[str, Any],
    timeout_s: float,
    env: dict[str, str] | None = None,
    what: str = "profiling worker",
    on_event: Callable[[dict[str, Any]], None] | None = None,
    diagnose: Diagnose | None = None,
) -> AgentAnswer:
    """Send ``request`` to the agent started by ``command`` and collect its answer.

    Raises TargetError (with the samples taken so far) when the agent refuses, fails,
    crashes or runs past ``timeout_s``. ``diagnose`` (exit code, last stderr lines, what was
    read) may name the cause of a death the command itself explains better (a transport that
    could not connect, a Python that is not there).

    The agent ends when this process does (targets/agent/lifeline.py): its stdin stays open
    until the answer is read, and on Linux the kernel kills it when the thread that started
    it ends (PR_SET_PDEATHSIG follows the forking thread, not the process): this function
    waits for the agent in the thread that started it, so keep it that way."""
    request = {"protocol": PROTOCOL, "agent_version": AGENT_VERSION, "hold_stdin": True, **request}
    answer = AgentAnswer()
    start = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise TargetError(
                f"cannot start the {what} ({command[0]}): {exc.strerror or exc}"
            ) from None
        code = _converse(proc, request, answer, start + timeout_s, on_event, timeout_s, what)
        answer.wall_s = time.monotonic() - start
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace").strip().splitlines()[-3:]
    _raise_for(answer, code, tail, what, diagnose)
    return answer


def _converse(
    proc: subprocess.Popen,
    request: dict[str, Any],
    answer: AgentAnswer,
    deadline: float,
    on_event: Callable[[dict[str, Any]], None] | None,
    timeout_s: float,
    what: str,
) -> int:
    """Write the request (one line; stdin stays open while the agent works: its end tells
    the agent nobody waits any more), read the stream until the agent ends; its exit code."""
    assert proc.stdin is not None and proc.stdout is not None
    try:
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        _read_events(proc, answer, deadline, on_event)
    except _Timeout:
        _kill(proc)
        raise TargetError(
            f"{what} timed out after {timeout_s:g} s with {len(answer.samples_ms)} samples taken",
            kind="measurement",
            samples_ms=answer.samples_ms,
            retryable=False,
        ) from None
    except BaseException:
        _kill(proc)
        raise
    finally:
        _close_pipes(proc)
    return proc.wait()


def _close_pipes(proc: subprocess.Popen) -> None:
    """End the agent's input (it ends itself if it has not yet) and our end of its output."""
    for pipe in (proc.stdin, proc.stdout):
        try:
            assert pipe is not None
            pipe.close()
        except OSError:  # a request it never read: close() flushes it again
            pass


def _raise_for(
    answer: AgentAnswer, code: int, tail: list[str], what: str, diagnose: Diagnose | None
) -> None:
    """The TargetError for an agent that refused, failed or died; nothing when it answered."""
    if answer.error is not None:
        kind = answer.error.get("kind", "model")
        message = answer.error.get("message", "")
        if kind == "request":
            kind = "infrastructure" if "version mismatch" in message else "model"
        raise TargetError(
            f"{what}: {message}", kind=kind, samples_ms=answer.samples_ms, retryable=False
        )
    if answer.result is not None:
        return
    found = diagnose(code, tail, answer) if diagnose is not None else None
    if found is not None:
        found.samples_ms = answer.samples_ms
        raise found
    detail = f": {' | '.join(tail)}" if tail else ""
    raise TargetError(
        f"{what} died ({_describe_exit(code)}) after {len(answer.samples_ms)} samples{detail}",
        kind="infrastructure",
        samples_ms=answer.samples_ms,
    )


class _Timeout(Exception):
    pass


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _events(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue  # a runtime printing to stdout; not ours
        if isinstance(ev, dict):
            out.append(ev)
    return out


def _read_events(
    proc: subprocess.Popen,
    answer: AgentAnswer,
    deadline: float,
    on_event: Callable[[dict[str, Any]], None] | None,
) -> None:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for ev in _events(lines):
                answer.take(ev)
                if on_event is not None:
                    on_event(ev)
    finally:
        sel.close()


# -- requests and answers ---------------------------------------------------------------------


def agent_request(
    artifact: Artifact,
    runtime: str,
    settings: ProfileSettings,
    path: str | None = None,
    **extra_settings: Any,
) -> dict[str, Any]:
    """The agent's request for ``artifact`` (at ``path`` on the agent's host: default its own)."""
    return {
        "runtime": runtime,
        "artifact": {
            "path": path or str(artifact.path),
            "format": artifact.format,
            "inputs": artifact.inputs,
            "options": artifact.manifest.get("options") or {},
        },
        "settings": {
            "loop": settings.to_dict()["loop"],
            "threads": settings.threads,
            "batch_size": settings.batch_size,
            "options": settings.options,
            **extra_settings,
        },
    }


def profile_from_answer(
    target: str,
    device: Device,
    artifact: Artifact,
    runtime: str,
    settings: ProfileSettings,
    answer: AgentAnswer,
    environment: dict[str, Any] | None = None,
    compute_unit: str = "cpu",
) -> Profile:
    """A Profile from the agent's answer: its samples, metrics, facts and environment."""
    res = answer.result or {}
    env = {**res.get("environment", {}), **(environment or {})}
    warnings = list(res.get("warnings", []))
    busy = env.get("cpu_busy_before")
    if busy is not None and busy > BUSY_WARNING:
        warnings.append(f"other processes kept {busy:.0%} of the CPU busy just before the run")
    details = {
        "facts": res.get("facts", {}),
        "loop": res.get("loop", {}),
        "worker_wall_s": answer.wall_s,
        "worker_pid": answer.hello.get("pid"),  # each round's own process (harness/rounds.py)
        "artifact": {
            "path": str(artifact.path),
            "format": artifact.format,
            "delegate": artifact.delegate,
            "precision": artifact.precision,
        },
    }
    return Profile.from_samples(
        target,
        device,
        artifact.sha256,
        runtime,
        res.get("samples_ms", answer.samples_ms),
        warnings=warnings,
        metrics=res.get("metrics", {}),
        units={"runtime_import_ms": "ms"},
        compute_unit=compute_unit,
        environment=env,
        settings=settings.to_dict(),
        details=details,
    )


def _dims(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def check_batch(artifact: Artifact, batch_size: int) -> None:
    for spec in artifact.inputs:
        first = spec["shape"][0] if spec["shape"] else None
        if isinstance(first, int) and first != batch_size:
            raise UserError(
                f"artifact {artifact.path.name} has a fixed batch of {first}; batch size "
                f"{batch_size} needs an export with a dynamic batch (--dynamic-batch)"
            )


def check_inputs(artifact: Artifact, inputs: list[np.ndarray]) -> None:
    """Each input batch must fit the artifact's input shape (a symbolic batch fits any size)."""
    if not artifact.inputs:
        raise ArtifactError(f"{artifact.path}: the manifest lists no inputs")
    want = artifact.inputs[0]["shape"]
    dtype = artifact.inputs[0].get("dtype", "float32")
    for i, x in enumerate(inputs):
        x = np.asarray(x)
        try:
            fixed = concrete_shape(want, x.shape[0] if x.ndim else 0)
        except AgentError as exc:  # a symbolic inner dimension
            raise UserError(f"artifact input {_dims(want)}: {exc}") from None
        if list(x.shape) != fixed:
            raise UserError(
                f"input {i} has shape {_dims(list(x.shape))} but the artifact takes {_dims(want)}"
            )
        if str(x.dtype) != dtype:
            raise UserError(f"input {i} has dtype {x.dtype} but the artifact takes {dtype}")
