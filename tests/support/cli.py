"""Assertions about what the command line prints."""

from __future__ import annotations


def assert_one_line_error(code, out, *fragments):
    """A usage error: exit 2, no traceback, one line `vitbench: error: ...` holding every
    fragment."""
    assert code == 2, out
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitbench: error: "), out
    for f in fragments:
        assert f in lines[0], lines[0]
