"""A fake adb server on loopback: the adb host protocol over TCP, phones as sandbox folders.

It answers what vitbench's own client (targets/adb.py) asks a real adb server:
``host:version``, ``host:devices-l``, ``host:transport:SERIAL``, then ``shell,v2,raw:`` (shell
protocol packets with stdout, stderr and the exit code, streamed as the command prints) and
``sync:`` (STAT, SEND with DATA/DONE, RECV answered with DATA/DONE or FAIL, QUIT).

Each phone is a folder on this machine. Shell commands run in bash with the phone's ``bin/``
first on PATH (scripted ``getprop``, ``dumpsys``, ``taskset``, ``su`` on rooted phones) and
device paths (/data, /sdcard, /sys, /proc/meminfo) mapped into the folder; /proc/PID stays the
real one, so VmHWM is the stand-in runner's real peak memory. A phone can be made to cool
down over successive polls, or to drop off the bus in the middle of a command; its toybox can
lack commands (``missing=("sed",)``) or grep's POSIX bracket classes (``grep_classes=False``),
and its shell can be kept from reading the runner's /proc/PID/status (``proc_readable=False``).
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.loopback import ThreadedServer
from tests.support.program_server import ENV as PROGRAM_SERVER_ENV
from tests.support.program_server import program_server

MAPPED_PREFIXES = ("/data/", "/sdcard/", "/sys/", "/proc/meminfo")
_PATH_RE = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(p) for p in MAPPED_PREFIXES) + ")")

SNAPDRAGON_PROPS = {
    "ro.product.model": "SM-S928B",
    "ro.product.manufacturer": "samsung",
    "ro.product.marketname": "Galaxy S24 Ultra",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.soc.manufacturer": "QTI",
    "ro.soc.model": "SM8650",
    "ro.board.platform": "pineapple",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.hardware": "qcom",
}
MEDIATEK_PROPS = {
    "ro.product.model": "V2309A",
    "ro.product.manufacturer": "vivo",
    "ro.build.version.release": "14",
    "ro.build.version.sdk": "34",
    "ro.soc.manufacturer": "Mediatek",
    "ro.soc.model": "MT6989",
    "ro.board.platform": "mt6989",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
    "ro.hardware": "mt6989",
}

# (max kHz, cur kHz, governor) per CPU: 1+5+2 (SM8650) and 4+4 (Dimensity 9300: all big)
SNAPDRAGON_CPUS = (
    [(2265600, 1200000, "walt")] * 2
    + [(3148800, 2000000, "walt")] * 5
    + [(3302400, 2500000, "walt")]
)
MEDIATEK_CPUS = [(2000000, 1500000, "schedutil")] * 4 + [(3250000, 2850000, "schedutil")] * 4
# this machine's own tools, for the fake's scripts (a phone's bin/ may shadow them)
SED, GREP = shutil.which("sed") or "/bin/sed", shutil.which("grep") or "/bin/grep"


@dataclass
class FakePhone:
    serial: str
    root: Path
    props: dict[str, str]
    cpus: list[tuple[int, int, str]]
    thermal: list[int] = field(default_factory=lambda: [0])  # successive polls; the last repeats
    battery_tenths: list[int] = field(default_factory=lambda: [305])
    rooted: bool = False
    mem_total_kb: int = 12_000_000
    physics: dict = field(default_factory=dict)  # read by the stand-in runners
    drop_on: tuple[str, int] | None = None  # (command substring, packets sent before the drop)
    # (command substring, seconds): a command holding it hangs that long before it runs, its
    # stream open and silent (a dumpsys stuck in a binder call, a getprop on a wedged phone)
    hang_on: tuple[str, float] | None = None
    present: bool = True
    # "unauthorized": listed, but the USB debugging prompt was not accepted; "offline": listed,
    # but adbd does not answer (a loose cable, a phone waking up)
    state: str = "device"
    missing: tuple[str, ...] = ()  # commands this phone's toybox lacks ("sed")
    grep_classes: bool = True  # False: its grep refuses POSIX bracket classes ([[:space:]])
    proc_readable: bool = True  # False: its shell cannot read the runner's /proc/PID/status
    shell_v2: bool = True  # False: an adbd before Android 7, raw shell: only
    sends: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def setup(self) -> FakePhone:
        r = self.root
        for d in ("bin", "state", "data/local/tmp", "sdcard", "proc"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "proc/meminfo").write_text(
            f"MemTotal:       {self.mem_total_kb} kB\nMemFree:         3000000 kB\n"
        )
        for i, (mx, cur, gov) in enumerate(self.cpus):
            d = r / f"sys/devices/system/cpu/cpu{i}/cpufreq"
            d.mkdir(parents=True, exist_ok=True)
            (d / "cpuinfo_max_freq").write_text(f"{mx}\n")
            (d / "scaling_max_freq").write_text(f"{mx}\n")
            (d / "scaling_cur_freq").write_text(f"{cur}\n")
            (d / "scaling_governor").write_text(f"{gov}\n")
        (r / "state/props").write_text("".join(f"[{k}]: [{v}]\n" for k, v in self.props.items()))
        (r / "state/thermal").write_text(" ".join(map(str, self.thermal)) + "\n")
        (r / "state/battery").write_text(" ".join(map(str, self.battery_tenths)) + "\n")
        (r / "state/physics.json").write_text(json.dumps(self.physics))
        self._write_bin()
        return self

    def _write_bin(self) -> None:
        scripts = {
            "getprop": r"""#!/bin/bash
