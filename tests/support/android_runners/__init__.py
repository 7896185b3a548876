"""Stand-ins for the runners vitbench pushes to a phone (ExecuTorch's executor_runner, ONNX
Runtime's onnxruntime_perf_test), installed as executables, and ELF headers for ABI checks."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

RUNNERS = Path(__file__).parent


def install_runners(dest: Path) -> dict[str, Path]:
    """The stand-in runners as executables whose #! line is this Python (they import numpy)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for src, name in (
        ("executor_runner.py", "executor_runner"),
        ("onnxruntime_perf_test.py", "onnxruntime_perf_test"),
    ):
        text = (
            (RUNNERS / src).read_text().replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1)
        )
        p = dest / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        out[name] = p
    return out


def elf_file(path: Path, machine: int, bits: int = 64) -> Path:
    """A file with just an ELF header for ``machine`` (183 aarch64, 62 x86-64; 40 arm with
    ``bits=32``)."""
    head = bytearray(64 if bits == 64 else 52)
    head[:4] = b"\x7fELF"
    head[4], head[5], head[6] = 2 if bits == 64 else 1, 1, 1  # class, little-endian, version 1
    head[16:18] = (2).to_bytes(2, "little")  # ET_EXEC
    head[18:20] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(head))
    os.chmod(path, 0o755)
    return path
