"""Tiny copies of the real data sets' layouts, quirks included, written by the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CHEXPERT_COLUMNS = [
    "Path",
    "Sex",
    "Age",
    "Frontal/Lateral",
    "AP/PA",
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]


def write_image(path: Path, size=(20, 16), mode="L", seed=0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def make_chexpert(root: Path, n_patients: int = 10) -> Path:
    """CheXpert-v1.0-small: train.csv / valid.csv with paths prefixed by the folder name,
    frontal and lateral views, uncertain -1.0 and blank labels."""
    base = root / "CheXpert-v1.0-small"
    rows = []
    for p in range(1, n_patients + 1):
        for view, kind in (("view1_frontal", "Frontal"), ("view2_lateral", "Lateral")):
            rel = f"CheXpert-v1.0-small/train/patient{p:05d}/study1/{view}.jpg"
            write_image(root / rel, seed=p)
            # Atelectasis uncertain on odd patients, Cardiomegaly blank, Edema 1.0,
            # Consolidation 0.0
            values = {c: "" for c in CHEXPERT_COLUMNS[5:]}
            values.update(
                {
                    "Atelectasis": "-1.0" if p % 2 else "1.0",
                    "Edema": "1.0",
                    "Consolidation": "0.0",
                    "Pleural Effusion": "-1.0" if p % 3 == 0 else "",
                    "Cardiomegaly": "",
                }
            )
            rows.append(
                [rel, "Male", "60", kind, "AP" if kind == "Frontal" else ""]
                + [values[c] for c in CHEXPERT_COLUMNS[5:]]
            )
    _write_csv(base / "train.csv", CHEXPERT_COLUMNS, rows)
    valid = []
    for p in range(64541, 64544):
        rel = f"CheXpert-v1.0-small/valid/patient{p}/study1/view1_frontal.jpg"
        write_image(root / rel, seed=p)
        values = ["0.0"] * len(CHEXPERT_COLUMNS[5:])
        values[CHEXPERT_COLUMNS[5:].index("Cardiomegaly")] = "1.0"
        valid.append([rel, "Female", "70", "Frontal", "PA"] + values)
    _write_csv(base / "valid.csv", CHEXPERT_COLUMNS, valid)
    return base


def make_aptos(root: Path, per_grade: int = 6) -> Path:
    rows = []
    for g in range(5):
        for k in range(per_grade):
            code = f"{g:x}{k:03x}a1b2c3d4"
            write_image(
                root / "train_images" / f"{code}.png", size=(30, 24), mode="RGB", seed=g * 100 + k
            )
            rows.append([code, str(g)])
    _write_csv(root / "train.csv", ["id_code", "diagnosis"], rows)
    _write_csv(root / "test.csv", ["id_code"], [["ffff0000"]])  # no labels, as the real one
    return root


ISIC_COLUMNS = ["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]


def make_isic(root: Path, per_class: int = 6) -> Path:
    images = root / "ISIC_2019_Training_Input"
    rows = []
    n = 0
    for c in range(8):
        for k in range(per_class):
            name = f"ISIC_{n:07d}" + ("_downsampled" if k == 0 else "")
            write_image(images / f"{name}.jpg", mode="RGB", seed=n)
            onehot = ["0.0"] * 9
            onehot[c] = "1.0"
            rows.append([name, *onehot])
            n += 1
    (images / "ATTRIBUTION.txt").write_text("attribution\n")
    (images / "LICENSE.txt").write_text("CC-BY-NC\n")
    _write_csv(root / "ISIC_2019_Training_GroundTruth.csv", ISIC_COLUMNS, rows)
    return root


def make_busi(root: Path, per_class: int = 6) -> Path:
    base = root / "Dataset_BUSI_with_GT"
    for c, cls in enumerate(("benign", "malignant", "normal")):
        for k in range(1, per_class + 1):
            write_image(base / cls / f"{cls} ({k}).png", size=(40, 30), mode="RGB", seed=c * 10 + k)
            write_image(base / cls / f"{cls} ({k})_mask.png", size=(40, 30), seed=99)
            if k == 2:
                write_image(base / cls / f"{cls} ({k})_mask_1.png", size=(40, 30), seed=98)
    return root


def make_medmnist(
    path: Path,
    multilabel: bool = False,
    size: int = 28,
    n=(40, 10, 12),
    colour=False,
    learnable: bool = False,
) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, size, size, 3) if colour else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        if multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (count, 4), dtype=np.uint8)
        else:
            labels = (np.arange(count) % 2).astype(np.uint8)
            arrays[f"{split}_labels"] = labels.reshape(-1, 1)
            if learnable:  # class 1 has a bright square in the top-left quarter
                arrays[f"{split}_images"] = (arrays[f"{split}_images"] // 2).astype(np.uint8)
                arrays[f"{split}_images"][labels == 1, : size // 2, : size // 2] += 120
    np.savez(path, **arrays)
    return path


def make_folder(root: Path, classes=("cyst", "normal", "tumour"), per_class: int = 7) -> Path:
    for c, cls in enumerate(classes):
        for k in range(per_class):
            write_image(root / cls / f"img{k}.png", seed=c * 50 + k)
    return root


def spoil(path: Path, how: str) -> Path:
    """Damage an image file as real copies get damaged: ``garbage`` (not an image at all),
    ``empty`` (zero bytes) or ``cut`` (the second half lost, as a broken download)."""
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"<html>404</html>", "empty": b"", "cut": data[: len(data) // 2]}[how]
    )
    return path


def _write_csv(path: Path, header, rows) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
