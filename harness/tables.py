"""Plain-text tables for the terminal (no dependency, stable for tests and CI logs)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def format_table(
    rows: Iterable[Sequence[Any]], headers: Sequence[str], align: str | None = None
) -> str:
    """Columns padded to their widest cell; ``align`` is one of 'l'/'r' per column
    (numbers right-aligned by default)."""
    rows = [list(r) for r in rows]
    if align is None:
        align = "".join(
            "r"
            if rows and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
            else "l"
            for i in range(len(headers))
        )
    text = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(cells, widths, align, strict=False)
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep] + [line(r) for r in text])
