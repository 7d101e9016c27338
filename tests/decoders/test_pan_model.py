"""PAN: SMP conformance (encoders, aux head, encoder_output_stride 16/32, depths, interpolation), SMP folders, any
input size (including below SMP's minimum), 3D, strict mode and errors for bad input."""

import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
import torch.nn.functional as F
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]
SMALL = dict(decoder_channels=16)


def randomize_norm_statistics(model):
    # Fresh BatchNorm statistics (0 mean, unit variance) would hide a mixed-up norm; make them informative.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.bias.data.normal_(0, 0.1, generator=generator)


def build_pair(**kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.PAN(encoder_weights=None, **kwargs)
    randomize_norm_statistics(theirs)
    ours = smp.PAN(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    # 128 px: the smallest size SMP's PAN handles at encoder_output_stride=16 (FPA pools the 8x8 map to 1x1).
    ours, theirs = build_pair(encoder_name=encoder_name, classes=3, aux_params=aux, **SMALL)
    x = torch.randn(2, 3, 128, 128)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")  # SMP's nn.Softmax() without dim
@pytest.mark.parametrize(
    "options, size",
    [
        (dict(encoder_output_stride=32), (256, 256)),
        (dict(encoder_output_stride=32, encoder_name="tu-test_resnet"), (256, 256)),
        (dict(encoder_output_stride=16), (144, 176)),
        (dict(encoder_depth=3), (64, 96)),
        (dict(encoder_depth=4, encoder_output_stride=32), (128, 160)),
        (dict(decoder_interpolation="nearest"), (128, 128)),
        (dict(decoder_interpolation="bicubic"), (128, 128)),
        (dict(decoder_channels=8, upsampling=2), (128, 128)),
        (dict(in_channels=1, activation="softmax"), (128, 128)),
        (dict(encoder_name="tu-test_convnext"), (128, 128)),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) if isinstance(o, dict) else "x".join(map(str, o)),
)
def test_matches_smp_options(options, size):
    kwargs = dict(encoder_name="resnet18", classes=2, **SMALL)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(1, kwargs.get("in_channels", 3), *size)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode():
    # Batch 2: the global-pooling branches normalise one value per channel and sample.
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, aux_params=dict(classes=3, dropout=0), **SMALL)
    x = torch.randn(2, 3, 128, 160)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
def test_odd_size_is_smp_on_the_padded_input_cropped():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, **SMALL)
    x = torch.randn(1, 3, 150, 131)
    padded = F.pad(x, [0, 144 - 131, 0, 160 - 150])
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, padded)[..., :150, :131])


@pytest.mark.conformance
def test_small_input_is_smp_on_the_input_padded_to_its_minimum():
    # Below 8x the output stride SMP fails inside FPA; smp_like pads up to that minimum (128 here).
    ours, theirs = build_pair(encoder_name="resnet18", **SMALL)
    x = torch.randn(1, 3, 40, 130)
    padded = F.pad(x, [0, 144 - 130, 0, 128 - 40])
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, padded)[..., :40, :130])
    with pytest.raises(RuntimeError):
        eval_out(theirs, torch.randn(1, 3, 64, 64))


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.PAN("resnet18", encoder_weights=None, encoder_output_stride=32, classes=3,
                            aux_params=dict(classes=2), **SMALL).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.PAN and ours.output_stride == 32
    x = torch.randn(1, 3, 256, 256)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))
    ours.save_pretrained(tmp_path / "ours")
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


