"""The results store: :func:`open_store` gives a :class:`Store` on a SQLite file or a
PostgreSQL server; :mod:`harness.store.spool` keeps finished cells safe while it is away."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from harness.store.connection import StoreError, StoreUnavailable, is_postgres, while_away
from harness.store.database import FAILURE_KINDS, CellOutcome, CellRecord, Store
from harness.store.schema import SCHEMA_VERSION
from harness.store.secrets import redact

__all__ = [
    "DEFAULT_STORE",
    "FAILURE_KINDS",
    "SCHEMA_VERSION",
    "CellOutcome",
    "CellRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "redact",
    "store_url",
]

DEFAULT_STORE = "vitbench-results.db"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def store_url(url: str | Path | None = None) -> str:
    """The store a command uses: ``url``, else $VITBENCH_STORE, else ./vitbench-results.db."""
    return str(url or os.environ.get("VITBENCH_STORE") or DEFAULT_STORE)


def open_store(
    url: str | Path | None = None, *, readonly: bool = False, patience_s: float = 0.0
) -> Store:
    """A store from a URL (``postgresql://user@host/db``, ``sqlite:///path``), a libpq
    key=value string (``host=h dbname=d``) or a file path. Default: $VITBENCH_STORE, else
    ./vitbench-results.db. ``readonly``: for commands that only read (never writes, not even
    a schema migration). ``patience_s``: how long to keep trying a store that is away."""
    url = store_url(url)
    if _SCHEME.match(url) and not url.startswith(("sqlite:", "postgresql://", "postgres://")):
        raise StoreError(
            f"unsupported store URL {redact(url)}: use a file path, sqlite:///PATH or "
            "postgresql://..."
        )
    if not is_postgres(url) and readonly:
        path = Path(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
        if not path.is_file():
            raise StoreError(
                f"no results store at {path}; pass --store or set VITBENCH_STORE "
                "(`vitbench run` creates one)"
            )
    deadline = time.monotonic() + patience_s
    return while_away(lambda: Store(url, readonly=readonly), lambda: deadline)
