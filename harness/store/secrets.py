"""Store URLs and messages without their secrets.

libpq takes a password in four places: the URL's user info (``postgresql://u:pw@h/db``), the
URL's query (``?password=pw``, also ``sslpassword``), a key=value connection string
(``host=h password='p w'``) and ``$PGPASSWORD``. Every message vitbench makes about a store
goes through :func:`redact` with the secrets of that store, so none of them reaches a terminal,
a log, a report or the store itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
_SECRET_KEYS = ("password", "sslpassword")
# user:password@ in any URL in the text
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s]*)(@)", re.IGNORECASE)
# password=... as a URL query parameter or a key=value pair (quoted with '' and \ escapes)
_KEY_VALUE = re.compile(
    r"\b(" + "|".join(_SECRET_KEYS) + r")(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'#;,]+)",
    re.IGNORECASE,
)
# a literal secret shorter than this is masked only where it stands as a password (above):
# masking every "ab" in a message would make it unreadable without hiding anything
_MIN_LITERAL = 4


def is_dsn(text: str) -> bool:
    """A libpq key=value connection string (``host=h dbname=d ...``)."""
    return bool(re.match(r"^\s*[a-z_]+\s*=", text)) and "://" not in text


def secrets_of(url: str) -> list[str]:
    """The passwords a store URL or connection string carries (:func:`redact` masks
    $PGPASSWORD by itself)."""
    found: list[str] = []
    if "://" in url:
        try:
            parts = urlsplit(url)
            if parts.password:
                found += [parts.password, unquote(parts.password)]
            found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_KEYS]
        except ValueError:
            pass
    for m in _KEY_VALUE.finditer(url):
        value = m.group(3)
        found.append(value)
        if value.startswith("'"):
            found.append(re.sub(r"\\(.)", r"\1", value.strip("'")))
    return sorted({s for s in found if s}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every password form libpq accepts masked, and each of ``secrets`` (and
    $PGPASSWORD) wherever it appears."""
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + m.group(3), str(text))
    text = _KEY_VALUE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    literal = set(secrets)
    if os.environ.get("PGPASSWORD"):
        literal.add(os.environ["PGPASSWORD"])
    for secret in sorted(literal, key=len, reverse=True):
        if len(secret) >= _MIN_LITERAL and secret != MASK:
            text = text.replace(secret, MASK)
    return text
