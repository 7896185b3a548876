"""Where the profiling agent runs: this machine, or another one reached with OpenSSH.

A transport puts what the agent reads where it can read it, starts the agent (through
targets.worker.run_agent, which streams its answer), fetches what it wrote, and cleans up.

SSH uses the system's ``ssh`` client, so keys, ``Host`` aliases, ports, jump hosts and agents
come from the user's own SSH configuration (``-F`` only when a host names a config file).
``BatchMode=yes``: it never prompts, a host that needs a password or an unknown host key fails
with one line that says so. Files travel as a tar stream on the ssh connection into a remote
cache folder (``cache_dir``) under a content-hash name: the agent (agent.py + timing.py) and
each artifact are copied once, and a name that is already there is not copied again. On
close, what this session copied is removed unless the host sets ``keep_cache = true`` (then
the next run skips the copy); inputs sent for inference and outputs are always removed.
One measurement at a time per host: concurrent runs on one machine spoil each other's
numbers, and a session's clean-up removes what it copied.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

from targets.agent import AGENT_VERSION
from targets.base import TargetError
from targets.hosts import HostConfig, hosts_path
from targets.worker import REPO_ROOT, AgentAnswer, local_agent_command, local_agent_env

AGENT_FILES = (REPO_ROOT / "targets" / "agent.py", REPO_ROOT / "harness" / "timing.py")


def agent_bundle_digest() -> str:
    h = hashlib.sha256()
    for path in AGENT_FILES:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def ssh_failure(destination: str, stderr: str) -> TargetError:
    """ssh's own failure (exit 255), told apart: unreachable, authentication refused, host key."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    detail = lines[-1] if lines else "no message from ssh"
    low = stderr.lower()
    if "could not resolve hostname" in low:
        return TargetError(f"cannot reach {destination}: its host name does not resolve ({detail}); "
                           "check HostName for it in your SSH config")
    if any(s in low for s in ("connection refused", "connection timed out", "operation timed out", "no route to host",
                              "network is unreachable", "connection reset", "connection closed by")):
        if "permission denied" not in low:
            return TargetError(f"cannot reach {destination}: {detail}; is it on and is sshd listening on that port?")
    if "permission denied" in low or "too many authentication failures" in low:
        return TargetError(f"{destination} refused authentication ({detail}); add your public key to its "
                           "~/.ssh/authorized_keys or set IdentityFile for it in your SSH config "
                           "(vitbench never prompts for a password)", retryable=False)
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return TargetError(f"{destination}: host key unknown or changed ({detail}); connect once with "
                           f"`ssh {destination}` to check and accept it", retryable=False)
    return TargetError(f"ssh to {destination} failed: {detail}")


class LocalTransport:
    """The agent on this machine (vitbench itself runs on the Mac): nothing to copy."""

    def __init__(self, host: HostConfig):
        self.host = host
        self.where = "this machine"
        self._scratch: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> LocalTransport:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def stage(self, path: Path, digest: str) -> str:
        return str(path)

    def put(self, local: Path) -> str:
        return str(local)

    def scratch_path(self, name: str) -> str:
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="vitbench-agent-")
        return str(Path(self._scratch.name) / name)

    def get(self, remote: str, local: Path) -> None:
        if Path(remote) != Path(local):
            shutil.copyfile(remote, local)

    def agent_command(self) -> list[str]:
        return local_agent_command(self.host.interpreter)

    def agent_env(self) -> dict[str, str] | None:
        return local_agent_env()

    def diagnose(self, code: int, stderr_tail: list[str], answer: AgentAnswer) -> TargetError | None:
        return None

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


