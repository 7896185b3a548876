"""The plugin registry: every exporter, target, report writer and vendor subcommand, built-in
or third-party, found through the same entry-point groups.

=============  ======================  ==========================================
kind           entry-point group       an entry names
=============  ======================  ==========================================
exporter       ``vitbench.exporters``  a subclass of :class:`harness.exporters.Exporter`
target         ``vitbench.targets``    a subclass of :class:`harness.target.Target`
reporter       ``vitbench.reporters``  a subclass of :class:`harness.reporting.Reporter`
command        ``vitbench.commands``   a click command or group (``vitbench NAME ...``)
=============  ======================  ==========================================

vitbench's own plugins are declared in its ``pyproject.toml`` like anyone's, so the core
names no module of ``targets/`` or ``reports/``. Entries are imported only when used: listing
them stays fast and a plugin whose SDK is missing fails alone, with its reason. An entry point
names a class (instantiated with no arguments) or an instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from harness.errors import UserError

GROUPS = {
    "exporter": "vitbench.exporters",
    "target": "vitbench.targets",
    "reporter": "vitbench.reporters",
    "command": "vitbench.commands",
}
BUILTIN_DIST = "vitbench"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    kind: str  # "exporter", "target", "reporter", "command"
    source: str  # "built-in" or the distribution that provides it
    ref: str  # "module:attribute"
    available: bool
    reason: str  # why not available, "" when it is


def _contract(kind: str) -> type | None:
    if kind == "exporter":
        from harness.exporters import Exporter

        return Exporter
    if kind == "target":
        from harness.target import Target

        return Target
    if kind == "reporter":
        from harness.reporting import Reporter

        return Reporter
    return None


def _source(ep: EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "entry point"
    return "built-in" if dist.name == BUILTIN_DIST else dist.name


def _entry_points(kind: str) -> dict[str, EntryPoint]:
    """Name -> entry point; vitbench's own first, in the order pyproject.toml declares them."""
    if kind not in GROUPS:
        raise ValueError(f"unknown plugin kind {kind!r}")
    eps = list(entry_points(group=GROUPS[kind]))
    order = sorted(range(len(eps)), key=lambda i: (_source(eps[i]) != "built-in", i))
    out: dict[str, EntryPoint] = {}
    for i in order:
        out.setdefault(eps[i].name, eps[i])
    return out


def names(kind: str) -> list[str]:
    return list(_entry_points(kind))


def _instantiate(obj: Any) -> Any:
    return obj() if isinstance(obj, type) else obj


def load(kind: str, name: str) -> Any:
    """The plugin instance called ``name``; one clear line for an unknown or broken one."""
    eps = _entry_points(kind)
    if name not in eps:
        raise UserError(f"unknown {kind} {name!r}; available: {', '.join(eps) or 'none'}")
    ep = eps[name]
    if _source(ep) == "built-in":  # our own: an import error is a bug or a missing SDK
        obj = _instantiate(ep.load())
    else:
        try:
            obj = _instantiate(ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken third-party plugin is reported, not raised
            raise UserError(f"{kind} plugin {name!r} ({ep.value}) failed to load: {exc}") from None
    contract = _contract(kind)
    if contract is not None and not isinstance(obj, contract):
        raise UserError(
            f"{kind} plugin {name!r} ({ep.value}) is not a {contract.__module__}."
            f"{contract.__qualname__}; subclass it"
        )
    return obj


def describe(kind: str) -> list[PluginInfo]:
    """Every plugin of ``kind`` with whether it can be used here and, if not, why."""
    out = []
    for name, ep in _entry_points(kind).items():
        try:
            plugin = load(kind, name)
            reason = plugin.unavailable_reason() if kind in ("exporter", "target") else ""
        except UserError as exc:
            reason = str(exc)
        except ImportError as exc:
            reason = f"cannot import: {exc}"
        out.append(PluginInfo(name, kind, _source(ep), ep.value, not reason, reason))
    return out


def exporter(name: str) -> Any:
    return load("exporter", name)


def target(name: str) -> Any:
    return load("target", name)


def commands() -> dict[str, EntryPoint]:
    """Subcommands plugins add to ``vitbench`` (loaded when the CLI starts)."""
    return _entry_points("command")
