"""The plugin registry: built-in exporters and targets, plus any installed package's, found
through the entry-point groups ``vitbench.exporters`` and ``vitbench.targets``.

Built-ins are named here as "module:attribute" and imported only when used, so listing
plugins stays fast and a plugin whose SDK is missing fails alone, with its reason.
An entry point names a class (instantiated with no arguments) or an instance.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from harness.errors import UserError

EXPORTER_GROUP = "vitbench.exporters"
TARGET_GROUP = "vitbench.targets"

BUILTIN_EXPORTERS: dict[str, str] = {
    "onnx": "harness.exporters.onnx:OnnxExporter",
    "executorch": "harness.exporters.executorch:ExecuTorchExporter",
    "coreml": "harness.exporters.coreml:CoreMLExporter",
    "pt2": "harness.exporters.pt2:PT2Exporter",
}

BUILTIN_TARGETS: dict[str, str] = {
    "host": "targets.host:HostTarget",
    "aihub": "targets.aihub:AIHubTarget",
    "android": "targets.android:AndroidTarget",
    "apple": "targets.apple:AppleTarget",
    "remote": "targets.remote:RemoteTarget",
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    kind: str  # "exporter" or "target"
    source: str  # "built-in" or the distribution that provides it
    ref: str  # "module:attribute"
    available: bool
    reason: str  # why not available, "" when it is


def _builtin(kind: str) -> dict[str, str]:
    return BUILTIN_EXPORTERS if kind == "exporter" else BUILTIN_TARGETS


def _group(kind: str) -> str:
    return EXPORTER_GROUP if kind == "exporter" else TARGET_GROUP


def _entry_points(kind: str) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=_group(kind))}


def names(kind: str) -> list[str]:
    return list(dict.fromkeys([*_builtin(kind), *_entry_points(kind)]))


def _instantiate(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


def load(kind: str, name: str) -> Any:
    """The plugin instance called ``name``; a clear error for an unknown one."""
    builtin = _builtin(kind)
    if name in builtin:
        module, attr = builtin[name].split(":")
        return _instantiate(getattr(importlib.import_module(module), attr))
    eps = _entry_points(kind)
    if name in eps:
        try:
            return _instantiate(eps[name].load())
        except Exception as exc:  # noqa: BLE001 - a broken third-party plugin is reported, not raised
            raise UserError(f"{kind} plugin {name!r} ({eps[name].value}) failed to load: {exc}") from None
    raise UserError(f"unknown {kind} {name!r}; available: {', '.join(names(kind)) or 'none'}")


def describe(kind: str) -> list[PluginInfo]:
    """Every plugin of ``kind`` with whether it can be used here and, if not, why. A plugin
    may define ``unavailable_reason() -> str`` ("" when usable)."""
    out = []
    eps = _entry_points(kind)
    for name in names(kind):
        if name in _builtin(kind):
            source, ref = "built-in", _builtin(kind)[name]
        else:
            dist = getattr(eps[name], "dist", None)
            source, ref = (dist.name if dist else "entry point"), eps[name].value
        try:
            plugin = load(kind, name)
            check = getattr(plugin, "unavailable_reason", None)
            reason = check() if callable(check) else ""
        except UserError as exc:
            reason = str(exc)
        except ImportError as exc:
            reason = f"cannot import: {exc}"
        out.append(PluginInfo(name, kind, source, ref, not reason, reason))
    return out


def exporter(name: str) -> Any:
    return load("exporter", name)


def target(name: str) -> Any:
    return load("target", name)
