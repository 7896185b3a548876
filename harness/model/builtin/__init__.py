"""The built-in X-ray pair: ``xray-teacher`` and ``xray-student``, a teacher and its 8x smaller
student that vitbench itself trained (`vitbench train`) and compressed (`vitbench compress`)
on the chest X-rays it ships (``builtin:pneumonia``), seeded. Beside the weights,
``MODEL_CARD.md`` (and ``card.json``) give the exact commands, the data hash, the parameter
counts and the validation and test metrics with their intervals; ``python -m
harness.model.builtin.build`` (``nox -s builtin-models``) rebuilds them and checks the result
against the card.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
CARD_JSON = HERE / "card.json"

TRAINED: dict[str, str] = {
    "xray-teacher": "built-in X-ray teacher, trained on builtin:pneumonia (MODEL_CARD.md)",
    "xray-student": "built-in X-ray student, xray-teacher compressed 8x (MODEL_CARD.md)",
}


def trained_path(name: str) -> Path:
    """The checkpoint folder of the trained preset ``name``."""
    return HERE / name
