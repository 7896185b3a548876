"""Which runtimes an agent offers: the built-ins, plus third-party runtimes registered through
the ``vitbench.runtimes`` entry-point group where the agent runs on this machine.

An entry names a subclass of :class:`targets.agent.runtimes.Runtime` whose ``name`` is the
entry's name and whose ``formats`` are the artifact formats it runs::

    [project.entry-points."vitbench.runtimes"]
    torchscript = "vitbench_torchscript.runtime:TorchScriptRuntime"

The host target reads the same set (:func:`installed_runtimes`) to decide what it accepts.
The agent shipped to another host offers the built-ins only (:func:`builtin_runtimes`): what
is installed there is not what this machine's entry points name. A built-in name wins over a
plugin's; a plugin that fails to load is kept aside with the reason, never raised.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from targets.agent.coreml import CoreMLRuntime
from targets.agent.protocol import AgentError, first_line
from targets.agent.runtimes import ExecuTorchRuntime, OrtRuntime, Runtime, TorchRuntime

RUNTIME_GROUP = "vitbench.runtimes"
BUILTIN_RUNTIMES: tuple[type[Runtime], ...] = (
    OrtRuntime,
    ExecuTorchRuntime,
    TorchRuntime,
    CoreMLRuntime,
)
BUILTIN_NAMES = tuple(cls.name for cls in BUILTIN_RUNTIMES)


@dataclass(frozen=True)
class RuntimeSet:
    """Runtimes by name (built-ins first), and plugin entries that could not be used."""

    classes: dict[str, type[Runtime]]
    broken: dict[str, str] = field(default_factory=dict)  # entry name -> why

    def names(self) -> list[str]:
        return list(self.classes)

    def get(self, name: str) -> type[Runtime]:
        return self.classes[name]

    def for_format(self, fmt: str) -> list[str]:
        """The runtimes that run artifacts of ``fmt``, the default first."""
        return [name for name, cls in self.classes.items() if fmt in cls.formats]

    def formats(self) -> list[str]:
        out: list[str] = []
        for cls in self.classes.values():
            out += [f for f in cls.formats if f not in out]
        return out

    def open(
        self, name: str, settings: dict[str, Any], artifact_options: dict[str, Any] | None = None
    ) -> Runtime:
        """The runtime, or a refusal that says what to install on this host."""
        cls = self.classes[name]
        try:
            return cls(settings.get("threads"), settings.get("options") or {}, artifact_options)
        except ImportError as exc:
            package = "numpy" if exc.name == "numpy" else cls.requirement()
            raise AgentError(
                f"{package} is not installed for {sys.executable} on this host "
                f"({first_line(exc)}); install it there: {sys.executable} -m pip install {package}",
                "infrastructure",
            ) from None


def builtin_runtimes() -> RuntimeSet:
    return RuntimeSet({cls.name: cls for cls in BUILTIN_RUNTIMES})


def _plugin(ep: Any, taken: dict[str, type[Runtime]]) -> type[Runtime]:
    """The Runtime class an entry point names; ValueError says why it cannot be used."""
    if ep.name in taken:
        what = "a built-in runtime" if ep.name in BUILTIN_NAMES else "taken by another plugin"
        raise ValueError(f"the name {ep.name!r} is already {what}")
    obj = ep.load()
    if not (isinstance(obj, type) and issubclass(obj, Runtime)):
        raise ValueError(f"{ep.value} is not a subclass of targets.agent.runtimes.Runtime")
    if obj.name != ep.name:
        raise ValueError(f"{ep.value} is called {obj.name!r}, its entry point {ep.name!r}")
    if not obj.formats:
        raise ValueError(f"{ep.value} names no artifact formats")
    return obj


def installed_runtimes() -> RuntimeSet:
    """The built-ins plus the ``vitbench.runtimes`` entry points this Python sees."""
    classes = dict(builtin_runtimes().classes)
    broken: dict[str, str] = {}
    for ep in sorted(entry_points(group=RUNTIME_GROUP), key=lambda e: e.name):
        try:
            classes[ep.name] = _plugin(ep, classes)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not raised
            broken[ep.name] = f"{ep.value}: {first_line(exc)}"
    return RuntimeSet(classes, broken)
