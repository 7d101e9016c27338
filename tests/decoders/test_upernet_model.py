"""UPerNet: SMP conformance (CNN, timm and MiT encoders, norm forms), SMP folders, any size, 3D, errors."""

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from decoder_testing import assert_same_outputs, eval_out

import smp_like as smp

ENCODERS = ["resnet18", "resnet34", "tu-test_resnet", "mit_b0"]
AUX = dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")


def randomise_norms(model):
    """Non-trivial norm statistics and affine parameters, so a misplaced norm cannot hide."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
            if (
                isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm))
                and m.weight is not None
            ):
                m.weight.normal_()
                m.bias.normal_()


def build_pair(**kwargs):
    torch.manual_seed(0)
    theirs = smp_oracle.UPerNet(encoder_weights=None, **kwargs)
    randomise_norms(theirs)
    ours = smp.UPerNet(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, AUX], ids=["no_aux", "aux"])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    ours, theirs = build_pair(encoder_name=encoder_name, decoder_channels=32, classes=3, aux_params=aux)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "options",
    [
        dict(),  # SMP's default decoder width (256)
        dict(decoder_channels=48),
        dict(encoder_depth=3),
        dict(encoder_depth=4),
        dict(encoder_name="mit_b0", encoder_depth=3),
        dict(decoder_use_norm=False),
        dict(decoder_use_norm="identity"),
        dict(decoder_use_norm={"type": "batchnorm", "eps": 1e-3, "momentum": 0.2}),
        dict(upsampling=1),
        dict(upsampling=8),
        dict(in_channels=1),
        dict(in_channels=5, activation="softmax"),
        dict(output_stride=16),
        dict(output_stride=8),
        dict(encoder_name="mit_b0", output_stride=16),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_matches_smp_options(options):
    kwargs = dict(encoder_name="resnet18", decoder_channels=16, classes=2)
    kwargs.update(options)
    if not options:
        del kwargs["decoder_channels"]
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(1, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("encoder_name", ["resnet18", "mit_b0"])
def test_matches_smp_in_train_mode(encoder_name):
    # dropout=0 in the aux head: SMP's default 0.2 would make train-mode labels random. MiT's stochastic depth
    # draws the same random numbers in the same order as SMP's, so equal seeds give equal outputs.
    ours, theirs = build_pair(
        encoder_name=encoder_name, decoder_channels=16, classes=2, aux_params=dict(classes=3, dropout=0)
    )
    x = torch.randn(2, 3, 64, 96)
    torch.manual_seed(5)
    mine = ours.train()(x)
    torch.manual_seed(5)
    assert_same_outputs(mine, theirs.train()(x), atol=1e-4)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))  # running statistics were updated alike


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    torch.manual_seed(0)
    theirs = smp_oracle.UPerNet(
        "resnet18",
        encoder_weights=None,
        decoder_channels=16,
        classes=3,
        decoder_use_norm={"type": "batchnorm", "eps": 1e-3},
        aux_params=dict(classes=2),
    ).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.UPerNet
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))

    mine = smp.UPerNet(
        "resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=16, decoder_use_norm=False
    ).eval()
    mine.save_pretrained(tmp_path / "ours")
    assert "input_padding" not in mine.get_config() and "spatial_dims" not in mine.get_config()
    loaded = smp_oracle.from_pretrained(str(tmp_path / "ours")).eval()
    assert_same_outputs(eval_out(mine, x), eval_out(loaded, x))


# ----------------------------------------------------------------------------- where SMP fails


@pytest.mark.parametrize("norm", ["layernorm", {"type": "layernorm", "eps": 1e-3}])
def test_layernorm_works_and_normalises_channels(norm):
    # SMP builds nn.LayerNorm over the last (width) axis here and fails at forward; smp_like normalises
    # channels.
    model = smp.UPerNet("resnet18", encoder_weights=None, decoder_channels=16, decoder_use_norm=norm)
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)
    layer = model.decoder.fusion_block[1]
    x = torch.randn(2, 16, 3, 5)
    expected = torch.nn.functional.layer_norm(
        x.permute(0, 2, 3, 1), (16,), layer.weight, layer.bias, layer.eps
    )
    torch.testing.assert_close(layer(x), expected.permute(0, 3, 1, 2))
    assert isinstance(model.decoder.psp.out_conv[1], torch.nn.BatchNorm2d)  # as in SMP, whatever the norm


@pytest.mark.parametrize("norm", ["instancenorm", {"type": "instancenorm", "affine": True}])
def test_instancenorm_is_refused_clearly(norm):
    # SMP crashes at construction (string form) or deep inside forward (dict form).
    with pytest.raises(
        ValueError, match=r"decoder_use_norm.*1x1 branch.*'batchnorm', 'layernorm' or 'identity'"
    ):
        smp.UPerNet("resnet18", encoder_weights=None, decoder_use_norm=norm)


def test_training_with_batch_of_one_is_refused_at_the_top_of_forward():
    model = smp.UPerNet("resnet18", encoder_weights=None, decoder_channels=8).train()
    with pytest.raises(ValueError, match=r"batch of at least 2.*1x1 map.*model\.eval\(\)"):
        model(torch.randn(1, 3, 64, 64))
    # Layer norm has no such limit (as long as the deepest map has more than one pixel).
    model = smp.UPerNet(
        "resnet18", encoder_weights=None, decoder_channels=8, decoder_use_norm="layernorm"
    ).train()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    # With a 1x1 deepest map the PPM's fusing conv (batch norm, as in SMP) sees one value per channel too.
    features = model.encoder.eval()(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="batch of at least 2"):
        model.decoder.train()(features)


# ----------------------------------------------------------------------------- any size, 3D, strict mode


@pytest.mark.parametrize("encoder_name", ["resnet18", "mit_b0"])
def test_any_input_size_2d(encoder_name):
    model = smp.UPerNet(
        encoder_name, encoder_weights=None, decoder_channels=16, classes=3, aux_params=dict(classes=2)
    )
    mask, label = eval_out(model, torch.randn(1, 3, 250, 251))
    assert mask.shape == (1, 3, 250, 251) and label.shape == (1, 2)


def test_padded_input_matches_smp_on_the_padded_image():
    ours, theirs = build_pair(encoder_name="resnet18", decoder_channels=16, classes=2)
    x = torch.randn(1, 3, 50, 70)
    padded = torch.nn.functional.pad(x, (0, 26, 0, 14))  # to (64, 96), at the end, with zeros
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, padded)[..., :50, :70])


@pytest.mark.parametrize("upsampling, expected", [(2, (125, 126)), (1, (63, 63)), (8, (500, 502))])
def test_other_upsampling_crops_to_the_scaled_size(upsampling, expected):
    model = smp.UPerNet("resnet18", encoder_weights=None, decoder_channels=16, upsampling=upsampling)
    assert eval_out(model, torch.randn(1, 3, 250, 251)).shape == (1, 1, *expected)


def test_3d_odd_size():
    model = smp.UPerNet(
        "resnet18",
        encoder_weights=None,
        encoder_depth=4,
        decoder_channels=16,
        spatial_dims=3,
        in_channels=2,
        classes=3,
        aux_params=dict(classes=5),
    )
    mask, label = eval_out(model, torch.randn(1, 2, 37, 41, 29))
    assert mask.shape == (1, 3, 37, 41, 29) and label.shape == (1, 5)
    assert (
        model.decoder.psp.blocks[0][0].spatial_dims == 3 and model.decoder.interpolation_mode == "trilinear"
    )
    assert isinstance(model.decoder.fusion_block[0], torch.nn.Conv3d)


def test_3d_trains_one_step():
    model = smp.UPerNet(
        "resnet18",
        encoder_weights=None,
        encoder_depth=3,
        decoder_channels=8,
        spatial_dims=3,
        classes=2,
        decoder_use_norm="layernorm",
    )
    x, target = torch.randn(2, 3, 16, 16, 16), torch.randint(0, 2, (2, 16, 16, 16))
    torch.nn.functional.cross_entropy(model(x), target).backward()
    used = [
        *model.decoder.parameters(),
        *model.segmentation_head.parameters(),
        *model.encoder.layer2.parameters(),
    ]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in used)


def test_strict_mode_raises_smp_style_message():
    model = smp.UPerNet("resnet18", encoder_weights=None, decoder_channels=16, input_padding=None)
    with pytest.raises(
        ValueError, match=r"Wrong input shape \(65, 64\).*divisible by the output stride 32.*\(96, 64\)"
    ):
        model(torch.randn(1, 3, 65, 64))
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_decoder_is_torchscript_friendly():
    model = smp.UPerNet("mit_b0", encoder_weights=None, decoder_channels=16).eval()
    features = model.encoder(torch.randn(1, 3, 64, 64))
    scripted = torch.jit.script(model.decoder)
    with torch.no_grad():
        torch.testing.assert_close(scripted(features), model.decoder(features))


def test_create_model_and_name():
    model = smp.create_model("upernet", encoder_name="mit_b0", encoder_weights=None)
    assert isinstance(model, smp.UPerNet) and model.name == "upernet-mit_b0"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_depth=2), ValueError, r"UPerNet.*encoder_depth.*3, 4 or 5.*2"),
        (dict(encoder_depth=6), ValueError, r"encoder_depth.*3, 4 or 5.*6"),
        (dict(decoder_channels=0), ValueError, r"decoder_channels.*positive int.*0"),
        (dict(decoder_channels=(16, 8)), ValueError, r"decoder_channels.*\(16, 8\)"),
        (dict(decoder_use_norm="groupnorm"), ValueError, r"decoder_use_norm.*'groupnorm'"),
        (dict(decoder_use_norm={"eps": 1e-3}), ValueError, r"decoder_use_norm.*'type'"),
        (dict(decoder_use_norm="inplace"), ImportError, r"inplace_abn"),
        (dict(upsampling=0.5), ValueError, r"upsampling.*>= 1.*0\.5"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (
            dict(encoder_name="mit_b0", spatial_dims=3),
            ValueError,
            r"mit_b0.*spatial_dims \(2,\).*spatial_dims=3",
        ),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*\(2, 3\).*4"),
        (dict(aux_params=dict(classes=2, pooling="min")), ValueError, r"pooling.*'min'"),
        (dict(encoder_weights="ade20k"), ValueError, r"encoder_weights.*'ade20k'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.UPerNet(**kwargs)


def test_bad_input_at_forward():
    model = smp.UPerNet("mit_b0", encoder_weights=None, decoder_channels=8)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\)"):
        model(torch.randn(1, 3, 8, 64, 64))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(model.encoder(torch.randn(1, 3, 64, 64)), time_emb=torch.randn(1, 4))