if [ $# -eq 0 ]; then cat "$PHONE/state/props"; exit 0; fi
SED -n "s/^\[$1\]: \[\(.*\)\]$/\1/p" "$PHONE/state/props"
""".replace("SED", SED),
            # pops the head of a space-separated queue file unless it is the last value
            "_next": r"""#!/bin/bash
read -r -a q < "$1"; echo "${q[0]}"
if [ ${#q[@]} -gt 1 ]; then echo "${q[@]:1}" > "$1"; fi
""",
            "dumpsys": r"""#!/bin/bash
case "$1" in
thermalservice)
  s=$(_next "$PHONE/state/thermal")
  printf 'IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 1\n'
  printf 'Thermal Status: %s\n' "$s"
  printf 'Cached temperatures:\n'
  printf '\tTemperature{mValue=%s.0, mType=0, mName=CPU0, mStatus=%s}\n' $((35 + 5 * s)) "$s"
  printf 'HAL Ready: true\nCurrent temperatures from HAL:\n'
  printf '\tTemperature{mValue=%s.5, mType=3, mName=skin, mStatus=%s}\n' $((33 + 3 * s)) "$s";;
battery)
  t=$(_next "$PHONE/state/battery")
  printf 'Current Battery Service state:\n  AC powered: false\n  USB powered: true\n'
  printf '  status: 2\n  level: 81\n  scale: 100\n  voltage: 4120\n'
  printf '  temperature: %s\n  technology: Li-ion\n' "$t";;
power)
  printf 'POWER MANAGER (dumpsys power)\n  mWakefulness=Awake\n  mWakefulnessChanging=false\n';;
*) echo "Can't find service: $1" >&2; exit 1;;
esac
""",
            # the ExecuTorch tag's messages of one process (logcat -d -v raw --pid=N)
            "logcat": r"""#!/bin/bash
pid=""
for a in "$@"; do case "$a" in --pid=*) pid="${a#--pid=}";; esac; done
[ -f "$PHONE/state/logcat" ] && SED -n "s/^$pid //p" "$PHONE/state/logcat"
exit 0
""".replace("SED", SED),
            # adbd runs as the shell user, whoever runs this fake
            "id": r"""#!/bin/bash
if [ "$1" = "-u" ]; then
  echo 2000
else
  echo "uid=2000(shell) gid=2000(shell) groups=2000(shell)"
fi
""",
            # records the mask and runs the command unpinned (this machine has other cores)
            "taskset": r"""#!/bin/bash
echo "$1" >> "$PHONE/state/taskset"
shift; exec "$@"
""",
        }
        if self.rooted:
            scripts["su"] = r"""#!/bin/bash
if [ "$1" = "-c" ]; then shift; fi
case "$*" in "id -u") echo 0;; *) exec bash -c "$*";; esac
"""
        scripts |= self._toybox_quirks()
        for old in (self.root / "bin").iterdir():  # a re-setup drops quirks switched off
            old.unlink()
        for name, text in scripts.items():
            p = self.root / "bin" / name
            p.write_text(text)
            p.chmod(0o755)

    def _toybox_quirks(self) -> dict[str, str]:
        """Commands that behave as on a sparser vendor build than this machine's."""
        quirks = {
            name: f'#!/bin/bash\necho "/system/bin/sh: {name}: inaccessible or not found" >&2\n'
            "exit 127\n"
            for name in self.missing
        }
        if not self.grep_classes:
            quirks["grep"] = rf"""#!/bin/bash
for a in "$@"; do
  case "$a" in *'[[:'*) echo "grep: bad regex '$a': brackets ([ ]) not balanced" >&2; exit 2;; esac
done
exec {GREP} "$@"
"""
        if not self.proc_readable:
            # scripts run by `sh FILE` see a /proc with no process in it (SELinux, hidepid)
            quirks["sh"] = rf"""#!/bin/bash
if [ "$1" = "-c" ] || [ ! -f "$1" ]; then exec /bin/sh "$@"; fi
script=$1; shift
exec /bin/sh -c "$({SED} "s#/proc/#$PHONE/proc/#g" "$script")" "$script" "$@"
"""
        return quirks

    def map_path(self, path: str) -> Path:
        return Path(_PATH_RE.sub(lambda m: str(self.root) + m.group(1), path))

    def map_command(self, command: str) -> str:
        return _PATH_RE.sub(lambda m: str(self.root) + m.group(1), command)

    def taskset_masks(self) -> list[str]:
        p = self.root / "state/taskset"
        return p.read_text().split() if p.exists() else []

    def thermal_left(self) -> list[int]:
        return [int(x) for x in (self.root / "state/thermal").read_text().split()]