@pytest.mark.parametrize("size", [(128, 128), (250, 251), (33, 47), (1, 1)])
def test_any_input_size_2d(size):
    model = smp.PAN("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2), **SMALL)
    mask, label = eval_out(model, torch.randn(1, 3, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 2)


@pytest.mark.parametrize("output_stride, depth, minimum", [(16, 5, 128), (32, 5, 256), (16, 4, 128), (32, 3, 64)])
def test_min_input_size(output_stride, depth, minimum):
    model = smp.PAN("resnet18", encoder_weights=None, encoder_output_stride=output_stride, encoder_depth=depth,
                    **SMALL)
    assert model.min_input_size == minimum


def test_3d_odd_size():
    # encoder_depth 3: output stride 8, so volumes are padded to 64^3 at least (128^3 at depth 5).
    model = smp.PAN("resnet18", encoder_weights=None, encoder_depth=3, spatial_dims=3, in_channels=2, classes=3,
                    aux_params=dict(classes=5), decoder_interpolation="nearest", **SMALL)
    mask, label = eval_out(model, torch.randn(1, 2, 37, 41, 29))
    assert mask.shape == (1, 3, 37, 41, 29) and label.shape == (1, 5)
    assert isinstance(model.decoder.fpa.down1[0], torch.nn.MaxPool3d)


def test_3d_trains_one_step():
    model = smp.PAN("resnet18", encoder_weights=None, encoder_depth=3, spatial_dims=3, classes=2, **SMALL)
    x, target = torch.randn(2, 3, 64, 64, 64), torch.randint(0, 2, (2, 64, 64, 64))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_strict_mode_raises_smp_style_messages():
    model = smp.PAN("resnet18", encoder_weights=None, input_padding=None, **SMALL)
    with pytest.raises(ValueError, match=r"Wrong input shape \(250, 251\).*divisible.*16.*Pad the input to \(256, 256\)"):
        model(torch.randn(1, 3, 250, 251))
    with pytest.raises(ValueError, match=r"Wrong input shape \(64, 160\).*at least 128.*Pad the input to \(128, 160\)"):
        model(torch.randn(1, 3, 64, 160))
    assert eval_out(model, torch.randn(1, 3, 128, 144)).shape == (1, 1, 128, 144)


def test_reflect_padding_too_small_input_is_named():
    model = smp.PAN("resnet18", encoder_weights=None, input_padding="reflect", **SMALL)
    with pytest.raises(ValueError, match=r"\(40, 40\).*too small to pad to \(128, 128\).*'reflect'"):
        model(torch.randn(1, 3, 40, 40))
    assert eval_out(model, torch.randn(1, 3, 100, 120)).shape == (1, 1, 100, 120)


def test_decoder_refuses_time_embedding():
    model = smp.PAN("resnet18", encoder_weights=None, **SMALL)
    features = model.encoder(torch.randn(1, 3, 128, 128))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(features, time_emb=torch.randn(1, 8))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_output_stride=8), ValueError, r"encoder_output_stride.*\(16, 32\).*8"),
        (dict(encoder_output_stride=64), ValueError, r"encoder_output_stride.*\(16, 32\).*64"),
        (dict(encoder_output_stride=True), ValueError, r"encoder_output_stride.*True"),
        (dict(output_stride=16), TypeError, r"encoder_output_stride.*not `output_stride`"),
        (dict(encoder_depth=2), ValueError, r"encoder_depth.*3, 4 or 5.*2"),
        (dict(encoder_depth=6), ValueError, r"encoder_depth.*3, 4 or 5.*6"),
        (dict(decoder_channels=0), ValueError, r"decoder_channels.*positive.*0"),
        (dict(decoder_channels=(16, 8)), ValueError, r"decoder_channels.*positive.*\(16, 8\)"),
        (dict(decoder_interpolation="cubic"), ValueError, r"interpolation.*'cubic'"),
        (dict(upsampling=0.5), ValueError, r"upsampling.*>= 1.*0\.5"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*4"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **SMALL, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.PAN(**kwargs)


def test_bad_input_at_forward():
    model = smp.PAN("resnet18", encoder_weights=None, **SMALL)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 128, 128\)"):
        model(torch.randn(1, 4, 128, 128))
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\)"):
        model(torch.randn(1, 3, 8, 64, 64))


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.PAN("resnet18", encoder_weights=None)
