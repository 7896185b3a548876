"""The results database: runs, cells, raw samples and metrics, in tidy rows.

One code path for both back ends: a SQLite file by default (embedded, zero set-up) and a
PostgreSQL URL for a team whose device hosts all write to one place. SQL is always
parameterised. The schema is versioned (:mod:`harness.store.schema`); opening a store to write
migrates it forward, opening it to read never writes, and a store written by a newer vitbench
is refused rather than misread.

Shards of one run write at once, so every write is idempotent: creating a run, registering
a cell and writing its outcome are upserts, and a cell's outcome (row, samples, metrics) is
one transaction that can be written again after a lost connection without doubling anything.

Tables (DESIGN.md "Results"):
  runs     id, plan name and hash, git commit, started/finished, host environment, tool versions
  cells    run, cell key, model (name, hash), export (label, options), artifact hash, target,
           device (name, chipset, OS), status (running / done / failed + failure kind, reason)
  samples  cell, iteration, latency_ms: raw, never only aggregates
  metrics  cell, name, value, unit
  jobs     remote job ids (AI Hub) written as soon as they exist, so a re-run picks them up
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.store.connection import Database, StoreError

FAILURE_KINDS = ("infrastructure", "model", "measurement", "configuration")  # harness.errors.KINDS


@dataclass(frozen=True)
class CellRecord:
    """What identifies a cell and what it ran on, before it has a result."""

    cell_key: str
    model_name: str
    model_hash: str
    export_label: str
    export_spec: dict[str, Any]
    target: str
    device_name: str
    device_chipset: str = ""
    device_os: str = ""


@dataclass(frozen=True)
class CellOutcome:
    """What a finished cell wrote: its status, raw samples, metrics and details."""

    status: str  # "done" or "failed"
    artifact_sha256: str | None = None
    runtime: str | None = None
    compute_unit: str | None = None
    samples_ms: Sequence[float] = ()
    sample_rounds: Sequence[int] = ()  # each sample's round (0-based); (): all round 0
    metrics: Sequence[tuple[str, float, str]] = ()
    details: dict[str, Any] = field(default_factory=dict)
    failure_kind: str | None = None
    failure_reason: str | None = None
    finished_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_ms", tuple(float(v) for v in self.samples_ms))
        object.__setattr__(self, "sample_rounds", tuple(int(r) for r in self.sample_rounds))
        if self.sample_rounds and len(self.sample_rounds) != len(self.samples_ms):
            raise ValueError(
                f"{len(self.samples_ms)} samples but {len(self.sample_rounds)} round numbers"
            )
        object.__setattr__(self, "metrics", tuple(tuple(m) for m in self.metrics))
        if self.status not in ("done", "failed"):
            raise ValueError(f"status {self.status!r}")
        if self.status == "failed" and self.failure_kind not in FAILURE_KINDS:
            raise ValueError(f"failure kind {self.failure_kind!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples_ms"] = list(self.samples_ms)
        d["sample_rounds"] = list(self.sample_rounds)
        d["metrics"] = [list(m) for m in self.metrics]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellOutcome:
        return cls(**d)


_CELL_COLUMNS = (
    "run_id, cell_key, model_name, model_hash, export_label, export_spec, artifact_sha256, "
    "target, device_name, device_chipset, device_os, runtime, compute_unit, status, "
    "failure_kind, failure_reason, attempts, started_at, finished_at, details"
)


def _record_values(run_id: str, rec: CellRecord) -> tuple[Any, ...]:
    return (
        run_id,
        rec.cell_key,
        rec.model_name,
        rec.model_hash,
        rec.export_label,
        json.dumps(rec.export_spec, sort_keys=True, default=str),
    )


class Store(Database):
    """A results database. Use :func:`harness.store.open_store`."""

    # -- runs -----------------------------------------------------------------------------
    def create_run(
        self,
        run_id: str,
        plan_name: str,
        plan_hash: str,
        git_commit: str,
        environment: dict[str, Any],
        tool_versions: dict[str, Any],
        plan: dict[str, Any],
        total_cells: int,
    ) -> None:
        """Create the run, or take it up again if it exists (a resume, or another shard): it is
        running again and has ``total_cells`` cells, as its plan expands now. One statement,
        so shards that start at the same instant all succeed."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO runs (id, plan_name, plan_hash, git_commit, started_at, "
                    "finished_at, status, environment, tool_versions, plan, total_cells) "
                    "VALUES (?, ?, ?, ?, ?, NULL, 'running', ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET status = 'running', finished_at = NULL, "
                    "total_cells = excluded.total_cells"
                ),
                (
                    run_id,
                    plan_name,
                    plan_hash,
                    git_commit,
                    time.time(),
                    json.dumps(environment, default=str),
                    json.dumps(tool_versions, default=str),
                    json.dumps(plan, default=str),
                    total_cells,
                ),
            )

    def finish_run_if_complete(self, run_id: str) -> bool:
        """Mark the run finished once every cell of its plan is done or failed, else
        incomplete; shards finish it together (whichever commits the last cell). The
        decision and the update are one statement, and a finished run is never marked
        incomplete by a shard that counted before another committed the last cell."""
        done = "(SELECT COUNT(*) FROM cells WHERE run_id = ? AND status IN ('done', 'failed'))"
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    f"UPDATE runs SET status = CASE WHEN {done} >= total_cells THEN 'finished' "
                    f"ELSE 'incomplete' END, finished_at = CASE WHEN {done} >= total_cells "
                    "THEN ? ELSE NULL END WHERE id = ? AND status <> 'finished'"
                ),
                (run_id, run_id, time.time(), run_id),
            )
            cur.execute(self._sql("SELECT status FROM runs WHERE id = ?"), (run_id,))
            row = cur.fetchone()
        return bool(row) and row[0] == "finished"

    def run_progress(self, run_id: str) -> tuple[int, int]:
        """(cells done or failed, cells in the plan) of a run."""
        rows = self._query(
            "SELECT total_cells, (SELECT COUNT(*) FROM cells WHERE run_id = ? AND status IN "
            "('done', 'failed')) AS finished FROM runs WHERE id = ?",
            (run_id, run_id),
        )
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.label}; `vitbench runs` lists them")
        return int(rows[0]["finished"]), int(rows[0]["total_cells"])

    def run(self, run_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.label}; `vitbench runs` lists them")
        return _decode_run(rows[0])

    def runs(
        self, plan_hash: str | None = None, plan_name: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM runs", []
        where = []
        if plan_hash:
            where.append("plan_hash = ?")
            params.append(plan_hash)
        if plan_name:
            where.append("plan_name = ?")
            params.append(plan_name)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC LIMIT ?"
        params.append(int(limit))
        return [_decode_run(r) for r in self._query(sql, params)]

    def latest_run(self) -> dict[str, Any]:
        rows = self.runs(limit=1)
        if not rows:
            raise StoreError(f"no runs in {self.label} yet; `vitbench run` makes one")
        return rows[0]

    # -- cells ----------------------------------------------------------------------------
    def start_cell(self, run_id: str, rec: CellRecord) -> int:
        """Register a cell as running (or take its row back on a retry, counting the
        attempt); returns its id."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO cells ({_CELL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, "
                    "?, ?, NULL, NULL, 'running', NULL, NULL, 1, ?, NULL, '{}') "
                    "ON CONFLICT (run_id, cell_key) DO UPDATE SET status = 'running', "
                    "attempts = cells.attempts + 1, started_at = excluded.started_at, "
                    "finished_at = NULL, failure_kind = NULL, failure_reason = NULL, "
                    "device_chipset = excluded.device_chipset, device_os = excluded.device_os "
                    "RETURNING id"
                ),
                (
                    *_record_values(run_id, rec),
                    rec.target,
                    rec.device_name,
                    rec.device_chipset,
                    rec.device_os,
                    time.time(),
                ),
            )
            cell_id = int(cur.fetchone()[0])
            cur.execute(self._sql("DELETE FROM samples WHERE cell_id = ?"), (cell_id,))
            cur.execute(self._sql("DELETE FROM metrics WHERE cell_id = ?"), (cell_id,))
            return cell_id

    def write_cell(self, run_id: str, rec: CellRecord, outcome: CellOutcome) -> int:
        """A cell's whole outcome in one transaction, whether or not ``start_cell`` reached
        the store: written twice, it is stored once; an outcome older than the one stored
        (a spool replayed late) changes nothing. Returns the cell's id."""
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "SELECT id, finished_at, started_at FROM cells WHERE run_id = ? AND "
                    "cell_key = ?"
                ),
                (run_id, rec.cell_key),
            )
            row = cur.fetchone()
            if row and row[1] is not None and float(row[1]) > outcome.finished_at:
                return int(row[0])
            if row is None:
                cur.execute(
                    self._sql(
                        f"INSERT INTO cells ({_CELL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, "
                        "?, ?, ?, NULL, NULL, 'running', NULL, NULL, 1, ?, NULL, '{}') "
                        "RETURNING id"
                    ),
                    (
                        *_record_values(run_id, rec),
                        rec.target,
                        rec.device_name,
                        rec.device_chipset,
                        rec.device_os,
                        outcome.finished_at,
                    ),
                )
                row = cur.fetchone()
            cell_id = int(row[0])
            self._write_outcome(cur, cell_id, outcome)
            return cell_id

    def finish_cell(self, cell_id: int, **outcome: Any) -> None:
        """Write a cell's outcome, its raw samples and its metrics in one transaction
        (the fields of :class:`CellOutcome`)."""
        result = CellOutcome(**outcome)
        with self.transaction() as cur:
            self._write_outcome(cur, cell_id, result)

    def _write_outcome(self, cur: Any, cell_id: int, outcome: CellOutcome) -> None:
        cur.execute(
            self._sql(
                "UPDATE cells SET status = ?, artifact_sha256 = ?, runtime = ?, compute_unit = "
                "?, failure_kind = ?, failure_reason = ?, finished_at = ?, details = ? "
                "WHERE id = ?"
            ),
            (
                outcome.status,
                outcome.artifact_sha256,
                outcome.runtime,
                outcome.compute_unit,
                outcome.failure_kind,
                outcome.failure_reason,
                outcome.finished_at,
                json.dumps(outcome.details or {}, default=str),
                cell_id,
            ),
        )
        cur.execute(self._sql("DELETE FROM samples WHERE cell_id = ?"), (cell_id,))
        cur.execute(self._sql("DELETE FROM metrics WHERE cell_id = ?"), (cell_id,))
        rounds = outcome.sample_rounds or (0,) * len(outcome.samples_ms)
        pairs = zip(outcome.samples_ms, rounds, strict=True)
        rows = [(cell_id, i, v, r) for i, (v, r) in enumerate(pairs)]
        columns = "cell_id, iteration, latency_ms, round"
        if rows and self.dialect == "postgresql":  # COPY: one round trip, not one per sample
            with cur.copy(f"COPY samples ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elif rows:
            cur.executemany(f"INSERT INTO samples ({columns}) VALUES (?, ?, ?, ?)", rows)
        rows = [
            (cell_id, n, float(v), u) for n, v, u in outcome.metrics if v is not None and v == v
        ]
        if rows:
            cur.executemany(
                self._sql("INSERT INTO metrics (cell_id, name, value, unit) VALUES (?, ?, ?, ?)"),
                rows,
            )

    def add_metrics(self, cell_id: int, metrics: Iterable[tuple[str, float, str]]) -> None:
        with self.transaction() as cur:
            cur.executemany(
                self._sql(
                    "INSERT INTO metrics (cell_id, name, value, unit) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (cell_id, name) DO UPDATE SET value = excluded.value, "
                    "unit = excluded.unit"
                ),
                [(cell_id, n, float(v), u) for n, v, u in metrics],
            )

    def drop_placeholders(self, run_id: str, keep: Iterable[str]) -> list[str]:
        """Delete the run's placeholder cells (failed because their device could not be
        reached, keyed by the plan's selector) whose key is not in ``keep``: the device is
        back under its own name. Returns the keys dropped."""
        keep = set(keep)
        rows = self._query(
            "SELECT id, cell_key, details FROM cells WHERE run_id = ? AND status = 'failed'",
            (run_id,),
        )
        stale = [
            r
            for r in rows
            if r["cell_key"] not in keep and json.loads(r["details"] or "{}").get("placeholder")
        ]
        with self.transaction() as cur:
            for r in stale:
                for table in ("samples", "metrics"):
                    cur.execute(self._sql(f"DELETE FROM {table} WHERE cell_id = ?"), (r["id"],))
                cur.execute(self._sql("DELETE FROM cells WHERE id = ?"), (r["id"],))
        return [r["cell_key"] for r in stale]

    def cell_status(self, run_id: str) -> dict[str, str]:
        """cell key -> status for a run."""
        return {
            r["cell_key"]: r["status"]
            for r in self._query("SELECT cell_key, status FROM cells WHERE run_id = ?", (run_id,))
        }

    def cells(self, run_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not run_ids:
            return []
        marks = ", ".join("?" for _ in run_ids)
        rows = self._query(
            f"SELECT * FROM cells WHERE run_id IN ({marks}) ORDER BY id", list(run_ids)
        )
        for r in rows:
            r["export_spec"] = json.loads(r["export_spec"])
            r["details"] = json.loads(r["details"])
        return rows

    def samples(self, cell_ids: Sequence[int]) -> dict[int, list[float]]:
        return {c: values for c, (values, _) in self.sample_rounds(cell_ids).items()}

    def sample_rounds(self, cell_ids: Sequence[int]) -> dict[int, tuple[list[float], list[int]]]:
        """cell id -> (its samples in order, each sample's round); cells stored before
        rounds were kept (schema 1) have every sample in round 0."""
        out: dict[int, tuple[list[float], list[int]]] = {int(c): ([], []) for c in cell_ids}
        has_rounds = self.version >= 2
        column = "round" if has_rounds else "0 AS round"
        for chunk in _chunks(list(out), 500):
            marks = ", ".join("?" for _ in chunk)
            for r in self._query(
                f"SELECT cell_id, latency_ms, {column} FROM samples WHERE cell_id IN ({marks}) "
                "ORDER BY cell_id, iteration",
                chunk,
            ):
                values, rounds = out[int(r["cell_id"])]
                values.append(float(r["latency_ms"]))
                rounds.append(int(r["round"]))
        return out

    def metrics(self, cell_ids: Sequence[int]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for chunk in _chunks([int(c) for c in cell_ids], 500):
            marks = ", ".join("?" for _ in chunk)
            rows += self._query(
                f"SELECT cell_id, name, value, unit FROM metrics WHERE cell_id IN ({marks})", chunk
            )
        return rows

    # -- remote jobs ----------------------------------------------------------------------
    def put_job(
        self, run_id: str, cell_key: str, target: str, job_kind: str, job_id: str, status: str
    ) -> None:
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO jobs (run_id, cell_key, target, job_kind, job_id, status, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (run_id, cell_key, job_kind) DO UPDATE SET "
                    "target = excluded.target, job_id = excluded.job_id, "
                    "status = excluded.status, created_at = excluded.created_at"
                ),
                (run_id, cell_key, target, job_kind, job_id, status, time.time()),
            )

    def get_job(self, run_id: str, cell_key: str, job_kind: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT * FROM jobs WHERE run_id = ? AND cell_key = ? AND job_kind = ?",
            (run_id, cell_key, job_kind),
        )
        return rows[0] if rows else None


def _chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    for key in ("environment", "tool_versions", "plan"):
        row[key] = json.loads(row[key])
    return row
