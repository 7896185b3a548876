from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.data import DataError, load_dataset, preprocess
from harness.data.readers import CHEXPERT_LABELS
from tests.support.data_fixtures import (
    make_aptos,
    make_busi,
    make_chexpert,
    make_folder,
    make_isic,
    make_medmnist,
    write_image,
)
from tests.support.models import small_config

ATEL = CHEXPERT_LABELS.index("Atelectasis")
EFF = CHEXPERT_LABELS.index("Pleural Effusion")


def _all_splits(spec, **kw):
    return {s: load_dataset(spec, split=s, **kw) for s in ("train", "val", "test")}


# -- CheXpert -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy,expected", [("U-Ones", 1.0), ("zeros", 0.0), ("U-Ignore", None)])
def test_chexpert_uncertain_policies_and_blanks(tmp_path, policy, expected):
    base = make_chexpert(tmp_path)
    both = np.concatenate(
        [load_dataset(base, split=s, uncertain=policy).labels for s in ("train", "val")]
    )
    ds = load_dataset(base, split="train", uncertain=policy)
    assert ds.layout == "chexpert" and ds.task == "multilabel" and ds.metric == "mean_auc"
    assert ds.classes == CHEXPERT_LABELS
    atel = both[:, ATEL]
    # rows of odd patients were -1.0, even ones 1.0
    if expected is None:
        assert np.isnan(atel).sum() == 10 and np.all(atel[~np.isnan(atel)] == 1.0)
    else:
        assert sorted(set(atel.tolist())) == sorted({1.0, expected})
    card = CHEXPERT_LABELS.index("Cardiomegaly")
    assert np.all(both[:, card] == 0.0)  # blank -> negative
    assert np.all(both[:, CHEXPERT_LABELS.index("Edema")] == 1.0)


def test_chexpert_paths_frontal_only_and_patient_split(tmp_path):
    base = make_chexpert(tmp_path)
    s = _all_splits(base)
    for ds in s.values():
        assert all(p.is_file() for p in ds.items)
    assert "CheXpert-v1.0-small/CheXpert-v1.0-small" not in str(s["train"].items[0])
    assert len(s["train"]) + len(s["val"]) == 20 and len(s["test"]) == 3
    pats = {k: {p.parts[-3] for p in ds.items} for k, ds in s.items()}
    assert pats["train"].isdisjoint(pats["val"]) and len(pats["val"]) == 1
    assert all("valid" in str(p) for p in s["test"].items)
    assert s["test"].labels[:, CHEXPERT_LABELS.index("Cardiomegaly")].tolist() == [1.0, 1.0, 1.0]
    frontal = load_dataset(base, split="train", frontal_only=True)
    assert len(frontal) == len(s["train"]) // 2 and all("frontal" in p.name for p in frontal.items)
    # the parent folder (holding CheXpert-v1.0-small/) works too, with an explicit layout name
    assert len(load_dataset(f"chexpert:{tmp_path}", split="test")) == 3
    x = s["test"].inputs(16, 1)
    assert x.shape == (3, 1, 16, 16) and x.dtype == np.float32


def test_chexpert_missing_images_are_listed_not_dropped(tmp_path):
    base = make_chexpert(tmp_path)
    gone = sorted((base / "train").rglob("view2_lateral.jpg"))[:2]
    for g in gone:
        g.unlink()
    splits = []
    for split in ("train", "val"):
        try:
            load_dataset(base, split=split)
        except DataError as exc:
            splits.append(str(exc))
    msg = " ".join(splits)
    assert "missing" in msg and all(str(g) in msg for g in gone)


def test_chexpert_bad_policy_and_bad_value(tmp_path):
    base = make_chexpert(tmp_path)
    with pytest.raises(DataError, match="U-Ones, U-Zeros, U-Ignore"):
        load_dataset(base, split="train", uncertain="maybe")
    text = (base / "train.csv").read_text().replace("-1.0", "yes", 1)
    (base / "train.csv").write_text(text)
    with pytest.raises(DataError, match="expected 1.0, 0.0, -1.0 or blank"):
        _all_splits(base)


# -- APTOS, ISIC, BUSI ---------------------------------------------------------------------


