"""ETDump files (what an ExecuTorch runner built with the event tracer writes): time per
execution and time in delegates versus portable CPU kernels.

An ETDump is a size-prefixed flatbuffer (schema ``devtools/etdump/etdump_schema_flatcc.fbs``
in the executorch package). It is decoded to JSON with the ``flatc`` the executorch wheel
ships, the same way ``executorch.devtools.etdump.serialize`` does, but without importing
executorch (which pulls in torch: seconds for a file of a few kilobytes).

The runtime records, per execution, a ``Method::execute`` profile event; inside it one
``DELEGATE_CALL`` event per call into a delegate (XNNPACK, QNN, MediaTek...) and one
``OPERATOR_CALL`` per portable kernel; plus ``Program::load_method`` once. Timestamps are PAL
ticks, nanoseconds on the posix and Android PALs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError

SCHEMA = "etdump_schema_flatcc.fbs"


def _executorch_dir() -> Path:
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("reading an ETDump needs the executorch package: pip install executorch")
    return Path(next(iter(spec.submodule_search_locations)))


def flatc_and_schema() -> tuple[str, Path]:
    """The flatc executable and the ETDump schema from the installed executorch wheel."""
    root = _executorch_dir()
    flatc = root / "data/bin/flatc"
    return (str(flatc) if flatc.is_file() else os.environ.get("FLATC_EXECUTABLE", "flatc"),
            root / "devtools/etdump" / SCHEMA)


def read_etdump(path: str | Path) -> dict[str, Any]:
    """The ETDump at ``path`` as a dict (the flatbuffer's JSON form)."""
    flatc, schema = flatc_and_schema()
    with tempfile.TemporaryDirectory() as d:
        for f in schema.parent.glob("*.fbs"):
            (Path(d) / f.name).write_bytes(f.read_bytes())
        src = Path(d) / "dump.bin"
        src.write_bytes(Path(path).read_bytes())
        for extra in (["--size-prefixed"], []):
            proc = subprocess.run([flatc, *extra, "--json", "--strict-json", "--raw-binary", "-o", d,
                                   str(Path(d) / SCHEMA), "--", str(src)], capture_output=True, text=True)
            out = Path(d) / "dump.json"
            if proc.returncode == 0 and out.is_file():
                return json.loads(out.read_text())
    raise UserError(f"{path} is not an ETDump the installed executorch can read")


@dataclass
class BackendTimes:
    """Time per execution, split between delegates and portable CPU kernels (ms)."""

    execute_ms: list[float] = field(default_factory=list)  # one per Method::execute
    delegate_ms: float = 0.0  # total over all executions
    operator_ms: float = 0.0
    load_method_ms: float | None = None

    @property
    def executions(self) -> int:
        return len(self.execute_ms)

    @property
    def delegated_share(self) -> float:
        total = self.delegate_ms + self.operator_ms
        return self.delegate_ms / total if total > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delegated_share"] = self.delegated_share
        return d


def backend_times(etdump: dict[str, Any]) -> BackendTimes:
    out = BackendTimes()
    for run in etdump.get("run_data") or []:
        for event in run.get("events") or []:
            pe = event.get("profile_event")
            if not pe:
                continue
            ms = (int(pe.get("end_time", 0)) - int(pe.get("start_time", 0))) / 1e6
            name = pe.get("name") or ""
            if name == "Method::execute":
                out.execute_ms.append(ms)
            elif name == "DELEGATE_CALL":
                out.delegate_ms += ms
            elif name == "OPERATOR_CALL":
                out.operator_ms += ms
            elif name == "Program::load_method":
                out.load_method_ms = ms
    return out