class FakeAdbServer:
    """``with FakeAdbServer() as srv: srv.add(phone)``; ``srv.address`` is "127.0.0.1:PORT"."""

    def __init__(self) -> None:
        self.phones: dict[str, FakePhone] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(60)
                try:
                    fake._serve(self.request)
                except (ConnectionError, TimeoutError, OSError):
                    pass

        self.server = ThreadedServer(socketserver.ThreadingTCPServer, Handler)
        self.programs = program_server()  # runs the stand-in executor_runner's programs

    @property
    def address(self) -> str:
        return self.server.address

    def add(self, phone: FakePhone) -> FakePhone:
        self.phones[phone.serial] = phone.setup()
        return phone

    def __enter__(self) -> FakeAdbServer:
        self.programs.start()
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.programs.stop()

    # -- wire ---------------------------------------------------------------------------------

    @staticmethod
    def _read(sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client went away")
            buf += chunk
        return buf

    def _read_request(self, sock: socket.socket) -> str:
        n = int(self._read(sock, 4), 16)
        return self._read(sock, n).decode()

    @staticmethod
    def _okay(sock: socket.socket, payload: str | None = None) -> None:
        data = b"OKAY"
        if payload is not None:
            data += b"%04x" % len(payload.encode()) + payload.encode()
        sock.sendall(data)

    @staticmethod
    def _fail(sock: socket.socket, message: str) -> None:
        sock.sendall(b"FAIL" + b"%04x" % len(message.encode()) + message.encode())

    def _serve(self, sock: socket.socket) -> None:
        req = self._read_request(sock)
        self.requests.append(req)
        if req == "host:version":
            self._okay(sock, f"{41:04x}")
        elif req in ("host:devices", "host:devices-l"):
            self._okay(sock, self._device_lines(long=req.endswith("-l")))
        elif req.startswith("host-serial:") and req.endswith(":features"):
            phone = self.phones.get(req.split(":")[1])
            if phone is None or not phone.present:
                self._fail(sock, f"device '{req.split(':')[1]}' not found")
                return
            features = ["cmd", "stat_v2", "ls_v2", "fixed_push_mkdir", "apex"]
            self._okay(sock, ",".join(features + (["shell_v2"] if phone.shell_v2 else [])))
        elif req.startswith("host:transport:"):
            self._transport(sock, req.split(":", 2)[2])
        else:
            self._fail(sock, f"unknown host service {req!r}")

    def _device_lines(self, long: bool) -> str:
        """``host:devices`` (serial and state) or ``host:devices-l`` (and details)."""
        lines = []
        for i, p in enumerate(self.phones.values(), 1):
            if not p.present:
                continue
            model = p.props.get("ro.product.model", "").replace(" ", "_")
            extra = ""
            if long:
                extra = f" product:{model.lower()} model:{model} device:{model.lower()}"
                extra += f" transport_id:{i}"
            if p.state != "device":
                extra = f" transport_id:{i}" if extra else ""
            lines.append(
                f"{p.serial}\t{p.state}\n" if not extra else f"{p.serial:<22} {p.state}{extra}\n"
            )
        return "".join(lines)

    def _transport(self, sock: socket.socket, serial: str) -> None:
        """``host:transport:SERIAL``, then one service on that phone."""
        phone = self.phones.get(serial)
        if phone is None or not phone.present:
            self._fail(sock, f"device '{serial}' not found")
            return
        if phone.state == "unauthorized":
            self._fail(
                sock,
                "device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                "Try 'adb kill-server' if that seems wrong.\n"
                "Otherwise check for a confirmation dialog on your device.",
            )
            return
        if phone.state != "device":
            self._fail(sock, f"device {phone.state}")
            return
        self._okay(sock)
        service = self._read_request(sock)
        self.requests.append(f"{serial}:{service.split(':')[0]}")
        if service.startswith(("shell,v2,raw:", "shell,v2:")) and phone.shell_v2:
            self._okay(sock)
            self._shell(sock, phone, service.split(":", 1)[1])
        elif service.startswith("shell:"):
            self._okay(sock)
            self._shell(sock, phone, service.split(":", 1)[1], v1=True)
        elif service == "sync:":
            self._okay(sock)
            self._sync(sock, phone)
        else:
            self._fail(sock, f"unsupported service {service!r}")

    # -- shell --------------------------------------------------------------------------------

    def _shell(self, sock: socket.socket, phone: FakePhone, command: str, v1: bool = False) -> None:
        """v2: packets (id, length, data) and an exit packet; v1 (``v1``): the raw bytes of
        stdout and stderr together, then the connection closes."""
        phone.commands.append(command)
        if phone.hang_on and phone.hang_on[0] in command:
            time.sleep(phone.hang_on[1])
        env = dict(
            os.environ,
            PHONE=str(phone.root),
            HOME=str(phone.root),
            **{PROGRAM_SERVER_ENV: self.programs.address},
            PATH=f"{phone.root / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        )
        proc = subprocess.Popen(
            ["bash", "-c", phone.map_command(command)],
            cwd=phone.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        packets: queue.Queue = queue.Queue()

        def pump(stream, kind: int) -> None:
            for line in iter(stream.readline, b""):
                packets.put((kind, line))
            packets.put((kind, None))

        threads = [
            threading.Thread(target=pump, args=(proc.stdout, 1), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, 2), daemon=True),
        ]
        for t in threads:
            t.start()
        drop = phone.drop_on if phone.drop_on and phone.drop_on[0] in command else None
        sent, open_streams = 0, 2
        try:
            while open_streams:
                kind, data = packets.get(timeout=120)
                if data is None:
                    open_streams -= 1
                    continue
                if drop and sent >= drop[1]:
                    phone.present = False  # unplugged: gone from host:devices, transport fails
                    os.killpg(proc.pid, signal.SIGKILL)
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                sock.sendall(data if v1 else bytes([kind]) + struct.pack("<I", len(data)) + data)
                sent += 1
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if v1:
            sock.shutdown(socket.SHUT_RDWR)
        else:
            sock.sendall(bytes([3]) + struct.pack("<I", 1) + bytes([code & 0xFF]))

    # -- sync ---------------------------------------------------------------------------------

    def _sync(self, sock: socket.socket, phone: FakePhone) -> None:
        while True:
            head = self._read(sock, 8)
            ident, n = head[:4], struct.unpack("<I", head[4:])[0]
            arg = self._read(sock, n).decode() if n else ""
            if ident == b"QUIT":
                return
            if ident == b"STAT":
                p = phone.map_path(arg)
                st = p.stat() if p.exists() else None
                sock.sendall(
                    b"STAT"
                    + struct.pack(
                        "<III",
                        st.st_mode if st else 0,
                        st.st_size if st else 0,
                        int(st.st_mtime) if st else 0,
                    )
                )
            elif ident == b"SEND":
                path, _, mode = arg.rpartition(",")
                p = phone.map_path(path)
                data = bytearray()
                while True:
                    h = self._read(sock, 8)
                    k, m = h[:4], struct.unpack("<I", h[4:])[0]
                    if k == b"DATA":
                        data += self._read(sock, m)
                    elif k == b"DONE":
                        break
                    else:
                        raise ConnectionError(f"bad SEND packet {k!r}")
                if not p.parent.is_dir():
                    msg = f"secure_mkdirs failed: {path}: No such file or directory"
                    sock.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg.encode())
                    continue
                p.write_bytes(bytes(data))
                p.chmod(int(mode) & 0o777)
                phone.sends.append(path)
                sock.sendall(b"OKAY" + struct.pack("<I", 0))
            elif ident == b"RECV":
                p = phone.map_path(arg)
                if not p.is_file():
                    msg = f"remote object '{arg}' does not exist"
                    sock.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg.encode())
                    continue
                data = p.read_bytes()
                for i in range(0, len(data), 65536):
                    chunk = data[i : i + 65536]
                    sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                sock.sendall(b"DONE" + struct.pack("<I", 0))
            else:
                msg = f"unknown sync request {ident!r}"
                sock.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg.encode())
                return


def snapdragon_phone(root: Path, serial: str = "R5CX10SNAP", **kw) -> FakePhone:
    kw.setdefault("physics", {"base_ms": 12.0, "load_ms": 35.0, "etdump": True})
    return FakePhone(serial, root / serial, dict(SNAPDRAGON_PROPS), list(SNAPDRAGON_CPUS), **kw)


def mediatek_phone(root: Path, serial: str = "10AD5F0MTK", **kw) -> FakePhone:
    kw.setdefault("physics", {"base_ms": 15.0, "load_ms": 42.0})
    return FakePhone(serial, root / serial, dict(MEDIATEK_PROPS), list(MEDIATEK_CPUS), **kw)
