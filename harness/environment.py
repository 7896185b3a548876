"""What a result was measured with: installed tool versions and the commit under test.

Versions come from package metadata (nothing is imported), so asking is cheap.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from typing import Any

EXPORT_TOOLS = (
    "torch",
    "executorch",
    "coremltools",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "torchao",
)
RUN_TOOLS = (
    "vitbench",
    "torch",
    "executorch",
    "onnx",
    "onnxruntime",
    "coremltools",
    "qai-hub",
    "numpy",
)


def tool_versions(names: Iterable[str] = EXPORT_TOOLS) -> dict[str, str | None]:
    """Installed versions of ``names`` (None for a package that is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | None = None) -> str:
    """The commit under test: $VITBENCH_COMMIT, else ``git rev-parse HEAD``, else "unknown"."""
    env = os.environ.get("VITBENCH_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=cwd
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def host_environment() -> dict[str, Any]:
    """This machine, as the run records it (the CPU as the host target names it)."""
    from harness import plugins
    from harness.errors import VitbenchError

    try:
        cpu = plugins.target("host").devices()[0].chipset
    except (VitbenchError, ImportError, IndexError):
        cpu = platform.processor() or platform.machine()
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cores": os.cpu_count(),
    }
