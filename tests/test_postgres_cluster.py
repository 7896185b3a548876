"""The throwaway PostgreSQL cluster of tests/support/postgres.py: data and port survive a
restart, clean or after an immediate stop."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.postgres import (
    PostgresCluster,
    PostgresError,
    private_postgres,  # noqa: F401 - fixture
)


@pytest.fixture
def pg(request) -> PostgresCluster:
    return request.getfixturevalue("private_postgres")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_row_survives_a_restart_on_the_same_port(pg, mode):
    url, port = pg.url, pg.port
    with psycopg.connect(url + "/postgres", autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        conn.execute("INSERT INTO kept VALUES (1, 'written before the restart')")
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    pg.restart(mode=mode)
    assert pg.running() and pg.url == url and pg.port == port
    with psycopg.connect(url + "/postgres") as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] > started
        assert conn.execute("SELECT id, note FROM kept").fetchall() == [
            (1, "written before the restart")
        ]


def test_a_stopped_cluster_is_not_ready(pg):
    pg.stop(mode="immediate")
    assert not pg.running()
    with pytest.raises(PostgresError, match="not running"):
        pg.wait_ready(timeout=5)
    with pytest.raises(ValueError, match="stop mode"):
        pg.stop(mode="smart")
