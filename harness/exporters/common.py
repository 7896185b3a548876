"""What every exporter shares: the example input, the one ``torch.export`` program, the
input/output description for the manifest, tool versions and the FLOPs of a graph node.

torch is imported inside the functions, so ``harness.exporters.*`` modules import fast.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from harness.artifact import input_shape
from harness.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from harness.artifact import ExportSpec

INPUT_NAME = "pixels"
OUTPUT_NAME = "logits"


class LoweringError(UserError):
    """A model that an exporter cannot lower (an operator it does not support)."""

    kind = "model"


def example_input(model: Any, spec: ExportSpec) -> torch.Tensor:
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(input_shape(model, spec), generator=g)


def io_description(model: Any, spec: ExportSpec, dynamic_batch: bool = False) -> dict[str, Any]:
    """Input and output names, shapes and dtypes for the manifest."""
    import torch

    shape = list(input_shape(model, spec))
    with torch.no_grad():
        out = model(example_input(model, spec))
    out_shape = list(out.shape)
    if dynamic_batch:
        shape[0] = out_shape[0] = "batch"
    return {
        "inputs": [{"name": INPUT_NAME, "shape": shape, "dtype": "float32"}],
        "outputs": [{"name": OUTPUT_NAME, "shape": out_shape, "dtype": "float32"}],
    }


_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([^']+)'"),  # torch.onnx: No ONNX function found for ...
    re.compile(r"target=torch\.ops\.([A-Za-z0-9_]+\.[A-Za-z0-9_]+)"),
    re.compile(r"Unsupported fx node ([A-Za-z0-9_.]+)"),  # coremltools
    re.compile(
        r"\bop ['\"]([^'\"]+)['\"]"
    ),  # coremltools: convert function for op 'x' not implemented
    re.compile(r"\b(aten\.[A-Za-z0-9_]+)"),
    re.compile(r"\b(aten::[A-Za-z0-9_]+)"),
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(exc: BaseException, limit: int = 200) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit]


def operator_in(message: str) -> str | None:
    """The operator a lowering error names, if it names one."""
    for pat in _OP_PATTERNS:
        m = pat.search(message)
        if m:
            return m.group(1)
    return None


def lowering_error(what: str, exc: BaseException) -> LoweringError:
    """A one-line error for a model that ``what`` could not lower, naming the operator."""
    text = str(exc)
    cause = exc.__cause__
    while cause is not None:
        text += "\n" + str(cause)
        cause = cause.__cause__
    op = operator_in(text)
    if op:
        return LoweringError(
            f"{what} cannot lower this model: operator {op} is not supported ({type(exc).__name__})"
        )
    return LoweringError(f"{what} cannot lower this model: {type(exc).__name__}: {first_line(exc)}")


def export_program(model: Any, spec: ExportSpec, dynamic_batch: bool = False):
    """The one ``torch.export`` program of ``model`` every exporter starts from."""
    import torch

    x = example_input(model, spec)
    dynamic = None
    if dynamic_batch:  # trace with batch 2: a batch of 1 would be specialised away
        x = torch.cat([x, x]) if x.shape[0] == 1 else x
        dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},)
    try:
        return torch.export.export(model.eval(), (x,), dynamic_shapes=dynamic, strict=False)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is the model's, reported in one line
        raise lowering_error("torch.export", exc) from None


# -- FLOPs of the operators that matter on a ViT ------------------------------------------

MATMUL_OPS = ("linear", "addmm", "mm", "bmm", "matmul", "convolution", "conv2d", "baddbmm")


def _shape(node: Any) -> list[int] | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    shape = getattr(val, "shape", None)
    return [int(s) for s in shape] if shape is not None else None


def op_name(node: Any) -> str:
    """A short operator name: "linear", "bmm", "native_layer_norm", "getitem"."""
    target = node.target
    schema = getattr(target, "_schema", None)  # OpOverload
    if schema is None:  # an EdgeOpOverload wraps an OpOverload
        schema = getattr(getattr(target, "_op", None), "_schema", None)
    if schema is not None:
        return schema.name.split("::")[-1]
    return getattr(target, "__name__", None) or str(target)


def matmul_flops(node: Any) -> int:
    """Multiply-add FLOPs (2 per MAC) of a linear / matmul / convolution node, else 0."""
    if node.op != "call_function":
        return 0
    name = op_name(node)
    if name not in MATMUL_OPS:
        return 0
    out = _shape(node)
    args = [a for a in node.args if hasattr(a, "meta")]
    if out is None or not args:
        return 0
    numel_out = 1
    for s in out:
        numel_out *= s
    if name in ("linear",):
        k = (_shape(args[0]) or [0])[-1]
    elif name in ("addmm", "baddbmm"):
        k = (_shape(args[1]) or [0])[-1] if len(args) > 1 else 0
    elif name in ("mm", "bmm", "matmul"):
        k = (_shape(args[0]) or [0])[-1]
    else:  # convolution: weight (O, I/groups, kh, kw)
        w = _shape(args[1]) if len(args) > 1 else None
        k = 1
        for s in (w or [0])[1:]:
            k *= s
    return 2 * numel_out * int(k)


def histogram(names: Iterable[str]) -> dict[str, int]:
    """Operator counts, most frequent first."""
    return dict(sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0])))
