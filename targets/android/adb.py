"""A small client for the adb host protocol: vitbench talks to the adb server itself.

The adb server (``adb start-server``; it listens on 127.0.0.1:5037 unless ``ADB_SERVER_SOCKET``
or ``ANDROID_ADB_SERVER_ADDRESS``/``_PORT`` say otherwise) relays requests to the phones it
sees. Each request
goes on a TCP connection of its own as a 4-hex-digit length and the request text; the server
answers ``OKAY`` or ``FAIL`` with a length-prefixed message.

- ``host:version``, ``host:devices-l``, ``host-serial:SERIAL:features``: asked of the server;
- ``host:transport:SERIAL``: switches the connection to one phone, after which
  ``shell,v2,raw:CMD`` runs a command (stdout, stderr and the exit code come back as shell
  protocol packets: id byte, little-endian length, data; phones without ``shell_v2`` get
  ``shell:CMD`` and a raw stream) and ``sync:`` starts a file
  session (``STAT``/``SEND``/``RECV`` requests, ``DATA``/``DONE``/``OKAY``/``FAIL``
  replies, ``QUIT``).

The framing follows AOSP's packages/modules/adb docs (SERVICES.TXT, SYNC.TXT, shell_protocol.h).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5037
SYNC_CHUNK = 64 * 1024  # the largest DATA packet adb accepts

# shell protocol packet ids (shell_protocol.h)
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4


class AdbError(Exception):
    """The server or the phone refused a request (a FAIL reply)."""


class AdbServerUnreachable(UserError):
    """No adb server answers at the address."""

    exit_code = 1


class DeviceNotFound(UserError):
    """The serial is not attached (or not authorised)."""

    exit_code = 1


class DeviceGone(Exception):
    """The connection to a phone dropped in the middle of a request (unplugged, rebooted,
    adbd restarted). ``stdout``/``stderr`` hold what a shell command printed before."""

    def __init__(self, message: str, stdout: str = "", stderr: str = ""):
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr


def server_address(address: str | None = None) -> tuple[str, int]:
    """Where the adb server listens, found the way adb finds it: ``address`` (``host:port`` or
    ``port``) or ``VITBENCH_ADB_SERVER``; else ``ADB_SERVER_SOCKET`` (``tcp:HOST:PORT`` or
    ``tcp:PORT``); else ``ANDROID_ADB_SERVER_ADDRESS`` and ``ANDROID_ADB_SERVER_PORT``; else
    127.0.0.1:5037. A malformed value is a :class:`BadServerAddress`."""
    env = os.environ
    if address or env.get("VITBENCH_ADB_SERVER"):
        spec, what = address or env["VITBENCH_ADB_SERVER"], "--adb / VITBENCH_ADB_SERVER"
        host, _, port = spec.rpartition(":")
        return _host(host) or DEFAULT_HOST, _port(port, what, spec, "HOST:PORT or PORT")
    if socket_spec := env.get("ADB_SERVER_SOCKET"):
        kind, _, rest = socket_spec.partition(":")
        if kind != "tcp" or not rest:
            raise BadServerAddress(
                f"ADB_SERVER_SOCKET must be tcp:HOST:PORT or tcp:PORT (vitbench reaches the adb "
                f"server over TCP); got {socket_spec!r}"
            )
        host, _, port = rest.rpartition(":")
        what = "ADB_SERVER_SOCKET"
        return _host(host) or DEFAULT_HOST, _port(port, what, socket_spec, "tcp:HOST:PORT")
    host = env.get("ANDROID_ADB_SERVER_ADDRESS") or DEFAULT_HOST
    port = env.get("ANDROID_ADB_SERVER_PORT") or str(DEFAULT_PORT)
    return _host(host), _port(port, "ANDROID_ADB_SERVER_PORT", port, "a port")


class BadServerAddress(UserError):
    """An adb server address that does not parse."""


def _host(host: str) -> str:
    return host.removeprefix("[").removesuffix("]")  # [::1]:5037


def _port(text: str, what: str, spec: str, form: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise BadServerAddress(f"{what} must be {form} with a port from 1 to 65535; got {spec!r}")


STATE_ADVICE = {
    "unauthorized": "unlock it and accept the USB debugging prompt on the phone (no prompt: "
    "revoke USB debugging authorisations in Developer options and plug it in again), or check "
    "the RSA key this adb server uses (~/.android/adbkey, $ADB_VENDOR_KEYS)",
    "offline": "reconnect the cable, or run `adb reconnect` (`adb kill-server` if it stays "
    "offline)",
    "authorizing": "wait for the phone to finish authorising, then check `adb devices`",
}


def state_advice(state: str) -> str:
    """What to do about a phone the server lists as ``state`` ("" for a usable one)."""
    if state == "device":
        return ""
    return STATE_ADVICE.get(
        state, "boot it into Android with USB debugging on, then check `adb devices`"
    )


@dataclass(frozen=True)
class DeviceEntry:
    """One line of ``host:devices-l``."""

    serial: str
    state: str  # "device", "offline", "unauthorized", "recovery", ...
    details: dict[str, str] = field(default_factory=dict)  # product, model, device, transport_id


@dataclass(frozen=True)
class ShellResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RemoteStat:
    mode: int
    size: int
    mtime: int

    @property
    def exists(self) -> bool:
        return self.mode != 0


class _Conn:
    """One socket to the server with the protocol's framing."""

    def __init__(self, host: str, port: int, timeout: float, deadline: float | None = None):
        self.idle, self.deadline = timeout, deadline  # deadline: time.monotonic() for all of it
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            hint = (
                "start it with `adb start-server` and check that `adb devices` lists the phone"
                if shutil.which("adb")
                else "adb is not installed: install Android SDK platform-tools, run "
                "`adb start-server`, and check that `adb devices` lists the phone"
            )
            raise AdbServerUnreachable(
                f"no adb server at {host}:{port} ({exc.strerror or exc}); {hint}"
            ) from None
        self.sock.settimeout(timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover - closing a dead socket
            pass

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise DeviceGone(f"connection lost while sending ({exc})") from None

    def recv(self, n: int) -> bytes:
        """One recv, within the idle timeout and what is left of the deadline (TimeoutError
        past either: a command that prints now and then but never ends is cut off too)."""
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the command's deadline passed")
            self.sock.settimeout(min(self.idle, left))
        return self.sock.recv(n)

    def read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.recv(n - len(buf))
            except TimeoutError:
                raise
            except OSError as exc:
                raise DeviceGone(f"connection lost ({exc})") from None
            if not chunk:
                raise DeviceGone("connection closed by the adb server")
            buf += chunk
        return bytes(buf)

    def request(self, service: str) -> None:
        """Send a host request and wait for OKAY; FAIL raises AdbError with its message."""
        payload = service.encode()
        self.send(b"%04x" % len(payload) + payload)
        status = self.read(4)
        if status == b"OKAY":
            return
        if status == b"FAIL":
            raise AdbError(self.read_hex_string())
        raise AdbError(f"unexpected reply {status!r} to {service.split(':')[0]}")

    def read_hex_string(self) -> str:
        n = int(self.read(4), 16)
        return self.read(n).decode(errors="replace")


def _not_usable(serial: str, refusal: str) -> DeviceNotFound:
    """The server's FAIL for a phone, as one line that says what to do."""
    first = refusal.strip().splitlines()[0].rstrip(".") if refusal.strip() else "refused"
    state = first.removeprefix("device ")
    if first.startswith("device ") and state in STATE_ADVICE:
        return DeviceNotFound(f"phone {serial} is {state}: {STATE_ADVICE[state]}")
    return DeviceNotFound(
        f"device {serial!r} is not attached ({first}); `adb devices` lists the attached ones"
    )


class AdbClient:
    """The adb host protocol, one connection per request."""

    def __init__(self, address: str | None = None, timeout: float = 30.0):
        self.host, self.port = server_address(address)
        self.timeout = timeout
        self._features: dict[str, set[str]] = {}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self, timeout: float | None = None, deadline: float | None = None) -> _Conn:
        return _Conn(self.host, self.port, self.timeout if timeout is None else timeout, deadline)

    def version(self) -> int:
        with self._connect() as c:
            c.request("host:version")
            return int(c.read_hex_string(), 16)

    def devices(self) -> list[DeviceEntry]:
        with self._connect() as c:
            c.request("host:devices-l")
            text = c.read_hex_string()
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            details = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
            out.append(DeviceEntry(parts[0], parts[1], details))
        return out

    def _transport(
        self, serial: str, timeout: float | None = None, deadline: float | None = None
    ) -> _Conn:
        c = self._connect(timeout, deadline)
        try:
            c.request(f"host:transport:{serial}")
        except AdbError as exc:
            c.close()
            raise _not_usable(serial, str(exc)) from None
        except BaseException:
            c.close()
            raise
        return c

    def features(self, serial: str) -> set[str]:
        """What the phone's adbd supports ("shell_v2", "cmd", "stat_v2", ...)."""
        if serial not in self._features:
            with self._connect() as c:
                try:
                    c.request(f"host-serial:{serial}:features")
                except AdbError as exc:
                    raise _not_usable(serial, str(exc)) from None
                self._features[serial] = set(c.read_hex_string().strip().split(","))
        return self._features[serial]

    # -- shell --------------------------------------------------------------------------------

    def shell(self, serial: str, command: str, timeout: float | None = None) -> ShellResult:
        """Run ``command`` with ``sh -c`` on the phone; stdout, stderr and the exit code.

        Uses the v2 shell protocol (Android 7+: separate streams and an exit code) when the
        phone has it, else the raw ``shell:`` stream with the exit code echoed at its end
        (stderr then arrives mixed into stdout).

        ``timeout`` (default: the client's) is a deadline for the whole command, not only
        for a silence: past it, TimeoutError."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if "shell_v2" not in self.features(serial):
            return self._shell_v1(serial, command, limit, deadline)
        with self._transport(serial, limit, deadline) as c:
            c.request(f"shell,v2,raw:{command}")
            out, err, code = bytearray(), bytearray(), None
            while code is None:
                try:
                    kind, data = self._shell_packet(c)
                except DeviceGone as exc:
                    raise DeviceGone(
                        str(exc), out.decode(errors="replace"), err.decode(errors="replace")
                    ) from None
                if kind == SHELL_STDOUT:
                    out += data
                elif kind == SHELL_STDERR:
                    err += data
                elif kind == SHELL_EXIT:
                    code = data[0] if data else 255
        return ShellResult(out.decode(errors="replace"), err.decode(errors="replace"), code)

    def _shell_v1(self, serial: str, command: str, timeout: float, deadline: float) -> ShellResult:
        mark = "vitbench-adb-exit:"
        with self._transport(serial, timeout, deadline) as c:
            c.request(f"shell:(\n{command}\n); echo {mark}$?")
            out = bytearray()
            while True:
                try:
                    chunk = c.recv(65536)
                except TimeoutError:
                    raise
                except OSError as exc:
                    raise DeviceGone(
                        f"connection lost ({exc})", out.decode(errors="replace")
                    ) from None
                if not chunk:
                    break
                out += chunk
        text = out.decode(errors="replace").replace("\r\n", "\n")
        found = list(re.finditer(re.escape(mark) + r"(\d+)\n?", text))
        if not found:
            raise DeviceGone("the shell stream ended before the command finished", text)
        last = found[-1]  # stderr may still arrive after the mark: keep it
        return ShellResult(text[: last.start()] + text[last.end() :], "", int(last.group(1)))

    @staticmethod
    def _shell_packet(c: _Conn) -> tuple[int, bytes]:
        header = c.read(5)
        kind, length = header[0], struct.unpack("<I", header[1:])[0]
        return kind, c.read(length) if length else b""

    # -- sync ---------------------------------------------------------------------------------

    def _sync(self, serial: str, timeout: float | None = None) -> _Conn:
        c = self._transport(serial, timeout)
        try:
            c.request("sync:")
        except BaseException:
            c.close()
            raise
        return c

    @staticmethod
    def _sync_send(c: _Conn, ident: bytes, payload: bytes) -> None:
        c.send(ident + struct.pack("<I", len(payload)) + payload)

    @staticmethod
    def _sync_reply(c: _Conn) -> tuple[bytes, int]:
        head = c.read(8)
        return head[:4], struct.unpack("<I", head[4:])[0]

    def stat(self, serial: str, remote: str) -> RemoteStat:
        with self._sync(serial) as c:
            self._sync_send(c, b"STAT", remote.encode())
            ident = c.read(4)
            if ident != b"STAT":
                raise AdbError(f"unexpected sync reply {ident!r} to STAT")
            mode, size, mtime = struct.unpack("<III", c.read(12))
            self._sync_send(c, b"QUIT", b"")
        return RemoteStat(mode, size, mtime)

    def push(
        self,
        serial: str,
        local: str | Path,
        remote: str,
        mode: int = 0o644,
        timeout: float | None = None,
    ) -> int:
        """Copy a local file to ``remote``; returns the bytes sent."""
        local = Path(local)
        sent = 0
        with self._sync(serial, timeout) as c, open(local, "rb") as fh:
            self._sync_send(c, b"SEND", f"{remote},{mode}".encode())
            for chunk in iter(lambda: fh.read(SYNC_CHUNK), b""):
                self._sync_send(c, b"DATA", chunk)
                sent += len(chunk)
            c.send(b"DONE" + struct.pack("<I", int(local.stat().st_mtime)))
            ident, length = self._sync_reply(c)
            if ident == b"FAIL":
                raise AdbError(
                    f"push {local.name} -> {remote}: {c.read(length).decode(errors='replace')}"
                )
            if ident != b"OKAY":
                raise AdbError(f"unexpected sync reply {ident!r} to SEND")
            self._sync_send(c, b"QUIT", b"")
        return sent

    def pull(
        self, serial: str, remote: str, local: str | Path, timeout: float | None = None
    ) -> int:
        """Copy ``remote`` to a local file; returns the bytes received."""
        local = Path(local)
        tmp = local.with_name(local.name + ".part")
        got = 0
        with self._sync(serial, timeout) as c:
            self._sync_send(c, b"RECV", remote.encode())
            try:
                with open(tmp, "wb") as fh:
                    for chunk in self._recv_chunks(c, remote):
                        fh.write(chunk)
                        got += len(chunk)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            self._sync_send(c, b"QUIT", b"")
        os.replace(tmp, local)
        return got

    def _recv_chunks(self, c: _Conn, remote: str) -> Iterator[bytes]:
        while True:
            ident, length = self._sync_reply(c)
            if ident == b"DATA":
                yield c.read(length)
            elif ident == b"DONE":
                return
            elif ident == b"FAIL":
                raise AdbError(f"pull {remote}: {c.read(length).decode(errors='replace')}")
            else:
                raise AdbError(f"unexpected sync reply {ident!r} to RECV")
