"""A real OpenSSH server on 127.0.0.1 for tests, with throwaway keys in a temp folder.

The client side is a config file with ``Host`` aliases, so the tests reach the server the way
a user reaches a Mac (``ssh mac-mini-1``): ``vb-host`` (the right key), ``vb-wrongkey`` (a key
the server does not know), ``vb-closed`` (a port nobody listens on), ``vb-nowhere`` (a name
that does not resolve) and ``vb-strangekey`` (a host key not in known_hosts). Nothing is
skipped: without sshd the fixture fails and says that ``.ci/run`` must install openssh-server.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.loopback import free_port, start_daemon, stop_daemon

SSHD = "/usr/sbin/sshd"


@dataclass
class SSHServer:
    port: int
    root: Path
    client_config: Path
    proc: subprocess.Popen

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vitbench-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start_sshd(root: Path) -> SSHServer:
    sshd = shutil.which("sshd") or SSHD
    if not os.path.exists(sshd) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.fail(
            "OpenSSH is missing: .ci/run must install openssh-server and openssh-client "
            "(apt-get install -y openssh-server openssh-client)"
        )
    root.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "user_key", "wrong_key"):
        _keygen(root / key)
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    port = free_port()
    (root / "sshd_config").write_text(f"""\
ListenAddress 127.0.0.1
HostKey {root / "host_key"}
PidFile {root / "sshd.pid"}
AuthorizedKeysFile {root / "authorized_keys"}
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
""")
    proc = start_daemon(
        [sshd, "-D", "-e", "-f", str(root / "sshd_config"), "-p", str(port)],
        port,
        root / "sshd.log",
        name="sshd",
        timeout_s=15,
    )
    host_pub = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    user = getpass.getuser()
    common = (
        f"    User {user}\n    IdentitiesOnly yes\n    UserKnownHostsFile {root / 'known_hosts'}\n"
        "    StrictHostKeyChecking yes\n    LogLevel ERROR\n"
    )
    user, wrong = root / "user_key", root / "wrong_key"
    (root / "ssh_config").write_text(
        f"Host vb-host\n    HostName 127.0.0.1\n    Port {port}\n"
        f"    IdentityFile {user}\n{common}\n"
        f"Host vb-wrongkey\n    HostName 127.0.0.1\n    Port {port}\n"
        f"    IdentityFile {wrong}\n{common}\n"
        f"Host vb-closed\n    HostName 127.0.0.1\n    Port {free_port()}\n"
        f"    IdentityFile {user}\n{common}\n"
        f"Host vb-nowhere\n    HostName no-such-host.invalid\n    IdentityFile {user}\n{common}\n"
        f"Host vb-strangekey\n    HostName 127.0.0.1\n    Port {port}\n    IdentityFile {user}\n"
        + common.replace(str(root / "known_hosts"), str(root / "known_hosts_empty"))
    )
    (root / "known_hosts_empty").write_text("")
    return SSHServer(port=port, root=root, client_config=root / "ssh_config", proc=proc)


def stop_sshd(server: SSHServer) -> None:
    stop_daemon(server.proc)
