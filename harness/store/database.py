"""The results database: runs, cells, raw samples and metrics, in tidy rows.

One code path for both back ends: a SQLite file by default (embedded, zero set-up) and a
PostgreSQL URL for a team whose device hosts all write to one place. SQL is always
parameterised. The schema is versioned; opening a store migrates it forward, and a store
written by a newer vitbench is refused rather than misread.

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
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import UserError

DEFAULT_STORE = "vitbench-results.db"
FAILURE_KINDS = ("infrastructure", "model", "measurement", "configuration")  # harness.errors.KINDS


class StoreError(UserError):
    """A store that cannot be reached, read or written."""


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


# Each migration is a list of statements; {id} and {json} are filled per dialect.
MIGRATIONS: list[list[str]] = [
    [  # 1: the schema of DESIGN.md
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            plan_name TEXT NOT NULL,
            plan_hash TEXT NOT NULL,
            git_commit TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            status TEXT NOT NULL,
            environment TEXT NOT NULL,
            tool_versions TEXT NOT NULL,
            plan TEXT NOT NULL,
            total_cells INTEGER NOT NULL
        )""",
        "CREATE INDEX runs_plan ON runs (plan_hash, started_at)",
        """CREATE TABLE cells (
            id {id},
            run_id TEXT NOT NULL REFERENCES runs(id),
            cell_key TEXT NOT NULL,
            model_name TEXT NOT NULL,
            model_hash TEXT NOT NULL,
            export_label TEXT NOT NULL,
            export_spec TEXT NOT NULL,
            artifact_sha256 TEXT,
            target TEXT NOT NULL,
            device_name TEXT NOT NULL,
            device_chipset TEXT NOT NULL,
            device_os TEXT NOT NULL,
            runtime TEXT,
            compute_unit TEXT,
            status TEXT NOT NULL,
            failure_kind TEXT,
            failure_reason TEXT,
            attempts INTEGER NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            finished_at DOUBLE PRECISION,
            details TEXT NOT NULL,
            UNIQUE (run_id, cell_key)
        )""",
        "CREATE INDEX cells_key ON cells (cell_key)",
        """CREATE TABLE samples (
            cell_id BIGINT NOT NULL REFERENCES cells(id),
            iteration INTEGER NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (cell_id, iteration)
        )""",
        """CREATE TABLE metrics (
            cell_id BIGINT NOT NULL REFERENCES cells(id),
            name TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL,
            unit TEXT NOT NULL,
            PRIMARY KEY (cell_id, name)
        )""",
        """CREATE TABLE jobs (
            run_id TEXT NOT NULL,
            cell_key TEXT NOT NULL,
            target TEXT NOT NULL,
            job_kind TEXT NOT NULL,
            job_id TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (run_id, cell_key, job_kind)
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


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


class Store:
    """A results database. Use :func:`open_store`."""

    def __init__(self, url: str):
        self.url = url
        self.dialect = (
            "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        )
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._migrate()

    # -- connection and dialect --------------------------------------------------------
    def _connect(self):
        if self.dialect == "postgresql":
            try:
                import psycopg
            except ImportError:
                raise StoreError(
                    "a PostgreSQL store needs psycopg: pip install 'psycopg[binary]'"
                ) from None
            try:
                return psycopg.connect(self.url, autocommit=False, connect_timeout=10)
            except psycopg.Error as exc:
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                raise StoreError(f"cannot reach store {redact(self.url)}: {reason}") from None
        path = Path(self.url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if path.parent and not path.parent.exists():
            raise StoreError(f"cannot open store {path}: folder {path.parent} does not exist")
        try:
            conn = sqlite3.connect(
                str(path), timeout=60, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        return conn

    def _sql(self, sql: str) -> str:
        if self.dialect == "postgresql":
            return sql.replace("?", "%s")
        return sql

    def _ddl(self, sql: str) -> str:
        ident = (
            "BIGSERIAL PRIMARY KEY"
            if self.dialect == "postgresql"
            else "INTEGER PRIMARY KEY AUTOINCREMENT"
        )
        sql = sql.replace("{id}", ident)
        if self.dialect == "sqlite":
            sql = sql.replace("DOUBLE PRECISION", "REAL").replace("BIGINT", "INTEGER")
        return sql

    @contextmanager
    def transaction(self):
        """One transaction; nothing of it is kept if it fails (a killed run loses at most
        the cell it was writing)."""
        with self._lock:
            if self.dialect == "sqlite":
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn.cursor()
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            else:
                try:
                    with self._conn.cursor() as cur:
                        yield cur
                except BaseException:
                    self._conn.rollback()
                    raise
                self._conn.commit()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(sql), tuple(params))
                cols = [d[0] for d in cur.description]
                rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            finally:
                cur.close()
            if self.dialect == "postgresql":
                self._conn.commit()  # end the read transaction
            return rows

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        with self.transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS vitbench_schema (version INTEGER NOT NULL)")
            cur.execute("SELECT version FROM vitbench_schema")
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        try:
            version = self.schema_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{redact(self.url)} is not a vitbench store: {exc}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {redact(self.url)} has schema version {version}, newer than this vitbench "
                f"understands ({SCHEMA_VERSION}); upgrade vitbench"
            )
        if version == SCHEMA_VERSION:
            return
        with self.transaction() as cur:
            cur.execute("SELECT version FROM vitbench_schema")  # another process may have migrated
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            for statements in MIGRATIONS[current:]:
                for stmt in statements:
                    cur.execute(self._ddl(stmt))
            cur.execute("DELETE FROM vitbench_schema")
            cur.execute(
                self._sql("INSERT INTO vitbench_schema (version) VALUES (?)"), (SCHEMA_VERSION,)
            )

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
        running again and has ``total_cells`` cells, as its plan expands now."""
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT id FROM runs WHERE id = ?"), (run_id,))
            if cur.fetchone():
                cur.execute(
                    self._sql(
                        "UPDATE runs SET status = 'running', finished_at = NULL, total_cells = ? "
                        "WHERE id = ?"
                    ),
                    (total_cells, run_id),
                )
                return
            cur.execute(
                self._sql(
                    "INSERT INTO runs (id, plan_name, plan_hash, git_commit, started_at, "
                    "finished_at, status, "
                    "environment, tool_versions, plan, total_cells) VALUES (?, ?, ?, ?, ?, NULL, "
                    "'running', ?, ?, ?, ?)"
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
        """Mark the run finished once every cell of its plan is done or failed (shards finish
        it together: whichever completes the last cell)."""
        with self.transaction() as cur:
            cur.execute(self._sql("SELECT total_cells FROM runs WHERE id = ?"), (run_id,))
            total = cur.fetchone()[0]
            cur.execute(
                self._sql(
                    "SELECT COUNT(*) FROM cells WHERE run_id = ? AND status IN ('done', 'failed')"
                ),
                (run_id,),
            )
            finished = cur.fetchone()[0]
            if finished >= total:
                cur.execute(
                    self._sql("UPDATE runs SET status = 'finished', finished_at = ? WHERE id = ?"),
                    (time.time(), run_id),
                )
                return True
            cur.execute(self._sql("UPDATE runs SET status = 'incomplete' WHERE id = ?"), (run_id,))
            return False

    def run(self, run_id: str) -> dict[str, Any]:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {redact(self.url)}; `vitbench runs` lists them")
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
            raise StoreError(f"no runs in {redact(self.url)} yet; `vitbench run` makes one")
        return rows[0]

    # -- cells ----------------------------------------------------------------------------
    def start_cell(self, run_id: str, rec: CellRecord) -> int:
        """Register a cell as running (or take its row back on a retry); returns its id."""
        with self.transaction() as cur:
            cur.execute(
                self._sql("SELECT id, attempts FROM cells WHERE run_id = ? AND cell_key = ?"),
                (run_id, rec.cell_key),
            )
            row = cur.fetchone()
            if row:
                cell_id = int(row[0])
                cur.execute(self._sql("DELETE FROM samples WHERE cell_id = ?"), (cell_id,))
                cur.execute(self._sql("DELETE FROM metrics WHERE cell_id = ?"), (cell_id,))
                cur.execute(
                    self._sql(
                        "UPDATE cells SET status = 'running', attempts = ?, started_at = ?, "
                        "finished_at = NULL, "
                        "failure_kind = NULL, failure_reason = NULL, device_chipset = ?, device_os "
                        "= ? WHERE id = ?"
                    ),
                    (int(row[1]) + 1, time.time(), rec.device_chipset, rec.device_os, cell_id),
                )
                return cell_id
            cur.execute(
                self._sql(
                    "INSERT INTO cells (run_id, cell_key, model_name, model_hash, export_label, "
                    "export_spec, "
                    "artifact_sha256, target, device_name, device_chipset, device_os, runtime, "
                    "compute_unit, status, "
                    "failure_kind, failure_reason, attempts, started_at, finished_at, details) "
                    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, NULL, NULL, 'running', NULL, "
                    "NULL, 1, ?, NULL, '{}') "
                    "RETURNING id"
                ),
                (
                    run_id,
                    rec.cell_key,
                    rec.model_name,
                    rec.model_hash,
                    rec.export_label,
                    json.dumps(rec.export_spec, sort_keys=True, default=str),
                    rec.target,
                    rec.device_name,
                    rec.device_chipset,
                    rec.device_os,
                    time.time(),
                ),
            )
            return int(cur.fetchone()[0])

    def finish_cell(
        self,
        cell_id: int,
        *,
        status: str,
        artifact_sha256: str | None = None,
        runtime: str | None = None,
        compute_unit: str | None = None,
        samples_ms: Sequence[float] = (),
        metrics: Iterable[tuple[str, float, str]] = (),
        details: dict[str, Any] | None = None,
        failure_kind: str | None = None,
        failure_reason: str | None = None,
    ) -> None:
        """Write a cell's outcome, its raw samples and its metrics in one transaction."""
        if status not in ("done", "failed"):
            raise ValueError(f"status {status!r}")
        if status == "failed" and failure_kind not in FAILURE_KINDS:
            raise ValueError(f"failure kind {failure_kind!r}")
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "UPDATE cells SET status = ?, artifact_sha256 = ?, runtime = ?, compute_unit = "
                    "?, failure_kind = ?, "
                    "failure_reason = ?, finished_at = ?, details = ? WHERE id = ?"
                ),
                (
                    status,
                    artifact_sha256,
                    runtime,
                    compute_unit,
                    failure_kind,
                    failure_reason,
                    time.time(),
                    json.dumps(details or {}, default=str),
                    cell_id,
                ),
            )
            cur.execute(self._sql("DELETE FROM samples WHERE cell_id = ?"), (cell_id,))
            cur.execute(self._sql("DELETE FROM metrics WHERE cell_id = ?"), (cell_id,))
            if samples_ms:
                cur.executemany(
                    self._sql(
                        "INSERT INTO samples (cell_id, iteration, latency_ms) VALUES (?, ?, ?)"
                    ),
                    [(cell_id, i, float(v)) for i, v in enumerate(samples_ms)],
                )
            rows = [(cell_id, n, float(v), u) for n, v, u in metrics if v is not None and v == v]
            if rows:
                cur.executemany(
                    self._sql(
                        "INSERT INTO metrics (cell_id, name, value, unit) VALUES (?, ?, ?, ?)"
                    ),
                    rows,
                )

    def add_metrics(self, cell_id: int, metrics: Iterable[tuple[str, float, str]]) -> None:
        with self.transaction() as cur:
            for n, v, u in metrics:
                cur.execute(
                    self._sql("DELETE FROM metrics WHERE cell_id = ? AND name = ?"), (cell_id, n)
                )
                cur.execute(
                    self._sql(
                        "INSERT INTO metrics (cell_id, name, value, unit) VALUES (?, ?, ?, ?)"
                    ),
                    (cell_id, n, float(v), u),
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
        out: dict[int, list[float]] = {int(c): [] for c in cell_ids}
        for chunk in _chunks(list(out), 500):
            marks = ", ".join("?" for _ in chunk)
            for r in self._query(
                f"SELECT cell_id, latency_ms FROM samples WHERE cell_id IN ({marks}) ORDER BY "
                "cell_id, iteration",
                chunk,
            ):
                out[int(r["cell_id"])].append(float(r["latency_ms"]))
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
                self._sql("DELETE FROM jobs WHERE run_id = ? AND cell_key = ? AND job_kind = ?"),
                (run_id, cell_key, job_kind),
            )
            cur.execute(
                self._sql(
                    "INSERT INTO jobs (run_id, cell_key, target, job_kind, job_id, status, "
                    "created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)"
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


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def open_store(url: str | Path | None = None) -> Store:
    """A store from a URL (``postgresql://user@host/db``, ``sqlite:///path``) or a file path.
    Default: $VITBENCH_STORE, else ./vitbench-results.db."""
    import os

    url = str(url or os.environ.get("VITBENCH_STORE") or DEFAULT_STORE)
    if _SCHEME.match(url) and not url.startswith(("sqlite:", "postgresql://", "postgres://")):
        raise StoreError(
            f"unsupported store URL {redact(url)}: use a file path, sqlite:///PATH or "
            "postgresql://..."
        )
    return Store(url)
