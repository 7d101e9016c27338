"""Issue 17 item 8: settings changed after construction survive save_pretrained / from_pretrained."""
import json

import pytest
import torch

import smp_like as smp


def _unet():
    return smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8))


def test_set_input_padding_none_survives_save_and_load(tmp_path):
    model = _unet()
    model.set_input_padding(None)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["input_padding"] is None
    loaded = smp.from_pretrained(str(tmp_path))
    assert loaded.input_padding is None
    assert loaded.requires_divisible_input_shape == model.requires_divisible_input_shape


def test_strict_mode_of_fpn_survives_save_and_load(tmp_path):
    model = smp.FPN("resnet18", encoder_weights=None, encoder_depth=3, decoder_pyramid_channels=16,
                    decoder_segmentation_channels=32)
    model.set_input_padding(None)
    model.save_pretrained(tmp_path)
    loaded = smp.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="divisible"):
        loaded(torch.randn(1, 3, 30, 30))


def test_default_padding_stays_out_of_config_json(tmp_path):
    model = _unet()
    model.set_input_padding("replicate")
    model.set_input_padding("constant")
    model.save_pretrained(tmp_path)
    assert "input_padding" not in json.loads((tmp_path / "config.json").read_text())


def test_numpy_scalars_in_constructor_arguments_are_saved_as_numbers(tmp_path):
    np = pytest.importorskip("numpy")
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(8, 8, 8),
                     aux_params=dict(classes=2, dropout=np.float32(0.25)))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["aux_params"] == {"classes": 2, "dropout": 0.25} and config["encoder_depth"] == 3
    loaded = smp.from_pretrained(str(tmp_path))
    assert loaded.classification_head is not None
