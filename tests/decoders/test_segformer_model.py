"""Segformer: SMP conformance (CNN, timm and MiT encoders), SMP folders, any input size, 3D, errors."""

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
    theirs = smp_oracle.Segformer(encoder_weights=None, **kwargs)
    randomise_norms(theirs)
    ours = smp.Segformer(encoder_weights=None, **kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, AUX], ids=["no_aux", "aux"])
@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_matches_smp(encoder_name, aux):
    ours, theirs = build_pair(
        encoder_name=encoder_name, decoder_segmentation_channels=32, classes=3, aux_params=aux
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "options",
    [
        dict(),  # SMP's default decoder width (256)
        dict(decoder_segmentation_channels=48),
        dict(encoder_depth=3, decoder_segmentation_channels=16),
        dict(encoder_depth=4, decoder_segmentation_channels=16),
        dict(encoder_name="mit_b0", encoder_depth=3, decoder_segmentation_channels=16),
        dict(upsampling=1, decoder_segmentation_channels=16),
        dict(upsampling=8, decoder_segmentation_channels=16),
        dict(in_channels=1, decoder_segmentation_channels=16),
        dict(in_channels=5, activation="softmax", decoder_segmentation_channels=16),
        dict(encoder_name="mit_b0", in_channels=4, decoder_segmentation_channels=16),
        dict(activation="argmax2d", decoder_segmentation_channels=16),
        dict(output_stride=16, decoder_segmentation_channels=16),
        dict(output_stride=8, decoder_segmentation_channels=16),
        dict(encoder_name="mit_b0", output_stride=16, decoder_segmentation_channels=16),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_matches_smp_options(options):
    kwargs = dict(encoder_name="resnet18", classes=2)
    kwargs.update(options)
    ours, theirs = build_pair(**kwargs)
    x = torch.randn(1, kwargs.get("in_channels", 3), 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize("encoder_name", ["resnet18", "mit_b0"])
def test_matches_smp_in_train_mode(encoder_name):
    # dropout=0 in the aux head: SMP's default 0.2 would make train-mode labels random. MiT's stochastic depth
    # draws the same random numbers in the same order as SMP's, so equal seeds give equal outputs.
    ours, theirs = build_pair(
        encoder_name=encoder_name,
        decoder_segmentation_channels=16,
        classes=2,
        aux_params=dict(classes=3, dropout=0),
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
    theirs = smp_oracle.Segformer(
        "mit_b0",
        encoder_weights=None,
        decoder_segmentation_channels=16,
        classes=3,
        aux_params=dict(classes=2),
    ).eval()
    theirs.save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    assert type(ours) is smp.Segformer
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))

    mine = smp.Segformer(
        "resnet18", encoder_weights=None, encoder_depth=4, decoder_segmentation_channels=16, upsampling=2
    ).eval()
    mine.save_pretrained(tmp_path / "ours")
    assert "input_padding" not in mine.get_config() and "spatial_dims" not in mine.get_config()
    loaded = smp_oracle.from_pretrained(str(tmp_path / "ours")).eval()
    assert_same_outputs(eval_out(mine, x), eval_out(loaded, x))


# ----------------------------------------------------------------------------- any size, 3D, strict mode


@pytest.mark.parametrize("encoder_name", ["resnet18", "mit_b0"])
def test_any_input_size_2d(encoder_name):
    model = smp.Segformer(
        encoder_name,
        encoder_weights=None,
        decoder_segmentation_channels=16,
        classes=3,
        aux_params=dict(classes=2),
    )
    mask, label = eval_out(model, torch.randn(1, 3, 250, 251))
    assert mask.shape == (1, 3, 250, 251) and label.shape == (1, 2)


def test_padded_input_matches_smp_on_the_padded_image():
    ours, theirs = build_pair(encoder_name="mit_b0", decoder_segmentation_channels=16, classes=2)
    x = torch.randn(1, 3, 50, 70)
    padded = torch.nn.functional.pad(x, (0, 26, 0, 14))  # to (64, 96), at the end, with zeros
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, padded)[..., :50, :70])


