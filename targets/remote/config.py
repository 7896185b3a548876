"""The hosts file: the hosts that agent-based targets measure on, Macs for the apple target and
any machine that runs Python (ARM boards with MediaTek or Qualcomm chips) for the remote
target.

One TOML file, ``~/.config/vitbench/hosts.toml`` (or the file ``VITBENCH_HOSTS`` names), one
table per host; the table name is the device name vitbench shows::

    [hosts.mac-mini-1]
    target = "apple"            # "apple" (a Mac) or "remote" (any host with Python)
    ssh = "mac-mini-1"          # ssh destination: a Host alias from ~/.ssh/config or
                                # user@host; "local" runs on this machine (default: the
                                # table name)
    python = "/opt/homebrew/bin/python3"  # default "python3" (local: vitbench's Python)
    cache_dir = "~/.cache/vitbench-agent" # on the host, for the agent and the artifacts
    keep_cache = false          # true: copied artifacts stay for the next run
    ssh_config = "~/.ssh/lab"   # optional, passed as `ssh -F`; default: ssh's own config
    connect_timeout_s = 10

On a Mac the apple target also lists ``local`` (this machine) without any file.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.errors import UserError

HOSTS_ENV = "VITBENCH_HOSTS"
DEFAULT_HOSTS_FILE = "~/.config/vitbench/hosts.toml"
HOST_TARGETS = ("apple", "remote")


class HostConfigError(UserError):
    """A hosts file that cannot be read or has unknown or invalid entries."""


@dataclass(frozen=True)
class HostConfig:
    name: str
    target: str = "apple"
    ssh: str | None = None  # None: the table name
    python: str | None = None  # None: python3 over SSH, sys.executable locally
    cache_dir: str = "~/.cache/vitbench-agent"
    keep_cache: bool = False
    ssh_config: str | None = None
    connect_timeout_s: float = 10.0

    @property
    def destination(self) -> str:
        return self.ssh or self.name

    @property
    def local(self) -> bool:
        return self.destination == "local"

    @property
    def interpreter(self) -> str:
        return self.python or (sys.executable if self.local else "python3")


def hosts_path() -> Path:
    return Path(os.path.expanduser(os.environ.get(HOSTS_ENV) or DEFAULT_HOSTS_FILE))


def _host(name: str, table: Any, where: Path) -> HostConfig:
    if not isinstance(table, dict):
        raise HostConfigError(f"{where}: [hosts.{name}] must be a table")
    known = {f.name for f in fields(HostConfig)} - {"name"}
    unknown = sorted(set(table) - known)
    at = f"{where}: [hosts.{name}]"
    if unknown:
        raise HostConfigError(
            f"{at} has unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    host = HostConfig(name=name, **table)
    if host.target not in HOST_TARGETS:
        raise HostConfigError(
            f"{at} target {host.target!r} is not one of {', '.join(HOST_TARGETS)}"
        )
    if host.destination.startswith("-"):
        raise HostConfigError(f"{at} ssh destination {host.destination!r} may not start with '-'")
    if not isinstance(host.keep_cache, bool) or not isinstance(
        host.connect_timeout_s, (int, float)
    ):
        raise HostConfigError(f"{at} keep_cache must be true/false and connect_timeout_s a number")
    return host


def load_hosts(target: str | None = None) -> list[HostConfig]:
    """The configured hosts (of ``target`` when given); none when there is no hosts file."""
    path = hosts_path()
    if not path.is_file():
        if os.environ.get(HOSTS_ENV):
            raise HostConfigError(f"{HOSTS_ENV} names {path}, which does not exist")
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HostConfigError(f"{path}: {exc}") from None
    extra = sorted(set(data) - {"hosts"})
    if extra:
        raise HostConfigError(
            f"{path}: unknown tables {', '.join(extra)}; hosts go under [hosts.NAME]"
        )
    hosts = [_host(name, table, path) for name, table in (data.get("hosts") or {}).items()]
    return [h for h in hosts if target is None or h.target == target]
