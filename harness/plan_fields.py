"""Reading a TOML table field by field for plans: each value checked against its kind, and an
error that names the field, its line in the file and what is allowed."""

from __future__ import annotations

import re
from typing import Any

from harness.errors import UserError


class PlanError(UserError):
    """A plan that does not validate: field, line and what is allowed."""


class Locator:
    """Finds the line of a field in TOML text, for error messages."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def line(self, path: tuple[Any, ...]) -> int | None:
        # path like ("exports", 1, "precision") or ("budgets", "latency_ms")
        tables = [p for p in path if isinstance(p, str)]
        key = tables[-1] if tables else None
        section = ".".join(tables[:-1]) if len(tables) > 1 else ""
        index = next((p for p in path if isinstance(p, int)), None)
        current, count = "", -1
        for no, raw in enumerate(self.lines, 1):
            line = raw.strip()
            m = re.match(r"^\[\[\s*([\w.]+)\s*\]\]", line) or re.match(r"^\[\s*([\w.]+)\s*\]", line)
            if m:
                current = m.group(1)
                if current == section and line.startswith("[["):
                    count += 1
                continue
            if (
                key
                and current == section
                and (index is None or count == index)
                and re.match(rf"^{re.escape(key)}\s*=", line)
            ):
                return no
        # the table itself
        for no, raw in enumerate(self.lines, 1):
            if re.match(rf"^\[\[?\s*{re.escape('.'.join(tables))}\s*\]\]?", raw.strip()):
                return no
        return None


class Reader:
    def __init__(self, source: str, text: str):
        self.source = source
        self.loc = Locator(text)

    def fail(self, path: tuple[Any, ...], message: str) -> PlanError:
        name = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
        line = self.loc.line(path)
        where = f"{self.source}:{line}" if line else self.source
        return PlanError(f"{where}: {name}: {message}")

    def table(
        self,
        data: dict[str, Any],
        path: tuple[Any, ...],
        allowed: dict[str, Any],
        required: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise self.fail((*path, unknown[0]), f"unknown field; allowed: {', '.join(allowed)}")
        for r in required:
            if r not in data:
                raise self.fail(path, f"missing required field {r!r}")
        out = {}
        for k, v in data.items():
            out[k] = self.value(v, (*path, k), allowed[k])
        return out

    def value(self, v: Any, path: tuple[Any, ...], kind: Any) -> Any:
        if isinstance(kind, tuple) and all(isinstance(k, (str, int)) for k in kind):  # enumeration
            if v not in kind:
                raise self.fail(path, f"{v!r} is not allowed; one of {', '.join(map(str, kind))}")
            return v
        ok, convert, wanted = KINDS[kind]
        if not ok(v):
            raise self.fail(path, f"must be {wanted}, got {v!r}")
        return convert(v)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _same(v: Any) -> Any:
    return v


# kind -> (accepts, convert, what the error says is wanted)
KINDS: dict[str, tuple[Any, Any, str]] = {
    "posint": (lambda v: _integer(v) and v >= 1, _same, "a positive integer"),
    "nonnegint": (lambda v: _integer(v) and v >= 0, _same, "an integer >= 0"),
    "posfloat": (lambda v: _number(v) and v > 0, float, "a positive number"),
    "nonnegfloat": (lambda v: _number(v) and v >= 0, float, "a number >= 0"),
    "fraction": (lambda v: _number(v) and 0 < v <= 1, float, "a fraction in (0, 1]"),
    "unitinterval": (lambda v: _number(v) and 0 <= v <= 1, float, "a fraction in [0, 1]"),
    "str": (lambda v: isinstance(v, str) and bool(v), _same, "a non-empty string"),
    "bool": (lambda v: isinstance(v, bool), _same, "true or false"),
    "strlist": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
        tuple,
        "a list of strings",
    ),
    "dict": (lambda v: isinstance(v, dict), _same, "a table"),
}
