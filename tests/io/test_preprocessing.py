"""preprocessing.json: saved and read back, validated, and normalising as the formulas say."""

import json

import numpy as np
import pytest

from smp_like.io.preprocessing import PREPROCESSING_NAME, Preprocessing, from_encoder


def test_round_trip_and_missing_file(tmp_path):
    settings = Preprocessing(mean=[0.5, 0.4], std=[0.2, 0.1], class_names=["bg", "cell"], task="multiclass",
                             palette=[[0, 0, 0], [255, 0, 0]])
    settings.save(tmp_path)
    assert Preprocessing.load(tmp_path) == settings
    assert Preprocessing.load(tmp_path / "nowhere") is None


def test_bad_files_and_values_are_named(tmp_path):
    (tmp_path / PREPROCESSING_NAME).write_text(json.dumps({"mean": [0.5], "std": [0.1], "colour": 1}))
    with pytest.raises(ValueError, match="preprocessing.json.*unknown preprocessing keys \\['colour'\\]"):
        Preprocessing.load(tmp_path)
    (tmp_path / PREPROCESSING_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="preprocessing.json"):
        Preprocessing.load(tmp_path)
    with pytest.raises(ValueError, match="task"):
        Preprocessing(task="detection")
    with pytest.raises(ValueError, match="std"):
        Preprocessing(mean=[0.0], std=[0.0])
    with pytest.raises(ValueError, match="clip"):
        Preprocessing(clip=[5, 1])


def test_mean_std_zscore_clip_formulas():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = Preprocessing(mean=mean, std=std).normalize(image)
    for c in range(3):
        np.testing.assert_allclose(out[c], (image[c] / 255.0 - mean[c]) / std[c], rtol=1e-5, atol=1e-6)
    assert out.dtype == np.float32

    volume = rng.normal(100, 30, size=(2, 4, 5, 6))
    z = Preprocessing(normalization="zscore", clip=[50, 150], spatial_dims=3).normalize(volume)
    clipped = np.clip(volume, 50, 150)
    for c in range(2):
        np.testing.assert_allclose(z[c], (clipped[c] - clipped[c].mean()) / clipped[c].std(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="expects 3 input channels.*has 1"):
        Preprocessing(mean=mean, std=std).normalize(image[:1])


def test_from_encoder_uses_the_encoder_statistics():
    settings = from_encoder("resnet18", "imagenet", in_channels=4, class_names=["a", "b"])
    assert settings.mean == pytest.approx([0.485, 0.456, 0.406, 0.485])
    assert settings.max_pixel_value == 255.0
    grey = from_encoder("resnet18", None, in_channels=1)
    assert grey.mean == pytest.approx([np.mean([0.485, 0.456, 0.406])])
