"""PSPNet: SMP conformance (encoders, aux head, depths 3/4/5, norms, deprecated psp_use_batchnorm), SMP folders,
any input size, 3D, strict mode, the exportable adaptive pooling and errors for bad input."""

import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
import torch.nn.functional as F
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet"]
SMALL = dict(psp_out_channels=16)


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
    theirs = smp_oracle.PSPNet(encoder_weights=None, **kwargs)
    randomize_norm_statistics(theirs)
    ours = smp.PSPNet(encoder_weights=None, **kwargs)
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
        dict(encoder_depth=3, psp_out_channels=8),
        dict(encoder_depth=5),  # mask 4x smaller than the input, as SMP
        dict(encoder_depth=5, upsampling=32, encoder_name="tu-test_resnet"),
        dict(encoder_depth=4, upsampling=16),
        dict(encoder_depth=1, upsampling=2),
        dict(decoder_use_norm=False),
        dict(decoder_use_norm="identity"),
        dict(decoder_use_norm={"type": "batchnorm", "eps": 1e-3, "momentum": 0.3}),
        dict(decoder_use_norm={"type": "instancenorm", "affine": True}),
        dict(psp_dropout=0.5, upsampling=4),
        dict(in_channels=1, activation="softmax"),
        dict(encoder_name="tu-test_convnext"),  # 0-channel stride-2 placeholder, unused
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_matches_smp_options(options):
    kwargs = dict(encoder_name="resnet18", classes=2, **SMALL)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 96)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_deprecated_psp_use_batchnorm_wins_like_smp():
    with pytest.warns(DeprecationWarning, match="decoder_use_norm"):
        ours, theirs = build_pair(encoder_name="resnet18", psp_use_batchnorm=False, decoder_use_norm="batchnorm",
                                  **SMALL)
    assert isinstance(ours.decoder.conv[1], torch.nn.Identity) and ours.decoder.conv[0].bias is not None
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode():
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, psp_dropout=0.0,
                              aux_params=dict(classes=3, dropout=0), **SMALL)
    x = torch.randn(2, 3, 64, 96)
    assert_same_outputs(ours.train()(x), theirs.train()(x), atol=1e-4)


@pytest.mark.conformance
@pytest.mark.parametrize("depth, size", [(3, (70, 45)), (5, (70, 45))])
def test_odd_size_is_smp_on_the_padded_input_cropped(depth, size):
    # SMP's output for the zero-padded input, restricted to the input's extent (a quarter of it at depth 5,
    # where the mask is 4x smaller; a partly covered mask pixel is kept).
    ours, theirs = build_pair(encoder_name="resnet18", encoder_depth=depth, **SMALL)
    x = torch.randn(1, 3, *size)
    stride = ours.input_stride
    padded = F.pad(x, [0, (-size[1]) % stride, 0, (-size[0]) % stride])
    out = [-(-s // (4 if depth == 5 else 1)) for s in size]
    expected = eval_out(theirs, padded)[..., : out[0], : out[1]]
    assert_same_outputs(eval_out(ours, x), expected)


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.PSPNet("resnet18", encoder_weights=None, encoder_depth=4, classes=3,
                               aux_params=dict(classes=2), **SMALL).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.PSPNet
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))
    ours.save_pretrained(tmp_path / "ours")
    back = smp_oracle.from_pretrained(str(tmp_path / "ours"))
    assert_same_outputs(eval_out(back, x), eval_out(ours, x))


def test_layernorm_and_plain_instancenorm_work():
    # SMP fails on both: a plain nn.LayerNorm over the last (spatial) axis, and an init step that writes to the
    # missing weight of a non-affine InstanceNorm. Here LayerNorm normalises channels.
    for norm in ("layernorm", "instancenorm"):
        model = smp.PSPNet("resnet18", encoder_weights=None, decoder_use_norm=norm, **SMALL)
        assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    assert isinstance(model.decoder.psp.blocks[0].pool[1][1], torch.nn.Identity)  # the 1x1 level has no norm


@pytest.mark.parametrize("size", [(64, 64), (250, 251), (1, 1)])
def test_any_input_size_2d(size):
    model = smp.PSPNet("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2), **SMALL)
    mask, label = eval_out(model, torch.randn(1, 3, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 2)


def test_3d_odd_size():
    model = smp.PSPNet("resnet18", encoder_weights=None, spatial_dims=3, in_channels=2, classes=3,
                       aux_params=dict(classes=5), decoder_use_norm="instancenorm", **SMALL)
    mask, label = eval_out(model, torch.randn(1, 2, 37, 41, 29))
    assert mask.shape == (1, 3, 37, 41, 29) and label.shape == (1, 5)
    assert isinstance(model.decoder.dropout, torch.nn.Dropout3d)


def test_3d_trains_one_step():
    model = smp.PSPNet("resnet18", encoder_weights=None, spatial_dims=3, classes=2, **SMALL)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


def test_strict_mode_raises_smp_style_message():
    model = smp.PSPNet("resnet18", encoder_weights=None, input_padding=None, **SMALL)
    with pytest.raises(ValueError, match=r"Wrong input shape \(250, 251\).*divisible.*8.*Pad the input to \(256, 256\)"):
        model(torch.randn(1, 3, 250, 251))
    assert eval_out(model, torch.randn(1, 3, 64, 72)).shape == (1, 1, 64, 72)


def test_decoder_refuses_time_embedding():
    model = smp.PSPNet("resnet18", encoder_weights=None, **SMALL)
    features = model.encoder(torch.randn(1, 3, 64, 64))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(features, time_emb=torch.randn(1, 8))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_depth=6), ValueError, r"depth.*6"),
        (dict(psp_out_channels=0), ValueError, r"psp_out_channels.*positive.*0"),
        (dict(psp_dropout=1.5), ValueError, r"psp_dropout.*\[0, 1\].*1\.5"),
        (dict(decoder_use_norm="groupnorm"), ValueError, r"decoder_use_norm.*'groupnorm'"),
        (dict(upsampling=0), ValueError, r"upsampling.*>= 1.*0"),
        (dict(upsampling="8"), ValueError, r"upsampling.*'8'"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*4"),
        (dict(encoder_name="tu-test_resnet", spatial_dims=3), ValueError, r"2D only.*spatial_dims=3"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
        (dict(aux_params=dict(classes=2, pooling="min")), ValueError, r"pooling.*'min'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **SMALL, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.PSPNet(**kwargs)


def test_bad_input_at_forward():
    model = smp.PSPNet("resnet18", encoder_weights=None, **SMALL)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model(None)


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.PSPNet("resnet18", encoder_weights=None)
