"""Unet: SMP conformance, SMP folders, any input size, 3D, heads, and errors for bad input."""

import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp

ENCODERS = ["resnet18", "resnet34", "resnext50_32x4d", "tu-test_resnet"]


def build_pair(**kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.Unet(encoder_weights=None, **kwargs)
    ours = smp.Unet(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")])
@pytest.mark.parametrize("depth", [3, 5])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, depth, aux):
    channels = (64, 32, 16, 16, 8)[:depth]
    ours, theirs = build_pair(encoder_name=encoder_name, encoder_depth=depth, decoder_channels=channels,
                              classes=3, aux_params=aux)
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "options",
    [
        dict(decoder_attention_type="scse", decoder_channels=(64, 32, 32, 16, 16)),
        dict(decoder_use_norm=False),
        dict(decoder_use_norm="identity"),
        dict(decoder_use_norm={"type": "batchnorm", "eps": 1e-3, "momentum": 0.2}),
        dict(decoder_use_norm={"type": "instancenorm", "affine": True}),
        dict(decoder_interpolation="bilinear"),
        dict(in_channels=1),
        dict(in_channels=5, activation="softmax"),
        dict(activation="sigmoid"),
        dict(activation="argmax2d"),
        dict(encoder_depth=4, decoder_channels=(32, 16, 16, 8)),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_matches_smp_options(options):
    kwargs = dict(encoder_name="resnet18", decoder_channels=(32, 16, 16, 8, 8), classes=2)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(2, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_in_train_mode_and_odd_size():
    # dropout=0 in the aux head: SMP's default 0.2 would make train-mode labels random.
    ours, theirs = build_pair(encoder_name="resnet18", classes=2, aux_params=dict(classes=3, dropout=0))
    x = torch.randn(2, 3, 75, 53)
    ours.train()
    theirs.train()
    assert_same_outputs(ours(x), theirs(x), atol=1e-4)


@pytest.mark.conformance
def test_smp_save_pretrained_folder_loads(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.Unet("resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=(32, 16, 8, 8),
                             classes=3, aux_params=dict(classes=2, dropout=0.1)).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.Unet and not ours.training
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))
    assert type(smp.Unet.from_pretrained(tmp_path / "smp")) is smp.Unet


@pytest.mark.conformance
def test_our_folder_loads_in_smp(tmp_path):
    ours = smp.Unet("resnet18", encoder_weights=None, classes=2, decoder_attention_type="scse").eval()
    ours.save_pretrained(tmp_path / "ours")
    theirs = smp_oracle.from_pretrained(str(tmp_path / "ours")).eval()
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


def test_save_load_round_trip_3d_with_card(tmp_path):
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                     spatial_dims=3, classes=2).eval()
    model.save_pretrained(tmp_path / "m", metrics={"iou": 0.9}, dataset="toy")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "iou: 0.9" in card and "toy" in card and "smp_like.from_pretrained" in card
    loaded = smp.from_pretrained(tmp_path / "m")
    x = torch.randn(1, 3, 16, 24, 20)
    assert_same_outputs(eval_out(loaded, x), eval_out(model, x), atol=0)


def test_from_pretrained_wrong_class(tmp_path):
    smp.Unet("resnet18", encoder_weights=None).save_pretrained(tmp_path / "m")

    class OtherModel(smp.SegmentationModel):
        def __init__(self):
            super().__init__()

    with pytest.raises(ValueError, match="holds a Unet"):
        OtherModel.from_pretrained(tmp_path / "m")


def test_callable_activation_cannot_be_saved_and_nothing_is_written(tmp_path):
    model = smp.Unet("resnet18", encoder_weights=None, activation=torch.nn.Identity)
    with pytest.raises(TypeError, match="activation"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("size", [(64, 64), (65, 70), (33, 47), (250, 251), (17, 129)])
def test_any_input_size_2d(size):
    model = smp.Unet("resnet18", encoder_weights=None, classes=3, aux_params=dict(classes=2))
    mask, label = eval_out(model, torch.randn(1, 3, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 2)


@pytest.mark.parametrize("size", [(32, 32, 32), (37, 41, 29), (9, 20, 15)])
def test_3d(size):
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=(32, 16, 8, 8),
                     spatial_dims=3, in_channels=2, classes=3, aux_params=dict(classes=5),
                     decoder_attention_type="scse", decoder_interpolation="bilinear")
    mask, label = eval_out(model, torch.randn(1, 2, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 5)
    assert model.spatial_dims == 3


def test_3d_trains_one_step():
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 8),
                     spatial_dims=3, classes=2)
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    # Stages below encoder_depth exist (for SMP-compatible keys) but are unused, so they get no gradient.
    used = [*model.decoder.parameters(), *model.segmentation_head.parameters(), *model.encoder.conv1.parameters(),
            *model.encoder.layer2.parameters()]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in used)


