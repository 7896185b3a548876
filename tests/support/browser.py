"""Headless Chromium for page tests: a screenshot and the DOM after scripts ran, with every
console message the page produced."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# Chromium logs each console message of the page (console.log/error, uncaught exceptions) as
# `...:INFO:CONSOLE(12)] "message", source: file:///... (12)` (newer builds: `INFO:CONSOLE:12]`),
# whatever its level; its own errors (D-Bus, GPU) are logged without "CONSOLE".
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


@dataclass
class PageRun:
    screenshot: Path
    dom: str
    console: list[str]  # every console message (Chromium logs them all at one level)
    log: str


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium not found: install the Debian package `chromium` "
        "(apt-get install -y chromium; .ci/run installs it)"
    )


def console_messages(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        m = CONSOLE_LINE.search(line)
        if m:
            out.append(m.group(1))
    if any("Uncaught" in line and "CONSOLE" not in line for line in log.splitlines()):
        out += [line for line in log.splitlines() if "Uncaught" in line and "CONSOLE" not in line]
    return out


def _chromium(page: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    profile = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
    cmd = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def render_page(
    page: Path, workdir: Path, size: str = "1400,2000", screenshot: bool = True
) -> PageRun:
    """Open ``page`` in headless Chromium: once for a screenshot (unless ``screenshot`` is
    False), once to dump the DOM after its scripts ran. Console messages of both are collected."""
    shot = workdir / "shot.png"
    runs = (
        [_chromium(page, workdir, f"--screenshot={shot}", f"--window-size={size}")]
        if screenshot
        else []
    )
    runs.append(_chromium(page, workdir, "--dump-dom"))
    second = runs[-1]
    log = "\n".join(r.stderr for r in runs)
    if any(r.returncode != 0 for r in runs):
        raise AssertionError(f"chromium failed ({[r.returncode for r in runs]}):\n{log[-3000:]}")
    msgs = console_messages(log)
    return PageRun(screenshot=shot, dom=second.stdout, console=msgs, log=log)
