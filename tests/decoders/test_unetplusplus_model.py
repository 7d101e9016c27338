"""UnetPlusPlus: SMP conformance, nested nodes, scse, depths, any input size, 3D, refused encoders, bad input."""

import json
import re
import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp
from smp_like.decoders.unetplusplus.decoder import UnetPlusPlusDecoder

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]
SMALL = dict(decoder_channels=(32, 16, 16, 8, 8))


def randomize_norms(model):
    # Non-trivial batch-norm statistics, so a norm applied in the wrong place cannot go unnoticed.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.num_features > 0:
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


def build_pair(**kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.UnetPlusPlus(encoder_weights=None, **kwargs)
    randomize_norms(theirs)
    ours = smp.UnetPlusPlus(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())  # same keys, in the same order
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    ours, theirs = build_pair(encoder_name=encoder_name, classes=3, aux_params=aux, **SMALL)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("depth", [3, 4, 5])
def test_scse_at_each_depth_matches_smp(depth):
    # Every scse block keeps >= 16 channels: below that SMP builds 0-channel convs (see the test further down).
    channels = (32, 16, 16, 16, 16)[:depth]
    ours, theirs = build_pair(encoder_name="resnet18", encoder_depth=depth, decoder_channels=channels,
                              decoder_attention_type="scse", classes=2)
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "options",
    [
        dict(encoder_depth=2, decoder_channels=(16, 8)),
        dict(encoder_depth=3, decoder_channels=(16, 8, 8)),
        dict(encoder_depth=4, decoder_channels=(32, 16, 8, 8)),
        dict(decoder_use_norm=False),
        dict(decoder_use_norm="identity"),
        dict(decoder_use_norm={"type": "batchnorm", "eps": 1e-3, "momentum": 0.2}),
        dict(decoder_use_norm={"type": "instancenorm", "affine": True}),
        dict(decoder_interpolation="bilinear"),
        dict(decoder_interpolation="bicubic", encoder_depth=3, decoder_channels=(16, 8, 8)),
        dict(in_channels=1, activation="sigmoid"),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_smp(options):
    kwargs = dict(encoder_name="resnet18", classes=2, **SMALL)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_transformer_style_encoder_with_placeholder_matches_smp():
    # tu-convnext_atto has no stride-2 feature (0-channel placeholder): the nested nodes of that level are empty.
    ours, theirs = build_pair(encoder_name="tu-convnext_atto", classes=2, **SMALL)
    assert len(list(ours.decoder.blocks["x_1_3"].parameters())) == 0
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, aux_params=dict(classes=3, dropout=0), **SMALL)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
def test_any_size_equals_smp_on_the_padded_input():
    ours, theirs = build_pair(encoder_name="resnet18", encoder_depth=4, decoder_channels=(32, 16, 8, 8), classes=2)
    x = torch.randn(1, 3, 45, 70)
    padded, shape = smp.pad_to_stride(x, 16)
    assert_same_outputs(eval_out(ours, x), smp.crop_to_shape(eval_out(theirs, padded), shape))


@pytest.mark.conformance
def test_vgg_center_block_keys_and_outputs_match_smp_decoder():
    # SMP builds a center block for VGG encoders but does not apply it; the decoder here does the same.
    torch.manual_seed(0)
    theirs = smp_oracle.UnetPlusPlus("vgg11", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 16))
    randomize_norms(theirs)
    theirs.eval()
    ours = UnetPlusPlusDecoder(theirs.encoder.out_channels, (32, 16, 16), n_blocks=3, center=True).eval()
    ours.load_state_dict(theirs.decoder.state_dict(), strict=True)
    with torch.no_grad():
        features = theirs.encoder(torch.randn(1, 3, 32, 32))
        assert_same_outputs(ours(features), theirs.decoder(features))


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 16),
                                     decoder_attention_type="scse", classes=3).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.UnetPlusPlus
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))

    ours.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert "input_padding" not in config and "spatial_dims" not in config
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


@pytest.mark.conformance
def test_mit_encoders_are_refused_as_in_smp():
    with pytest.raises(ValueError, match="mit_b0"):
        smp_oracle.UnetPlusPlus("mit_b0", encoder_weights=None)
    with pytest.raises(ValueError, match=r"UnetPlusPlus does not support `encoder_name`='mit_b0'.*Mix Transformer"):
        smp.UnetPlusPlus("mit_b0", encoder_weights=None)


# ----------------------------------------------------------------------------- structure, differences from SMP


def test_nested_node_layout():
    decoder = UnetPlusPlusDecoder((3, 8, 8, 16, 32), (16, 8, 8, 4), n_blocks=4)
    assert list(decoder.blocks) == ["x_0_0", "x_0_1", "x_1_1", "x_0_2", "x_1_2", "x_2_2", "x_0_3"]
    # x_0_2 fuses x_0_1 (8) with x_1_2, x_2_2 and the stride-2 skip (8 channels each).
    assert decoder.blocks["x_0_2"].conv1[0].in_channels == 8 + 3 * 8
    features = [torch.randn(1, 3, 32, 32), torch.randn(1, 8, 16, 16), torch.randn(1, 8, 8, 8),
                torch.randn(1, 16, 4, 4), torch.randn(1, 32, 2, 2)]
    assert decoder(features).shape == (1, 4, 32, 32)
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        decoder(features, time_emb=torch.randn(1, 4))


