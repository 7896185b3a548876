"""AI Hub devices as vitbench Devices, and the selectors that pick them.

A selector is a device name (``Samsung Galaxy S24 (Family)``), or an attribute the hub
reports (``chipset:qualcomm-snapdragon-8gen3``, ``vendor:samsung``), optionally followed by
``@`` and an OS version or right-open range (``@14``, ``@[14,15)``, ``@[15,)``). Each selector
picks one device: of those that match, the one with the newest OS (what the hub itself
picks). A selector that matches nothing names the closest devices or chipsets.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.target import Device

TARGET = "aihub"

# What the hub compiles to, and the framework attribute a device needs for it.
RUNTIMES: dict[str, str] = {
    "tflite": "framework:tflite",
    "qnn_dlc": "framework:qnn",
    "qnn_context_binary": "framework:qnn",
    "onnx": "framework:onnx",
    "precompiled_qnn_onnx": "framework:onnx",
}


class DeviceSelectionError(UserError):
    """A selector that matches no device the hub offers."""


def _version_key(v: str) -> tuple:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(v))
    except InvalidVersion:
        return (0, v)


def os_matches(os_version: str, spec: str) -> bool:
    """Whether ``os_version`` satisfies ``spec``: empty, an exact version, or a right-open
    interval ``[low,high)`` with either side optional (the hub's syntax)."""
    from packaging.version import InvalidVersion, Version

    spec = spec.strip()
    if not spec:
        return True
    if not spec.startswith("["):
        return os_version == spec or os_version.startswith(spec + ".")
    if not spec.endswith(")") or "," not in spec:
        raise DeviceSelectionError(
            f"OS range {spec!r} is not of the form [low,high) (either side may be empty)"
        )
    low, high = (s.strip() for s in spec[1:-1].split(",", 1))
    try:
        v = Version(os_version)
        return (not low or v >= Version(low)) and (not high or v < Version(high))
    except InvalidVersion as exc:
        raise DeviceSelectionError(f"OS range {spec!r}: {exc}") from None


def attribute(attrs: Iterable[str], prefix: str) -> str:
    """The value of the first ``prefix:value`` attribute ("" when absent)."""
    for a in attrs:
        if a.startswith(prefix + ":"):
            return a.split(":", 1)[1]
    return ""


def to_device(name: str, os_version: str, attrs: Sequence[str], soc: str = "") -> Device:
    """A hub device (name, OS version, attributes) as a vitbench :class:`Device`."""
    attrs = list(attrs)
    family = attribute(attrs, "os") or ""
    os_label = f"{family.capitalize()} {os_version}".strip() if family else os_version
    runtimes = [rt for rt, need in RUNTIMES.items() if need in attrs]
    return Device(
        target=TARGET,
        name=name,
        chipset=attribute(attrs, "chipset"),
        os=os_label,
        attributes={
            "os_version": os_version,
            "hub_attributes": attrs,
            "runtimes": runtimes,
            "soc": soc,
        },
    )


@dataclass(frozen=True)
class Selector:
    text: str
    what: str  # a device name or an attribute "key:value"
    os: str  # "" or a version / range

    @classmethod
    def parse(cls, text: str) -> Selector:
        what, _, os_spec = text.partition("@")
        what = what.strip()
        if not what:
            raise DeviceSelectionError(
                f"device selector {text!r} is empty; give a device name or chipset:NAME"
            )
        if os_spec:
            os_matches("0", os_spec)  # validates the range syntax
        return cls(text=text, what=what, os=os_spec.strip())

    @property
    def is_attribute(self) -> bool:
        return ":" in self.what and not self.what.endswith(")")

    def matches(self, device: Device) -> bool:
        attrs = device.attributes.get("hub_attributes", [])
        if self.is_attribute:
            hit = self.what.lower() in (a.lower() for a in attrs)
        else:
            hit = device.name.lower() == self.what.lower()
        return hit and os_matches(device.attributes.get("os_version", ""), self.os)


def _close_matches(selector: Selector, devices: Sequence[Device]) -> list[str]:
    if selector.is_attribute:
        key = selector.what.split(":", 1)[0].lower()
        pool = sorted(
            {
                a
                for d in devices
                for a in d.attributes.get("hub_attributes", [])
                if a.lower().startswith(key + ":")
            }
        )
    else:
        pool = sorted({d.name for d in devices})
    lowered = {p.lower(): p for p in pool}
    hits = difflib.get_close_matches(selector.what.lower(), list(lowered), n=4, cutoff=0.5)
    if not hits:  # substrings catch "S24" -> "Samsung Galaxy S24 (Family)"
        hits = [p for p in lowered if selector.what.lower() in p][:4]
    return [lowered[h] for h in hits]


def select(devices: Sequence[Device], selectors: Sequence[str]) -> list[Device]:
    """One device per selector (newest OS among the matches), in selector order, without
    duplicates."""
    out: list[Device] = []
    for text in selectors:
        sel = Selector.parse(text)
        hits = [d for d in devices if sel.matches(d)]
        if not hits:
            close = _close_matches(sel, devices)
            near = [d for d in devices if Selector(sel.text, sel.what, "").matches(d)]
            if near and sel.os:
                oses = ", ".join(
                    sorted({d.attributes.get("os_version", "") for d in near}, key=_version_key)
                )
                raise DeviceSelectionError(
                    f"no AI Hub device {sel.what!r} with OS {sel.os}; it has OS {oses}"
                )
            hint = (
                f"; did you mean {', '.join(repr(c) for c in close)}?"
                if close
                else "; `vitbench aihub devices` lists them"
            )
            kind = "chipset or attribute" if sel.is_attribute else "device"
            raise DeviceSelectionError(f"no AI Hub {kind} matches {sel.what!r}{hint}")
        best = max(hits, key=lambda d: (_version_key(d.attributes.get("os_version", "")), d.name))
        if best not in out:
            out.append(best)
    return out


def device_row(d: Device) -> dict[str, Any]:
    return {
        "name": d.name,
        "chipset": d.chipset,
        "os": d.os,
        "runtimes": d.attributes.get("runtimes", []),
        "soc": d.attributes.get("soc", ""),
    }
