"""A labelled image set and the one preprocessing every stage shares.

:class:`Dataset` is what every reader returns: the images (file paths, or arrays for
MedMNIST), their labels, the task kind and the metric that scores it. :func:`preprocess` turns
decoded images into the model's input (resize, grey/colour to the model's channels,
normalisation); training, evaluation, export calibration and on-device accuracy all call it,
so a model sees the same pixels wherever it runs.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")

# Normalisation after scaling pixels to [0, 1]: ImageNet statistics for colour (what timm
# weights expect), 0.5 / 0.5 for grey (maps [0, 1] to [-1, 1]).
MEAN = {3: (0.485, 0.456, 0.406), 1: (0.5,)}
STD = {3: (0.229, 0.224, 0.225), 1: (0.5,)}


class DataError(UserError):
    """A data set that is missing, in the wrong layout, or does not fit the model."""


class ImageTooLarge(ValueError):
    """An image over PIL's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``, its guard against
    decompression bombs)."""


# What PIL raises for a file that is not an image, or a damaged one.
CORRUPT = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error)
LISTED = 10  # unreadable images named in the error; the count is always exact


@dataclass(frozen=True)
class Dataset:
    """One split of a data set.

    ``labels`` is (N,) int64 class indices for ``multiclass`` and ``ordinal`` tasks, or (N, K)
    float32 in {0, 1} with NaN for "ignore" (CheXpert's U-Ignore) for ``multilabel``.
    ``items`` holds a file path per image, or the images themselves (uint8 arrays).
    """

    layout: str  # "chexpert", "aptos2019", "isic2019", "busi", "medmnist", "folder"
    root: Path
    split: str
    task: str  # "multiclass", "multilabel", "ordinal"
    metric: str  # a name in harness.metrics.METRICS
    classes: tuple[str, ...]
    labels: np.ndarray
    items: Sequence[Any] = field(repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        idx = np.asarray(indices, dtype=np.int64)
        items = (
            self.items[idx] if isinstance(self.items, np.ndarray) else [self.items[i] for i in idx]
        )
        return replace(self, labels=self.labels[idx], items=items)

    def images(self) -> list[np.ndarray]:
        """Every image decoded (uint8, H x W or H x W x C). Files that are missing or cannot
        be decoded are all listed in one error (as :func:`check_images` lists them); none is
        skipped."""
        if isinstance(self.items, np.ndarray):
            return list(self.items)
        out, bad = [], []
        for item in self.items:
            try:
                out.append(read_image(item))
            except CORRUPT as exc:
                bad.append((self, item, why_unreadable(exc, item)))
        if bad:
            raise unreadable_error(bad)
        return out

    def inputs(self, img_size: int, in_chans: int) -> np.ndarray:
        """The model's input for every image: float32 (N, in_chans, img_size, img_size)."""
        return preprocess(self.images(), img_size, in_chans)

    def check_fits(self, config: Any) -> None:
        """One line if this data set's labels do not fit the model's head."""
        if config.num_classes != self.num_classes:
            raise DataError(
                f"{self.layout} data set at {self.root} has {self.num_classes} classes "
                f"({', '.join(self.classes)}) but the model's head has {config.num_classes} "
                "outputs; "
                f"use a model with --num-classes {self.num_classes}"
            )
        if (config.task == "multilabel") != (self.task == "multilabel"):
            raise DataError(
                f"{self.layout} data set at {self.root} is a {self.task} task but the model was "
                "built for "
                f"a {config.task} task; build or train the model with task {self.task!r}"
            )


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to a uint8 array (H x W grey or H x W x 3 colour)."""
    with open_image(path) as im:
        im.load()
        if im.mode in ("L", "RGB"):
            return np.asarray(im)
        if im.mode in ("I;16", "I;16B", "I", "F"):  # 16-bit / float grey (some X-ray PNGs)
            a = np.asarray(im, dtype=np.float64)
            span = a.max() - a.min()
            return ((a - a.min()) / span * 255 if span > 0 else a * 0).astype(np.uint8)
        if im.mode in ("LA", "1"):
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))


def open_image(path: str | Path):
    """PIL's lazily opened image (header read, pixels not decoded). An image over PIL's pixel
    limit raises :class:`ImageTooLarge` (PIL would warn, or raise its own error at twice the
    limit)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            m = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
            raise ImageTooLarge(
                f"{size}, over PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,}, PIL's "
                "guard against decompression bombs"
            ) from None


def _check_intact(im: Any) -> None:
    """Raise if an opened image's data is damaged, as cheaply as the format allows: a PNG's
    chunk checksums (no inflating); a JPEG's end-of-image marker after its scan data (a cut
    file has none; no decoding); any other format is decoded."""
    if im.format == "PNG":
        im.verify()
    elif im.format == "JPEG":
        start = im.fp.tell()  # PIL stops reading at the start of scan
        end = im.fp.seek(0, 2)
        im.fp.seek(max(start, end - 4096))
        if b"\xff\xd9" not in im.fp.read():
            im.fp.seek(start)  # trailing bytes after the marker: look through the whole scan
            if b"\xff\xd9" not in im.fp.read():
                raise OSError("truncated JPEG: no end-of-image marker")
    else:
        im.load()


def why_unreadable(exc: BaseException, path: Any) -> str:
    """A few words on why an image file cannot be read (the path is named beside them)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, ImageTooLarge):
        return str(exc)
    if isinstance(exc, UnidentifiedImageError):
        empty = Path(path).is_file() and Path(path).stat().st_size == 0
        return "empty file" if empty else "cannot identify image file"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).replace(str(path), "").split()).strip(" '\"")
    if text == "Truncated File Read":  # PIL's words for a file that ends too soon
        return "truncated file"
    return text[:120] or type(exc).__name__


def unreadable(ds: Dataset) -> list[tuple[Any, str]]:
    """Each image file of ``ds`` that cannot be read, with why; cheap (see
    :func:`_check_intact`): a header read per file plus a checksum or marker scan."""
    if isinstance(ds.items, np.ndarray):
        return []
    bad = []
    for item in ds.items:
        try:
            with open_image(item) as im:
                _check_intact(im)
        except CORRUPT as exc:
            bad.append((item, why_unreadable(exc, item)))
    return bad


def check_images(*datasets: Dataset) -> None:
    """One error listing every image that cannot be read in any of ``datasets`` (the splits
    a command reads), split by split, before any work starts."""
    bad = [(ds, item, why) for ds in datasets for item, why in unreadable(ds)]
    if bad:
        raise unreadable_error(bad)


def unreadable_error(bad: list[tuple[Dataset, Any, str]]) -> DataError:
    """``layout data set ROOT: N images cannot be read: train: a.png (why), ...; test: ...``:
    the first :data:`LISTED` named (paths relative to the data set's root), the count exact."""
    first = bad[0][0]
    groups: dict[str, list[str]] = {}
    for ds, item, why in bad[:LISTED]:
        groups.setdefault(ds.split, []).append(f"{_relative(item, ds.root)} ({why})")
    listed = "; ".join(f"{split}: {', '.join(names)}" for split, names in groups.items())
    if len(bad) > LISTED:
        listed += f"; and {len(bad) - LISTED} more"
    n = len(bad)
    return DataError(
        f"{first.layout} data set {first.root}: {n} image{'s' if n > 1 else ''} cannot be read: "
        f"{listed}"
    )


def _relative(item: Any, root: Path) -> str:
    try:
        return str(Path(item).relative_to(root))
    except ValueError:
        return str(item)


def _to_channels(img: np.ndarray, in_chans: int) -> np.ndarray:
    """H x W x in_chans uint8 from grey (H x W, H x W x 1) or colour (H x W x 3, x 4)."""
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # drop alpha
    if a.ndim == 2:
        grey = a
        if in_chans == 1:
            return grey[:, :, None]
        return np.repeat(grey[:, :, None], in_chans, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(
            f"cannot use an image of shape {a.shape}; expected H x W grey or H x W x 3 colour"
        )
    if in_chans == 3:
        return a
    # ITU-R 601-2 luma, as PIL's convert("L")
    grey = np.asarray(a, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return grey[:, :, None] if in_chans == 1 else np.repeat(grey[:, :, None], in_chans, axis=2)


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size and a.shape[1] == size:
        return a
    from PIL import Image

    chans = [
        Image.fromarray(np.ascontiguousarray(a[:, :, c])).resize((size, size), Image.BILINEAR)
        for c in range(a.shape[2])
    ]
    return np.stack([np.asarray(c) for c in chans], axis=2)


def preprocess(
    images: Sequence[np.ndarray] | np.ndarray, img_size: int, in_chans: int
) -> np.ndarray:
    """Model input from decoded images: float32 (N, in_chans, img_size, img_size).

    Each image (uint8; H x W grey, or H x W x 3 colour) is converted to ``in_chans`` channels
    (grey is repeated for a colour model; colour becomes ITU-R 601 luma for a grey model),
    resized to ``img_size`` x ``img_size`` (bilinear, no crop), scaled to [0, 1] and
    normalised with :data:`MEAN` / :data:`STD` for that channel count. A float image is taken
    as in [0, 1] (or [0, 255] when its maximum exceeds 1). Pass ``model.config.img_size`` and
    ``model.config.in_chans``.
    """
    if in_chans < 1:
        raise DataError(f"in_chans must be positive, got {in_chans}")
    mean = np.array(MEAN.get(in_chans, (0.5,) * in_chans), dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.array(STD.get(in_chans, (0.5,) * in_chans), dtype=np.float32).reshape(1, -1, 1, 1)
    out = np.empty((len(images), in_chans, img_size, img_size), dtype=np.float32)
    for i, img in enumerate(images):
        a = np.asarray(img)
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating):  # [0, 1], or [0, 255] if it exceeds 1
                a = np.clip(np.rint(a * (255 if a.max() <= 1.0 else 1)), 0, 255).astype(np.uint8)
            else:
                a = np.clip(a, 0, 255).astype(np.uint8)
        a = _resize(_to_channels(a, in_chans), img_size)
        out[i] = a.transpose(2, 0, 1)
    out /= 255.0
    return (out - mean) / std


def stratified_split(
    labels: np.ndarray, split: str, fractions=(0.7, 0.15, 0.15), seed: int = 0
) -> np.ndarray:
    """Indices of ``split`` in a deterministic stratified split (same on every machine):
    per class (the first positive label for multi-label rows), the sorted indices are shuffled
    with a fixed seed and cut by ``fractions`` (train, val, test)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    y = np.asarray(labels)
    key = y if y.ndim == 1 else np.argmax(np.nan_to_num(y, nan=0.0), axis=1)
    rng = np.random.Generator(np.random.PCG64(seed))
    chosen = []
    which = SPLITS.index(split)
    for cls in np.unique(key):
        idx = np.flatnonzero(key == cls)
        idx = idx[rng.permutation(idx.size)]
        n_train = int(round(fractions[0] * idx.size))
        n_val = int(round(fractions[1] * idx.size))
        bounds = [0, n_train, n_train + n_val, idx.size]
        chosen.append(idx[bounds[which] : bounds[which + 1]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def listing(path: Path, limit: int = 8) -> str:
    """What a folder holds, for "expected X, found Y" errors."""
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError:
        return "nothing readable"
    if not names:
        return "an empty folder"
    return ", ".join(names[:limit]) + (
        f" (and {len(names) - limit} more)" if len(names) > limit else ""
    )
