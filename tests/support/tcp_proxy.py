"""A TCP proxy on loopback between a client and a real server (PostgreSQL): bytes pass
through untouched, and the test can drop the network at any moment. ``cut()`` closes every
connection and refuses new ones (each is accepted and closed at once: what a client sees
while a server restarts); ``restore()`` lets them through again."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.loopback import HOST


class TcpProxy:
    def __init__(self, port: int, host: str = HOST):
        self.upstream = (host, port)
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, server_url: str) -> str:
        """``server_url`` (postgresql://user@host:port/db) through the proxy."""
        host_port = f"{self.upstream[0]}:{self.upstream[1]}"
        return server_url.replace(host_port, f"{HOST}:{self.port}")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if not self._open.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self._listener.close()