def test_scse_with_fewer_channels_than_its_reduction():
    # SMP builds a 0-channel conv here and fails at forward; smp_like keeps one hidden channel.
    model = smp.Unet("resnet18", encoder_weights=None, decoder_channels=(32, 16, 8, 8, 4), decoder_attention_type="scse")
    assert eval_out(model, torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_layernorm_normalises_channels():
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=2, decoder_channels=(8, 4),
                     decoder_use_norm="layernorm").eval()
    assert eval_out(model, torch.randn(1, 3, 32, 40)).shape == (1, 1, 32, 40)
    norm = model.decoder.blocks[0].conv1[1]
    x = torch.randn(2, 8, 3, 5)
    expected = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, norm.eps)
    torch.testing.assert_close(norm(x), expected.permute(0, 3, 1, 2))


def test_aux_head_defaults_match_smp():
    head = smp.Unet("resnet18", encoder_weights=None, aux_params=dict(classes=3)).classification_head
    assert isinstance(head[0], torch.nn.AdaptiveAvgPool2d) and head[2].p == 0.2 and head[3].out_features == 3


def test_deprecated_decoder_use_batchnorm():
    with pytest.warns(DeprecationWarning, match="decoder_use_norm"):
        model = smp.Unet("resnet18", encoder_weights=None, decoder_use_batchnorm=False)
    assert isinstance(model.decoder.blocks[0].conv1[1], torch.nn.Identity)


def test_predict_freeze_and_output_stride():
    model = smp.Unet("resnet18", encoder_weights=None, output_stride=16)
    assert model.output_stride == 16
    model.train()
    out = model.predict(torch.randn(1, 3, 64, 64))
    assert not model.training and not out.requires_grad
    model.freeze_encoder()
    model.train()
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert not model.encoder.bn1.training  # frozen statistics survive model.train()
    assert model.decoder.training
    running = model.encoder.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5 + 3)
    torch.testing.assert_close(model.encoder.bn1.running_mean, running)
    model.unfreeze_encoder()
    assert all(p.requires_grad for p in model.encoder.parameters()) and model.encoder.bn1.training


def test_create_model_is_case_insensitive():
    model = smp.create_model("UNET", encoder_name="resnet18", encoder_weights=None, classes=2)
    assert isinstance(model, smp.Unet)
    assert isinstance(smp.create_model("unet", "resnet18", None), smp.Unet)
    with pytest.raises(ValueError, match=r"Unknown architecture 'unnet'.*'Unet'"):
        smp.create_model("unnet", encoder_weights=None)


# ----------------------------------------------------------------------------- bad input, named clearly


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_name="resnet19"), ValueError, r"encoder_name.*'resnet19'.*Did you mean.*resnet18"),
        (dict(encoder_depth=6, decoder_channels=(8,) * 6), ValueError, r"depth.*1\.\.5.*6"),
        (dict(encoder_depth=0, decoder_channels=()), ValueError, r"depth.*1\.\.5.*0"),
        (dict(decoder_channels=(16, 8)), ValueError, r"decoder_channels.*encoder_depth=5.*2"),
        (dict(decoder_channels=(16, 8, 8, 8, 0)), ValueError, r"decoder_channels.*positive"),
        (dict(aux_params=dict(classes=2, foo=1)), TypeError, r"aux_params.*\['foo'\].*classes"),
        (dict(aux_params=dict(classes=2, pooling="min")), ValueError, r"pooling.*\('avg', 'max'\).*'min'"),
        (dict(aux_params=[2]), TypeError, r"aux_params.*dict"),
        (dict(aux_params=dict(pooling="avg")), TypeError, r"aux_params.*'classes'"),
        (dict(encoder_name="tu-test_resnet", spatial_dims=3), ValueError, r"2D only.*spatial_dims=3"),
        (dict(encoder_weights="imagenet21k"), ValueError, r"encoder_weights.*'imagenet21k'.*\['imagenet', 'ssl', 'swsl'\]"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*\(2, 3\).*4"),
        (dict(decoder_attention_type="cbam2"), ValueError, r"decoder_attention_type.*'cbam2'"),
        (dict(decoder_interpolation="cubic"), ValueError, r"interpolation.*'cubic'"),
        (dict(decoder_use_norm="groupnorm"), ValueError, r"decoder_use_norm.*'groupnorm'"),
        (dict(activation="relu7"), ValueError, r"activation.*'relu7'"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(in_channels=0), ValueError, r"in_channels.*0"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.Unet(**kwargs)


def test_wrong_channel_count_at_forward():
    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))


def test_wrong_number_of_spatial_dims_at_forward():
    model = smp.Unet("resnet18", encoder_weights=None)
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\).*spatial_dims=2.*\(1, 3, 8, 64, 64\)"):
        model(torch.randn(1, 3, 8, 64, 64))
    model3d = smp.Unet("resnet18", encoder_weights=None, spatial_dims=3, encoder_depth=3, decoder_channels=(8, 8, 8))
    with pytest.raises(ValueError, match=r"5 dims \(N, C, D, H, W\)"):
        model3d(torch.randn(1, 3, 64, 64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model(None)


def test_no_warning_on_plain_construction():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.Unet("resnet18", encoder_weights=None)
