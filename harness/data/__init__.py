"""Medical image data sets, read from their native layouts, and the shared preprocessing.

Two functions are all most code needs::

    from harness.data import load_dataset, preprocess
    test = load_dataset("data/CheXpert-v1.0-small", split="test", uncertain="ones")
    x = preprocess(test.images(), img_size=model.config.img_size, in_chans=model.config.in_chans)
    # or simply: x = test.inputs(model.config.img_size, model.config.in_chans)

``load_dataset(spec, split)`` takes a path (the layout is detected), ``layout:path``
(``chexpert``, ``aptos2019``, ``isic2019``, ``busi``, ``medmnist``, ``folder``) or a data set
shipped with vitbench, ``builtin:NAME`` (``builtin:pneumonia``), and returns a
:class:`Dataset` (labels, task kind, metric name, image paths or arrays). ``preprocess`` is the
only place images become model input (resize, grey/colour to ``in_chans``, normalisation):
training, evaluation, export calibration and on-device accuracy all go through it.
``check_images(*splits)`` lists, in one error, every image of those splits that cannot be read
(cheaply: headers, PNG checksums, JPEG end markers); commands call it before work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.data.dataset import (
    MEAN,
    SPLITS,
    STD,
    DataError,
    Dataset,
    ImageTooLarge,
    check_images,
    preprocess,
    read_image,
    stratified_split,
)
from harness.data.readers import READERS, detect_layout


def parse_spec(spec: str | Path) -> tuple[str | None, Path]:
    s = str(spec)
    head, sep, rest = s.partition(":")
    if sep and head == "builtin":
        from harness.data.builtin import builtin_data

        return builtin_data(rest)
    if sep and head in READERS:
        return head, Path(rest)
    return None, Path(s)


def load_dataset(spec: str | Path, split: str = "test", **options: Any) -> Dataset:
    """One split (``train``, ``val`` or ``test``) of the data set at ``spec``.

    ``spec`` is a path, or ``layout:path`` to name the layout. ``options`` go to the reader:
    CheXpert takes ``uncertain`` (``ones``/``zeros``/``ignore``) and ``frontal_only``;
    MedMNIST takes ``task`` (``ordinal`` for graded labels).
    """
    layout, path = parse_spec(spec)
    if not path.exists():
        raise DataError(f"data set {path} does not exist")
    if layout is None:
        layout = detect_layout(path)
    options = {k: v for k, v in options.items() if v is not None}
    if layout != "chexpert":
        for name in ("uncertain", "frontal_only"):
            if options.pop(name, False) and name == "frontal_only":
                raise DataError(f"--frontal-only applies to CheXpert, not to the {layout} layout")
    return READERS[layout](path, split, **options)


__all__ = [
    "MEAN",
    "READERS",
    "SPLITS",
    "STD",
    "DataError",
    "Dataset",
    "ImageTooLarge",
    "check_images",
    "detect_layout",
    "load_dataset",
    "parse_spec",
    "preprocess",
    "read_image",
    "stratified_split",
]