def test_aptos_ordinal_stratified_deterministic_split(tmp_path):
    root = make_aptos(tmp_path)
    s = _all_splits(root)
    assert (
        s["train"].task == "ordinal" and s["train"].metric == "qwk" and s["train"].num_classes == 5
    )
    names = {k: {p.name for p in ds.items} for k, ds in s.items()}
    assert sum(len(v) for v in names.values()) == 30
    assert names["train"].isdisjoint(names["test"]) and names["val"].isdisjoint(names["test"])
    for ds in s.values():  # every grade in every split (stratified)
        assert set(ds.labels.tolist()) == set(range(5))
        assert all(p.name.startswith(f"{g:x}") for p, g in zip(ds.items, ds.labels, strict=True))
    assert [p.name for p in load_dataset(root, split="val").items] == [
        p.name for p in s["val"].items
    ]
    assert s["test"].inputs(16, 3).shape == (len(s["test"]), 3, 16, 16)


def test_aptos_bad_grade(tmp_path):
    root = make_aptos(tmp_path)
    (root / "train.csv").write_text((root / "train.csv").read_text() + "abc,7\n")
    with pytest.raises(DataError, match="diagnosis '7'"):
        load_dataset(root, split="train")


def test_isic_drops_unk_and_keeps_downsampled_names(tmp_path):
    root = make_isic(tmp_path)
    s = _all_splits(root)
    assert s["train"].classes == ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
    assert s["train"].metric == "balanced_accuracy"
    items = [p for ds in s.values() for p in ds.items]
    assert len(items) == 48 and sum("_downsampled" in p.name for p in items) == 8
    labels = np.concatenate([ds.labels for ds in s.values()])
    assert np.bincount(labels).tolist() == [6] * 8


def test_isic_unk_row_is_an_error(tmp_path):
    root = make_isic(tmp_path)
    csv = root / "ISIC_2019_Training_GroundTruth.csv"
    csv.write_text(csv.read_text() + "ISIC_9999999," + ",".join(["0.0"] * 8) + ",1.0\n")
    with pytest.raises(DataError, match="UNK"):
        load_dataset(root, split="train")


def test_busi_skips_mask_files(tmp_path):
    make_busi(tmp_path)
    s = _all_splits(tmp_path)
    items = [p for ds in s.values() for p in ds.items]
    assert len(items) == 18 and not any("_mask" in p.name for p in items)
    assert (
        s["train"].classes == ("benign", "malignant", "normal") and s["train"].metric == "accuracy"
    )
    assert all(
        p.parent.name == s["train"].classes[y]
        for p, y in zip(s["train"].items, s["train"].labels, strict=True)
    )


# -- MedMNIST, folders -----------------------------------------------------------------------


def test_medmnist_binary_and_multilabel(tmp_path):
    path = make_medmnist(tmp_path / "pneumoniamnist.npz")
    s = _all_splits(path)
    assert [len(s[k]) for k in ("train", "val", "test")] == [40, 10, 12]
    assert (
        s["test"].metric == "auc"
        and s["test"].classes == ("0", "1")
        and s["test"].labels.dtype == np.int64
    )
    x = s["test"].inputs(28, 1)
    raw = np.load(path)["test_images"]
    assert np.allclose(x[:, 0], (raw / 255.0 - 0.5) / 0.5, atol=1e-6)
    multi = load_dataset(make_medmnist(tmp_path / "chestmnist.npz", multilabel=True), split="val")
    assert (
        multi.task == "multilabel" and multi.metric == "mean_auc" and multi.labels.shape == (10, 4)
    )
    np.savez(tmp_path / "broken.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="expected the MedMNIST layout.*found keys images"):
        load_dataset(tmp_path / "broken.npz", split="train")


def test_folder_layout_flat_and_presplit(tmp_path):
    root = make_folder(tmp_path / "flat")
    s = _all_splits(root)
    assert (
        s["train"].classes == ("cyst", "normal", "tumour") and sum(len(d) for d in s.values()) == 21
    )
    pre = tmp_path / "pre"
    for split in ("train", "test"):
        make_folder(pre / split, classes=("neg", "pos"), per_class=3)
    ds = load_dataset(pre, split="test")
    assert ds.classes == ("neg", "pos") and len(ds) == 6 and ds.metric == "auc"


# -- preprocessing and errors ----------------------------------------------------------------


def test_preprocess_channels_resize_and_normalisation():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    x = preprocess([rgb], 20, 1)
    luma = np.asarray(
        Image.fromarray(rgb).convert("L").resize((20, 20), Image.BILINEAR), dtype=np.float32
    )
    # luma computed in float then resized vs PIL's integer luma: within one grey level
    assert np.abs((x[0, 0] * 0.5 + 0.5) * 255 - luma).max() <= 2.0
    y = preprocess([grey], 10, 3)
    assert y.shape == (1, 3, 10, 10)
    # grey repeated to three channels: after undoing each channel's normalisation they agree
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    raw = y[0] * std[:, None, None] + mean[:, None, None]
    assert np.allclose(raw[0], raw[1], atol=1e-5) and np.allclose(raw[1], raw[2], atol=1e-5)
    same = preprocess(np.stack([grey[:, :20]] * 2), 20, 1)
    assert np.allclose(same[0, 0], (grey[:, :20] / 255 - 0.5) / 0.5, atol=1e-6)


def test_unreadable_image_is_listed(tmp_path):
    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=6)
    (root / "a" / "img0.png").write_bytes(b"not a png")
    (root / "b" / "img1.png").write_bytes(b"")
    found = []
    for split in ("train", "val", "test"):
        try:
            load_dataset(root, split=split).images()
        except DataError as exc:
            found.append(str(exc))
    msg = " ".join(found)
    assert "cannot be read" in msg
    assert "a/img0.png (cannot identify image file)" in msg and "b/img1.png (empty file)" in msg


