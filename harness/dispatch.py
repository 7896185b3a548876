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

import logging
import os
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cells import Cell, default_run_id, expand
from harness.environment import RUN_TOOLS, git_commit, host_environment, tool_versions
from harness.errors import UserError, VitbenchError
from harness.plan import ExportEntry, ModelEntry, Plan
from harness.rounds import measure_rounds
from harness.store import CellOutcome, CellRecord, Store, StoreUnavailable
from harness.store.spool import Spool
from harness.store.writer import (
    DEFAULT_PATIENCE_S,
    CellWriter,
    local_copy,
    replay_spool,
    with_reconnect,
)
from harness.target import ProfileSettings, Target, TargetError, cpu_fallback

if TYPE_CHECKING:  # pragma: no cover
    from harness.parity import ParityResult

_log = logging.getLogger("vitbench.dispatch")
DEFAULT_SPOOL = "vitbench-out/spool"
Slot = tuple[str, CellRecord]  # (run id, cell): what a finished cell is written under


def _reason(exc: BaseException) -> str:
    """The one line for a failed part of a cell; a bug's traceback goes to the log."""
    if isinstance(exc, VitbenchError):
        return str(exc)
    reason = internal_error(exc)
    _log.error("%s", reason, exc_info=exc)
    return reason


def internal_error(exc: BaseException) -> str:
    """One line for an exception vitbench did not raise on purpose."""
    text = " ".join(str(exc).split())[:300]
    name = type(exc).__name__
    return f"internal error: {name}: {text}" if text else f"internal error: {name}"


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
    shard: str = "1/1"
    waiting: int = 0  # cells of the run (other shards') not finished when this shard ended
    replayed: int = 0  # cells an earlier shard left in the spool, written at the start
    spooled: int = 0  # cells measured but not in the store: kept in ``spool``
    spool: str = ""
    store_error: str = ""  # why the store could not take them (redacted)
    local_store: str = ""  # a SQLite copy of this shard's cells, when the store was away


# -- running --------------------------------------------------------------------------------