@pytest.mark.parametrize("upsampling, expected", [(2, (125, 126)), (1, (63, 63)), (8, (500, 502))])
def test_other_upsampling_crops_to_the_scaled_size(upsampling, expected):
    model = smp.Segformer(
        "resnet18", encoder_weights=None, decoder_segmentation_channels=16, upsampling=upsampling
    )
    assert eval_out(model, torch.randn(1, 3, 250, 251)).shape == (1, 1, *expected)


def test_3d_odd_size():
    model = smp.Segformer(
        "resnet18",
        encoder_weights=None,
        encoder_depth=4,
        decoder_segmentation_channels=16,
        spatial_dims=3,
        in_channels=2,
        classes=3,
        aux_params=dict(classes=5),
    )
    mask, label = eval_out(model, torch.randn(1, 2, 37, 41, 29))
    assert mask.shape == (1, 3, 37, 41, 29) and label.shape == (1, 5)
    assert isinstance(model.decoder.fuse_stage[0], torch.nn.Conv3d)
    assert model.decoder.interpolation_mode == "trilinear"


def test_3d_trains_one_step():
    model = smp.Segformer(
        "resnet18",
        encoder_weights=None,
        encoder_depth=3,
        decoder_segmentation_channels=8,
        spatial_dims=3,
        classes=2,
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
    model = smp.Segformer(
        "resnet18", encoder_weights=None, decoder_segmentation_channels=16, input_padding=None
    )
    with pytest.raises(
        ValueError, match=r"Wrong input shape \(65, 64\).*divisible by the output stride 32.*\(96, 64\)"
    ):
        model(torch.randn(1, 3, 65, 64))
    assert eval_out(model, torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_placeholder_level_is_skipped_for_transformers_only():
    cnn = smp.Segformer("resnet18", encoder_weights=None, decoder_segmentation_channels=8)
    mit = smp.Segformer("mit_b0", encoder_weights=None, decoder_segmentation_channels=8)
    assert [m.linear.in_features for m in cnn.decoder.mlp_stage] == [512, 256, 128, 64, 64]
    assert [m.linear.in_features for m in mit.decoder.mlp_stage] == [256, 160, 64, 32]


def test_create_model_and_name():
    model = smp.create_model("segformer", encoder_name="mit_b0", encoder_weights=None)
    assert isinstance(model, smp.Segformer) and model.name == "segformer-mit_b0"


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_depth=2), ValueError, r"Segformer.*encoder_depth.*3, 4 or 5.*2"),
        (dict(encoder_depth=6), ValueError, r"encoder_depth.*3, 4 or 5.*6"),
        (
            dict(decoder_segmentation_channels=0),
            ValueError,
            r"decoder_segmentation_channels.*positive int.*0",
        ),
        (dict(decoder_segmentation_channels=(8,)), ValueError, r"decoder_segmentation_channels.*\(8,\)"),
        (dict(upsampling=0.5), ValueError, r"upsampling.*>= 1.*0\.5"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(in_channels=0), ValueError, r"in_channels.*0"),
        (
            dict(encoder_name="mit_b0", spatial_dims=3),
            ValueError,
            r"mit_b0.*spatial_dims \(2,\).*spatial_dims=3",
        ),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*\(2, 3\).*4"),
        (dict(encoder_name="mit_b9"), ValueError, r"encoder_name.*'mit_b9'.*Did you mean"),
        (dict(aux_params=dict(classes=2, foo=1)), TypeError, r"aux_params.*\['foo'\]"),
        (dict(activation="relu7"), ValueError, r"activation.*'relu7'"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {"encoder_name": "resnet18", "encoder_weights": None, **kwargs}
    with pytest.raises(error, match=pattern):
        smp.Segformer(**kwargs)


def test_bad_input_at_forward():
    model = smp.Segformer("mit_b0", encoder_weights=None, decoder_segmentation_channels=8)
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match=r"4 dims \(N, C, H, W\)"):
        model(torch.randn(1, 3, 8, 64, 64))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(model.encoder(torch.randn(1, 3, 64, 64)), time_emb=torch.randn(1, 4))
