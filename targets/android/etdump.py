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

import bisect
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
    return (
        str(flatc) if flatc.is_file() else os.environ.get("FLATC_EXECUTABLE", "flatc"),
        root / "devtools/etdump" / SCHEMA,
    )


def read_etdump(path: str | Path) -> dict[str, Any]:
    """The ETDump at ``path`` as a dict (the flatbuffer's JSON form)."""
    flatc, schema = flatc_and_schema()
    with tempfile.TemporaryDirectory() as d:
        for f in schema.parent.glob("*.fbs"):
            (Path(d) / f.name).write_bytes(f.read_bytes())
        src = Path(d) / "dump.bin"
        src.write_bytes(Path(path).read_bytes())
        for extra in (["--size-prefixed"], []):
            proc = subprocess.run(
                [
                    flatc,
                    *extra,
                    "--json",
                    "--strict-json",
                    "--raw-binary",
                    "-o",
                    d,
                    str(Path(d) / SCHEMA),
                    "--",
                    str(src),
                ],
                capture_output=True,
                text=True,
            )
            out = Path(d) / "dump.json"
            if proc.returncode == 0 and out.is_file():
                doc = json.loads(out.read_text())
                if doc.get("run_data"):
                    return doc
    raise UserError(f"{path} is not an ETDump the installed executorch can read")


@dataclass(frozen=True)
class BackendTimes:
    """Per execution (in order): its time, the part in delegate calls and the part in
    portable CPU kernels (ms)."""

    execute_ms: list[float] = field(default_factory=list)  # one per Method::execute
    delegate_ms: list[float] = field(default_factory=list)
    operator_ms: list[float] = field(default_factory=list)
    load_method_ms: float | None = None

    @property
    def executions(self) -> int:
        return len(self.execute_ms)

    def delegated_share(self, skip: int = 0) -> float:
        """Share of kernel time spent in delegates, over the executions after ``skip``."""
        d, o = sum(self.delegate_ms[skip:]), sum(self.operator_ms[skip:])
        return d / (d + o) if d + o > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["delegated_share"] = self.delegated_share()
        return d


def backend_times(etdump: dict[str, Any]) -> BackendTimes:
    """Split each ``Method::execute`` into its DELEGATE_CALL and OPERATOR_CALL events (an event
    belongs to the execution whose interval holds its start)."""
    spans, calls = [], []
    load_method_ms = None
    for run in etdump.get("run_data") or []:
        for event in run.get("events") or []:
            pe = event.get("profile_event")
            if not pe:
                continue
            start, end = int(pe.get("start_time", 0)), int(pe.get("end_time", 0))
            name = pe.get("name") or ""
            if name == "Method::execute":
                spans.append((start, end))
            elif name in ("DELEGATE_CALL", "OPERATOR_CALL"):
                calls.append((start, (end - start) / 1e6, name == "DELEGATE_CALL"))
            elif name == "Program::load_method":
                load_method_ms = (end - start) / 1e6
    spans.sort()
    delegate_ms = [0.0] * len(spans)
    operator_ms = [0.0] * len(spans)
    starts = [s for s, _ in spans]
    for start, ms, delegated in calls:
        i = bisect.bisect_right(starts, start) - 1
        if i < 0 or start > spans[i][1]:
            continue
        (delegate_ms if delegated else operator_ms)[i] += ms
    return BackendTimes(
        execute_ms=[(e - s) / 1e6 for s, e in spans],
        delegate_ms=delegate_ms,
        operator_ms=operator_ms,
        load_method_ms=load_method_ms,
    )