class SSHTransport:
    """The agent on another host, through the system OpenSSH client."""

    def __init__(self, host: HostConfig):
        self.host = host
        self.where = host.destination
        self._cache: str | None = None
        self._present: set[str] = set()
        self._copied: list[str] = []
        self._scratch: str | None = None
        self._agent: str | None = None

    # -- ssh ------------------------------------------------------------------------------
    def ssh_argv(self, remote_command: str) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(self.host.connect_timeout_s))}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.host.ssh_config:
            argv += ["-F", os.path.expanduser(self.host.ssh_config)]
        return argv + [self.host.destination, remote_command]

    def _run(self, remote_command: str, what: str, stdin: bytes | None = None, timeout: float = 120) -> bytes:
        try:
            proc = subprocess.run(self.ssh_argv(remote_command), input=stdin or b"", capture_output=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise TargetError("the ssh client is not installed here: install OpenSSH (apt-get install "
                              "openssh-client; macOS has it)", retryable=False) from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.where}: {what} took over {timeout:g} s") from None
        err = proc.stderr.decode(errors="replace")
        if proc.returncode == 255:
            raise ssh_failure(self.where, err)
        if proc.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit code {proc.returncode}"
            raise TargetError(f"{self.where}: {what} failed: {last}")
        return proc.stdout

    # -- session ----------------------------------------------------------------------------
    def __enter__(self) -> SSHTransport:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _cache_expr(self) -> str:
        """The cache folder as a shell word; ``~/`` becomes "$HOME"/ (a quoted ~ stays literal)."""
        path = self.host.cache_dir
        if path == "~" or path.startswith("~/"):
            rest = path[2:]
            return '"$HOME"' + (f"/{shlex.quote(rest)}" if rest else "")
        return shlex.quote(path)

    def open(self) -> None:
        """Connect once: create the cache folder, learn its absolute path and what it holds."""
        marker = "vitbench-cache-follows"  # whatever a login script prints comes before it
        out = self._run(f"mkdir -p {self._cache_expr()} && cd {self._cache_expr()} && echo {marker} && pwd && ls -1A",
                        "preparing the cache folder", timeout=self.host.connect_timeout_s + 60).decode()
        lines = out.splitlines()
        lines = lines[lines.index(marker) + 1:] if marker in lines else lines
        self._cache, self._present = lines[0], {n for n in lines[1:] if ".part-" not in n}

    def _send(self, name: str, members: list[tuple[Path, str]]) -> str:
        """Copy files (or folders) into cache/name as one tar stream, unless already there."""
        assert self._cache is not None, "open() first"
        dest = f"{self._cache}/{name}"
        if name in self._present:
            return dest
        part = f"{dest}.part-{uuid.uuid4().hex[:8]}"
        script = (f"rm -rf {shlex.quote(part)} && mkdir -p {shlex.quote(part)} && tar -xf - -C {shlex.quote(part)} "
                  f"&& rm -rf {shlex.quote(dest)} && mv {shlex.quote(part)} {shlex.quote(dest)}")
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.ssh_argv(script), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            assert proc.stdin is not None
            try:
                with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    for path, arcname in members:
                        tar.add(str(path), arcname=arcname)
                proc.stdin.close()
            except BrokenPipeError:  # ssh gave up (could not connect): its exit code says why
                pass
            code = proc.wait()
            err.seek(0)
            text = err.read().decode(errors="replace")
        if code == 255:
            raise ssh_failure(self.where, text)
        if code != 0:
            last = text.strip().splitlines()[-1] if text.strip() else f"exit code {code}"
            raise TargetError(f"{self.where}: copying {name} failed: {last}")
        self._present.add(name)
        self._copied.append(dest)
        return dest

    def stage(self, path: Path, digest: str) -> str:
        """The host's path of ``path`` (a file or a folder such as an .mlpackage)."""
        return f"{self._send(f'artifact-{digest[:32]}', [(Path(path), Path(path).name)])}/{Path(path).name}"

    def put(self, local: Path) -> str:
        """A file for this call only (inference inputs): always removed on close."""
        folder = self._scratch_folder()
        name = Path(local).name
        self._run(f"cat > {shlex.quote(folder + '/' + name)}", f"sending {name}", stdin=Path(local).read_bytes())
        return f"{folder}/{name}"

    def scratch_path(self, name: str) -> str:
        return f"{self._scratch_folder()}/{name}"

    def _scratch_folder(self) -> str:
        if self._scratch is None:
            folder = f"{self._cache}/scratch-{uuid.uuid4().hex[:12]}"
            self._run(f"mkdir -p {shlex.quote(folder)}", "making a scratch folder")
            self._scratch = folder
        return self._scratch

    def get(self, remote: str, local: Path) -> None:
        Path(local).write_bytes(self._run(f"cat {shlex.quote(remote)}", f"fetching {Path(remote).name}"))

    def agent_command(self) -> list[str]:
        if self._agent is None:
            name = f"agent-{AGENT_VERSION}-{agent_bundle_digest()[:16]}"
            self._agent = self._send(name, [(p, p.name) for p in AGENT_FILES]) + "/agent.py"
        return self.ssh_argv(f"exec {shlex.quote(self.host.interpreter)} {shlex.quote(self._agent)}")

    def agent_env(self) -> dict[str, str] | None:
        return None

    def diagnose(self, code: int, stderr_tail: list[str], answer: AgentAnswer) -> TargetError | None:
        """Why the agent gave no answer, when ssh or the remote shell can tell."""
        text = "\n".join(stderr_tail)
        if not answer.hello:
            if code == 255:
                return ssh_failure(self.where, text)
            if code in (126, 127):
                return TargetError(
                    f"no Python at {self.host.interpreter} on {self.where} ({stderr_tail[-1] if stderr_tail else code}); "
                    f"install Python 3.10+ there, or set python = \"/path/to/python3\" under [hosts.{self.host.name}] "
                    f"in {hosts_path()}", retryable=False)
        elif code == 255:
            return TargetError(f"the agent on {self.where} died or the connection dropped after "
                               f"{len(answer.samples_ms)} samples{': ' + stderr_tail[-1] if stderr_tail else ''}")
        return None

    def close(self) -> None:
        """Remove the scratch folder and, unless the cache is kept, what this session copied.
        A host that went away meanwhile is not an error here (the measurement's own error, if
        any, is the one to report)."""
        doomed = ([self._scratch] if self._scratch else []) + ([] if self.host.keep_cache else self._copied)
        self._scratch = None
        if not self.host.keep_cache:
            self._copied = []
        if doomed and self._cache is not None:
            try:
                self._run("rm -rf " + " ".join(shlex.quote(p) for p in doomed), "cleaning up", timeout=60)
            except TargetError:
                pass
        if not self.host.keep_cache:
            self._present -= {Path(p).name for p in doomed}
            self._agent = None


def transport_for(host: HostConfig) -> LocalTransport | SSHTransport:
    """The transport for ``host``; a context manager (``with transport_for(h) as t:``)."""
    return LocalTransport(host) if host.local else SSHTransport(host)
