"""Run the profiling agent in a process of its own and read its answer.

The process is started from any command line: ``python -m targets.agent`` on this machine
(the host target), or ``ssh HOST python3 agent.py`` for a remote one. The request goes to its
stdin; its stdout is read line by line as it comes, so samples streamed before a crash or a
hang are kept in the error.
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

from targets.agent import AGENT_VERSION, PROTOCOL
from targets.base import TargetError

REPO_ROOT = Path(__file__).resolve().parent.parent


def local_agent_command(python: str | None = None) -> list[str]:
    """The agent as a fresh Python process on this machine."""
    return [python or sys.executable, "-m", "targets.agent"]


def local_agent_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class AgentAnswer:
    hello: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)
    result: dict[str, Any] | None = None
    wall_s: float = 0.0


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
    diagnose: Callable[[int, list[str], AgentAnswer], TargetError | None] | None = None,
) -> AgentAnswer:
    """Send ``request`` to the agent started by ``command`` and collect its answer.

    Raises TargetError (with the samples taken so far) when the agent refuses, fails,
    crashes or runs past ``timeout_s``. ``diagnose`` (exit code, last stderr lines, what was
    read) may name the cause of a death the command itself explains better (a transport that
    could not connect, a Python that is not there)."""
    request = {"protocol": PROTOCOL, "agent_version": AGENT_VERSION, **request}
    answer = AgentAnswer()
    start = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, start_new_session=True)
        except OSError as exc:
            raise TargetError(f"cannot start the {what} ({command[0]}): {exc.strerror or exc}") from None
        try:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(json.dumps(request).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            error = _read_events(proc, answer, start + timeout_s, on_event)
        except _Timeout:
            _kill(proc)
            raise TargetError(
                f"{what} timed out after {timeout_s:g} s with {len(answer.samples_ms)} samples taken",
                kind="measurement", samples_ms=answer.samples_ms, retryable=False) from None
        except BaseException:
            _kill(proc)
            raise
        code = proc.wait()
        answer.wall_s = time.monotonic() - start
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace").strip().splitlines()[-3:]
    if error is not None:
        kind = error.get("kind", "model")
        if kind == "request":
            kind = "infrastructure" if "version mismatch" in error.get("message", "") else "model"
        raise TargetError(f"{what}: {error.get('message')}", kind=kind, samples_ms=answer.samples_ms,
                          retryable=False)
    if answer.result is None:
        found = diagnose(code, tail, answer) if diagnose is not None else None
        if found is not None:
            found.samples_ms = answer.samples_ms
            raise found
        detail = f": {' | '.join(tail)}" if tail else ""
        raise TargetError(
            f"{what} died ({_describe_exit(code)}) after {len(answer.samples_ms)} samples{detail}",
            kind="infrastructure", samples_ms=answer.samples_ms)
    return answer


class _Timeout(Exception):
    pass


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _read_events(proc: subprocess.Popen, answer: AgentAnswer, deadline: float,
                 on_event: Callable[[dict[str, Any]], None] | None) -> dict[str, Any] | None:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    error = None
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout
        if not sel.select(timeout=min(left, 1.0)):
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue  # a runtime printing to stdout; not ours
            kind = ev.get("event")
            if kind == "sample":
                answer.samples_ms.append(float(ev["ms"]))
            elif kind == "stage":
                answer.stages[ev["stage"]] = float(ev["ms"])
            elif kind == "hello":
                answer.hello = ev
            elif kind == "result":
                answer.result = ev
            elif kind == "error":
                error = ev
            if on_event is not None:
                on_event(ev)
    sel.close()
    return error
