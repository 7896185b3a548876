"""Calibration images: MedMNIST .npz, image folders, seeded synthetic, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.calibration import calibration_images, data_hash
from harness.errors import UserError


def test_npz_prefers_train_images_and_resizes_to_the_model(tmp_path):
    path = tmp_path / "d.npz"
    train = np.zeros((5, 28, 28), np.uint8)
    train[:, :, 14:] = 255  # right half white
    np.savez(path, test_images=np.full((3, 28, 28), 7, np.uint8), train_images=train)
    x = calibration_images(path, (1, 3, 56, 56))
    assert x.shape == (5, 3, 56, 56) and x.dtype == np.float32
    # the one preprocessing shared with training and evaluation: grey repeated to RGB, then
    # each channel normalised with ImageNet's mean and std
    from harness.data import preprocess

    np.testing.assert_allclose(x, preprocess(train, 56, 3), rtol=1e-6, atol=1e-6)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[0, :, 0, 0], (0 - mean) / std, rtol=1e-5)  # a black pixel
    np.testing.assert_allclose(x[0, :, 0, -1], (1 - mean) / std, rtol=1e-5)  # a white pixel


def test_folder_of_images_rgb_to_grey(tmp_path):
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255), (255, 255, 255)]):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    x = calibration_images(tmp_path, (1, 1, 32, 32), limit=2)
    assert x.shape == (2, 1, 32, 32)
    assert np.allclose(
        x[0],
        Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel((0, 0)) / 127.5 - 1,
        atol=1e-5,
    )


def test_seeded_when_none_and_hash_tracks_content():
    a = calibration_images(None, (1, 3, 16, 16), limit=4)
    b = calibration_images(None, (1, 3, 16, 16), limit=4)
    assert a.shape == (4, 3, 16, 16) and data_hash(a) == data_hash(b)
    b[0, 0, 0, 0] += 1
    assert data_hash(a) != data_hash(b)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing.npz", "does not exist"),
        (
            lambda p: (np.savez(p / "x.npz", labels=np.zeros(3)), p / "x.npz")[1],
            "no '*images' array",
        ),
        (lambda p: ((p / "x.npz").write_text("not npz"), p / "x.npz")[1], "not a readable .npz"),
        (lambda p: ((p / "e").mkdir(), p / "e")[1], "no PNG or JPEG images"),
        (
            lambda p: ((p / "d.csv").write_text("1"), p / "d.csv")[1],
            "expected a folder of PNG/JPEG images",
        ),
    ],
)
def test_bad_calibration_data(tmp_path, make, message):
    with pytest.raises(UserError, match=message.replace("*", r"\*").replace(".", r"\.")):
        calibration_images(make(tmp_path), (1, 1, 16, 16))


def test_a_calibration_image_over_pils_size_limit_is_one_line(tmp_path, monkeypatch):
    import warnings

    folder = tmp_path / "calib"
    folder.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels is over it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(UserError) as err:
            calibration_images(folder, (1, 1, 16, 16))
    text = str(err.value)
    assert "big.png" in text and "4,096 pixels" in text and "MAX_IMAGE_PIXELS = 1,000" in text
    assert "\n" not in text