def test_wrong_layout_says_what_was_expected_and_found(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not a data set layout.*found notes.txt"):
        load_dataset(tmp_path, split="train")
    make_busi(tmp_path / "b")
    with pytest.raises(
        DataError,
        match=r"expected the APTOS 2019 layout \(train.csv, train_images/\); "
        r"found Dataset_BUSI_with_GT/",
    ):
        load_dataset(f"aptos2019:{tmp_path / 'b'}", split="train")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", split="train")
    with pytest.raises(DataError, match="unknown split"):
        load_dataset(tmp_path / "b", split="dev")


def test_labels_that_do_not_fit_the_model_head(tmp_path):
    ds = load_dataset(make_busi(tmp_path), split="train")
    with pytest.raises(DataError, match="3 classes.*head has 5 outputs.*--num-classes 3"):
        ds.check_fits(small_config(num_classes=5))
    ds.check_fits(small_config(num_classes=3))
    with pytest.raises(DataError, match="multiclass task but the model was built for a multilabel"):
        ds.check_fits(small_config(num_classes=3, task="multilabel"))


def test_write_image_helper_grey_and_colour(tmp_path):
    write_image(tmp_path / "g.png")
    write_image(tmp_path / "c.jpg", mode="RGB")
    from harness.data import read_image

    assert read_image(tmp_path / "g.png").shape == (16, 20)
    assert read_image(tmp_path / "c.jpg").shape == (16, 20, 3)


def test_export_calibration_uses_the_same_preprocessing(tmp_path):
    from harness.calibration import calibration_images

    path = make_medmnist(tmp_path / "m.npz", size=28, colour=True)
    calib = calibration_images(path, (1, 1, 32, 32), limit=5)
    train = load_dataset(path, split="train")
    assert np.array_equal(calib, preprocess(train.images()[:5], 32, 1))


def test_the_builtin_xrays_load_by_name_and_are_checked(tmp_path, monkeypatch):
    from harness.data import builtin

    test = load_dataset("builtin:pneumonia", split="test")
    assert len(test) == 468 and test.num_classes == 2 and test.task == "multiclass"
    assert np.bincount(test.labels.astype(int).ravel()).tolist() == [234, 234]
    x = test.inputs(28, 1)
    assert x.shape == (468, 1, 28, 28) and np.isfinite(x).all()
    assert len(load_dataset("builtin:pneumonia", split="train")) == 2428
    with pytest.raises(DataError, match=r"unknown built-in data set 'chexpert'.*builtin:pneumonia"):
        load_dataset("builtin:chexpert")
    # a damaged install is caught by the hash, not read
    bad = tmp_path / "pneumoniamnist_balanced.npz"
    bad.write_bytes(builtin.BUILTIN["pneumonia"].path.read_bytes()[:-10])
    monkeypatch.setattr(builtin, "HERE", tmp_path)
    builtin._verified.cache_clear()
    try:
        with pytest.raises(DataError, match="is damaged"):
            load_dataset("builtin:pneumonia")
    finally:
        builtin._verified.cache_clear()
