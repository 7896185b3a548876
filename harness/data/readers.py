"""Readers for the data sets vitbench knows, each from its native layout on disk.

Each reader takes the data set's root and a split and returns a :class:`Dataset`. Where the
data set has no split of its own, :func:`stratified_split` makes a deterministic one
(70 / 15 / 15). Missing image files are all listed in one error when the data set is read;
a class folder with no images (or only segmentation masks) and a split that comes out empty
are refused, each with one line.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from harness.data.dataset import (
    IMAGE_SUFFIXES,
    SPLITS,
    DataError,
    Dataset,
    image_files,
    listing,
    stratified_split,
)
from harness.metrics import metric_for

# -- helpers ---------------------------------------------------------------------------------


def _read_csv(path: Path, required: list[str], layout: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise DataError(
                    f"{path}: not the {layout} layout: column(s) {', '.join(missing)} missing; "
                    f"found columns {', '.join(header) or 'none'}"
                )
            return [
                {(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader
            ]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_files(paths: list[Path], layout: str, split: str) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        listed = "; ".join(missing[:5]) + (
            f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise DataError(
            f"{layout} {split}: {len(missing)} image file(s) listed but missing: {listed}"
        )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")


def _split_of(labels: np.ndarray, split: str, layout: str, root: Path, source: str) -> np.ndarray:
    """:func:`stratified_split` indices of ``split``; a split that comes out empty is refused."""
    if len(labels) == 0:
        raise DataError(f"{layout} data set {root}: {source} lists no images")
    idx = stratified_split(labels, split)
    if idx.size == 0:
        raise DataError(
            f"{layout} data set {root}: the {split} split is empty: the 70/15/15 split per class "
            f"of its {len(labels)} image(s) leaves it none (a class reaches every split from 6 "
            "images)"
        )
    return idx


_MASK = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)


def _class_images(folder: Path, root: Path, layout: str, masks: str) -> list[Path]:
    """The images of one class folder, segmentation masks (BUSI's ``x_mask.png``,
    ``x_mask_1.png``) left out: every mask (``masks="all"``) or only a mask beside its image
    (``masks="beside"``). A folder with no images, or only masks, is refused."""
    files = image_files(folder)
    where = folder.relative_to(root) if folder.is_relative_to(root) else folder
    if not files:
        raise DataError(
            f"{layout} data set {root}: class folder {where}/ holds no images "
            f"({', '.join(IMAGE_SUFFIXES)}); found {listing(folder)}"
        )
    stems = {p.stem.lower() for p in files}
    mask = [bool(_MASK.search(p.stem)) for p in files]
    if all(mask):
        raise DataError(
            f"{layout} data set {root}: class folder {where}/ holds only segmentation masks "
            f"({len(files)} *_mask files, e.g. {files[0].name}) and no images"
        )
    return [
        p
        for p, m in zip(files, mask, strict=True)
        if not m or (masks == "beside" and _MASK.sub("", p.stem).lower() not in stems)
    ]


# -- CheXpert-v1.0-small ------------------------------------------------------------------------

CHEXPERT_LABELS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
UNCERTAIN_POLICIES = ("ones", "zeros", "ignore")
CHEXPERT_DIR = "CheXpert-v1.0-small"


def _chexpert_root(root: Path) -> Path:
    if (root / CHEXPERT_DIR / "train.csv").is_file():
        return root / CHEXPERT_DIR
    return root


def read_chexpert(
    root: Path,
    split: str,
    uncertain: str = "ones",
    frontal_only: bool = False,
    val_fraction: float = 0.1,
) -> Dataset:
    """CheXpert-v1.0-small: ``train.csv`` and ``valid.csv`` (Path, Sex, Age, Frontal/Lateral,
    AP/PA, then the 14 observations), image paths starting with ``CheXpert-v1.0-small/``.

    The five competition labels; uncertain (-1) labels by ``uncertain`` policy (``ones``:
    U-Ones, ``zeros``: U-Zeros, ``ignore``: U-Ignore, NaN and left out of loss and metric);
    blanks are negative. ``test`` is the official ``valid.csv``; ``train``/``val`` split
    ``train.csv`` by patient (a fixed ``val_fraction`` of patients), so no patient is in both.
    """
    _check_split(split)
    policy = uncertain.lower().removeprefix("u-")
    if policy not in UNCERTAIN_POLICIES:
        raise DataError(
            f"unknown uncertain-label policy {uncertain!r}; use one of U-Ones, U-Zeros, U-Ignore"
        )
    root = _chexpert_root(root)
    need = ["train.csv", "valid.csv"]
    if not all((root / n).is_file() for n in need):
        raise DataError(
            f"{root}: expected the CheXpert-v1.0-small layout (train.csv, valid.csv, train/, "
            "valid/); "
            f"found {listing(root)}"
        )
    csv_name = "valid.csv" if split == "test" else "train.csv"
    rows = _read_csv(root / csv_name, ["Path", "Frontal/Lateral", *CHEXPERT_LABELS], "CheXpert")
    if frontal_only:
        rows = [r for r in rows if r["Frontal/Lateral"].lower() == "frontal"]
    if not rows:
        raise DataError(
            f"CheXpert data set {root}: the {split} split is empty: {csv_name} has no"
            f"{' frontal' if frontal_only else ''} rows"
        )
    if split != "test":
        rows = _chexpert_patient_split(rows, split, val_fraction, root)
    labels = np.zeros((len(rows), len(CHEXPERT_LABELS)), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, name in enumerate(CHEXPERT_LABELS):
            labels[i, j] = _chexpert_value(r[name], policy, root / csv_name, name)
    paths = [_chexpert_path(root, r["Path"]) for r in rows]
    _check_files(paths, "CheXpert", split)
    return Dataset(
        "chexpert", root, split, "multilabel", "mean_auc", CHEXPERT_LABELS, labels, paths
    )


def _chexpert_patient_split(
    rows: list[dict[str, str]], split: str, val_fraction: float, root: Path
) -> list[dict[str, str]]:
    """The rows of ``train.csv`` for ``split`` (``train`` or ``val``): a fixed
    ``val_fraction`` of the patients go to ``val``, so no patient is in both."""
    patients = sorted({_chexpert_patient(r["Path"]) for r in rows})
    if split == "val" and len(patients) < 2:
        raise DataError(
            f"CheXpert data set {root}: the val split is empty: train.csv has one patient, and "
            "train and val are split by patient"
        )
    rng = np.random.Generator(np.random.PCG64(0))
    n_val = max(1, int(round(val_fraction * len(patients)))) if len(patients) > 1 else 0
    val_patients = {patients[i] for i in rng.permutation(len(patients))[:n_val]}
    return [r for r in rows if (_chexpert_patient(r["Path"]) in val_patients) == (split == "val")]


def _chexpert_patient(path: str) -> str:
    m = re.search(r"(patient\d+)", path)
    return m.group(1) if m else path


def _chexpert_path(root: Path, rel: str) -> Path:
    parts = Path(rel).parts
    if parts and parts[0] in (CHEXPERT_DIR, root.name):
        parts = parts[1:]
    return root.joinpath(*parts)


def _chexpert_value(value: str, policy: str, source: Path, column: str) -> float:
    if value == "":
        return 0.0
    try:
        v = float(value)
    except ValueError:
        raise DataError(
            f"{source}: column {column!r} has {value!r}; expected 1.0, 0.0, -1.0 or blank"
        ) from None
    if v == -1.0:
        return {"ones": 1.0, "zeros": 0.0, "ignore": float("nan")}[policy]
    if v not in (0.0, 1.0):
        raise DataError(
            f"{source}: column {column!r} has {value!r}; expected 1.0, 0.0, -1.0 or blank"
        )
    return v


# -- APTOS 2019 -----------------------------------------------------------------------------------

APTOS_GRADES = ("no DR", "mild", "moderate", "severe", "proliferative DR")


def read_aptos(root: Path, split: str) -> Dataset:
    """APTOS 2019 blindness detection: ``train.csv`` (id_code, diagnosis 0-4) and
    ``train_images/<id_code>.png``. Ordinal grades, scored by quadratic weighted kappa.
    (``test.csv`` has no labels, so all three splits come from ``train.csv``.)"""
    _check_split(split)
    if not ((root / "train.csv").is_file() and (root / "train_images").is_dir()):
        raise DataError(
            f"{root}: expected the APTOS 2019 layout (train.csv, train_images/); found "
            f"{listing(root)}"
        )
    rows = _read_csv(root / "train.csv", ["id_code", "diagnosis"], "APTOS 2019")
    labels = np.zeros(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        if r["diagnosis"] not in ("0", "1", "2", "3", "4"):
            raise DataError(
                f"{root / 'train.csv'}: row {i + 2} has diagnosis {r['diagnosis']!r}; expected a "
                "grade 0-4"
            )
        labels[i] = int(r["diagnosis"])
    paths = [root / "train_images" / f"{r['id_code']}.png" for r in rows]
    idx = _split_of(labels, split, "APTOS 2019", root, "train.csv")
    paths = [paths[i] for i in idx]
    _check_files(paths, "APTOS 2019", split)
    return Dataset("aptos2019", root, split, "ordinal", "qwk", APTOS_GRADES, labels[idx], paths)


# -- ISIC 2019 ------------------------------------------------------------------------------------

ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
ISIC_CSV = "ISIC_2019_Training_GroundTruth.csv"
ISIC_IMAGES = "ISIC_2019_Training_Input"


def read_isic2019(root: Path, split: str) -> Dataset:
    """ISIC 2019: ``ISIC_2019_Training_GroundTruth.csv`` (image, then one-hot MEL ... SCC, UNK)
    and ``ISIC_2019_Training_Input/<image>.jpg``. The UNK column (no training image has it)
    is dropped: 8 classes, scored by balanced accuracy."""
    _check_split(split)
    if not (root / ISIC_CSV).is_file():
        raise DataError(
            f"{root}: expected the ISIC 2019 layout ({ISIC_CSV}, {ISIC_IMAGES}/); found "
            f"{listing(root)}"
        )
    images = root / ISIC_IMAGES
    if (images / ISIC_IMAGES).is_dir():  # the Kaggle copy nests it twice
        images = images / ISIC_IMAGES
    rows = _read_csv(root / ISIC_CSV, ["image", *ISIC_CLASSES], "ISIC 2019")
    labels = np.zeros(len(rows), dtype=np.int64)
    for i, r in enumerate(rows):
        try:
            onehot = [float(r[c]) for c in ISIC_CLASSES]
        except ValueError:
            raise DataError(
                f"{root / ISIC_CSV}: row {i + 2} ({r['image']}) is not one-hot numbers"
            ) from None
        if r.get("UNK", "0") not in ("", "0", "0.0") or sum(onehot) != 1.0:
            raise DataError(
                f"{root / ISIC_CSV}: row {i + 2} ({r['image']}) is not exactly one of "
                f"{', '.join(ISIC_CLASSES)} (UNK rows cannot be trained on)"
            )
        labels[i] = int(np.argmax(onehot))
    paths = [images / f"{r['image']}.jpg" for r in rows]
    idx = _split_of(labels, split, "ISIC 2019", root, ISIC_CSV)
    paths = [paths[i] for i in idx]
    _check_files(paths, "ISIC 2019", split)
    return Dataset(
        "isic2019", root, split, "multiclass", "balanced_accuracy", ISIC_CLASSES, labels[idx], paths
    )


# -- BUSI -----------------------------------------------------------------------------------------

BUSI_CLASSES = ("benign", "malignant", "normal")
BUSI_DIR = "Dataset_BUSI_with_GT"


def read_busi(root: Path, split: str) -> Dataset:
    """BUSI (breast ultrasound): ``Dataset_BUSI_with_GT/{benign,malignant,normal}/`` with
    ``benign (1).png`` beside its masks ``benign (1)_mask.png``, ``benign (1)_mask_1.png``;
    the masks are skipped. Scored by accuracy."""
    _check_split(split)
    if (root / BUSI_DIR).is_dir():
        root = root / BUSI_DIR
    missing = [c for c in BUSI_CLASSES if not (root / c).is_dir()]
    if missing:
        raise DataError(
            f"{root}: expected the BUSI layout ({BUSI_DIR}/ with benign/, malignant/, normal/); "
            f"found {listing(root)}"
        )
    paths, labels = [], []
    for k, cls in enumerate(BUSI_CLASSES):
        files = _class_images(root / cls, root, "BUSI", masks="all")
        paths += files
        labels += [k] * len(files)
    y = np.asarray(labels, dtype=np.int64)
    idx = _split_of(y, split, "BUSI", root, "the class folders")
    return Dataset(
        "busi", root, split, "multiclass", "accuracy", BUSI_CLASSES, y[idx], [paths[i] for i in idx]
    )


# -- MedMNIST .npz --------------------------------------------------------------------------------


def read_medmnist(path: Path, split: str, task: str | None = None) -> Dataset:
    """A MedMNIST ``.npz``: ``{train,val,test}_images`` (N, H, W) or (N, H, W, 3) uint8 and
    ``{train,val,test}_labels`` (N, 1) class indices or (N, K) multi-label 0/1. Binary tasks
    are scored by AUC, multi-label by mean AUC, others by accuracy (``task="ordinal"``: QWK)."""
    _check_split(split)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    with npz:
        keys = sorted(npz.files)
        need = [f"{split}_images", f"{split}_labels"]
        if not all(k in keys for k in need):
            raise DataError(
                f"{path}: expected the MedMNIST layout ({', '.join(need)}); found keys "
                f"{', '.join(keys) or 'none'}"
            )
        images = npz[f"{split}_images"]
        raw = npz[f"{split}_labels"]
        all_labels = [npz[k] for k in keys if k.endswith("_labels")]
    if images.ndim not in (3, 4) or images.shape[0] != raw.shape[0]:
        raise DataError(
            f"{path}: {split}_images has shape {images.shape} and {split}_labels {raw.shape}; "
            "expected (N, H, W[, 3]) images and N labels"
        )
    if images.shape[0] == 0:
        raise DataError(f"medmnist data set {path}: the {split} split is empty ({split}_images)")
    if raw.ndim == 2 and raw.shape[1] > 1:
        kind = "multilabel"
        metric = metric_for(kind, raw.shape[1])
        labels = raw.astype(np.float32)
        classes = tuple(f"label_{i}" for i in range(raw.shape[1]))
    else:
        labels = raw.reshape(-1).astype(np.int64)
        n = int(max(int(y.max()) for y in all_labels if y.size)) + 1
        classes = tuple(str(i) for i in range(n))
        kind = task or "multiclass"
        metric = metric_for(kind, n)
    return Dataset("medmnist", path, split, kind, metric, classes, labels, images)


# -- class-per-folder -----------------------------------------------------------------------------


def read_folder(root: Path, split: str) -> Dataset:
    """``root/<class>/<image>`` (split 70/15/15 here) or ``root/{train,val,test}/<class>/<image>``.
    Classes are the sub-folder names in sorted order; two classes are scored by AUC, more by
    accuracy."""
    _check_split(split)
    presplit = (root / "train").is_dir() and any((root / s).is_dir() for s in ("val", "test"))
    base = root / split if presplit else root
    if presplit and not base.is_dir():
        raise DataError(f"{root}: has train/ but no {split}/ folder")
    class_root = root / "train" if presplit else root
    classes = sorted(
        p.name for p in class_root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if len(classes) < 2:
        raise DataError(
            f"{root}: expected a class-per-folder layout (one sub-folder of images per class, "
            f"at least two); found {listing(root)}"
        )
    paths, labels = [], []
    for k, cls in enumerate(classes):
        folder = base / cls
        if not folder.is_dir():  # a class may be absent from a pre-made val or test split
            continue
        files = _class_images(folder, root, "folder", masks="beside")
        paths += files
        labels += [k] * len(files)
    if not paths:
        raise DataError(
            f"folder data set {root}: the {split} split is empty: {base} has none of the class "
            f"folders ({', '.join(classes)}); found {listing(base)}"
        )
    y = np.asarray(labels, dtype=np.int64)
    if not presplit:
        idx = _split_of(y, split, "folder", root, "the class folders")
        paths, y = [paths[i] for i in idx], y[idx]
    return Dataset(
        "folder",
        root,
        split,
        "multiclass",
        metric_for("multiclass", len(classes)),
        tuple(classes),
        y,
        paths,
    )


READERS = {
    "chexpert": read_chexpert,
    "aptos2019": read_aptos,
    "isic2019": read_isic2019,
    "busi": read_busi,
    "medmnist": read_medmnist,
    "folder": read_folder,
}


def detect_layout(path: Path) -> str:
    """Which reader fits ``path``; one line naming what each expects if none does."""
    if path.is_file():
        if path.suffix == ".npz":
            return "medmnist"
        raise DataError(
            f"{path}: a file that is not a MedMNIST .npz; give a data set folder or a .npz"
        )
    if (_chexpert_root(path) / "train.csv").is_file() and (
        _chexpert_root(path) / "valid.csv"
    ).is_file():
        return "chexpert"
    if (path / "train.csv").is_file() and (path / "train_images").is_dir():
        return "aptos2019"
    if (path / ISIC_CSV).is_file():
        return "isic2019"
    if (path / BUSI_DIR).is_dir() or all((path / c).is_dir() for c in BUSI_CLASSES):
        return "busi"
    subdirs = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) >= 2 or (path / "train").is_dir():
        return "folder"
    raise DataError(
        f"{path}: not a data set layout vitbench knows; expected CheXpert (train.csv + valid.csv), "
        f"APTOS 2019 (train.csv + train_images/), ISIC 2019 ({ISIC_CSV}), BUSI ({BUSI_DIR}/), "
        f"a MedMNIST .npz, or one folder per class; found {listing(path)}"
    )
