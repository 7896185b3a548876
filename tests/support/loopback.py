"""Servers on loopback for the tests: the one helper every fake and daemon starter uses.

- :func:`free_port` picks a free TCP port on 127.0.0.1.
- :class:`ThreadedServer` runs a ``socketserver`` server (the fake AI Hub's HTTP server, the
  fake adb server) on 127.0.0.1 in a daemon thread: ``with ThreadedServer(cls, handler)``.
- :func:`start_daemon` starts a real program (sshd) that listens on a port and returns once
  the port accepts connections, polling (never sleeping a fixed time); it fails the test with
  the program's log when the program exits first or the port never opens.
- :func:`stop_daemon` stops one: terminate, then kill after a grace period.
"""

from __future__ import annotations

import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def accepting(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


class ThreadedServer:
    """A ``socketserver`` server class on 127.0.0.1 (port chosen by the system), served from a
    daemon thread between :meth:`start` and :meth:`stop` (or ``with``)."""

    def __init__(self, server_class: type[socketserver.BaseServer], handler: type) -> None:
        class Server(server_class):  # type: ignore[misc, valid-type]
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((HOST, 0), handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_daemon(
    argv: list[str],
    port: int,
    log_path: Path,
    *,
    name: str,
    timeout_s: float = 30.0,
    ready: Callable[[int], bool] = accepting,
) -> subprocess.Popen:
    """Starts ``argv`` (output to ``log_path``) and returns once ``ready(port)``; fails the
    test with the tail of the log if the program exits first or ``timeout_s`` passes."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while not ready(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_daemon(proc)
            tail = Path(log_path).read_text(errors="replace")[-2000:]
            pytest.fail(f"{name} did not start listening on port {port}: {tail}")
        time.sleep(0.05)
    return proc


def stop_daemon(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Terminate ``proc``; kill it if it is still there after ``grace_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
