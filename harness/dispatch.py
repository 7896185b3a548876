"""Running a plan: cells out of the matrix, exports through the artifact cache, measurements on
targets, each finished cell written to the store at once.

A cell is one model x export x target x device. Cells of one target run with that target's
concurrency limit, all targets at once. A failed cell is recorded with its reason class
(infrastructure / model / measurement) and never stops the rest; infrastructure failures are
retried with backoff. A run is identified by its plan and the git commit under test, so a re-run
after a crash (or ``--resume RUN_ID``) skips the cells already done, and shards of one plan on
several machines (``--shard I/N``) write into one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import UserError
from harness.plan import ExportEntry, ModelEntry, Plan, TargetEntry
from harness.store import CellRecord, Store
from targets.base import Device, TargetError

TOOLS = ("vitbench", "torch", "executorch", "onnx", "onnxruntime", "coremltools", "qai-hub", "numpy")


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


@dataclass
class RunSummary:
    run_id: str
    total: int  # cells in the plan (all shards)
    shard_cells: int  # cells of this shard
    skipped: int  # already done before this invocation
    done: int = 0
    failed: int = 0
    finished: bool = False
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


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


def git_commit(cwd: str | None = None) -> str:
    env = os.environ.get("VITBENCH_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def tool_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in TOOLS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def host_environment() -> dict[str, Any]:
    from targets.agent import cpu_model

    return {"hostname": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
            "cpu": cpu_model(), "cores": os.cpu_count()}


def default_run_id(plan: Plan, commit: str) -> str:
    return f"{plan.name}-{commit[:10]}-{plan.hash[:8]}"


def cell_key(plan: Plan, model: ModelEntry, export: ExportEntry, target: TargetEntry, device_name: str) -> str:
    payload = {"model": asdict(model), "export": asdict(export), "target": target.name,
               "runtime": target.runtime, "options": target.options, "device": device_name,
               "measure": asdict(plan.measure)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


# -- devices ------------------------------------------------------------------------------

def select_devices(target: Any, entry: TargetEntry) -> tuple[list[Device], list[str]]:
    """Devices of ``target`` the entry's selectors pick, and the selectors that matched none.
    A target may offer ``select(selectors)`` for richer selectors (chipsets, OS ranges)."""
    if hasattr(target, "select"):
        picked = target.select(list(entry.devices))
        return picked if isinstance(picked, tuple) else (list(picked), [])
    reachable = target.devices()
    if not entry.devices:
        return reachable, []
    picked, unmatched = [], []
    for sel in entry.devices:
        key = sel.removeprefix("chipset:")
        hits = [d for d in reachable if sel in (d.name, d.id) or (sel.startswith("chipset:") and d.chipset == key)]
        if hits:
            picked += [d for d in hits if d not in picked]
        else:
            unmatched.append(sel)
    return picked, unmatched


def expand(plan: Plan, resolve_targets: bool = True) -> tuple[list[Cell], dict[str, Any]]:
    """Every cell of the plan, sorted by key, and the target instances used."""
    from harness import plugins

    instances: dict[str, Any] = {}
    cells: list[Cell] = []
    for entry in plan.targets:
        devices: list[Device] = []
        problem_devices: list[tuple[Device, str]] = []
        try:
            target = plugins.target(entry.name) if resolve_targets else None
            reason = target.unavailable_reason() if hasattr(target, "unavailable_reason") else ""
        except (UserError, ImportError) as exc:
            target, reason = None, str(exc)
        if target is not None and not reason:
            instances[entry.name] = target
            try:
                devices, unmatched = select_devices(target, entry)
            except UserError as exc:
                devices, unmatched, reason = [], list(entry.devices) or ["*"], str(exc)
            for sel in unmatched:
                problem_devices.append((Device(entry.name, sel), reason or f"device {sel!r} is not reachable"))
        else:
            for sel in entry.devices or ("*",):
                problem_devices.append((Device(entry.name, sel), reason or f"target {entry.name} is unavailable"))
        for model in plan.models:
            for export in plan.exports:
                for dev in devices:
                    cells.append(Cell(cell_key(plan, model, export, entry, dev.name), model, export, entry, dev))
                for dev, why in problem_devices:
                    cells.append(Cell(cell_key(plan, model, export, entry, dev.name), model, export, entry, dev, why))
    cells.sort(key=lambda c: c.key)
    return cells, instances


# -- running --------------------------------------------------------------------------------

class Dispatcher:
    def __init__(self, plan: Plan, store: Store, *, shard: tuple[int, int] = (1, 1), cache: str | None = None,
                 no_cache: bool = False, quiet: bool = False, log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.plan, self.store, self.shard = plan, store, shard
        self.cache, self.no_cache, self.quiet = cache, no_cache, quiet
        self.log = log or (lambda msg: None if quiet else print(msg, file=sys.stderr, flush=True))
        self.sleep = sleep
        self._models: dict[ModelEntry, Any] = {}
        self._model_lock = threading.Lock()
        self._datasets: dict[ModelEntry, Any] = {}  # the accuracy split and its PyTorch reference

    # models and artifacts ---------------------------------------------------------------
    def _model(self, entry: ModelEntry):
        with self._model_lock:
            if entry not in self._models:
                from harness.artifacts import model_hash
                from harness.model import load_model

                model = load_model(entry.source, **entry.overrides())
                self._models[entry] = (model, model_hash(model))
            return self._models[entry]

    def _export(self, model_entry: ModelEntry, export: ExportEntry):
        from harness.artifacts import export_artifact

        model, _ = self._model(model_entry)
        return export_artifact(model, export.spec(), cache=self.cache, no_cache=self.no_cache,
                               calibration=export.calibration,
                               progress=None if self.quiet else (lambda m: self.log(f"  export: {m}")))

    # one cell -----------------------------------------------------------------------------
    def _record(self, run_id: str, cell: Cell, model_hash: str) -> int:
        return self.store.start_cell(run_id, CellRecord(
            cell_key=cell.key, model_name=cell.model.label, model_hash=model_hash,
            export_label=cell.export.label, export_spec=asdict(cell.export), target=cell.target.name,
            device_name=cell.device.name, device_chipset=cell.device.chipset, device_os=cell.device.os))

    def _fail(self, cell_id: int, kind: str, reason: str, samples: list[float] | None = None,
              artifact_sha: str | None = None) -> None:
        self.store.finish_cell(cell_id, status="failed", failure_kind=kind, failure_reason=reason[:2000],
                               samples_ms=samples or [], artifact_sha256=artifact_sha,
                               details={"samples_kept": len(samples or [])})

    def _parity_metrics(self, target: Any, cell: Cell, artifact: Any) -> list[tuple[str, float, str]]:
        """Parity of this cell: on the device through ``infer`` where the plan asks for it,
        else (and always for the host, where export ran the same runtimes) the manifest's."""
        from harness.parity import REFERENCE_FILE, compare, load_reference

        parity = artifact.manifest.get("parity") or {}
        if self.plan.parity.on_device and cell.target.name != "host" and (artifact.folder / REFERENCE_FILE).exists():
            inputs, ref = load_reference(artifact.folder)
            res = compare(ref, target.infer(artifact, cell.device, inputs)).to_dict()
        elif parity.get("status") in ("passed", "failed"):
            res = parity
        else:
            return []
        return [("parity_max_abs", res["max_abs"], "abs"), ("parity_cosine", res["cosine"], "cosine"),
                ("parity_top1", res["top1"], "fraction")]

    def _reference_accuracy(self, entry: ModelEntry):
        """The accuracy split (limited as the plan says) and the PyTorch fp32 result on it,
        once per model."""
        from harness.data import load_dataset
        from harness.evaluate import evaluate_model

        with self._model_lock:
            if entry not in self._datasets:
                acc = self.plan.accuracy
                ds = load_dataset(acc.data, split=acc.split)
                if acc.limit and len(ds) > acc.limit:
                    import numpy as np

                    ds = ds.subset(np.random.default_rng(0).permutation(len(ds))[: acc.limit])
                model = self._models[entry][0]
                self._datasets[entry] = (ds, evaluate_model(model, ds))
            return self._datasets[entry]

    def _accuracy_metrics(self, target: Any, cell: Cell, artifact: Any) -> list[tuple[str, float, str]]:
        """The data set's metric for this artifact run through the target's ``infer``, beside
        the PyTorch reference on the same images."""
        from harness.evaluate import evaluate_artifact

        ds, ref = self._reference_accuracy(cell.model)
        res = evaluate_artifact(artifact, target, cell.device, ds)
        main, ref_main = res.results[0], ref.results[0]
        return [("accuracy", main.value, main.name), ("accuracy_ci_low", main.ci_low, main.name),
                ("accuracy_ci_high", main.ci_high, main.name), ("accuracy_reference", ref_main.value, main.name),
                ("accuracy_n", float(res.n), "count")]

    def _measure(self, run_id: str, cell: Cell, artifacts: dict, target: Any) -> tuple[str, str]:
        model_hash = self._models[cell.model][1] if cell.model in self._models else ""
        cell_id = self._record(run_id, cell, model_hash)
        if cell.problem:
            self._fail(cell_id, "infrastructure", cell.problem)
            return "failed", cell.problem
        art = artifacts.get((cell.model, cell.export))
        if isinstance(art, Exception):
            kind = "infrastructure" if "install" in str(art) or "SDK" in str(art) else "model"
            self._fail(cell_id, kind, f"export failed: {art}")
            return "failed", f"export failed: {art}"
        if not target.accepts(art):
            why = target.refusal(art) if hasattr(target, "refusal") else f"{cell.target.name} cannot run {art.format}"
            self._fail(cell_id, "model", why, artifact_sha=art.sha256)
            return "failed", why
        settings = self.plan.measure.profile_settings(cell.target)
        attempts = 0
        while True:
            attempts += 1
            try:
                prof = target.profile(art, cell.device, settings)
                metrics = prof.metric_rows()
                try:
                    metrics += self._parity_metrics(target, cell, art)
                except TargetError as exc:
                    prof.warnings.append(f"parity on device failed: {exc}")
                if self.plan.accuracy.data:
                    try:
                        metrics += self._accuracy_metrics(target, cell, art)
                    except TargetError as exc:
                        prof.warnings.append(f"accuracy on device failed: {exc}")
                details = {"environment": prof.environment, "warnings": prof.warnings,
                           "profile_details": prof.details, "device": prof.device.to_dict(),
                           "attempts": attempts, "artifact": {"path": str(art.path), "format": art.format,
                                                              "delegate": art.delegate, "precision": art.precision}}
                self.store.finish_cell(cell_id, status="done", artifact_sha256=art.sha256, runtime=prof.runtime,
                                       compute_unit=prof.compute_unit, samples_ms=prof.samples_ms, metrics=metrics,
                                       details=details)
                return "done", ""
            except TargetError as exc:
                if exc.retryable and attempts <= self.plan.measure.retries:
                    wait = min(30.0, 2.0 ** attempts)
                    self.log(f"  retry {cell.label} in {wait:g} s: {exc}")
                    self.sleep(wait)
                    continue
                self._fail(cell_id, exc.kind, str(exc), exc.samples_ms, art.sha256)
                return "failed", str(exc)
            except UserError as exc:
                self._fail(cell_id, "model", str(exc), artifact_sha=art.sha256)
                return "failed", str(exc)

    # the run ------------------------------------------------------------------------------
    def run(self, run_id: str | None = None, resume: bool = False) -> RunSummary:
        start = time.monotonic()
        commit = git_commit()
        cells, targets = expand(self.plan)
        if run_id is None:
            run_id = default_run_id(self.plan, commit)
        if resume:
            existing = self.store.run(run_id)
            if existing["plan_hash"] != self.plan.hash:
                raise UserError(f"run {run_id} was made from another plan (hash {existing['plan_hash'][:8]}, "
                                f"this plan {self.plan.hash[:8]}); resume it with the plan it ran")
        self.store.create_run(run_id, self.plan.name, self.plan.hash, commit, host_environment(), tool_versions(),
                              self.plan.to_dict(), len(cells))
        i, n = self.shard
        mine = [c for k, c in enumerate(cells) if k % n == i - 1]
        status = self.store.cell_status(run_id)
        todo = [c for c in mine if status.get(c.key) != "done"]
        summary = RunSummary(run_id=run_id, total=len(cells), shard_cells=len(mine), skipped=len(mine) - len(todo))
        if summary.skipped:
            self.log(f"run {run_id}: {summary.skipped} of {len(mine)} cells already done, {len(todo)} to go")

        # exports first, once per (model, export), through the cache
        artifacts: dict[tuple[ModelEntry, ExportEntry], Any] = {}
        for pair in dict.fromkeys((c.model, c.export) for c in todo if not c.problem):
            try:
                self._model(pair[0])
                artifacts[pair] = self._export(*pair)
            except UserError as exc:
                artifacts[pair] = exc

        progress = _Progress(len(todo), self.quiet)
        lock = threading.Lock()

        def work(cell: Cell) -> None:
            outcome, reason = self._measure(run_id, cell, artifacts, targets.get(cell.target.name))
            with lock:
                if outcome == "done":
                    summary.done += 1
                else:
                    summary.failed += 1
                    summary.failures.append(f"{cell.label}: {reason}")
                progress.step(cell.label, outcome)

        by_target: dict[str, list[Cell]] = defaultdict(list)
        for c in todo:
            by_target[c.target.name].append(c)
        pools = [ThreadPoolExecutor(max_workers=cs[0].target.concurrency, thread_name_prefix=f"vitbench-{name}")
                 for name, cs in by_target.items()]
        futures = []
        for pool, cs in zip(pools, by_target.values(), strict=True):
            futures += [pool.submit(work, c) for c in cs]
        try:
            for f in futures:
                f.result()
        finally:
            for pool in pools:
                pool.shutdown(wait=True, cancel_futures=True)
            progress.close()
        summary.finished = self.store.finish_run_if_complete(run_id)
        summary.seconds = time.monotonic() - start
        return summary


class _Progress:
    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if total and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", file=sys.stderr, dynamic_ncols=True, leave=True)

    def step(self, label: str, outcome: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{outcome}: {label}"[:60])
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
