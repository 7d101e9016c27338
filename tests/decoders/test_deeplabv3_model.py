"""DeepLabV3 / DeepLabV3Plus: SMP conformance, output strides, ASPP options, any input size, 3D, bad input."""

import json
import re
import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp
from smp_like.base.exportable import AdaptiveAvgPool
from smp_like.decoders.deeplabv3.decoder import ASPP, DeepLabV3Decoder, DeepLabV3PlusDecoder

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]
ARCHS = ["DeepLabV3", "DeepLabV3Plus"]


def randomize_norms(model):
    # Non-trivial batch-norm statistics, so a norm applied in the wrong place cannot go unnoticed.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


def build_pair(arch, **kwargs):
    torch.manual_seed(0)
    theirs = getattr(smp_oracle, arch)(encoder_weights=None, **kwargs)
    randomize_norms(theirs)
    ours = getattr(smp, arch)(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("encoder_name", ENCODERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_matches_smp(arch, encoder_name, aux):
    ours, theirs = build_pair(arch, encoder_name=encoder_name, decoder_channels=32, classes=3, aux_params=aux)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("separable", [True, False])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_deeplabv3plus_output_stride_and_separable_match_smp(output_stride, separable):
    ours, theirs = build_pair("DeepLabV3Plus", encoder_name="resnet18", decoder_channels=32, classes=2,
                              encoder_output_stride=output_stride, decoder_aspp_separable=separable)
    assert ours.output_stride == output_stride
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "arch, options",
    [
        ("DeepLabV3Plus", dict(decoder_atrous_rates=(2, 4, 6))),
        ("DeepLabV3Plus", dict(decoder_atrous_rates=[1, 3, 5], decoder_aspp_dropout=0.1)),
        ("DeepLabV3Plus", dict(encoder_depth=3)),
        ("DeepLabV3Plus", dict(encoder_depth=4, encoder_output_stride=8)),
        ("DeepLabV3Plus", dict(upsampling=2)),
        ("DeepLabV3Plus", dict(in_channels=1, activation="softmax2d")),
        ("DeepLabV3", dict(encoder_depth=3)),
        ("DeepLabV3", dict(encoder_depth=5)),
        ("DeepLabV3", dict(encoder_depth=4, encoder_output_stride=16)),
        ("DeepLabV3", dict(encoder_depth=1)),
        ("DeepLabV3", dict(encoder_output_stride=16)),
        ("DeepLabV3", dict(decoder_aspp_separable=True, decoder_atrous_rates=(3, 6, 9))),
        ("DeepLabV3", dict(upsampling=4)),
        ("DeepLabV3", dict(upsampling=1, activation="sigmoid")),
        ("DeepLabV3", dict(in_channels=5)),
    ],
    ids=lambda o: o if isinstance(o, str) else "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_match_smp(arch, options):
    kwargs = dict(encoder_name="resnet18", decoder_channels=16, classes=2)
    kwargs.update(options)
    ours, theirs = build_pair(arch, **kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("arch", ARCHS)
def test_matches_smp_in_train_mode(arch):
    # No dropout anywhere: train-mode outputs are then deterministic (batch statistics in every norm).
    ours, theirs = build_pair(arch, encoder_name="resnet18", decoder_channels=16, decoder_aspp_dropout=0.0,
                              classes=2, aux_params=dict(classes=3, dropout=0))
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
@pytest.mark.parametrize("arch", ARCHS)
def test_any_size_equals_smp_on_the_padded_input(arch):
    ours, theirs = build_pair(arch, encoder_name="resnet18", decoder_channels=16, classes=2)
    x = torch.randn(1, 3, 37, 53)
    padded, shape = smp.pad_to_stride(x, ours.input_stride)
    expected = smp.crop_to_shape(eval_out(theirs, padded), shape)
    assert_same_outputs(eval_out(ours, x), expected)


@pytest.mark.conformance
@pytest.mark.parametrize("arch", ARCHS)
def test_batch_of_one_in_train_mode_fails_as_in_smp(arch):
    ours, theirs = build_pair(arch, encoder_name="resnet18", decoder_channels=16)
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        theirs.train()(x)
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*batch of 1.*model\.eval\(\)"):
        ours.train()(x)
    assert eval_out(ours, x).shape == (1, 1, 64, 64)  # inference on one sample is fine


@pytest.mark.conformance
@pytest.mark.parametrize("arch", ARCHS)
def test_smp_folder_loads_and_ours_loads_in_smp(arch, tmp_path):
    torch.manual_seed(0)
    theirs = getattr(smp_oracle, arch)("resnet18", encoder_weights=None, decoder_channels=16,
                                       decoder_atrous_rates=(6, 12, 18), classes=3).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is getattr(smp, arch)
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))

    ours.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert "input_padding" not in config and "spatial_dims" not in config  # smp_like-only, at their defaults
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


def test_non_default_extension_options_are_saved(tmp_path):
    model = smp.DeepLabV3("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=8,
                          spatial_dims=3, input_padding="replicate")
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["spatial_dims"] == 3 and config["input_padding"] == "replicate"
    loaded = smp.from_pretrained(tmp_path / "m")
    assert loaded.spatial_dims == 3 and loaded.input_padding == "replicate"


# ----------------------------------------------------------------------------- any size, 3D, strides


@pytest.mark.parametrize("arch", ARCHS)
def test_any_input_size_2d(arch):
    model = getattr(smp, arch)("resnet18", encoder_weights=None, decoder_channels=32, classes=3,
                               aux_params=dict(classes=2))
    mask, label = eval_out(model, torch.randn(1, 3, 131, 97))
    assert mask.shape == (1, 3, 131, 97) and label.shape == (1, 2)


@pytest.mark.parametrize("arch", ARCHS)
def test_3d_odd_size(arch):
    model = getattr(smp, arch)("resnet18", encoder_weights=None, decoder_channels=16, spatial_dims=3,
                               in_channels=1, classes=2, aux_params=dict(classes=4))
    convs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv3d) and m.dilation != (1, 1, 1)]
    assert convs and all(len(m.dilation) == 3 for m in convs)  # 3D atrous convolutions
    pools = [m for m in model.decoder.modules() if isinstance(m, AdaptiveAvgPool)]
    assert len(pools) == 1 and pools[0].spatial_dims == 3
    mask, label = eval_out(model, torch.randn(1, 1, 37, 41, 29))
    assert mask.shape == (1, 2, 37, 41, 29) and label.shape == (1, 4)
    assert model.spatial_dims == 3


