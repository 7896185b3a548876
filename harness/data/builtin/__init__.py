"""Data sets shipped inside vitbench, named ``builtin:NAME`` wherever a data set is taken
(``--data builtin:pneumonia``, a plan's ``[accuracy] data``), so the default job and the
tests have real medical images without a download. Each is checked against its sha256
before it is read (a damaged install says so instead of giving wrong numbers)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from harness.data.dataset import DataError

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BuiltinData:
    name: str
    file: str
    layout: str
    sha256: str
    description: str
    licence: str

    @property
    def path(self) -> Path:
        return HERE / self.file


BUILTIN = {
    d.name: d
    for d in (
        BuiltinData(
            name="pneumonia",
            file="pneumoniamnist_balanced.npz",
            layout="medmnist",
            sha256="f36c2b3e34de9d60c5c734118bc6daff281eaf76b67a57d26ad958da948274b0",
            description="PneumoniaMNIST, class-balanced: 2428 / 270 / 468 chest X-rays, 28x28",
            licence="CC BY 4.0 (MedMNIST v2, Yang et al. 2023; Kermany et al. 2018)",
        ),
    )
}


@functools.cache
def _verified(name: str) -> Path:
    d = BUILTIN[name]
    try:
        digest = hashlib.sha256(d.path.read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"built-in data set {name} is missing from this install ({exc})") from None
    if digest != d.sha256:
        raise DataError(
            f"built-in data set {name} ({d.path}) is damaged: sha256 {digest[:12]}, expected "
            f"{d.sha256[:12]}; reinstall vitbench"
        )
    return d.path


def builtin_data(name: str) -> tuple[str, Path]:
    """(layout, verified path) of the built-in data set ``name``."""
    if name not in BUILTIN:
        raise DataError(
            f"unknown built-in data set {name!r}; built-in: "
            + ", ".join(f"builtin:{n}" for n in BUILTIN)
        )
    return BUILTIN[name].layout, _verified(name)
