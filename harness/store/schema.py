"""The store's schema as a list of migrations: opening a store as a writer moves it forward,
a reader only checks that it is current."""

from __future__ import annotations

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
    [  # 2: each raw sample keeps the round (fresh process / session / job) it came from
        "ALTER TABLE samples ADD COLUMN round INTEGER NOT NULL DEFAULT 0",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
# the oldest schema a reader still reads as it is (a reader never migrates): version 1 has
# no rounds, read as one round per cell
READABLE_FROM = 1
