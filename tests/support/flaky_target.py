"""Third-party-style targets for dispatcher tests: FlakyTarget (the host target, but its
first profile of each artifact fails as an infrastructure error: a phone that drops off USB
once) and BuggyTarget (a target with a bug in it)."""

from __future__ import annotations

import threading

from harness.target import TargetError
from targets.host import HostTarget


class FlakyTarget(HostTarget):
    name = "flaky"
    _seen: set[str] = set()
    _lock = threading.Lock()

    def profile(self, artifact, device, settings):
        with self._lock:
            first = artifact.sha256 not in self._seen
            self._seen.add(artifact.sha256)
        if first:
            raise TargetError(
                "device went away (adb: device offline)", kind="infrastructure", samples_ms=[1.0]
            )
        from dataclasses import replace

        return replace(super().profile(artifact, device, settings), target=self.name)

    def devices(self):
        from dataclasses import replace

        return [replace(d, target=self.name) for d in super().devices()]


class BuggyTarget(HostTarget):
    """The host target with a bug: its profile of a pt2 artifact raises a plain ValueError
    (a reshape that fails), not one of vitbench's errors."""

    name = "buggy"

    def profile(self, artifact, device, settings):
        if artifact.format == "pt2":
            import numpy as np

            np.arange(7).reshape(2, 4)
        from dataclasses import replace

        return replace(super().profile(artifact, device, settings), target=self.name)

    def devices(self):
        from dataclasses import replace

        return [replace(d, target=self.name) for d in super().devices()]
