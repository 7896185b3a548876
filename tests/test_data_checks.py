"""Data sets are checked before work starts: empty class folders, folders of masks only, empty
splits and images that cannot be read each end with one line and exit 2, nothing trained."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import main
from harness.data import DataError, Dataset, check_images, load_dataset
from tests.support.cli import assert_one_line_error
from tests.support.data_fixtures import (
    make_aptos,
    make_busi,
    make_chexpert,
    make_folder,
    make_medmnist,
    spoil,
    write_image,
)


def _train(data, out):
    """`vitbench train tiny` for one short epoch; returns (exit code, output)."""
    args = ["train", "tiny", "--data", str(data), "--out", str(out), "--img-size", "32"]
    args += ["--in-chans", "1", "--epochs", "1", "--batch-size", "8", "--quiet"]
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if the training loop is entered."""
    import harness.compress

    def fit(*_a, **_k):
        raise AssertionError("training started")

    monkeypatch.setattr(harness.compress, "fit", fit)


def test_an_empty_class_folder_is_one_line_and_exit_2(tmp_path, no_training):
    root = make_folder(tmp_path / "f", classes=("cyst", "normal"))
    (root / "tumour").mkdir()
    (root / "tumour" / "Thumbs.db").write_bytes(b"x")
    code, out = _train(root, tmp_path / "out")
    assert_one_line_error(code, out, "class folder tumour/ holds no images", "found Thumbs.db")
    assert not (tmp_path / "out").exists()
    # in a pre-split layout the folder is named with its split
    pre = tmp_path / "pre"
    for split in ("train", "val", "test"):
        make_folder(pre / split, classes=("neg", "pos"), per_class=2)
    shutil.rmtree(pre / "val" / "pos")
    (pre / "val" / "pos").mkdir()
    with pytest.raises(DataError, match="class folder val/pos/ holds no images"):
        load_dataset(pre, split="val")


def test_a_class_folder_of_masks_only_is_refused(tmp_path, no_training):
    make_busi(tmp_path / "busi")
    normal = tmp_path / "busi" / "Dataset_BUSI_with_GT" / "normal"
    for p in normal.iterdir():
        if "_mask" not in p.name:
            p.unlink()
    code, out = _train(tmp_path / "busi", tmp_path / "out")
    assert_one_line_error(
        code, out, "class folder normal/ holds only segmentation masks", "7 *_mask files"
    )
    # the folder layout too: masks only is refused, a mask beside its image is not an image
    root = make_folder(tmp_path / "f", classes=("a", "b"))
    for k in range(7):
        (root / "b" / f"img{k}.png").rename(root / "b" / f"img{k}_mask.png")
    with pytest.raises(DataError, match="class folder b/ holds only segmentation masks"):
        load_dataset(root, split="train")


def test_a_mask_beside_its_image_is_skipped_in_a_folder_layout(tmp_path):
    root = make_folder(tmp_path / "f", classes=("a", "b"))
    write_image(root / "a" / "img0_mask.png", seed=99)
    write_image(root / "a" / "img3_mask_1.png", seed=98)
    write_image(root / "a" / "face_mask.png", seed=97)  # no face.png beside it: an image
    names = {
        f"{p.parent.name}/{p.name}"
        for s in ("train", "val", "test")
        for p in load_dataset(root, split=s).items
    }
    assert "a/face_mask.png" in names and not names & {"a/img0_mask.png", "a/img3_mask_1.png"}
    assert len(names) == 15


def test_an_empty_split_is_refused_before_work(tmp_path, no_training):
    # three images per class: the stratified 70/15/15 split leaves val empty
    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=3)
    code, out = _train(root, tmp_path / "out")
    assert_one_line_error(code, out, "the val split is empty", "of its 6 image(s)")
    assert not (tmp_path / "out").exists()
    assert len(load_dataset(root, split="test")) == 2  # the splits that have images still load