def test_depth_one_works_where_smp_crashes():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=1, decoder_channels=(8,))
    assert list(model.decoder.blocks) == ["x_0_0"]
    assert eval_out(model, torch.randn(1, 3, 30, 34)).shape == (1, 1, 30, 34)


def test_dilated_encoder_works_where_smp_crashes():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, output_stride=16, **SMALL)
    assert model.input_stride == 16
    assert eval_out(model, torch.randn(1, 3, 48, 48)).shape == (1, 1, 48, 48)


def test_scse_with_fewer_channels_than_its_reduction():
    # SMP builds a 0-channel conv here and fails at forward; smp_like keeps one hidden channel.
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                             decoder_attention_type="scse")
    assert eval_out(model, torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_layernorm_normalises_channels():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=2, decoder_channels=(8, 4),
                             decoder_use_norm="layernorm")
    assert eval_out(model, torch.randn(1, 3, 32, 40)).shape == (1, 1, 32, 40)


# ----------------------------------------------------------------------------- any size, 3D


def test_any_input_size_2d():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2), **SMALL)
    mask, label = eval_out(model, torch.randn(1, 3, 131, 97))
    assert mask.shape == (1, 3, 131, 97) and label.shape == (1, 2)


def test_3d_odd_size():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=(32, 16, 16, 16),
                             spatial_dims=3, in_channels=1, classes=2, aux_params=dict(classes=4),
                             decoder_attention_type="scse", decoder_interpolation="bilinear")
    assert isinstance(model.decoder.blocks["x_1_1"].conv1[0], torch.nn.Conv3d)
    mask, label = eval_out(model, torch.randn(1, 1, 37, 41, 29))
    assert mask.shape == (1, 2, 37, 41, 29) and label.shape == (1, 4)


def test_3d_trains_one_step():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                             spatial_dims=3, classes=2)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_strict_mode_raises_smp_style_message():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, input_padding=None, **SMALL)
    with pytest.raises(ValueError, match=r"Wrong input shape \(65, 70\).*divisible.*32.*" + re.escape("(96, 96)")):
        model(torch.randn(1, 3, 65, 70))
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)


# ----------------------------------------------------------------------------- bad input, named clearly


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_name="mit_b2"), ValueError, r"UnetPlusPlus.*encoder_name.*'mit_b2'"),
        (dict(decoder_channels=(16, 8)), ValueError, r"decoder_channels.*encoder_depth=5.*2"),
        (dict(decoder_channels="abcde"), ValueError, r"decoder_channels.*positive ints"),
        (dict(encoder_depth=6, decoder_channels=(8,) * 6), ValueError, r"depth.*1\.\.5.*6"),
        (dict(encoder_depth=2.0, decoder_channels=(8, 8)), ValueError, r"encoder_depth.*int.*2\.0"),
        (dict(decoder_attention_type="cbam2"), ValueError, r"decoder_attention_type.*'cbam2'"),
        (dict(decoder_use_norm="groupnorm"), ValueError, r"decoder_use_norm.*'groupnorm'"),
        (dict(decoder_interpolation="cubic"), ValueError, r"interpolation.*'cubic'"),
        (dict(classes=-1), ValueError, r"classes.*-1"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*\(2, 3\).*4"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
        (dict(aux_params=[2]), TypeError, r"aux_params.*dict"),
        (dict(encoder_name="tu-test_resnet", spatial_dims=3), ValueError, r"2D only.*spatial_dims=3"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.UnetPlusPlus(**kwargs)


def test_wrong_input_at_forward():
    model = smp.UnetPlusPlus("resnet18", encoder_weights=None, **SMALL).eval()
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\).*\(3, 64, 64\)"):
        model(torch.randn(3, 64, 64))


def test_deprecated_decoder_use_batchnorm():
    with pytest.warns(DeprecationWarning, match="decoder_use_norm"):
        model = smp.UnetPlusPlus("resnet18", encoder_weights=None, decoder_use_batchnorm=False)
    assert isinstance(model.decoder.blocks["x_0_0"].conv1[1], torch.nn.Identity)


def test_signature_matches_smp():
    import inspect

    ours = inspect.signature(smp.UnetPlusPlus.__init__).parameters
    theirs = inspect.signature(smp_oracle.UnetPlusPlus.__init__).parameters
    shared = [name for name in theirs if name != "kwargs"]
    assert [n for n in ours if n in shared] == shared
    assert all(ours[n].default == theirs[n].default for n in shared)
    assert ours["spatial_dims"].default == 2 and ours["input_padding"].default == "constant"


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.UnetPlusPlus("resnet18", encoder_weights=None, **SMALL)
