"""Linknet: SMP conformance (encoders, aux head, depths, every decoder_use_norm form), SMP folders, any input size,
3D, strict mode and errors for bad input."""

import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
import torch.nn.functional as F
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]


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
    theirs = smp_oracle.Linknet(encoder_weights=None, **kwargs)
    randomize_norm_statistics(theirs)
    ours = smp.Linknet(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    ours, theirs = build_pair(encoder_name=encoder_name, classes=3, aux_params=aux)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.filterwarnings("ignore:Implicit dimension choice for softmax")  # SMP's nn.Softmax() without dim
@pytest.mark.parametrize(
    "options",
    [
        dict(decoder_use_norm=True),
        dict(decoder_use_norm=False),
        dict(decoder_use_norm="batchnorm"),
        dict(decoder_use_norm="identity"),
        dict(decoder_use_norm={"type": "batchnorm", "eps": 1e-3, "momentum": 0.3}),
        dict(decoder_use_norm={"type": "identity"}),
        dict(decoder_use_norm={"type": "instancenorm", "affine": True}),
        dict(encoder_depth=3),
        dict(encoder_depth=1),
        dict(encoder_depth=4, decoder_use_norm=False, encoder_name="tu-test_resnet"),
        dict(in_channels=1, activation="softmax"),
        dict(activation="sigmoid", classes=4),
        dict(encoder_name="tu-test_convnext"),  # 0-channel stride-2 placeholder: no skip there, as SMP
        dict(encoder_name="tu-test_convnext", encoder_depth=3),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_matches_smp_options(options):
    kwargs = dict(encoder_name="resnet18", classes=2)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 96)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_deprecated_decoder_use_batchnorm_like_smp():
    with pytest.warns(DeprecationWarning, match="decoder_use_norm"):
        ours, theirs = build_pair(encoder_name="resnet18", decoder_use_batchnorm=False)
    assert isinstance(ours.decoder.blocks[0].block[1][1], torch.nn.Identity)
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, aux_params=dict(classes=3, dropout=0))
    x = torch.randn(2, 3, 64, 96)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
def test_odd_size_is_smp_on_the_padded_input_cropped():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2)
    x = torch.randn(1, 3, 70, 45)
    padded = F.pad(x, [0, 64 - 45, 0, 96 - 70])
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, padded)[..., :70, :45])


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.Linknet("resnet18", encoder_weights=None, encoder_depth=4, classes=3,
                                decoder_use_norm={"type": "batchnorm", "eps": 1e-3}, aux_params=dict(classes=2)).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.Linknet
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))
    ours.save_pretrained(tmp_path / "ours")
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


def test_layernorm_normalises_channels():
    # SMP's Linknet fails here (a plain nn.LayerNorm over the last, spatial, axis); smp_like normalises channels.
    model = smp.Linknet("resnet18", encoder_weights=None, encoder_depth=3,
                        decoder_use_norm={"type": "layernorm", "eps": 1e-3})
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    norm = model.decoder.blocks[0].block[1][1]
    x = torch.randn(2, norm.normalized_shape[0], 3, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias, 1e-3)
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2))


@pytest.mark.parametrize("size", [(64, 64), (250, 251), (33, 47), (1, 1)])
def test_any_input_size_2d(size):
    model = smp.Linknet("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2))
    mask, label = eval_out(model, torch.randn(1, 3, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 2)


def test_3d_odd_size():
    model = smp.Linknet("resnet18", encoder_weights=None, spatial_dims=3, in_channels=2, classes=3,
                        aux_params=dict(classes=5), decoder_use_norm={"type": "instancenorm", "affine": True})
    mask, label = eval_out(model, torch.randn(1, 2, 37, 41, 29))
    assert mask.shape == (1, 3, 37, 41, 29) and label.shape == (1, 5)
    assert isinstance(model.decoder.blocks[0].block[1][0], torch.nn.ConvTranspose3d)


def test_3d_trains_one_step():
    model = smp.Linknet("resnet18", encoder_weights=None, spatial_dims=3, encoder_depth=3, classes=2)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_strict_mode_raises_smp_style_message():
    model = smp.Linknet("resnet18", encoder_weights=None, input_padding=None)
    with pytest.raises(ValueError, match=r"Wrong input shape \(250, 251\).*divisible.*32.*Pad the input to \(256, 256\)"):
        model(torch.randn(1, 3, 250, 251))
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_other_padding_modes():
    model = smp.Linknet("resnet18", encoder_weights=None, encoder_depth=3)
    x = torch.randn(1, 3, 30, 21)
    for mode in ("reflect", "replicate", "circular"):
        model.set_input_padding(mode)
        assert eval_out(model, x).shape == (1, 1, 30, 21)


def test_decoder_refuses_time_embedding():
    model = smp.Linknet("resnet18", encoder_weights=None)
    features = model.encoder(torch.randn(1, 3, 64, 64))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(features, time_emb=torch.randn(1, 8))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_depth=6), ValueError, r"depth.*6"),
        (dict(encoder_depth=0), ValueError, r"depth.*0"),
        (dict(encoder_name="mit_b0"), ValueError, r"Encoder `mit_b0` is not supported for Linknet"),
        (dict(decoder_use_norm="groupnorm"), ValueError, r"decoder_use_norm.*'groupnorm'"),
        (dict(decoder_use_norm={"eps": 1e-3}), ValueError, r"decoder_use_norm.*'type'"),
        (dict(decoder_use_norm=1), ValueError, r"decoder_use_norm.*1"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*4"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
        (dict(activation="relu7"), ValueError, r"activation.*'relu7'"),
        (dict(aux_params=dict(pooling="avg")), TypeError, r"aux_params.*'classes'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.Linknet(**kwargs)


def test_bad_input_at_forward():
    model = smp.Linknet("resnet18", encoder_weights=None)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\)"):
        model(torch.randn(1, 3, 8, 64, 64))


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.Linknet("resnet18", encoder_weights=None)