def test_3d_trains_one_step():
    model = smp.DeepLabV3Plus("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=8,
                              spatial_dims=3, classes=2)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


@pytest.mark.parametrize(
    "arch, kwargs, stride",
    [
        ("DeepLabV3", dict(), 8),
        ("DeepLabV3", dict(encoder_output_stride=16), 16),
        ("DeepLabV3", dict(encoder_depth=3, encoder_output_stride=16), 8),
        ("DeepLabV3Plus", dict(), 16),
        ("DeepLabV3Plus", dict(encoder_output_stride=8), 8),
    ],
)
def test_output_stride_and_input_stride(arch, kwargs, stride):
    model = getattr(smp, arch)("resnet18", encoder_weights=None, decoder_channels=8, **kwargs)
    assert model.output_stride == stride and model.input_stride == stride
    features = model.encoder(torch.randn(1, 3, 64, 64))
    assert features[-1].shape[-1] == 64 // stride


@pytest.mark.parametrize(
    "arch, upsampling, expected",
    [
        ("DeepLabV3", 1, (9, 9)),  # stride-8 cells covering 65 x 70: ceil(65 / 8), ceil(70 / 8)
        ("DeepLabV3", 2, (17, 18)),
        ("DeepLabV3", 16, (130, 140)),
        ("DeepLabV3Plus", 2, (33, 35)),  # the V3+ decoder works at stride 4
        ("DeepLabV3Plus", None, (65, 70)),
    ],
)
def test_custom_upsampling_crops_to_the_scaled_input(arch, upsampling, expected):
    model = getattr(smp, arch)("resnet18", encoder_weights=None, decoder_channels=8, upsampling=upsampling)
    assert eval_out(model, torch.randn(1, 3, 65, 70)).shape == (1, 1, *expected)