def test_a_csv_or_npz_split_with_no_rows_is_refused(tmp_path):
    base = make_chexpert(tmp_path / "cx")
    valid = base / "valid.csv"
    valid.write_text(valid.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="test split is empty: valid.csv has no rows"):
        load_dataset(base, split="test")
    one = make_chexpert(tmp_path / "cx1", n_patients=1)
    assert len(load_dataset(one, split="train")) == 2
    with pytest.raises(DataError, match="val split is empty: train.csv has one patient"):
        load_dataset(one, split="val")
    aptos = make_aptos(tmp_path / "aptos")
    (aptos / "train.csv").write_text("id_code,diagnosis\n")
    with pytest.raises(DataError, match="APTOS 2019 data set .*: train.csv lists no images"):
        load_dataset(aptos, split="train")
    npz = make_medmnist(tmp_path / "m.npz", n=(8, 4, 0))
    with pytest.raises(DataError, match="the test split is empty"):
        load_dataset(npz, split="test")


def test_train_lists_every_unreadable_image_of_every_split_before_the_first_epoch(
    tmp_path, no_training
):
    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=12)
    splits = {s: load_dataset(root, split=s) for s in ("train", "val", "test")}
    spoiled = {
        "train": [
            spoil(splits["train"].items[0], "garbage"),
            spoil(splits["train"].items[5], "cut"),
        ],
        "val": [spoil(splits["val"].items[0], "empty")],
        "test": [spoil(splits["test"].items[1], "cut")],
    }
    code, out = _train(root, tmp_path / "out")
    assert_one_line_error(code, out, f"folder data set {root}: 4 images cannot be read: train: ")
    line = out.strip()
    for split, paths in spoiled.items():
        for p in paths:
            assert f"{p.parent.name}/{p.name} (" in line.split(f"{split}: ")[1].split(";")[0]
    assert "(cannot identify image file)" in line and "(empty file)" in line
    assert line.count("(truncated file)") == 2
    assert not (tmp_path / "out").exists()


def test_a_long_listing_names_ten_and_counts_the_rest(tmp_path):
    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=10)
    for p in sorted(root.rglob("*.png")):
        spoil(p, "garbage")
    splits = [load_dataset(root, split=s) for s in ("train", "val", "test")]
    with pytest.raises(DataError) as err:
        check_images(*splits)
    msg = str(err.value)
    assert "20 images cannot be read" in msg and msg.endswith("; and 10 more")
    assert msg.count("(cannot identify image file)") == 10 and "\n" not in msg


def test_an_image_over_pils_size_limit_is_one_line(tmp_path, monkeypatch, recwarn, no_training):
    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=8)  # 20 x 16 images
    splits = {s: load_dataset(root, split=s) for s in ("train", "val", "test")}
    write_image(splits["train"].items[0], size=(40, 30))  # 1,200 pixels: PIL would warn
    write_image(splits["test"].items[0], size=(50, 50))  # 2,500: over twice the limit, PIL raises
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code, out = _train(root, tmp_path / "out")
    assert_one_line_error(
        code,
        out,
        "2 images cannot be read",
        f"train: {splits['train'].items[0].relative_to(root)} (1,200 pixels, over "
        "PIL.Image.MAX_IMAGE_PIXELS = 1,000, PIL's guard against decompression bombs)",
        f"test: {splits['test'].items[0].relative_to(root)} (2,500 pixels, over",
    )
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    with pytest.raises(DataError, match="1,200 pixels, over PIL.Image.MAX_IMAGE_PIXELS = 1,000"):
        splits["train"].images()  # decoding says the same


