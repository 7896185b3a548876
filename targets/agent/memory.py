"""Peak resident memory of the agent's process, above a baseline taken just before loading.

Linux: VmRSS for the baseline and VmHWM for the peak, with the high-water mark reset
(``/proc/self/clear_refs`` = 5) at the baseline so imports do not count. Elsewhere:
``ru_maxrss``, which cannot be reset (the method is recorded beside the number).
"""

from __future__ import annotations

import gc
import os
import sys

from targets.agent.probes import read_text


def _max_rss_bytes() -> int:
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class MemoryProbe:
    def __init__(self) -> None:
        self.linux = os.path.exists("/proc/self/status")
        self.method = "ru_maxrss"
        self.baseline = 0

    def _status_kb(self, key: str) -> int | None:
        for line in (read_text("/proc/self/status") or "").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return None

    def start(self) -> None:
        gc.collect()
        if not self.linux:
            self.baseline = _max_rss_bytes()
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.method = "vmhwm-reset"
        except OSError:
            self.method = "vmhwm"
        self.baseline = (self._status_kb("VmRSS") or 0) * 1024

    def peak_above_baseline(self) -> int:
        if self.linux:
            return max(0, (self._status_kb("VmHWM") or 0) * 1024 - self.baseline)
        return max(0, _max_rss_bytes() - self.baseline)