@pytest.mark.parametrize("arch, stride", [("DeepLabV3", 8), ("DeepLabV3Plus", 16)])
def test_strict_mode_raises_smp_style_message(arch, stride):
    model = getattr(smp, arch)("resnet18", encoder_weights=None, decoder_channels=8, input_padding=None)
    padded = tuple(-(-s // stride) * stride for s in (65, 70))
    pattern = rf"Wrong input shape \(65, 70\).*divisible.*{stride}.*{re.escape(str(padded))}"
    with pytest.raises(ValueError, match=pattern):
        model(torch.randn(1, 3, 65, 70))
    assert eval_out(model, torch.randn(1, 3, 64, 80)).shape == (1, 1, 64, 80)


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_input_padding_modes(mode):
    torch.manual_seed(0)
    model = smp.DeepLabV3("resnet18", encoder_weights=None, decoder_channels=8, input_padding=mode).eval()
    x = torch.randn(1, 3, 37, 41)
    padded, shape = smp.pad_to_stride(x, 8, mode=mode)
    model.set_input_padding(None)
    expected = smp.crop_to_shape(eval_out(model, padded), shape)
    model.set_input_padding(mode)
    torch.testing.assert_close(eval_out(model, x), expected)


def test_aspp_generalises_to_any_number_of_rates():
    # SMP unpacks exactly three rates; the ASPP here takes any number.
    model = smp.DeepLabV3("resnet18", encoder_weights=None, decoder_channels=8, decoder_atrous_rates=(6, 12, 18, 24))
    assert len(model.decoder.aspp.convs) == 6  # 1x1 + four atrous + pooling
    assert model.decoder.aspp.project[0].in_channels == 6 * 8
    assert eval_out(model, torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    one = ASPP(16, 4, atrous_rates=(2,)).eval()
    assert one(torch.randn(2, 16, 5, 7)).shape == (2, 4, 5, 7)


def test_aspp_pooling_branch_is_global():
    torch.manual_seed(0)
    aspp = ASPP(8, 4, atrous_rates=(1,)).eval()
    x = torch.randn(2, 8, 6, 10)
    pooled = aspp.convs[-1](x)
    reference = aspp.convs[-1][3](aspp.convs[-1][2](aspp.convs[-1][1](x.mean(dim=(2, 3), keepdim=True))))
    torch.testing.assert_close(pooled, reference.expand(-1, -1, 6, 10))


def test_decoders_reject_time_embedding():
    v3 = DeepLabV3Decoder(in_channels=16, out_channels=8).eval()
    plus = DeepLabV3PlusDecoder(encoder_channels=(3, 8, 8, 16), out_channels=8).eval()
    features = [torch.randn(2, 3, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    assert v3(features).shape == (2, 8, 2, 2) and plus(features).shape == (2, 8, 4, 4)
    for decoder in (v3, plus):
        with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
            decoder(features, time_emb=torch.randn(2, 4))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_decoders_are_scriptable():
    features = [torch.randn(2, 3, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)]
    for decoder in (DeepLabV3Decoder(16, 8), DeepLabV3PlusDecoder((3, 8, 8, 16), 8)):
        scripted = torch.jit.script(decoder.eval())
        with torch.no_grad():
            torch.testing.assert_close(scripted(features), decoder(features))


# ----------------------------------------------------------------------------- bad input, named clearly


@pytest.mark.parametrize(
    "arch, kwargs, error, pattern",
    [
        ("DeepLabV3Plus", dict(encoder_output_stride=32), ValueError, r"DeepLabV3Plus.*output_stride.*8 or 16.*32"),
        ("DeepLabV3Plus", dict(encoder_output_stride=4), ValueError, r"encoder_output_stride.*8 or 16.*4"),
        ("DeepLabV3", dict(encoder_output_stride=32), ValueError, r"DeepLabV3 .*encoder_output_stride.*8 or 16.*32"),
        ("DeepLabV3Plus", dict(encoder_depth=2), ValueError, r"encoder_depth.*3, 4 or 5.*2"),
        ("DeepLabV3Plus", dict(encoder_depth=6), ValueError, r"encoder_depth.*3, 4 or 5.*6"),
        ("DeepLabV3", dict(encoder_depth=6), ValueError, r"depth.*1\.\.5.*6"),
        ("DeepLabV3", dict(decoder_atrous_rates=()), ValueError, r"decoder_atrous_rates.*non-empty"),
        ("DeepLabV3", dict(decoder_atrous_rates=(6.0, 12, 18)), ValueError, r"atrous_rates.*positive ints.*6\.0"),
        ("DeepLabV3", dict(decoder_atrous_rates=(0, 1, 2)), ValueError, r"decoder_atrous_rates.*positive"),
        ("DeepLabV3Plus", dict(decoder_atrous_rates=6), ValueError, r"decoder_atrous_rates.*sequence.*6"),
        ("DeepLabV3Plus", dict(decoder_atrous_rates="abc"), ValueError, r"decoder_atrous_rates.*'abc'"),
        ("DeepLabV3", dict(decoder_channels=0), ValueError, r"decoder_channels.*positive int.*0"),
        ("DeepLabV3Plus", dict(decoder_channels=(256,)), ValueError, r"decoder_channels.*positive int"),
        ("DeepLabV3", dict(decoder_aspp_dropout=1.5), ValueError, r"decoder_aspp_dropout.*\[0, 1\].*1\.5"),
        ("DeepLabV3", dict(decoder_aspp_separable="yes"), ValueError, r"decoder_aspp_separable.*'yes'"),
        ("DeepLabV3", dict(upsampling=0), ValueError, r"upsampling.*positive int.*0"),
        ("DeepLabV3Plus", dict(upsampling=2.5), ValueError, r"upsampling.*2\.5"),
        ("DeepLabV3", dict(classes=0), ValueError, r"classes.*0"),
        ("DeepLabV3", dict(spatial_dims=4), ValueError, r"spatial_dims.*\(2, 3\).*4"),
        ("DeepLabV3Plus", dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
        ("DeepLabV3", dict(activation="relu7"), ValueError, r"activation.*'relu7'"),
        ("DeepLabV3Plus", dict(aux_params=dict(classes=2, foo=1)), TypeError, r"aux_params.*\['foo'\]"),
        ("DeepLabV3", dict(encoder_name="tu-test_resnet", spatial_dims=3), ValueError, r"2D only.*spatial_dims=3"),
    ],
)
def test_bad_construction(arch, kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        getattr(smp, arch)(**kwargs)


@pytest.mark.conformance
@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("DeepLabV3Plus", dict(encoder_output_stride=32)),
        ("DeepLabV3", dict(encoder_output_stride=32)),
        ("DeepLabV3Plus", dict(encoder_depth=2)),
        ("DeepLabV3", dict(decoder_aspp_dropout=1.5)),
    ],
)
def test_smp_rejects_the_same(arch, kwargs):
    with pytest.raises(ValueError):
        getattr(smp_oracle, arch)("resnet18", encoder_weights=None, **kwargs)
    with pytest.raises(ValueError):
        getattr(smp, arch)("resnet18", encoder_weights=None, **kwargs)


@pytest.mark.parametrize("arch", ARCHS)
def test_wrong_input_at_forward(arch):
    model = getattr(smp, arch)("resnet18", encoder_weights=None, decoder_channels=8).eval()
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\)"):
        model(torch.randn(1, 3, 8, 64, 64))


def test_signatures_match_smp():
    import inspect

    for arch in ARCHS:
        ours = inspect.signature(getattr(smp, arch).__init__).parameters
        theirs = inspect.signature(getattr(smp_oracle, arch).__init__).parameters
        shared = [name for name in theirs if name != "kwargs"]
        assert [n for n in ours if n in shared] == shared
        for name in shared:
            assert ours[name].default == theirs[name].default, (arch, name)
        assert ours["spatial_dims"].default == 2 and ours["input_padding"].default == "constant"


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.DeepLabV3("resnet18", encoder_weights=None, decoder_channels=8)
        smp.DeepLabV3Plus("resnet18", encoder_weights=None, decoder_channels=8)
