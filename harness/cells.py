"""The cells of a plan: one model x export x target x device each, keyed so that a re-run,
a resume and every shard of one plan agree on them; and how a run is named.

``expand`` asks each target which devices it reaches now; a selector no device answers
becomes a placeholder cell that says why (the target's own reason where it has one), so a
report shows every cell the plan asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from harness.environment import git_commit
from harness.errors import UserError, VitbenchError
from harness.plan import ExportEntry, ModelEntry, Plan, TargetEntry
from harness.target import Device, Target

_log = logging.getLogger("vitbench.dispatch")


def _unmatched_reason(target: Target, selector: str) -> str:
    """The target's own reason for a selector it left unmatched; a fault asking is no reason."""
    try:
        return target.unmatched_reason(selector)
    except Exception:  # noqa: BLE001 - the placeholder cell keeps the generic reason
        _log.debug("unmatched_reason(%r) failed", selector, exc_info=True)
        return ""


@dataclass(frozen=True)
class Cell:
    key: str
    model: ModelEntry
    export: ExportEntry
    target: TargetEntry
    device: Device
    problem: str = ""  # why this cell cannot run at all (target or device unavailable)

    @property
    def label(self) -> str:
        return f"{self.model.label} {self.export.label} {self.target.name}:{self.device.name}"


def parse_shard(text: str | None) -> tuple[int, int]:
    if not text:
        return (1, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected I/N, e.g. 1/3") from None
    if not 1 <= i <= n:
        raise UserError(f"--shard {text!r}: I must be between 1 and N")
    return (i, n)


def default_run_id(plan: Plan, commit: str) -> str:
    return f"{plan.name}-{commit[:10]}-{plan.hash[:8]}"


def choose_run(
    plan: Plan, *, resume_id: str | None = None, run_id: str | None = None, fresh: bool = False
) -> tuple[str, bool]:
    """(run id, resume?) for ``vitbench run``: ``--resume`` names a run to finish, ``--run-id``
    names one (shards share it), ``--new`` makes a fresh one; by default the plan and the
    commit under test name it, so running again finishes it."""
    if sum(bool(x) for x in (resume_id, run_id, fresh)) > 1:
        raise UserError("use one of --resume, --run-id and --new")
    if resume_id:
        return resume_id, True
    if run_id:
        return run_id, False
    name = default_run_id(plan, git_commit())
    if fresh:
        name += time.strftime("-%Y%m%d-%H%M%S")
    return name, False


def cell_key(
    plan: Plan, model: ModelEntry, export: ExportEntry, target: TargetEntry, device_name: str
) -> str:
    payload = {
        # teacher and accuracy say what is judged, not what is measured
        "model": {k: v for k, v in asdict(model).items() if k not in ("teacher", "accuracy")},
        "export": asdict(export),
        "target": target.name,
        "runtime": target.runtime,
        "options": target.options,
        "device": device_name,
        "measure": asdict(plan.measure),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


# -- devices ------------------------------------------------------------------------------


def expand(plan: Plan, resolve_targets: bool = True) -> tuple[list[Cell], dict[str, Any]]:
    """Every cell of the plan, sorted by key, and the target instances used."""
    from harness import plugins

    instances: dict[str, Target] = {}
    cells: list[Cell] = []
    for entry in plan.targets:
        devices: list[Device] = []
        problem_devices: list[tuple[Device, str]] = []
        try:
            target = plugins.target(entry.name) if resolve_targets else None
            reason = target.unavailable_reason() if target is not None else ""
        except (VitbenchError, ImportError) as exc:
            target, reason = None, str(exc)
        if target is not None and not reason:
            instances[entry.name] = target
            try:
                devices, unmatched = target.select(list(entry.devices))
            except VitbenchError as exc:
                if exc.kind == "configuration":  # a rejected token: no cell could run
                    raise
                devices, unmatched, reason = [], list(entry.devices) or ["*"], str(exc)
            for sel in unmatched:
                why = reason or _unmatched_reason(target, sel) or f"device {sel!r} is not reachable"
                problem_devices.append((Device(entry.name, sel), why))
        else:
            for sel in entry.devices or ("*",):
                problem_devices.append(
                    (Device(entry.name, sel), reason or f"target {entry.name} is unavailable")
                )
        reachable = [(dev, "") for dev in devices] + problem_devices
        for model in plan.models:
            for export in plan.exports:
                cells += [
                    Cell(
                        cell_key(plan, model, export, entry, dev.name),
                        model,
                        export,
                        entry,
                        dev,
                        why,
                    )
                    for dev, why in reachable
                ]
    cells.sort(key=lambda c: c.key)
    return cells, instances