class Dispatcher:
    def __init__(
        self,
        plan: Plan,
        store: Store,
        *,
        shard: tuple[int, int] = (1, 1),
        cache: str | None = None,
        no_cache: bool = False,
        quiet: bool = False,
        log: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        spool_dir: str | Path | None = None,
        store_patience_s: float = DEFAULT_PATIENCE_S,
    ):
        self.plan, self.store, self.shard = plan, store, shard
        self.spool_dir = Path(spool_dir or os.environ.get("VITBENCH_SPOOL") or DEFAULT_SPOOL)
        self.patience_s = store_patience_s
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
                from harness.export import model_hash
                from harness.model import load_model

                model = load_model(entry.source, **entry.overrides())
                self._models[entry] = (model, model_hash(model))
            return self._models[entry]

    def _export(self, model_entry: ModelEntry, export: ExportEntry):
        from harness.export import export_artifact

        model, _ = self._model(model_entry)
        return export_artifact(
            model,
            export.spec(),
            cache=self.cache,
            no_cache=self.no_cache,
            calibration=export.calibration,
            progress=None if self.quiet else (lambda m: self.log(f"  export: {m}")),
        )

    # one cell -----------------------------------------------------------------------------
    def _record(self, run_id: str, cell: Cell, model_hash: str) -> Slot:
        """The cell's identity in the store, marked running there (best effort)."""
        slot = (
            run_id,
            CellRecord(
                cell_key=cell.key,
                model_name=cell.model.label,
                model_hash=model_hash,
                export_label=cell.export.label,
                export_spec=asdict(cell.export),
                target=cell.target.name,
                device_name=cell.device.name,
                device_chipset=cell.device.chipset,
                device_os=cell.device.os,
            ),
        )
        self._writer.started(*slot)
        return slot

    def _fail(
        self,
        slot: Slot,
        kind: str,
        reason: str,
        samples: list[float] | None = None,
        artifact_sha: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        outcome = CellOutcome(
            status="failed",
            failure_kind=kind,
            failure_reason=reason[:2000],
            samples_ms=samples or [],
            artifact_sha256=artifact_sha,
            details={"samples_kept": len(samples or []), **(details or {})},
        )
        self._writer.finished(*slot, outcome)

    def _parity(
        self, target: Target, cell: Cell, artifact: Any, settings: ProfileSettings
    ) -> ParityResult | None:
        """Parity of this cell: on the device (the target's ``parity``) where the plan asks for
        it, else (and always for the host, where export ran the same runtimes) the
        manifest's. Parity always says where it ran: a device cell whose parity was not run
        there is ``pending`` with the reason, never the host's export-time numbers."""
        from harness.parity import REFERENCE_FILE, ParityResult

        stored = artifact.manifest.get("parity") or {}
        where = f"{cell.target.name}:{cell.device.name}"
        if cell.target.name != "host":
            if not self.plan.parity.on_device:
                at_export = (
                    f"; at export on the host: cosine {stored['cosine']:.6f}"
                    if stored.get("status") in ("passed", "failed")
                    else ""
                )
                reason = f"not checked on device ([parity] on_device = false{at_export})"
                return ParityResult("pending", where=where, reason=reason)
            if not (artifact.folder / REFERENCE_FILE).exists():
                return ParityResult(
                    "pending",
                    where=where,
                    reason=f"not checked on device: no {REFERENCE_FILE} beside the artifact",
                )
            return target.parity(artifact, cell.device, settings)  # the profiled model
        if stored.get("status") in ("passed", "failed"):
            return ParityResult.from_dict(stored)
        return None

    def _reference_accuracy(self, entry: ModelEntry):
        """The accuracy split (limited as the plan says) and the PyTorch fp32 result on it,
        once per model (the same images for every model of the plan)."""
        from harness.accuracy import model_accuracy
        from harness.data import load_dataset

        model = self._model(entry)[0]
        with self._model_lock:
            if entry not in self._datasets:
                acc = self.plan.accuracy
                ds = load_dataset(acc.data, split=acc.split)
                if acc.limit and len(ds) > acc.limit:
                    import numpy as np

                    ds = ds.subset(np.random.default_rng(0).permutation(len(ds))[: acc.limit])
                self._datasets[entry] = (ds, model_accuracy(model, ds))
            return self._datasets[entry]

    def _accuracy_metrics(
        self, target: Target, cell: Cell, artifact: Any, settings: ProfileSettings
    ) -> list[tuple[str, float, str]]:
        """The data set's metric (and a binary task's operating point) for this artifact run
        through the target's ``infer``, its retention of the PyTorch reference on the same
        images and, for a model whose plan entry names its teacher, the student's retention
        of the teacher in PyTorch (harness.retention)."""
        from harness.accuracy import artifact_accuracy
        from harness.retention import accuracy_rows, compression_rows

        ds, ref = self._reference_accuracy(cell.model)
        res = artifact_accuracy(
            artifact,
            target,
            cell.device,
            ds,
            allow_data_upload=self.plan.accuracy.allow_data_upload,
            settings=settings,
        )
        rows = accuracy_rows(res, ref)
        teacher = self.plan.teacher_of(cell.model)
        if teacher is not None:
            rows += compression_rows(ref, self._reference_accuracy(teacher)[1])
        return rows

    def _measure(self, run_id: str, cell: Cell, artifacts: dict, target: Target) -> tuple[str, str]:
        """One cell, recorded whatever happens: an exception that is not one of vitbench's
        (a bug in a target or here) fails this cell with one line, its traceback kept in the
        cell's details and the log, and the run goes on."""
        model_hash = self._models[cell.model][1] if cell.model in self._models else ""
        slot = self._record(run_id, cell, model_hash)
        if cell.problem:
            self._fail(slot, "infrastructure", cell.problem, details={"placeholder": True})
            return "failed", cell.problem
        try:
            return self._measure_cell(slot, cell, artifacts, target)
        except Exception as exc:  # noqa: BLE001 - one cell's fault never stops the run
            reason = internal_error(exc)
            trace = traceback.format_exc()
            _log.error("cell %s: %s\n%s", cell.label, reason, trace)
            self._fail(slot, "infrastructure", reason, details={"traceback": trace})
            return "failed", reason

    def _measure_cell(
        self, slot: Slot, cell: Cell, artifacts: dict, target: Target
    ) -> tuple[str, str]:
        art = artifacts.get((cell.model, cell.export))
        if isinstance(art, VitbenchError):
            self._fail(slot, art.kind, f"export failed: {art}")
            return "failed", f"export failed: {art}"
        if not target.accepts(art):
            why = target.refusal(art) or f"{cell.target.name} cannot run {art.format}"
            self._fail(slot, "model", why, artifact_sha=art.sha256)
            return "failed", why
        settings = replace(
            self.plan.measure.profile_settings(cell.target), session=f"{slot[0]}/{cell.key}"
        )
        attempts = 0
        rounds: list = []  # rounds measured so far: a retry goes on after the last good one
        while True:
            attempts += 1
            try:
                prof = measure_rounds(target, art, cell.device, settings, rounds)
                prof, metrics, parity, checks = self._checks(target, cell, art, prof, settings)
                details = {
                    **checks,
                    # the plan asked for parity on this device: the gate fails a cell without it
                    "parity_required": self.plan.parity.on_device and cell.target.name != "host",
                    "compute_unit_asked": settings.compute_unit or "",
                    "environment": prof.environment,
                    "warnings": list(prof.warnings),
                    "parity": parity.to_dict() if parity is not None else None,
                    "profile_details": prof.details,
                    "device": prof.device.to_dict(),
                    "attempts": attempts,
                    "artifact": {
                        "path": str(art.path),
                        "format": art.format,
                        "delegate": art.delegate,
                        "precision": art.precision,
                    },
                }
                outcome = CellOutcome(
                    status="done",
                    artifact_sha256=art.sha256,
                    runtime=prof.runtime,
                    compute_unit=prof.compute_unit,
                    samples_ms=prof.samples_ms,
                    sample_rounds=prof.sample_rounds,
                    metrics=metrics,
                    details=details,
                )
                self._writer.finished(*slot, outcome)
                return "done", ""
            except TargetError as exc:
                if exc.retryable and attempts <= self.plan.measure.retries:
                    wait = min(30.0, 2.0**attempts)
                    self.log(f"  retry {cell.label} in {wait:g} s: {exc}")
                    self.sleep(wait)
                    continue
                self._fail(slot, exc.kind, str(exc), exc.samples_ms, art.sha256)
                return "failed", str(exc)
            except VitbenchError as exc:
                self._fail(slot, exc.kind, str(exc), artifact_sha=art.sha256)
                return "failed", str(exc)

    def _checks(
        self, target: Target, cell: Cell, artifact: Any, prof: Any, settings: ProfileSettings
    ):
        """Parity and accuracy of a profiled cell. Either may fail (a service down, a data
        set that may not be uploaded, a bug): that is recorded beside the profile, which is
        kept. Returns the profile (with warnings), its metric rows, the parity result and
        the details of what failed."""
        metrics = prof.metric_rows()
        fallback = cpu_fallback(settings.compute_unit, prof.metrics)
        if fallback is not None:
            metrics.append(("cpu_fallback", fallback, "fraction"))
        parity, failed = None, {}
        try:
            parity = self._parity(target, cell, artifact, settings)
        except Exception as exc:  # noqa: BLE001 - the profile stands
            failed["parity_error"] = _reason(exc)
            prof = prof.with_warnings(f"parity on device failed: {failed['parity_error']}")
        if parity is not None:
            metrics += parity.metric_rows()
        if self.plan.accuracy.data and cell.model.accuracy:
            try:
                metrics += self._accuracy_metrics(target, cell, artifact, settings)
            except Exception as exc:  # noqa: BLE001 - the profile stands
                failed["accuracy_error"] = _reason(exc)
                prof = prof.with_warnings(f"accuracy on device failed: {failed['accuracy_error']}")
        return prof, metrics, parity, failed

    # the run ------------------------------------------------------------------------------
    def run(self, run_id: str | None = None, resume: bool = False) -> RunSummary:
        start = time.monotonic()
        commit = git_commit()
        cells, targets = expand(self.plan)
        if run_id is None:
            run_id = default_run_id(self.plan, commit)
        i, n = self.shard
        mine = [c for k, c in enumerate(cells) if k % n == i - 1]
        replayed, status = self._open_run(run_id, commit, cells, resume)
        todo = [c for c in mine if status.get(c.key) != "done"]
        summary = RunSummary(
            run_id=run_id,
            total=len(cells),
            shard_cells=len(mine),
            skipped=len(mine) - len(todo),
            shard=f"{i}/{n}",
            replayed=replayed,
        )
        if summary.skipped:
            self.log(
                f"run {run_id}: {summary.skipped} of {len(mine)} cells already done, {len(todo)} "
                "to go"
            )
        spool = Spool(self.spool_dir, run_id, self.shard)
        self._writer = CellWriter(self.store, spool, patience_s=self.patience_s, log=self.log)
        try:
            artifacts = self._export_all(todo)
            self._measure_all(run_id, todo, artifacts, targets, summary)
        finally:
            left = self._writer.close()
        self._close_run(summary, left, spool)
        summary.seconds = time.monotonic() - start
        return summary

    def _open_run(
        self, run_id: str, commit: str, cells: list[Cell], resume: bool
    ) -> tuple[int, dict[str, str]]:
        """Create the run (or take it up again), write what earlier shards of it left in the
        spool, drop stale placeholders; (cells replayed, cell key -> status). A store that
        is away gets ``patience_s`` to come back."""
        store = self.store
        self._run_args = (
            run_id,
            self.plan.name,
            self.plan.hash,
            commit,
            host_environment(),
            tool_versions(RUN_TOOLS),
            self.plan.to_dict(),
            len(cells),
        )

        def begin() -> None:
            if resume:
                existing = store.run(run_id)
                if existing["plan_hash"] != self.plan.hash:
                    raise UserError(
                        f"run {run_id} was made from another plan (hash "
                        f"{existing['plan_hash'][:8]}, this plan {self.plan.hash[:8]}); resume "
                        "it with the plan it ran"
                    )
            store.create_run(*self._run_args)

        with_reconnect(store, begin, self.patience_s)
        replayed = replay_spool(store, self.spool_dir, run_id, self.patience_s)
        if replayed:
            self.log(f"run {run_id}: {replayed} cells left in the spool by an earlier run written")
        keys = [c.key for c in cells]
        with_reconnect(store, lambda: store.drop_placeholders(run_id, keys), self.patience_s)
        return replayed, with_reconnect(store, lambda: store.cell_status(run_id), self.patience_s)

    def _close_run(self, summary: RunSummary, left: list, spool: Spool) -> None:
        """Finish the run in the store if its last cell is in; when the store stayed away,
        say where the cells are and keep a local copy to report from."""
        writer = self._writer
        summary.failures += [f"not stored: {w}" for w in writer.failed_writes]
        if left:
            summary.spooled, summary.spool = len(left), str(spool.path)
            summary.store_error = writer.error
            summary.local_store = str(
                local_copy(
                    self.spool_dir / f"{spool.path.stem}.db", self._run_args, writer.outcomes
                )
            )
            return
        try:
            summary.finished = with_reconnect(
                self.store, lambda: self.store.finish_run_if_complete(summary.run_id), 10.0
            )
            done, total = self.store.run_progress(summary.run_id)
            summary.waiting = max(0, total - done)
        except StoreUnavailable as exc:
            summary.store_error = str(exc)

    def _export_all(self, todo: list[Cell]) -> dict[tuple[ModelEntry, ExportEntry], Any]:
        """Each (model, export) of the cells to do, once, through the cache: the artifact or
        the error that stopped its export."""
        artifacts: dict[tuple[ModelEntry, ExportEntry], Any] = {}
        for pair in dict.fromkeys((c.model, c.export) for c in todo if not c.problem):
            try:
                self._model(pair[0])
                artifacts[pair] = self._export(*pair)
            except VitbenchError as exc:
                artifacts[pair] = exc
            except Exception as exc:  # noqa: BLE001 - an exporter's bug fails its cells only
                _log.error("export %s: %s", pair[1].label, exc, exc_info=True)
                artifacts[pair] = VitbenchError(internal_error(exc), kind="model")
        return artifacts

    def _measure_all(
        self,
        run_id: str,
        todo: list[Cell],
        artifacts: dict,
        targets: dict[str, Target],
        summary: RunSummary,
    ) -> None:
        """Measure the cells, each target's with its own concurrency, all targets at once."""
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
        pools = [
            ThreadPoolExecutor(
                max_workers=cs[0].target.concurrency, thread_name_prefix=f"vitbench-{name}"
            )
            for name, cs in by_target.items()
        ]
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


class _Progress:
    def __init__(self, total: int, quiet: bool):
        self.bar = None
        if total and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, unit="cell", file=sys.stderr, dynamic_ncols=True, leave=True
            )

    def step(self, label: str, outcome: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{outcome}: {label}"[:60])
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
