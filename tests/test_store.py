"""The results store, run against SQLite and against a real PostgreSQL server."""

from __future__ import annotations

import sqlite3

import pytest

from harness.store import SCHEMA_VERSION, CellRecord, StoreError, open_store, redact
from tests.support.loopback import free_port
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    return request.getfixturevalue("postgres_url")


def _cell(key="c1", device="host"):
    return CellRecord(
        cell_key=key,
        model_name="tiny",
        model_hash="m" * 8,
        export_label="onnx",
        export_spec={"format": "onnx"},
        target="host",
        device_name=device,
        device_chipset="AMD EPYC",
        device_os="Linux",
    )


def test_run_cells_samples_metrics_round_trip(store_url):
    st = open_store(store_url)
    st.create_run(
        "r1",
        "default",
        "planhash",
        "abc123",
        {"cpu": "x"},
        {"torch": "2.13"},
        {"name": "default"},
        2,
    )
    cid = st.start_cell("r1", _cell("c1"))
    st.finish_cell(
        cid,
        status="done",
        artifact_sha256="a" * 64,
        runtime="ort",
        compute_unit="cpu",
        samples_ms=[1.0, 2.0, 3.5],
        metrics=[("latency_p50_ms", 2.0, "ms"), ("peak_memory_mb", 12.5, "MB")],
        details={"warnings": ["w"]},
    )
    cid2 = st.start_cell("r1", _cell("c2", "other"))
    st.finish_cell(
        cid2,
        status="failed",
        failure_kind="infrastructure",
        failure_reason="device gone",
        samples_ms=[4.0],
    )
    assert st.finish_run_if_complete("r1")  # both cells finished
    run = st.run("r1")
    assert run["status"] == "finished" and run["environment"] == {"cpu": "x"} and run["finished_at"]
    cells = {c["cell_key"]: c for c in st.cells(["r1"])}
    assert cells["c1"]["status"] == "done" and cells["c1"]["details"] == {"warnings": ["w"]}
    assert cells["c2"]["failure_kind"] == "infrastructure"
    samples = st.samples([cid, cid2])
    assert samples[cid] == [1.0, 2.0, 3.5] and samples[cid2] == [
        4.0
    ]  # failed cells keep their samples
    metrics = {(m["name"], m["unit"]): m["value"] for m in st.metrics([cid])}
    assert metrics == {("latency_p50_ms", "ms"): 2.0, ("peak_memory_mb", "MB"): 12.5}
    assert st.cell_status("r1") == {"c1": "done", "c2": "failed"}
    assert [r["id"] for r in st.runs()] == ["r1"] and st.latest_run()["id"] == "r1"


def test_retry_replaces_a_cells_rows_and_counts_attempts(store_url):
    st = open_store(store_url)
    st.create_run("r", "p", "h", "c", {}, {}, {}, 1)
    cid = st.start_cell("r", _cell())
    st.finish_cell(
        cid, status="failed", failure_kind="infrastructure", failure_reason="x", samples_ms=[1, 2]
    )
    again = st.start_cell("r", _cell())
    assert again == cid
    st.finish_cell(cid, status="done", samples_ms=[5.0], metrics=[("m", 1.0, "ms")])
    cell = st.cells(["r"])[0]
    assert cell["attempts"] == 2 and cell["status"] == "done" and st.samples([cid])[cid] == [5.0]


def test_a_failed_transaction_writes_nothing(store_url):
    st = open_store(store_url)
    st.create_run("r", "p", "h", "c", {}, {}, {}, 1)
    cid = st.start_cell("r", _cell())
    with pytest.raises(ValueError):
        st.finish_cell(cid, status="failed", failure_kind="bogus")
    import psycopg

    with pytest.raises(
        (sqlite3.IntegrityError, psycopg.IntegrityError)
    ):  # duplicate metric: all rolled back
        st.finish_cell(
            cid, status="done", samples_ms=[1.0], metrics=[("a", 1.0, "ms"), ("a", 2.0, "ms")]
        )
    assert st.cells(["r"])[0]["status"] == "running" and st.samples([cid])[cid] == []


def test_sql_is_parameterised(store_url):
    st = open_store(store_url)
    evil = "x'); DROP TABLE runs; --"
    st.create_run(evil, evil, evil, evil, {}, {}, {}, 0)
    assert st.run(evil)["plan_name"] == evil and len(st.runs(plan_name=evil)) == 1


def test_jobs_journal(store_url):
    st = open_store(store_url)
    st.put_job("r", "k", "aihub", "profile", "j123", "submitted")
    st.put_job("r", "k", "aihub", "profile", "j124", "running")
    assert (
        st.get_job("r", "k", "profile")["job_id"] == "j124"
        and st.get_job("r", "k", "compile") is None
    )


def test_unknown_run_and_empty_store(store_url):
    st = open_store(store_url)
    with pytest.raises(StoreError, match="no run 'nope'"):
        st.run("nope")
    with pytest.raises(StoreError, match="no runs"):
        st.latest_run()


def test_reopening_keeps_data_and_schema(store_url):
    st = open_store(store_url)
    st.create_run("r", "p", "h", "c", {}, {}, {}, 0)
    st.close()
    st2 = open_store(store_url)
    assert st2.schema_version() == SCHEMA_VERSION and st2.run("r")["plan_hash"] == "h"


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE vitbench_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer than this vitbench"):
        open_store(path)


def test_migration_from_an_empty_database(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    assert open_store(path).schema_version() == SCHEMA_VERSION


def test_unreachable_postgres_and_bad_urls(tmp_path):
    port = free_port()
    with pytest.raises(
        StoreError, match=rf"cannot reach store postgresql://u:\*\*\*@127.0.0.1:{port}/db"
    ):
        open_store(f"postgresql://u:secret@127.0.0.1:{port}/db")
    with pytest.raises(StoreError, match="unsupported store URL"):
        open_store("mysql://x/y")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "no" / "such" / "dir.db")
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        open_store(tmp_path / "junk.db")
    assert "secret" not in redact("postgresql://u:secret@h/db")
