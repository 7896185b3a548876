"""A real PostgreSQL server for store tests and bench/bench_store.py.

:class:`PostgresCluster` is one throwaway cluster made from the machine's PostgreSQL binaries:
``initdb`` into a temporary folder of its own, served on a free loopback port (and a Unix
socket in that folder), started, stopped (``fast`` or ``immediate``), restarted on the same
port with the same data, and removed. As root, the server programs run as the ``postgres``
user (``runuser``), since PostgreSQL refuses to run as root; as anyone else, as that user.

Fixtures:

- ``postgres_server`` (session): a server URL without a database. $VITBENCH_TEST_POSTGRES_URL
  when set (CI starts a server), else a cluster of the session's own.
- ``postgres_url``: a fresh database on that server for each test, dropped afterwards.
- ``private_postgres``: a :class:`PostgresCluster` of the test's own, started, even when
  $VITBENCH_TEST_POSTGRES_URL is set, for tests that stop or restart the server.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support.loopback import HOST, free_port

STOP_MODES = ("fast", "immediate")
MISSING_BINARIES = (
    "PostgreSQL server binaries not found: install the Debian package `postgresql` "
    "(.ci/run does) or set VITBENCH_TEST_POSTGRES_URL"
)


class PostgresError(RuntimeError):
    """A cluster that could not be made, started, stopped or reached."""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def binaries_available() -> bool:
    return bool(_pg_bin("initdb") and _pg_bin("pg_ctl"))


class PostgresCluster:
    """One throwaway PostgreSQL cluster on 127.0.0.1.

    ``PostgresCluster()`` runs ``initdb`` (raises :class:`PostgresError` when the binaries are
    missing); :meth:`start` serves it and returns once it accepts connections. ``settings``
    are server settings written to its ``postgresql.conf`` (default: ``fsync = off``, as
    tests want); the port and addresses live there too, so a restart keeps them.
    ``with PostgresCluster() as pg:`` starts it and removes it afterwards.
    """

    def __init__(self, settings: dict[str, str] | None = None):
        self._initdb, self._pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not self._initdb or not self._pg_ctl:
            raise PostgresError(MISSING_BINARIES)
        self.root = Path(tempfile.mkdtemp(prefix="vitbench-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "log"
        self.port = free_port()
        try:
            os.chmod(self.root, 0o755)
            if os.geteuid() == 0:
                shutil.chown(self.root, "postgres", "postgres")
            self._run(
                "initdb",
                [self._initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"],
            )
            conf = {
                "port": str(self.port),
                "listen_addresses": f"'{HOST}'",
                "unix_socket_directories": f"'{self.root}'",
                **(settings if settings is not None else {"fsync": "off"}),
            }
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as f:
                f.write("\n# vitbench test cluster\n")
                f.writelines(f"{k} = {v}\n" for k, v in conf.items())
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        """The server URL, without a database (append ``/NAME``)."""
        return f"postgresql://postgres@{HOST}:{self.port}"

    # -- life cycle -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Serve the cluster; returns once it accepts connections."""
        self._run(
            "pg_ctl start",
            [self._pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(timeout))]
            + ["start"],
        )
        self.wait_ready(timeout)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean shutdown, checkpoint) or ``immediate`` (no
        checkpoint: the next start recovers from the WAL, as after a crash)."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode {mode!r}: one of {', '.join(STOP_MODES)}")
        self._run(
            f"pg_ctl stop -m {mode}", [self._pg_ctl, "-D", str(self.data), "-m", mode, "stop"]
        )

    def restart(self, mode: str = "fast", timeout: float = 60.0) -> None:
        """Stop (``mode``) and start again: same port, same data."""
        self.stop(mode)
        self.start(timeout)

    def running(self) -> bool:
        """Whether the cluster's postmaster process is alive."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return False
        return True

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll until the server accepts connections on its port; raise with the server's log
        when it is not running or does not accept them within ``timeout`` seconds."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url + "/postgres", connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                reason = str(exc).strip()
            if not self.running():
                raise PostgresError(f"PostgreSQL is not running\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL on port {self.port} did not accept connections in {timeout:g} "
                    f"s: {reason}\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Stop the server (``immediate``) if it runs and remove the cluster's folder."""
        if self.data.exists() and self.running():
            subprocess.run(
                _as_postgres([self._pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"]),
                capture_output=True,
                cwd=self.root,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- helpers ----------------------------------------------------------------------------
    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _run(self, what: str, cmd: list[str]) -> None:
        # cwd: the postgres user may not be allowed into the caller's folder
        out = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, cwd=self.root)
        if out.returncode != 0:
            raise PostgresError(
                f"{what} failed ({out.returncode}): "
                f"{(out.stderr or out.stdout).strip()}\n{self.log_tail()}"
            )


def create_database(server_url: str, name: str | None = None) -> str:
    """Create a database (a fresh ``vitbench_...`` name by default) and return its URL."""
    import psycopg

    name = name or "vitbench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server_url + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{server_url}/{name}"


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (closing its connections first)."""
    import psycopg

    server_url, name = url.rsplit("/", 1)
    with psycopg.connect(server_url + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _started_cluster() -> PostgresCluster:
    if not binaries_available():
        pytest.fail(MISSING_BINARIES)
    cluster = PostgresCluster()
    try:
        cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


@pytest.fixture(scope="session")
def postgres_server():
    """Yields a server URL (without a database)."""
    url = os.environ.get("VITBENCH_TEST_POSTGRES_URL")
    if url:
        yield url.rstrip("/")
        return
    cluster = _started_cluster()
    try:
        yield cluster.url
    finally:
        cluster.cleanup()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh database on the server, dropped afterwards."""
    url = create_database(postgres_server)
    yield url
    drop_database(url)


@pytest.fixture
def private_postgres():
    """A started :class:`PostgresCluster` of this test's own (never the shared server, even
    when $VITBENCH_TEST_POSTGRES_URL is set): the test may stop or restart it. Removed after
    the test."""
    cluster = _started_cluster()
    try:
        yield cluster
    finally:
        cluster.cleanup()
