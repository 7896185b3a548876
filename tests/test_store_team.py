"""A store that many device hosts share: writes that shards make at the same instant, the
finish of a run by whichever shard commits its last cell, readers with read rights only,
and no password in any message. Against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.store import (
    SCHEMA_VERSION,
    CellOutcome,
    CellRecord,
    StoreError,
    open_store,
    redact,
)
from harness.target import Device, Profile
from tests.support.loopback import free_port
from tests.support.postgres import postgres_server, postgres_url  # noqa: F401 - fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    return request.getfixturevalue("postgres_url")


def _rec(key: str) -> CellRecord:
    return CellRecord(key, "tiny", "m" * 8, "onnx", {"format": "onnx"}, "host", "host")


def _run(st, run_id: str = "r1", total: int = 4) -> None:
    st.create_run(run_id, "team", "h" * 16, "c0ffee", {}, {}, {"name": "team"}, total)


def _at_once(n: int, fn) -> list[BaseException]:
    """``fn(i)`` in ``n`` threads released together; the exceptions they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            fn(i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_shards_that_start_together_all_create_the_run(store_url):
    stores = [open_store(store_url) for _ in range(4)]
    for attempt in range(8):
        errors = _at_once(4, lambda i, a=attempt: _run(stores[i], f"run-{a}", 12))
        assert not errors, errors
    assert len(stores[0].runs(limit=100)) == 8
    assert all(r["status"] == "running" and r["total_cells"] == 12 for r in stores[0].runs())


def test_writers_opening_a_new_store_together_create_its_schema_once(store_url):
    opened = []
    errors = _at_once(4, lambda i: opened.append(open_store(store_url)))
    assert not errors, errors
    assert {st.schema_version() for st in opened} == {SCHEMA_VERSION}


def test_the_shard_that_commits_the_last_cell_finishes_the_run(store_url):
    """Four shards, three cells each, finishing together, twenty times: the run always ends
    finished (a shard that counted before another committed never writes incomplete)."""
    stores = [open_store(store_url) for _ in range(4)]
    for attempt in range(20):
        run_id = f"run-{attempt}"
        _run(stores[0], run_id, 12)

        def shard(i: int, run_id=run_id) -> None:
            for k in range(3):
                stores[i].write_cell(run_id, _rec(f"c{i}-{k}"), CellOutcome("done", samples_ms=[1]))
            stores[i].finish_run_if_complete(run_id)

        assert not _at_once(4, shard)
        assert stores[0].run(run_id)["status"] == "finished", attempt
        assert stores[0].run_progress(run_id) == (12, 12)


def test_a_cell_written_twice_is_stored_once_and_an_older_outcome_changes_nothing(store_url):
    st = open_store(store_url)
    _run(st)
    old = CellOutcome("failed", failure_kind="infrastructure", failure_reason="x", finished_at=1.0)
    new = CellOutcome("done", samples_ms=[1.0, 2.0, 3.0], metrics=[("p50_ms", 2.0, "ms")])
    cid = st.write_cell("r1", _rec("c1"), new)
    assert st.write_cell("r1", _rec("c1"), new) == cid  # a replay after a lost commit
    assert st.write_cell("r1", _rec("c1"), old) == cid  # a stale spool replayed late
    (cell,) = st.cells(["r1"])
    assert cell["status"] == "done" and st.samples([cid])[cid] == [1.0, 2.0, 3.0]
    assert [m["name"] for m in st.metrics([cid])] == ["p50_ms"]
    # a cell registered as running, then written: one row, its attempt counted once
    started = st.start_cell("r1", _rec("c2"))
    assert st.write_cell("r1", _rec("c2"), new) == started
    assert {c["cell_key"]: c["attempts"] for c in st.cells(["r1"])} == {"c1": 1, "c2": 1}


def _cli(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


def _reader_url(admin_url: str, role: str) -> str:
    import psycopg

    db = admin_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT CONNECT ON DATABASE "{db}" TO "{role}"')
        conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.execute(
            f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{role}"'
        )
    return admin_url.replace("postgres@", f"{role}@")


def test_a_read_only_role_reads_every_command_and_writes_nothing(postgres_url, tmp_path):  # noqa: F811
    reader = _reader_url(postgres_url, f"reader_{postgres_url[-6:]}")
    # a store nobody has written yet: one line for the reader, the schema left to writers
    code, out = _cli("runs", "--store", reader)
    assert code != 0 and "holds no vitbench results yet" in out and "Traceback" not in out
    code, out = _cli("run", "--store", reader, "--out", str(tmp_path / "o"))
    assert code != 0 and "may not change tables" in out and len(out.strip().splitlines()) == 1

    st = open_store(postgres_url)  # the owner makes it
    _run(st, "r1", 1)
    samples = [5.0 + 0.01 * (i % 7) for i in range(60)]
    prof = Profile.from_samples("host", Device("host", "host"), "a" * 64, "ort", samples)
    cid = st.write_cell(
        "r1", _rec("c1"), CellOutcome("done", samples_ms=samples, metrics=prof.metric_rows())
    )
    st.finish_run_if_complete("r1")
    ro = open_store(reader, readonly=True)
    assert ro.samples([cid])[cid] == samples
    with pytest.raises(Exception, match="read-only"):
        with ro.transaction() as cur:
            cur.execute("DELETE FROM samples")
    code, out = _cli("runs", "--store", reader)
    assert code == 0 and "r1" in out, out
    code, out = _cli("report", "r1", "--store", reader, "--format", "md")
    assert code == 0 and "tiny" in out, out
    code, out = _cli("gate", "r1", "--store", reader)
    assert code == 0 and "pass" in out.lower(), out


def test_a_sqlite_reader_never_migrates_or_writes(tmp_path, monkeypatch):
    from harness.store import connection

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    code, out = _cli("runs", "--store", str(empty))
    assert code != 0 and "holds no vitbench results yet" in out and empty.stat().st_size == 0

    path = tmp_path / "old.db"
    st = open_store(path)
    _run(st)
    st.close()
    # a newer vitbench, one migration ahead of this store, that cannot read it as it is
    # (an older schema it can read, as schema 1 without rounds, is read: tests/test_rounds.py)
    newer = [*connection.MIGRATIONS, ["CREATE TABLE later (x INTEGER)"]]
    monkeypatch.setattr(connection, "MIGRATIONS", newer)
    monkeypatch.setattr(connection, "SCHEMA_VERSION", len(newer))
    monkeypatch.setattr(connection, "READABLE_FROM", len(newer))
    before = path.read_bytes()
    code, out = _cli("runs", "--store", str(path))
    assert code != 0 and f"has schema version {SCHEMA_VERSION} and this vitbench reads" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert path.read_bytes() == before  # not migrated, not written
    assert open_store(path).schema_version() == len(newer)  # a writer moves it forward
    code, out = _cli("runs", "--store", str(path))
    assert code == 0 and "r1" in out, out
    with pytest.raises(StoreError, match="no results store"):
        open_store(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize(
    "text, secret",
    [
        ("postgresql://u:hunter22@h:5432/db", "hunter22"),
        ("postgresql://u:p%40ss%2Fw0rd@h/db", "p%40ss%2Fw0rd"),
        ("postgresql://u@h/db?sslmode=disable&password=hunter22", "hunter22"),
        ("postgresql://u@h/db?sslpassword=keyphrase9&x=1", "keyphrase9"),
        ("host=h user=u password=hunter22 dbname=db", "hunter22"),
        ("host=h password = 'se cret\\'s' dbname=db", "se cret"),
        ("connection to postgresql://a:topsecret1@db.internal failed", "topsecret1"),
    ],
)
def test_every_password_form_libpq_accepts_is_redacted(text, secret):
    masked = redact(text)
    assert secret not in masked and "***" in masked
    assert masked.split("***")[0] in text and masked.split("***")[-1] in text  # rest readable


def test_no_password_reaches_the_terminal_or_the_log(tmp_path, monkeypatch):
    port = free_port()
    log = tmp_path / "vitbench.log"
    monkeypatch.setenv("PGPASSWORD", "envsecret42")
    forms = [
        f"postgresql://u:urlsecret42@127.0.0.1:{port}/db",
        f"postgresql://u@127.0.0.1:{port}/db?password=querysecret42",
        f"host=127.0.0.1 port={port} user=u password='dsn secret42' dbname=db",
        f"postgresql://u@127.0.0.1:{port}/db",  # the password only in $PGPASSWORD
    ]
    for url in forms:
        for args in (["runs"], ["run", "--store-patience", "0", "--out", str(tmp_path / "o")]):
            code, out = _cli("--log-file", str(log), *args, "--store", url)
            assert code != 0 and "cannot reach store" in out, out
            assert len(out.strip().splitlines()) == 1, out
            for secret in (
                "urlsecret42",
                "querysecret42",
                "dsn secret42",
                "secret42",
                "envsecret42",
            ):
                assert secret not in out
    text = log.read_text() if log.exists() else ""
    assert "secret42" not in text


def test_a_store_away_at_the_start_waits_its_patience_then_says_so(tmp_path):
    url = f"postgresql://u@127.0.0.1:{free_port()}/db"
    start = time.monotonic()
    code, out = _cli("run", "--store", url, "--store-patience", "1", "--out", str(tmp_path / "o"))
    assert code != 0 and "cannot reach store" in out and time.monotonic() - start < 60
