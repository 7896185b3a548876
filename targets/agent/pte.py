"""What an ExecuTorch program declares, read straight from its .pte flatbuffer.

The agent needs two facts before and after it loads a program: which backends its first
execution plan is delegated to (to refuse, by name, a program this runtime cannot run) and the
planned (non-constant) memory the plan declares. ``executorch.exir``'s deserializer has both,
but importing it imports all of exir (torch._dynamo and more: about 3 s on a busy core), which
every round of every ExecuTorch cell would pay inside its measured import time. This reader
walks the few tables it needs with the ``flatbuffers`` runtime (a dependency of executorch
and onnxruntime alike) over a memory map of the file, so the weights are never copied.

The field indices are those of ``executorch/schema/program.fbs`` (Program, ExecutionPlan,
BackendDelegate); tests check the reader against exir's deserializer on exported programs.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

IDENTIFIER = b"ET12"  # the schema's file_identifier, bytes 4-8 of every .pte

# field index -> vtable slot: 4 + 2 * index
_PROGRAM_EXECUTION_PLAN = 1
_PLAN_NAME, _PLAN_DELEGATES, _PLAN_NON_CONST_BUFFER_SIZES = 0, 7, 8
_DELEGATE_ID = 0


@dataclass(frozen=True)
class PlanFacts:
    name: str
    delegates: tuple[str, ...]
    non_const_buffer_sizes: tuple[int, ...]

    @property
    def planned_memory_bytes(self) -> int:
        return int(sum(self.non_const_buffer_sizes))


class PteError(ValueError):
    """The file is not an ExecuTorch program this reader understands."""


def _slot(index: int) -> int:
    return 4 + 2 * index


def _vector(table, index: int) -> tuple[int, int]:
    """(start of the elements, length) of a vector field; (0, 0) when absent."""
    o = table.Offset(_slot(index))
    if not o:
        return 0, 0
    return table.Vector(o), table.VectorLen(o)


def _string(table, index: int) -> str:
    o = table.Offset(_slot(index))
    return table.String(o + table.Pos).decode("utf-8", "replace") if o else ""


def _table_at(table, element_pos: int):
    from flatbuffers.table import Table

    return Table(table.Bytes, table.Indirect(element_pos))


def read_plan(buf) -> PlanFacts:
    """The first execution plan's name, delegate ids and planned buffer sizes of a .pte held in
    ``buf`` (bytes, or a memory map)."""
    if len(buf) < 8 or bytes(buf[4:8]) != IDENTIFIER:
        raise PteError(f"not an ExecuTorch program (no {IDENTIFIER.decode()} identifier)")
    try:
        return _read_plan(buf)
    except PteError:
        raise
    except (TypeError, ValueError, IndexError, struct.error) as exc:  # offsets out of the file
        raise PteError(f"a malformed ExecuTorch program ({type(exc).__name__}: {exc})") from exc


def _read_plan(buf) -> PlanFacts:
    from flatbuffers import number_types as N
    from flatbuffers.table import Table

    root = Table(buf, N.UOffsetTFlags.py_type(int.from_bytes(buf[0:4], "little")))
    start, count = _vector(root, _PROGRAM_EXECUTION_PLAN)
    if count == 0:
        raise PteError("the program has no execution plan")
    plan = _table_at(root, start)  # the first plan: the one the runtime's "forward" is
    d_start, d_count = _vector(plan, _PLAN_DELEGATES)
    delegates = tuple(
        _string(_table_at(plan, d_start + 4 * i), _DELEGATE_ID) for i in range(d_count)
    )
    s_start, s_count = _vector(plan, _PLAN_NON_CONST_BUFFER_SIZES)
    sizes = tuple(plan.Get(N.Int64Flags, s_start + 8 * i) for i in range(s_count))
    return PlanFacts(_string(plan, _PLAN_NAME), delegates, sizes)


def read_plan_file(path: str) -> PlanFacts:
    """:func:`read_plan` over a memory map of the file at ``path``."""
    with open(path, "rb") as fh:
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # an empty file cannot be mapped
            raise PteError(f"not an ExecuTorch program ({exc})") from exc
        try:
            return read_plan(mm)
        finally:
            mm.close()
