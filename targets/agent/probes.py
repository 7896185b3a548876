"""What could bias a number, and what names a device: the CPU, its cores and clocks, other
load, temperatures, the thermal state, the machine model, OS and memory.

Branches under ``sys.platform == "darwin"`` use macOS tools (sysctl, sw_vers, pmset) and the
Objective-C runtime; they are verified only on a Mac. Everything else is the Linux path
(servers, ARM boards), tested on every run.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any

THERMAL_STATES = ("nominal", "fair", "serious", "critical")  # NSProcessInfoThermalState order


def read_text(path: str) -> str | None:
    """A small system file's text, stripped; None when it cannot be read."""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _command(argv: list[str]) -> str | None:
    """A system tool's output, or None when it is missing or fails."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    text = read_text("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    if sys.platform == "darwin":
        brand = _command(["sysctl", "-n", "machdep.cpu.brand_string"])
        if brand:
            return brand
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def thermal_celsius() -> float | None:
    temps = []
    base = "/sys/class/thermal"
    if os.path.isdir(base):
        for zone in os.listdir(base):
            t = read_text(f"{base}/{zone}/temp")
            if t and t.lstrip("-").isdigit():
                temps.append(int(t) / 1000)
    return max(temps) if temps else None


def _cpu_times() -> tuple[int, int] | None:
    """(total, idle + iowait) jiffies from the first line of /proc/stat."""
    line = (read_text("/proc/stat") or "").splitlines()[:1]
    if not line or not line[0].startswith("cpu "):
        return None
    vals = [int(v) for v in line[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals[:8]), idle


def cpu_busy_fraction(interval_s: float = 0.25) -> float | None:
    """Share of this machine's CPU time spent busy (not idle or waiting on I/O) over
    ``interval_s``, from /proc/stat (Linux); None elsewhere. Taken while vitbench itself is
    idle, it is the other load a measurement competes with; unlike the load average it does
    not lag behind the previous measurement."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(interval_s)
    b = _cpu_times()
    if b is None:
        return None
    total, idle = b[0] - a[0], b[1] - a[1]
    return round(1 - idle / total, 3) if total > 0 else None


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cores_total": os.cpu_count(),
        "cores_usable": usable_cores(),
        "governor": read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_mhz_max": None,
        "thermal_max_c": thermal_celsius(),
        "thermal_state": thermal_state()["state"],
    }
    khz = read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq")
    if khz and khz.isdigit():
        env["cpu_mhz_max"] = int(khz) / 1000
    try:
        env["load_average"] = list(os.getloadavg())
    except OSError:
        env["load_average"] = None
    return env


# -- the thermal state -----------------------------------------------------------------------


def _macos_thermal_state() -> str | None:
    """NSProcessInfo.thermalState through the Objective-C runtime (ctypes, no PyObjC).
    Verified only on a Mac."""
    import ctypes
    import ctypes.util

    try:
        objc = ctypes.cdll.LoadLibrary(ctypes.util.find_library("objc"))
        ctypes.cdll.LoadLibrary(ctypes.util.find_library("Foundation"))
    except OSError:
        return None
    objc.objc_getClass.restype = ctypes.c_void_p
    objc.objc_getClass.argtypes = [ctypes.c_char_p]
    objc.sel_registerName.restype = ctypes.c_void_p
    objc.sel_registerName.argtypes = [ctypes.c_char_p]
    send_ptr = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        ("objc_msgSend", objc)
    )
    send_long = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)(
        ("objc_msgSend", objc)
    )
    info = send_ptr(objc.objc_getClass(b"NSProcessInfo"), objc.sel_registerName(b"processInfo"))
    if not info:
        return None
    state = send_long(info, objc.sel_registerName(b"thermalState"))
    return THERMAL_STATES[state] if 0 <= state < len(THERMAL_STATES) else None


def parse_pmset_therm(text: str) -> str | None:
    """`pmset -g therm`: a CPU speed limit under 100 % or a recorded warning level means the
    Mac is throttling ("serious"); "No thermal warning level" and full speed mean nominal."""
    limit = None
    lines = text.splitlines()
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "CPU_Speed_Limit" and value.strip().isdigit():
            limit = int(value.strip())
    warned = any("warning level" in ln.lower() and "no " not in ln.lower() for ln in lines)
    if limit is not None and limit < 100 or warned:
        return "serious"
    if limit == 100 or "No thermal warning level" in text:
        return "nominal"
    return None


def thermal_state() -> dict[str, Any]:
    """{"state": nominal | fair | serious | critical | None, "source": ...}. Linux has no
    such state (the temperature is recorded instead), so it is None there."""
    if sys.platform == "darwin":  # verified only on a Mac
        state = _macos_thermal_state()
        if state:
            return {"state": state, "source": "NSProcessInfo.thermalState"}
        text = _command(["pmset", "-g", "therm"])
        if text:
            return {"state": parse_pmset_therm(text), "source": "pmset -g therm"}
    return {"state": None, "source": None}


def wait_for_nominal(max_wait_s: float, poll_s: float = 2.0) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) until the thermal state is nominal; an unknown state is
    not waited for. Returns the state before and after and how long it waited."""
    before = thermal_state()["state"]
    state, start = before, time.monotonic()
    while state not in (None, "nominal") and time.monotonic() - start < max_wait_s:
        time.sleep(min(poll_s, max(0.0, max_wait_s - (time.monotonic() - start))))
        state = thermal_state()["state"]
    return {"state_before_wait": before, "state": state, "waited_s": time.monotonic() - start}


# -- the machine -----------------------------------------------------------------------------


def _macos_machine() -> dict[str, Any]:
    """Verified only on a Mac."""
    mem = _command(["sysctl", "-n", "hw.memsize"]) or ""
    version = _command(["sw_vers", "-productVersion"]) or platform.mac_ver()[0]
    return {
        "model": _command(["sysctl", "-n", "hw.model"]),
        "chip": cpu_model(),
        "os": f"macOS {version}",
        "os_build": _command(["sw_vers", "-buildVersion"]),
        "memory_bytes": int(mem) if mem.isdigit() else None,
        "arch": platform.machine(),
        "neural_engine": platform.machine() == "arm64",
    }


def machine() -> dict[str, Any]:
    """Machine model, chip, OS and memory: what names a device."""
    if sys.platform == "darwin":
        return _macos_machine()
    model = read_text("/proc/device-tree/model") or read_text(
        "/sys/devices/virtual/dmi/id/product_name"
    )
    mem = None
    for line in (read_text("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    pretty = None
    for line in (read_text("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    return {
        "model": (model or "").strip("\0") or None,
        "chip": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "distribution": pretty,
        "memory_bytes": mem,
        "arch": platform.machine(),
        "neural_engine": False,
    }
