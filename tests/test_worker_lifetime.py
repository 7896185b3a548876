"""A measuring worker ends with the vitbench that started it (targets/agent/lifeline.py): after
``kill -9`` of its parent the agent does not go on competing for the CPU, on this machine or
behind ssh.

The agents here wait in a load that never finishes (tests/support/stalling_runtime.py):
silent, so a broken pipe on the next sample cannot be what ends them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.target import ProfileSettings
from targets.agent.client import agent_request, local_agent_command, local_agent_env
from targets.agent.lifeline import EXIT_ORPHANED, PARENT_ENV, alive
from targets.agent.protocol import AGENT_VERSION, PROTOCOL
from tests.support.artifacts import exported
from tests.support.ssh_server import start_sshd, stop_sshd
from tests.support.stalling_runtime import NAME as STALL
from tests.support.stalling_runtime import install_stalling_runtime

REPO = Path(__file__).resolve().parents[1]
BOUND_S = 30.0  # for anything to happen on a busy machine

# vitbench as `vitbench run` measures: the host target's profile in a worker thread that waits
# for the agent (PR_SET_PDEATHSIG follows the thread that forked)
HOST_PARENT = r"""
import sys, threading
from harness.artifact import Artifact
from harness.target import ProfileSettings
from targets.host import HostTarget

folder, pid_file = sys.argv[1:3]
host = HostTarget()
settings = ProfileSettings.quick(runtime="stall", options={"pid_file": pid_file})
worker = threading.Thread(
    target=host.profile, args=(Artifact.load(folder), host.devices()[0], settings)
)
worker.start()
worker.join()
"""

# the agent behind ssh, started by run_agent as the remote target starts it (the real agent,
# here with the plugin that stalls, which the shipped zipapp cannot load)
SSH_PARENT = r"""
import shlex, sys, threading
from harness.artifact import Artifact
from harness.target import ProfileSettings
from targets.agent.client import agent_request, run_agent
from targets.remote.config import HostConfig
from targets.remote.transport import SSHTransport

folder, pid_file, ssh_config, pythonpath = sys.argv[1:5]
host = HostConfig(name="board", ssh="vb-host", ssh_config=ssh_config, connect_timeout_s=5)
remote = (
    f"exec env PYTHONPATH={shlex.quote(pythonpath)} {shlex.quote(sys.executable)} "
    "-m targets.agent"
)
settings = ProfileSettings.quick(runtime="stall", options={"pid_file": pid_file})
request = {"action": "profile", **agent_request(Artifact.load(folder), "stall", settings)}
argv = SSHTransport(host).ssh_argv(remote)
worker = threading.Thread(target=run_agent, args=(argv, request, 120))
worker.start()
worker.join()
"""


@pytest.fixture(scope="module")
def onnx(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("lifetime") / "onnx", "onnx")


@pytest.fixture
def site(tmp_path) -> Path:
    return install_stalling_runtime(tmp_path / "site")


def _pythonpath(*folders: Path) -> str:
    return os.pathsep.join([*(str(f) for f in folders), str(REPO)])


def _poll(condition, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """``condition()``'s first true value within BOUND_S; fails (with ``proc``'s log) when
    ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    detail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    pytest.fail(f"{what} (within {BOUND_S:g} s){': ' + detail if detail else ''}")


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return int(fh.read().rsplit(b")", 1)[1].split()[1])


def _children(pid: int) -> dict[int, list[bytes]]:
    """Processes whose parent is ``pid``: their command lines."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _parent_of(int(entry)) == pid:
                    out[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
    return out


def _end(*pids: int) -> None:
    """Clean up after a failure: nothing a test started keeps running."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _start_parent(script: str, args: list[str], log: Path, pythonpath: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    with open(log, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=subprocess.STDOUT,
            env=env,
        )


pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")


# -- vitbench killed -------------------------------------------------------------------------


def test_worker_ends_when_its_vitbench_is_killed(tmp_path, onnx, site):
    pid_file, log = tmp_path / "agent.pid", tmp_path / "parent.log"
    parent = _start_parent(HOST_PARENT, [str(onnx.folder), str(pid_file)], log, _pythonpath(site))
    agent = None
    try:
        agent = _poll(lambda: _pid_in(pid_file), "the agent never started", parent, log)
        assert _parent_of(agent) == parent.pid  # the worker vitbench started, in its session
        assert os.getsid(agent) == agent != os.getsid(parent.pid)
        parent.kill()
        parent.wait(BOUND_S)
        _poll(lambda: not alive(agent), f"the agent {agent} outlived its killed parent")
    finally:
        _end(parent.pid, *([agent] if agent else []))


