"""Where the profiling agent runs: this machine, or another one reached with OpenSSH.

A transport puts what the agent reads where it can read it, gives the command that starts
the agent (run by targets.agent.client.run_agent, which streams its answer), fetches what it
wrote, and cleans up.

SSH uses the system's ``ssh`` client, so keys, ``Host`` aliases, ports, jump hosts and agents
come from the user's own SSH configuration (``-F`` only when a host names a config file).
``BatchMode=yes``: it never prompts, a host that needs a password or an unknown host key
fails with one line that says so. Files travel as a tar stream on the ssh connection into a
remote cache folder (``cache_dir``) under a content-hash name: the agent (one zipapp,
targets/agent/bundle.py, run there as ``python3 agent.pyz``) and each artifact are copied
once, and a name that is already there is not copied again. On close, what this session
copied is removed unless the host sets ``keep_cache = true`` (then the next run skips the
copy); inputs sent for inference and outputs are always removed. One measurement at a time
per host: concurrent runs on one machine spoil each other's numbers, and a session's
clean-up removes what it copied.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

from harness.target import TargetError
from targets.agent.bundle import agent_bundle
from targets.agent.client import AgentAnswer, local_agent_command, local_agent_env
from targets.remote.config import HostConfig, hosts_path

AGENT_FILE = "agent.pyz"
# what to send: its name in the copied folder, and a file or folder here, or the bytes
Member = tuple[str, Path | bytes]

UNREACHABLE = (
    "connection refused",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "connection closed by",
)


def ssh_failure(destination: str, stderr: str) -> TargetError:
    """ssh's own failure (exit 255), told apart: unreachable, authentication refused, host
    key."""
    lines = [
        ln.strip()
        for ln in stderr.strip().splitlines()
        if ln.strip() and not ln.startswith("Warning: Permanently")
    ]
    detail = lines[-1] if lines else "no message from ssh"
    low = stderr.lower()
    if "could not resolve hostname" in low:
        return TargetError(
            f"cannot reach {destination}: its host name does not resolve ({detail}); "
            "check HostName for it in your SSH config"
        )
    if any(s in low for s in UNREACHABLE) and "permission denied" not in low:
        return TargetError(
            f"cannot reach {destination}: {detail}; is it on and is sshd listening on that port?"
        )
    if "permission denied" in low or "too many authentication failures" in low:
        return TargetError(
            f"{destination} refused authentication ({detail}); add your public key to its "
            "~/.ssh/authorized_keys or set IdentityFile for it in your SSH config "
            "(vitbench never prompts for a password)",
            retryable=False,
        )
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return TargetError(
            f"{destination}: host key unknown or changed ({detail}); connect once with "
            f"`ssh {destination}` to check and accept it",
            retryable=False,
        )
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

    def diagnose(
        self, code: int, stderr_tail: list[str], answer: AgentAnswer
    ) -> TargetError | None:
        return None

    def close(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def _write_tar(stream: Any, members: list[Member]) -> None:
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for arcname, source in members:
            if isinstance(source, bytes):
                info = tarfile.TarInfo(arcname)
                info.size, info.mode = len(source), 0o644
                tar.addfile(info, io.BytesIO(source))
            else:
                tar.add(str(source), arcname=arcname)


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
        timeout = max(1, round(self.host.connect_timeout_s))
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}"]
        argv += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.host.ssh_config:
            argv += ["-F", os.path.expanduser(self.host.ssh_config)]
        return [*argv, self.host.destination, remote_command]

    def _run(
        self, remote_command: str, what: str, stdin: bytes | None = None, timeout: float = 120
    ) -> bytes:
        try:
            proc = subprocess.run(
                self.ssh_argv(remote_command),
                input=stdin or b"",
                capture_output=True,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise TargetError(
                "the ssh client is not installed here: install OpenSSH (apt-get install "
                "openssh-client; macOS has it)",
                retryable=False,
            ) from None
        except subprocess.TimeoutExpired:
            raise TargetError(f"{self.where}: {what} took over {timeout:g} s") from None
        self._check(proc.returncode, proc.stderr.decode(errors="replace"), what)
        return proc.stdout

    def _check(self, code: int, stderr: str, what: str) -> None:
        if code == 255:
            raise ssh_failure(self.where, stderr)
        if code != 0:
            last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit code {code}"
            raise TargetError(f"{self.where}: {what} failed: {last}")

    # -- session ----------------------------------------------------------------------------
    def __enter__(self) -> SSHTransport:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _cache_expr(self) -> str:
        """The cache folder as a shell word; ``~/`` becomes "$HOME"/ (a quoted ~ stays
        literal)."""
        path = self.host.cache_dir
        if path == "~" or path.startswith("~/"):
            rest = path[2:]
            return '"$HOME"' + (f"/{shlex.quote(rest)}" if rest else "")
        return shlex.quote(path)

    def open(self) -> None:
        """Connect once: create the cache folder, learn its absolute path and what it holds."""
        marker = "vitbench-cache-follows"  # whatever a login script prints comes before it
        cache = self._cache_expr()
        out = self._run(
            f"mkdir -p {cache} && cd {cache} && echo {marker} && pwd && ls -1A",
            "preparing the cache folder",
            timeout=self.host.connect_timeout_s + 60,
        ).decode()
        lines = out.splitlines()
        lines = lines[lines.index(marker) + 1 :] if marker in lines else lines
        self._cache, self._present = lines[0], {n for n in lines[1:] if ".part-" not in n}

    def _send(self, name: str, members: list[Member]) -> str:
        """Copy files (or folders) into cache/name as one tar stream, unless already there."""
        assert self._cache is not None, "open() first"
        dest = f"{self._cache}/{name}"
        if name in self._present:
            return dest
        part, final = shlex.quote(f"{dest}.part-{uuid.uuid4().hex[:8]}"), shlex.quote(dest)
        script = (
            f"rm -rf {part} && mkdir -p {part} && tar -xf - -C {part} "
            f"&& rm -rf {final} && mv {part} {final}"
        )
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                self.ssh_argv(script), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err
            )
            assert proc.stdin is not None
            try:
                _write_tar(proc.stdin, members)
                proc.stdin.close()
            except BrokenPipeError:  # ssh gave up (could not connect): its exit code says why
                pass
            code = proc.wait()
            err.seek(0)
            self._check(code, err.read().decode(errors="replace"), f"copying {name}")
        self._present.add(name)
        self._copied.append(dest)
        return dest

    def stage(self, path: Path, digest: str) -> str:
        """The host's path of ``path`` (a file or a folder such as an .mlpackage)."""
        path = Path(path)
        return f"{self._send(f'artifact-{digest[:32]}', [(path.name, path)])}/{path.name}"

    def put(self, local: Path) -> str:
        """A file for this call only (inference inputs): always removed on close."""
        folder = self._scratch_folder()
        name = Path(local).name
        self._run(
            f"cat > {shlex.quote(folder + '/' + name)}",
            f"sending {name}",
            stdin=Path(local).read_bytes(),
        )
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
        data = self._run(f"cat {shlex.quote(remote)}", f"fetching {Path(remote).name}")
        Path(local).write_bytes(data)

    def agent_command(self) -> list[str]:
        """``python3 agent.pyz`` on the host, the zipapp copied there once per content."""
        if self._agent is None:
            bundle = agent_bundle()
            self._agent = f"{self._send(bundle.name, [(AGENT_FILE, bundle.data)])}/{AGENT_FILE}"
        python = shlex.quote(self.host.interpreter)
        return self.ssh_argv(f"exec {python} {shlex.quote(self._agent)}")

    def agent_env(self) -> dict[str, str] | None:
        return None

    def diagnose(
        self, code: int, stderr_tail: list[str], answer: AgentAnswer
    ) -> TargetError | None:
        """Why the agent gave no answer, when ssh or the remote shell can tell."""
        last = stderr_tail[-1] if stderr_tail else ""
        if answer.hello:
            if code != 255:
                return None
            return TargetError(
                f"the agent on {self.where} died or the connection dropped after "
                f"{len(answer.samples_ms)} samples{': ' + last if last else ''}"
            )
        if code == 255:
            return ssh_failure(self.where, "\n".join(stderr_tail))
        if code in (126, 127):
            return TargetError(
                f"no Python at {self.host.interpreter} on {self.where} ({last or code}); "
                f'install Python 3.10+ there, or set python = "/path/to/python3" under '
                f"[hosts.{self.host.name}] in {hosts_path()}",
                retryable=False,
            )
        return None

    def close(self) -> None:
        """Remove the scratch folder and, unless the cache is kept, what this session copied.
        A host that went away meanwhile is not an error here (the measurement's own error, if
        any, is the one to report)."""
        keep = self.host.keep_cache
        doomed = ([self._scratch] if self._scratch else []) + ([] if keep else self._copied)
        self._scratch = None
        if not keep:
            self._copied = []
        if doomed and self._cache is not None:
            try:
                self._run(
                    "rm -rf " + " ".join(shlex.quote(p) for p in doomed), "cleaning up", timeout=60
                )
            except TargetError:
                pass
        if not keep:
            self._present -= {Path(p).name for p in doomed}
            self._agent = None


def transport_for(host: HostConfig) -> LocalTransport | SSHTransport:
    """The transport for ``host``; a context manager (``with transport_for(h) as t:``)."""
    return LocalTransport(host) if host.local else SSHTransport(host)
