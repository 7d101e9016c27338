"""FPN: SMP conformance (encoders, aux head, merge policies, depths, interpolation), SMP folders, any input size
(including SMP's non-input-sized masks at depth 3/4), 3D, strict mode and errors for bad input."""

import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
import torch.nn.functional as F
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]
SMALL = dict(decoder_pyramid_channels=16, decoder_segmentation_channels=32)


def randomize_norm_statistics(model):
    # Fresh BatchNorm statistics (0 mean, unit variance) would hide a mixed-up norm; make them informative.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm)) and module.bias is not None:
            module.bias.data.normal_(0, 0.1, generator=generator)


def build_pair(**kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.FPN(encoder_weights=None, **kwargs)
    randomize_norm_statistics(theirs)
    ours = smp.FPN(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    ours, theirs = build_pair(encoder_name=encoder_name, classes=3, aux_params=aux, **SMALL)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")  # SMP's nn.Softmax() without dim
@pytest.mark.parametrize(
    "options",
    [
        dict(decoder_merge_policy="cat"),
        dict(decoder_merge_policy="cat", encoder_depth=4),
        dict(encoder_depth=3),  # mask 4x the input, as SMP
        dict(encoder_depth=4, upsampling=2),
        dict(decoder_interpolation="bilinear"),
        dict(decoder_interpolation="bicubic"),
        dict(decoder_pyramid_channels=24, decoder_segmentation_channels=64),
        dict(decoder_dropout=0.5, upsampling=1),
        dict(in_channels=1, activation="softmax"),
        dict(activation="argmax2d"),
        dict(encoder_name="tu-test_resnet", encoder_depth=3, decoder_merge_policy="cat"),
        dict(encoder_name="tu-test_convnext"),  # 0-channel stride-2 placeholder, unused at depth 5
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_matches_smp_options(options):
    kwargs = dict(encoder_name="resnet18", classes=2, **SMALL)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode():
    # No dropout (decoder or aux head): train-mode outputs are then deterministic, with batch statistics.
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, decoder_dropout=0.0,
                              aux_params=dict(classes=3, dropout=0), **SMALL)
    x = torch.randn(2, 3, 64, 96)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
@pytest.mark.parametrize("depth, size", [(5, (70, 45)), (3, (37, 50))])
def test_odd_size_is_smp_on_the_padded_input_cropped(depth, size):
    # What pad-and-crop promises: SMP's output for the zero-padded input, restricted to the input's extent
    # (scaled by the mask/input ratio, 4 at depth 3).
    ours, theirs = build_pair(encoder_name="resnet18", encoder_depth=depth, **SMALL)
    x = torch.randn(1, 3, *size)
    stride = ours.input_stride
    padded = F.pad(x, [0, (-size[1]) % stride, 0, (-size[0]) % stride])
    scale = 4 if depth == 3 else 1
    expected = eval_out(theirs, padded)[..., : size[0] * scale, : size[1] * scale]
    assert_same_outputs(eval_out(ours, x), expected)


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.FPN("resnet18", encoder_weights=None, decoder_merge_policy="cat", classes=3,
                            aux_params=dict(classes=2), **SMALL).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.FPN
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))
    ours.save_pretrained(tmp_path / "ours")
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


@pytest.mark.parametrize("size", [(64, 64), (250, 251), (33, 47), (1, 1)])
def test_any_input_size_2d(size):
    model = smp.FPN("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2), **SMALL)
    mask, label = eval_out(model, torch.randn(1, 3, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 2)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_encoder_works(output_stride):
    # SMP's top-down pathway up-samples by a fixed x2 and fails on a dilated encoder; resizing to the skip works.
    model = smp.FPN("resnet18", encoder_weights=None, output_stride=output_stride, **SMALL)
    assert model.output_stride == output_stride
    assert eval_out(model, torch.randn(1, 3, 40, 72)).shape == (1, 1, 40, 72)


def test_mask_scale_follows_depth_and_upsampling():
    for depth, upsampling, scale in [(4, 4, 2), (3, 1, 1)]:
        model = smp.FPN("resnet18", encoder_weights=None, encoder_depth=depth, upsampling=upsampling, **SMALL)
        assert model.mask_scale == scale
        assert eval_out(model, torch.randn(1, 3, 33, 40)).shape == (1, 1, 33 * scale, 40 * scale)


def test_3d_odd_size():
    model = smp.FPN("resnet18", encoder_weights=None, spatial_dims=3, in_channels=2, classes=3,
                    aux_params=dict(classes=5), decoder_merge_policy="cat", decoder_interpolation="bilinear", **SMALL)
    mask, label = eval_out(model, torch.randn(1, 2, 37, 41, 29))
    assert mask.shape == (1, 3, 37, 41, 29) and label.shape == (1, 5)
    assert isinstance(model.decoder.dropout, torch.nn.Dropout3d) and model.spatial_dims == 3


def test_3d_trains_one_step():
    model = smp.FPN("resnet18", encoder_weights=None, spatial_dims=3, classes=2, encoder_depth=4, upsampling=2, **SMALL)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_strict_mode_raises_smp_style_message():
    model = smp.FPN("resnet18", encoder_weights=None, input_padding=None, **SMALL)
    with pytest.raises(ValueError, match=r"Wrong input shape \(250, 251\).*divisible.*32.*Pad the input to \(256, 256\)"):
        model(torch.randn(1, 3, 250, 251))
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    # 32 segmentation channels = one channel per GroupNorm group: a 1-pixel deepest map cannot be normalised.
    with pytest.raises(ValueError, match=r"at least 64.*Pad the input to \(64, 64\)"):
        model(torch.randn(1, 3, 32, 32))


def test_input_padding_is_left_out_of_config_at_default(tmp_path):
    import json

    smp.FPN("resnet18", encoder_weights=None, **SMALL).save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "input_padding" not in config and "spatial_dims" not in config
    smp.FPN("resnet18", encoder_weights=None, input_padding="reflect", **SMALL).save_pretrained(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "config.json").read_text())["input_padding"] == "reflect"
    assert smp.from_pretrained(tmp_path / "b").input_padding == "reflect"


def test_decoder_refuses_time_embedding():
    model = smp.FPN("resnet18", encoder_weights=None, **SMALL)
    features = model.encoder(torch.randn(1, 3, 64, 64))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(features, time_emb=torch.randn(1, 8))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_depth=2), ValueError, r"encoder_depth.*3\.\.5.*2"),
        (dict(encoder_depth=6), ValueError, r"depth.*6"),
        (dict(decoder_merge_policy="mul"), ValueError, r"decoder_merge_policy.*\('add', 'cat'\).*'mul'"),
        (dict(decoder_segmentation_channels=48), ValueError, r"decoder_segmentation_channels.*multiple of 32.*48"),
        (dict(decoder_pyramid_channels=0), ValueError, r"decoder_pyramid_channels.*positive.*0"),
        (dict(decoder_dropout=1.5), ValueError, r"decoder_dropout.*\[0, 1\].*1\.5"),
        (dict(decoder_interpolation="cubic"), ValueError, r"interpolation.*'cubic'"),
        (dict(decoder_interpolation="bicubic", spatial_dims=3), ValueError, r"'bicubic'.*spatial_dims=3"),
        (dict(upsampling=0), ValueError, r"upsampling.*>= 1.*0"),
        (dict(decoder_use_norm=False), TypeError, r"FPN has no `decoder_use_norm`.*GroupNorm"),
        (dict(encoder_name="tu-test_convnext", encoder_depth=4), ValueError, r"0 channels.*encoder_depth=5"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*4"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
        (dict(aux_params=dict(classes=2, foo=1)), TypeError, r"aux_params.*\['foo'\]"),
        (dict(activation="relu7"), ValueError, r"activation.*'relu7'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **SMALL, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.FPN(**kwargs)


def test_bad_input_at_forward():
    model = smp.FPN("resnet18", encoder_weights=None, **SMALL)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\)"):
        model(torch.randn(1, 3, 8, 64, 64))


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.FPN("resnet18", encoder_weights=None)


def test_argmax_activation_with_padding_crops_the_trailing_axes():
    model = smp.FPN("resnet18", encoder_weights=None, classes=3, activation="argmax2d", **SMALL)
    mask = eval_out(model, torch.randn(2, 3, 70, 45))
    assert mask.shape == (2, 70, 45) and mask.dtype == torch.int64