def test_the_check_finds_cut_images_and_passes_whole_ones(tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    for name in (
        "whole.jpg",
        "cut.jpg",
        "tail.jpg",
        "whole.png",
        "cut.png",
        "whole.bmp",
        "cut.bmp",
    ):
        Image.fromarray(pixels).save(folder / name)
    Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 200).save(folder / "deep.png")  # 16-bit
    tail = folder / "tail.jpg"
    tail.write_bytes(tail.read_bytes() + b"\x00camera trailer" * 400)  # bytes after the marker
    for name in ("cut.jpg", "cut.png", "cut.bmp"):
        spoil(folder / name, "cut")
    items = sorted(folder.iterdir())
    ds = Dataset("folder", tmp_path, "test", "multiclass", "auc", ("a", "b"), np.zeros(8), items)
    with pytest.raises(DataError) as err:
        check_images(ds)
    msg = str(err.value)
    assert "3 images cannot be read: test: " in msg
    assert all(f"a/{n} (" in msg for n in ("cut.bmp", "cut.jpg", "cut.png"))
    assert "a/cut.jpg (truncated JPEG: no end-of-image marker)" in msg
    whole = ds.subset([i for i, p in enumerate(items) if "cut" not in p.name])
    check_images(whole)
    assert len(whole.images()) == 5


def test_the_check_decodes_no_png_or_jpeg_pixels(tmp_path, monkeypatch):
    from PIL import ImageFile

    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=6)
    write_image(root / "a" / "colour.jpg", mode="RGB")
    splits = [load_dataset(root, split=s) for s in ("train", "val", "test")]
    assert any(p.suffix == ".jpg" for s in splits for p in s.items)

    def load(*_a, **_k):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    check_images(*splits)


def test_eval_and_plan_accuracy_report_the_same_line(tmp_path):
    from types import SimpleNamespace

    from harness.accuracy import artifact_accuracy, model_accuracy
    from harness.model import build_model
    from tests.support.models import small_config

    root = make_folder(tmp_path / "f", classes=("a", "b"), per_class=8)
    test = load_dataset(root, split="test")
    spoil(test.items[0], "garbage")
    with pytest.raises(DataError) as expected:
        check_images(test)
    model = build_model(small_config(num_classes=2, in_chans=1))
    with pytest.raises(DataError) as got:
        model_accuracy(model, test)
    assert str(got.value) == str(expected.value)

    class Target:
        name = "fake"

        def infer(self, *_a, **_k):
            raise AssertionError("images sent to the target")

    artifact = SimpleNamespace(inputs=[{"shape": [1, 1, 32, 32]}], path=tmp_path, sha256="0")
    with pytest.raises(DataError) as got:
        artifact_accuracy(artifact, Target(), SimpleNamespace(name="d"), test)
    assert str(got.value) == str(expected.value)
    with pytest.raises(DataError) as got:
        test.images()  # the decoding path words it the same
    assert str(got.value) == str(expected.value)


PLAN = """
name = "data-checks"

[[models]]
source = "{model}"

[[exports]]
format = "pt2"

[[targets]]
name = "host"
devices = ["host"]

[measure]
warmup_iterations = 1
warmup_seconds = 0.0
min_iterations = 5
min_seconds = 0.0

[accuracy]
data = "{data}"
limit = 100
"""


def test_a_bad_data_set_in_a_plan_fails_its_accuracy_alone(
    tmp_path, monkeypatch, shared_cache, small_checkpoint
):
    """[accuracy] on a data set with an unreadable image: the cell keeps its profile and
    stores the very line `vitbench eval` prints; the run finishes."""
    from harness.dispatch import Dispatcher
    from harness.plan import load_plan
    from harness.store import open_store

    monkeypatch.setenv("VITBENCH_CACHE", str(shared_cache))
    monkeypatch.setenv("VITBENCH_COMMIT", "dc0dc0dc0dc0")
    root = make_folder(tmp_path / "f", classes=tuple("abcde"), per_class=6)  # the model's 5
    test = load_dataset(root, split="test")
    spoil(test.items[2], "cut")
    with pytest.raises(DataError) as expected:
        check_images(test)
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(model=small_checkpoint, data=root))
    st = open_store(tmp_path / "r.db")
    summary = Dispatcher(load_plan(plan), st, quiet=True).run()
    assert summary.done == 1 and summary.failed == 0, summary.failures
    (cell,) = st.cells([summary.run_id])
    assert cell["details"]["accuracy_error"] == str(expected.value)
    names = {r["name"] for r in st.metrics([cell["id"]])}
    assert "latency_p90_ms" in names and "accuracy" not in names
