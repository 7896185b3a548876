"""One connection to a results database: dialect, transactions, the schema check, and what a
lost connection looks like.

A store opened for writing moves its schema forward (under a lock, so writers that open a new
store together create it once); one opened for reading never writes, not even the version
table, so a role with only read rights can read. Every message names the store by its
redacted URL: no password reaches a terminal or a log.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from harness.errors import UserError
from harness.store.schema import MIGRATIONS, READABLE_FROM, SCHEMA_VERSION
from harness.store.secrets import is_dsn, redact, secrets_of

# any constant works: it names vitbench's schema lock among the server's advisory locks
_MIGRATION_LOCK = 0x76697462  # "vitb"
# SQLite errors that say the file cannot be used now rather than that the SQL is wrong
T = TypeVar("T")
_SQLITE_AWAY = ("locked", "disk i/o", "unable to open", "disk is full", "busy")


class StoreError(UserError):
    """A store that cannot be reached, read or written."""


class StoreUnavailable(StoreError):
    """The store's connection was lost or refused; what was being written was not
    committed. A writer may reconnect and write it again (every write is idempotent)."""


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://")) or is_dsn(url)


_FIRST_BACKOFF_S, _MAX_BACKOFF_S = 0.25, 10.0


def while_away(
    fn: Callable[[], T],
    give_up_at: Callable[[], float],
    *,
    between: Callable[[], None] | None = None,
    on_away: Callable[[StoreUnavailable], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``fn()``, tried again with backoff (0.25 s doubling to 10 s) while it raises
    StoreUnavailable, until the next wait would pass ``give_up_at()`` (monotonic time, asked
    each time, so a caller may set its deadline late); then the last StoreUnavailable.
    ``between`` runs after each wait (a reconnect: its own StoreUnavailable is one more
    try). ``fn`` must be idempotent."""
    delay = _FIRST_BACKOFF_S
    while True:
        try:
            return fn()
        except StoreUnavailable as exc:
            if on_away is not None:
                on_away(exc)
            if time.monotonic() + delay > give_up_at():
                raise
        sleep(delay)
        delay = min(_MAX_BACKOFF_S, delay * 2)
        if between is not None:
            try:
                between()
            except StoreUnavailable as exc:
                if on_away is not None:
                    on_away(exc)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """A connection with the store's dialect and schema rules. ``readonly`` opens it for
    reading only (PostgreSQL: a read-only session; SQLite: ``mode=ro``)."""

    def __init__(self, url: str, readonly: bool = False):
        self.url = url
        self.readonly = readonly
        self.dialect = "postgresql" if is_postgres(url) else "sqlite"
        self._secrets = secrets_of(url)
        self.label = redact(url, self._secrets)
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._check_schema()

    def redact(self, text: str) -> str:
        """``text`` without this store's secrets."""
        return redact(text, self._secrets)

    # -- connection --------------------------------------------------------------------
    def _connect(self):
        if self.dialect == "postgresql":
            return self._connect_postgres()
        path = Path(self.url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if path.parent and not path.parent.exists():
            raise StoreError(f"cannot open store {path}: folder {path.parent} does not exist")
        try:
            if self.readonly:
                conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=60,
                    check_same_thread=False,
                    isolation_level=None,
                )
            else:
                conn = sqlite3.connect(
                    str(path), timeout=60, check_same_thread=False, isolation_level=None
                )
                _wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        return conn

    def _connect_postgres(self):
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                "a PostgreSQL store needs psycopg: pip install 'psycopg[binary]'"
            ) from None
        try:
            conn = psycopg.connect(self.url, autocommit=False, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot reach store {self.label}: {self.redact(first_line(exc))}"
            ) from None
        if self.readonly:
            conn.read_only = True
        return conn

    def reconnect(self) -> None:
        """Drop the connection and open a new one (raises StoreUnavailable while the store
        is away)."""
        with self._lock:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - a dead connection may not even close
                pass
            self._conn = self._connect()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _is_away(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the store is unreachable now (not that the SQL is wrong)."""
        if isinstance(exc, StoreUnavailable):
            return True
        if self.dialect == "postgresql":
            import psycopg

            return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
        if isinstance(exc, sqlite3.OperationalError):
            return any(word in str(exc).lower() for word in _SQLITE_AWAY)
        return False

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"store {self.label} unavailable: {self.redact(first_line(exc))}")

    # -- dialect -----------------------------------------------------------------------
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
        the cell it was writing). A lost connection comes out as StoreUnavailable."""
        with self._lock:
            try:
                if self.dialect == "sqlite":
                    self._conn.execute("BEGIN IMMEDIATE")
                    yield self._conn.cursor()
                    self._conn.execute("COMMIT")
                else:
                    with self._conn.cursor() as cur:
                        yield cur
                    self._conn.commit()
            except BaseException as exc:
                self._rollback_quietly()
                if self._is_away(exc) and not isinstance(exc, StoreUnavailable):
                    raise self._unavailable(exc) from exc
                raise

    def _rollback_quietly(self) -> None:
        try:
            if self.dialect == "sqlite":
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            else:
                self._conn.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone; the error that got us here counts
            pass

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                cur = self._conn.cursor()
                try:
                    cur.execute(self._sql(sql), tuple(params))
                    cols = [d[0] for d in cur.description]
                    rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
                finally:
                    cur.close()
                if self.dialect == "postgresql":
                    self._conn.commit()  # end the read transaction
            except Exception as exc:
                self._rollback_quietly()
                if self._is_away(exc):
                    raise self._unavailable(exc) from exc
                raise
            return rows

    # -- schema ------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version written in the store (0: none), read without writing."""
        if self.dialect == "postgresql":
            found = self._query("SELECT to_regclass('vitbench_schema') IS NOT NULL AS present")
            present = bool(found[0]["present"])
        else:
            present = bool(
                self._query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name = 'vitbench_schema'"
                )
            )
        if not present:
            return 0
        rows = self._query("SELECT version FROM vitbench_schema")
        return int(rows[0]["version"]) if rows else 0

    def _check_schema(self) -> None:
        try:
            version = self.schema_version()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.label} is not a vitbench store: {exc}") from None
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.label} has schema version {version}, newer than this vitbench "
                f"understands ({SCHEMA_VERSION}); upgrade vitbench"
            )
        self.version = version
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            if version >= READABLE_FROM:
                return  # read as it is: Store reads what an older schema lacks as its default
            if version == 0:
                raise StoreError(
                    f"store {self.label} holds no vitbench results yet (no schema); "
                    "`vitbench run` creates them"
                )
            raise StoreError(
                f"store {self.label} has schema version {version} and this vitbench reads "
                f"version {SCHEMA_VERSION}: a writing command (`vitbench run`) by a role "
                "that may change tables moves it forward"
            )
        self._migrate(version)

    def _migrate(self, version: int) -> None:
        try:
            with self.transaction() as cur:
                if self.dialect == "postgresql":  # writers opening a new store create it once
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                cur.execute("CREATE TABLE IF NOT EXISTS vitbench_schema (version INTEGER NOT NULL)")
                cur.execute("SELECT version FROM vitbench_schema")  # another may have migrated
                row = cur.fetchone()
                current = int(row[0]) if row else 0
                for statements in MIGRATIONS[current:]:
                    for stmt in statements:
                        cur.execute(self._ddl(stmt))
                cur.execute("DELETE FROM vitbench_schema")
                cur.execute(
                    self._sql("INSERT INTO vitbench_schema (version) VALUES (?)"),
                    (SCHEMA_VERSION,),
                )
            self.version = SCHEMA_VERSION
        except StoreError:
            raise
        except Exception as exc:
            if not _is_permission_error(exc):
                raise
            raise StoreError(
                f"store {self.label} needs its schema moved from version {version} to "
                f"{SCHEMA_VERSION} and this role may not change tables "
                f"({self.redact(first_line(exc))}); run `vitbench run` once as the store's "
                "owner"
            ) from None


def _wal(conn: sqlite3.Connection, give_up_s: float = 30.0) -> None:
    """Switch a SQLite store to WAL. Writers creating a new store at the same instant race for
    the switch, and SQLite answers the loser "database is locked" at once, without waiting
    for its busy timeout: try again, briefly, for up to ``give_up_s``."""
    deadline, pause = time.monotonic() + give_up_s, 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _is_permission_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "readonly" in str(exc).lower()
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.errors.InsufficientPrivilege)
