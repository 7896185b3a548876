"""Calibration images for int8 exports: (N, C, H, W) float32 arrays at the model's input.

Sources, in the order ``--calibration DATA`` is tried:

* a ``.npz`` file holding an ``*images`` array (the MedMNIST layout: ``train_images``,
  ``val_images``, ``test_images``; ``train_images`` is preferred), uint8 or float, shaped
  (N, H, W) or (N, H, W, C);
* a folder of PNG / JPEG images (sorted by name);
* a data set shipped with vitbench, ``builtin:NAME`` (its train split's images);
* nothing: seeded synthetic images (:func:`harness.parity.seeded_inputs` with seed 1), the
  same on every machine.

Images become model input through :func:`harness.data.preprocess`, the one preprocessing
training, evaluation and on-device accuracy share (channels, bilinear resize, normalisation). At
most ``limit`` images are used (the first ones), which is plenty for pt2e observers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.parity import seeded_inputs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_LIMIT = 32
SYNTHETIC_SEED = 1


def _to_model_input(images: np.ndarray, channels: int, size: int) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) images -> (N, channels, size, size) float32, through
    :func:`harness.data.preprocess`: the same pixels training and evaluation use."""
    from harness.data import preprocess

    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise UserError(
            f"calibration images have shape {images.shape}; expected (N, H, W) or (N, H, W, C)"
        )
    return preprocess(x, size, channels)


def _from_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path) as z:
            keys = sorted(k for k in z.files if k.endswith("images"))
            if not keys:
                raise UserError(
                    f"{path}: no '*images' array (has {', '.join(z.files) or 'nothing'})"
                )
            key = "train_images" if "train_images" in keys else keys[0]
            return z[key]
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable .npz file ({exc})") from None


def _from_folder(path: Path, limit: int, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from harness.data.dataset import ImageTooLarge, open_image

    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise UserError(f"{path}: no PNG or JPEG images in this folder")
    out = []
    for f in files:
        try:
            with open_image(f) as im:  # PIL's pixel limit is one line, as for data sets
                arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
        except (OSError, UnidentifiedImageError, ImageTooLarge) as exc:
            raise UserError(f"{f}: not a readable image ({exc})") from None
        out.append(arr)
    sizes = {a.shape for a in out}
    if len(sizes) > 1:  # resize each to the first one's size before stacking
        h, w = out[0].shape[:2]
        out = [np.asarray(Image.fromarray(a).resize((w, h))) for a in out]
    return np.stack(out)


def calibration_images(
    source: str | Path | None, shape: tuple[int, int, int, int], limit: int = DEFAULT_LIMIT
) -> np.ndarray:
    """Calibration inputs for a model taking ``shape`` (B, C, H, W)."""
    _, c, h, w = shape
    if source is None:
        return np.concatenate(seeded_inputs((1, c, h, w), count=limit, seed=SYNTHETIC_SEED))
    if str(source).startswith("builtin:"):
        from harness.data import parse_spec

        p = parse_spec(source)[1]  # a verified .npz
    else:
        p = Path(source)
    if not p.exists():
        raise UserError(f"calibration data {p} does not exist")
    if h != w:
        raise UserError(f"calibration resizes to square inputs; the model takes {h}x{w}")
    if p.is_dir():
        images = _from_folder(p, limit, c)
    elif p.suffix == ".npz":
        images = _from_npz(p)[:limit]
    else:
        raise UserError(
            f"calibration data {p}: expected a folder of PNG/JPEG images or a MedMNIST .npz"
        )
    return _to_model_input(images, c, h)


def data_hash(images: np.ndarray | None) -> str | None:
    if images is None:
        return None
    a = np.ascontiguousarray(images)
    return hashlib.sha256(str((a.shape, a.dtype.str)).encode() + a.tobytes()).hexdigest()
