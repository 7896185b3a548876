"""A runtime plugin whose load never finishes: the agent stays in a phase where it writes
nothing (a large model loading, a long compile), so only the agent's own lifeline can end it
when its caller dies; a streaming agent would also die of the broken pipe on its next sample.

``install_stalling_runtime(site)`` registers it under ``vitbench.runtimes`` as an installed
package would (a ``.dist-info`` folder in ``site``); put ``site`` on ``PYTHONPATH`` of the
process that starts the agent. Its ``load`` writes its pid to ``options["pid_file"]`` (the
profile settings' options), then waits, for ``options["seconds"]`` at most (default 60), so
a test that fails leaves nothing running for long.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from targets.agent.runtimes import Runtime

NAME = "stall"


class StallingRuntime(Runtime):
    name = NAME
    formats = ("onnx",)
    package = "json"  # always importable

    def load(self, path: str) -> Any:
        pid_file = self.options.get("pid_file")
        if pid_file:
            tmp = f"{pid_file}.tmp"
            Path(tmp).write_text(str(os.getpid()))
            os.replace(tmp, pid_file)
        end = time.monotonic() + float(self.options.get("seconds", 60))
        while time.monotonic() < end:
            time.sleep(0.05)
        raise RuntimeError("the stalling runtime's wait ended")


def install_stalling_runtime(site: Path) -> Path:
    """Register :class:`StallingRuntime` as a ``vitbench.runtimes`` plugin in ``site``."""
    info = Path(site) / "vitbench_stalling_runtime-0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vitbench-stalling-runtime\nVersion: 0.0\n"
    )
    (info / "entry_points.txt").write_text(
        f"[vitbench.runtimes]\n{NAME} = tests.support.stalling_runtime:StallingRuntime\n"
    )
    return Path(site)