def test_ssh_and_the_agent_behind_it_end_when_vitbench_is_killed(tmp_path, onnx, site):
    """The local ssh client (in a session of its own) reads end of input, passes it on, and
    both it and the agent behind sshd end; no output is needed for that."""
    sshd = start_sshd(tmp_path / "sshd")
    pid_file, log = tmp_path / "agent.pid", tmp_path / "parent.log"
    args = [str(onnx.folder), str(pid_file), str(sshd.client_config), _pythonpath(site)]
    parent = _start_parent(SSH_PARENT, args, log, _pythonpath())
    agent, ssh = None, []
    try:
        agent = _poll(lambda: _pid_in(pid_file), "the agent never started over ssh", parent, log)
        ssh = [pid for pid, cmd in _children(parent.pid).items() if cmd[0].endswith(b"ssh")]
        assert len(ssh) == 1 and _parent_of(agent) != parent.pid  # the agent is sshd's
        parent.kill()
        parent.wait(BOUND_S)
        _poll(lambda: not alive(ssh[0]), "the ssh client outlived its killed parent")
        _poll(lambda: not alive(agent), f"the agent {agent} behind sshd outlived its caller")
    finally:
        _end(parent.pid, *ssh, *([agent] if agent else []))
        stop_sshd(sshd)


# -- each line on its own --------------------------------------------------------------------


def _gone_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(proc.stdout)


def test_agent_whose_named_parent_is_gone_exits_at_once():
    """The race between the fork and the prctl: the parent named in the environment is gone
    by the time the agent starts. It ends before it says hello, with stdin still open."""
    env = {**local_agent_env(), PARENT_ENV: str(_gone_pid())}
    proc = subprocess.Popen(
        local_agent_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        out, _ = proc.communicate(timeout=BOUND_S)
    finally:
        _end(proc.pid)
    assert proc.returncode == EXIT_ORPHANED and out == b""


WATCHED = r"""
import sys, time
from targets.agent import lifeline
lifeline._parent_death_signal = lambda: False  # the parent watch alone
lifeline.hold_to_parent(poll_s=0.05)
open(sys.argv[1], "w").write("held")
time.sleep(60)
"""

MIDDLE = r"""
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
open(sys.argv[3], "w").write(str(child.pid))
child.wait()
"""


def test_parent_watch_alone_ends_a_child_whose_parent_died(tmp_path):
    """Without the parent-death signal (macOS has none) the thread that watches the parent
    pid ends the process."""
    ready, pid_file = tmp_path / "ready", tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    middle = subprocess.Popen(
        [sys.executable, "-c", MIDDLE, WATCHED, str(ready), str(pid_file)], env=env
    )
    child = None
    try:
        child = _poll(lambda: _pid_in(pid_file), "the child never started", middle)
        _poll(ready.exists, "the child never held to its parent", middle)
        middle.kill()
        middle.wait(BOUND_S)
        _poll(lambda: not alive(child), f"the child {child} outlived its parent")
    finally:
        _end(middle.pid, *([child] if child else []))


def test_agent_ends_when_its_stdin_ends(tmp_path, onnx, site):
    """The line that reaches another host: a caller that holds stdin open and then goes."""
    pid_file = tmp_path / "agent.pid"
    settings = ProfileSettings.quick(runtime=STALL, options={"pid_file": str(pid_file)})
    request = {
        "protocol": PROTOCOL,
        "agent_version": AGENT_VERSION,
        "hold_stdin": True,
        "action": "profile",
        **agent_request(onnx, STALL, settings),
    }
    env = {**local_agent_env(), "PYTHONPATH": _pythonpath(site)}
    env.pop(PARENT_ENV)
    proc = subprocess.Popen(
        [sys.executable, "-m", "targets.agent"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        _poll(lambda: _pid_in(pid_file), "the agent never started loading", proc)
        proc.stdin.close()
        proc.wait(BOUND_S)
    finally:
        _end(proc.pid)
    with proc.stdout:
        events = [json.loads(line) for line in proc.stdout.read().splitlines()]
    assert proc.returncode == EXIT_ORPHANED
    assert [e["event"] for e in events] == ["hello"]  # nothing answered: nobody to read it
