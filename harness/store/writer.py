"""How a run writes to its store: nothing measured is ever lost, and measuring never waits
for the store.

Every finished cell goes to the spool first (fsynced), then a writer thread commits it to
the store, in order, and marks it committed in the spool. When the store goes away (a
PostgreSQL restart, a dropped network, a locked SQLite file), the writer reconnects with
backoff while measuring goes on; cells pile up in the spool and are committed when the
store is back. At the end of the run the writer waits a bounded time (``patience_s``) for
the store; cells it could not commit stay in the spool, and the next ``vitbench run`` of the
run replays them before it measures anything.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.store.connection import StoreUnavailable, while_away
from harness.store.database import CellOutcome, CellRecord, Store
from harness.store.spool import Spool, SpooledCell, orphans

_log = logging.getLogger("vitbench.store")
T = TypeVar("T")

DEFAULT_PATIENCE_S = 120.0  # how long a run waits for a store that went away, at each end


def with_reconnect(
    store: Store,
    fn: Callable[[], T],
    patience_s: float,
    on_away: Callable[[StoreUnavailable], None] | None = None,
) -> T:
    """``fn()``, reconnecting with backoff while the store is unavailable, for at most
    ``patience_s`` seconds; then the last StoreUnavailable. ``fn`` must be idempotent."""
    deadline = time.monotonic() + patience_s
    return while_away(fn, lambda: deadline, between=store.reconnect, on_away=on_away)


def replay_spool(store: Store, folder: Any, run_id: str, patience_s: float) -> int:
    """Write the cells that shards of ``run_id`` left in the spool folder (a shard killed,
    or one whose store stayed away) to the store; returns how many. Raises
    StoreUnavailable if the store does not come back within ``patience_s``."""
    written = 0
    for orphan in orphans(folder, run_id):
        try:
            for cell in list(orphan.cells):
                with_reconnect(
                    store,
                    lambda c=cell: store.write_cell(c.run_id, c.record, c.outcome),
                    patience_s,
                )
                orphan.committed(cell)
                written += 1
        finally:
            orphan.close()
    return written


class CellWriter:
    """Writes a run's cells: ``started`` (best effort: a dashboard sees the cell running)
    and ``finished`` (spooled, then committed by the writer thread). ``close`` waits for the
    store at most ``patience_s`` and returns the cells left in the spool."""

    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        patience_s: float = DEFAULT_PATIENCE_S,
        log: Callable[[str], None] | None = None,
    ):
        self.store, self.spool, self.patience_s = store, spool, patience_s
        self.log = log or (lambda msg: None)
        self.error = ""  # the last reason the store gave for being away
        self.failed_writes: list[str] = []  # cells the store refused (not being away)
        self.outcomes: list[tuple[str, CellRecord, CellOutcome]] = []
        self._away = False
        self._deadline: float | None = None
        self._closing = threading.Event()
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._drain, name="vitbench-store", daemon=True)
        self._thread.start()

    def started(self, run_id: str, record: CellRecord) -> None:
        self._queue.put(("start", (run_id, record)))

    def finished(self, run_id: str, record: CellRecord, outcome: CellOutcome) -> None:
        self.outcomes.append((run_id, record, outcome))
        try:
            cell = self.spool.add(run_id, record, outcome)
        except OSError as exc:  # a full or read-only disk: the store still gets the cell
            _log.warning("cannot spool cell %s: %s", record.cell_key, exc)
            cell = SpooledCell("", run_id, record, outcome)
        self._queue.put(("write", cell))

    # the writer thread ------------------------------------------------------------------
    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, payload = item
            try:
                if kind == "start":
                    if not self._away:  # a running mark is not worth waiting for
                        self.store.start_cell(*payload)
                else:
                    self._commit(payload)
            except StoreUnavailable as exc:
                self._went_away(exc)
            except Exception as exc:  # noqa: BLE001 - the cell stays in the spool
                reason = self.store.redact(f"{type(exc).__name__}: {exc}")
                _log.error("store write failed: %s", reason, exc_info=True)
                if kind == "write":
                    self.failed_writes.append(f"{payload.record.cell_key}: {reason}")

    def _commit(self, cell: SpooledCell) -> None:
        """Write one spooled cell, waiting for the store as long as it takes while the run
        measures, and at most ``patience_s`` once it has ended."""
        while_away(
            lambda: self.store.write_cell(cell.run_id, cell.record, cell.outcome),
            self._give_up_at,
            between=self.store.reconnect,
            on_away=self._went_away,
        )
        if cell.entry:
            self.spool.committed(cell)
        if self._away:
            self._away = False
            self.log(f"store {self.store.label} is back; spooled cells written")

    def _give_up_at(self) -> float:
        """No deadline while the run measures; once it has ended, one wait of
        ``patience_s`` for all the cells still to write, not one per cell."""
        if not self._closing.is_set():
            return math.inf
        if self._deadline is None:
            self._deadline = time.monotonic() + self.patience_s
        return self._deadline

    def _went_away(self, exc: StoreUnavailable) -> None:
        self.error = str(exc)
        if not self._away:
            self._away = True
            self.log(
                f"{self.error}; measuring goes on, finished cells are kept in {self.spool.path} "
                "until it is back"
            )

    def close(self) -> list[SpooledCell]:
        """Wait for the writes (the store gets ``patience_s`` to come back), close the
        spool; the cells not committed."""
        self._closing.set()
        self._queue.put(None)
        self._thread.join()
        left = self.spool.pending()
        self.spool.close()
        return left


def local_copy(
    path: Path, run_args: tuple[Any, ...], outcomes: list[tuple[str, CellRecord, CellOutcome]]
) -> Path:
    """A SQLite store at ``path`` holding the run (``create_run``'s arguments) and the cells
    this shard measured: what its reports are written from while the real store is away."""
    path.unlink(missing_ok=True)
    local = Store(str(path))
    try:
        local.create_run(*run_args)
        for run_id, record, outcome in outcomes:
            local.write_cell(run_id, record, outcome)
        local.finish_run_if_complete(run_args[0])
    finally:
        local.close()
    return path
