"""The agent as one zipapp for another host: ``python3 agent.pyz`` runs it there with the
standard library and the runtime it measures, and nothing of vitbench installed.

The archive holds the agent's modules (every module of this package but the client side)
and ``harness/timing.py`` under their own paths, so they import each other exactly as they
do in a checkout; the package markers are written empty, so nothing else of ``harness`` or
``targets`` comes along. Its bytes are deterministic (fixed dates and modes, no
compression), so their sha256 names the agent: an unchanged agent is not copied again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent
REPO_ROOT = AGENT_DIR.parent.parent
# vitbench's side of the conversation, and the local entry point: not shipped
NOT_SHIPPED = ("client.py", "bundle.py", "__main__.py")
ZIP_MAIN = '''"""vitbench's profiling agent, shipped as a zipapp: built-in runtimes only."""

import sys

from targets.agent.lifeline import hold_to_parent

hold_to_parent()  # first: an agent whose caller is gone must not measure anything

from targets.agent.registry import builtin_runtimes
from targets.agent.service import main

sys.exit(main(builtin_runtimes()))
'''
PACKAGE_MARKER = '"""Only what the profiling agent needs travels in this archive."""\n'
_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class AgentBundle:
    data: bytes  # the zipapp
    sha256: str

    @property
    def name(self) -> str:
        """A cache folder name for it: changes whenever a shipped byte does."""
        from targets.agent.protocol import AGENT_VERSION

        return f"agent-{AGENT_VERSION}-{self.sha256[:16]}"


def shipped_files() -> list[tuple[str, Path]]:
    """(path in the archive, file here) of every module the agent needs."""
    files = [
        (f"targets/agent/{p.name}", p)
        for p in sorted(AGENT_DIR.glob("*.py"))
        if p.name not in NOT_SHIPPED
    ]
    return [*files, ("harness/timing.py", REPO_ROOT / "harness" / "timing.py")]


def _add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
    info = zipfile.ZipInfo(arcname, date_time=_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    zf.writestr(info, data)


def build_bundle() -> AgentBundle:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        _add(zf, "__main__.py", ZIP_MAIN.encode())
        _add(zf, "harness/__init__.py", PACKAGE_MARKER.encode())
        _add(zf, "targets/__init__.py", PACKAGE_MARKER.encode())
        for arcname, path in shipped_files():
            _add(zf, arcname, path.read_bytes())
    data = buf.getvalue()
    return AgentBundle(data, hashlib.sha256(data).hexdigest())


@functools.lru_cache(maxsize=1)
def agent_bundle() -> AgentBundle:
    """The zipapp of this checkout's agent, built once per process."""
    return build_bundle()
