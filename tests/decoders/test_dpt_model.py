"""DPT: SMP conformance (readouts, aux head, options, folders), any input size, strict mode, 3D refused, bad input."""

import inspect
import warnings

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
from decoder_testing import eval_out

import smp_like as smp
from smp_like.decoders.dpt.decoder import DPTDecoder

# tu-test_vit: 6 blocks, width 64, /16 patches, one class token — the smallest ViT SMP's DPT takes.
SMALL = dict(encoder_name="tu-test_vit", decoder_intermediate_channels=(16, 32, 48, 64), decoder_fusion_channels=16)
AUX = dict(classes=4, dropout=0.2, pooling="max", activation="sigmoid")


def assert_same_outputs(a, b, atol=1e-5):
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


def randomise_norm_statistics(model):
    """Non-trivial BatchNorm statistics and affines, so eval-mode outputs exercise every norm."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)


def build_pair(**kwargs):
    kwargs = {**SMALL, **kwargs}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # readout on encoders without prefix tokens
        theirs = smp_oracle.DPT(encoder_weights=None, **kwargs)
        ours = smp.DPT(encoder_weights=None, **kwargs)
    randomise_norm_statistics(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.conformance
@pytest.mark.parametrize("aux", [None, AUX], ids=["no_aux", "aux"])
@pytest.mark.parametrize("readout", ["ignore", "add", "cat"])
def test_matches_smp(readout, aux):
    ours, theirs = build_pair(decoder_readout=readout, classes=3, aux_params=aux)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = torch.randn(2, 3, 64, 96)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
@pytest.mark.parametrize(
    "options",
    [
        dict(encoder_depth=2, decoder_intermediate_channels=(16, 32)),
        dict(encoder_depth=3, decoder_intermediate_channels=(16, 16, 32), decoder_readout="add"),
        dict(encoder_output_indices=[-1, 1, 3, 0]),
        dict(reg_tokens=3, decoder_readout="cat"),  # cat reads the first prefix token
        dict(reg_tokens=3, decoder_readout="add"),  # add averages all prefix tokens
        dict(in_channels=1, activation="softmax"),
        dict(patch_size=8),  # stride-8 tokens: identity and strided convs in the reassembly
        dict(encoder_name="tu-test_convnext", decoder_readout="ignore"),  # hierarchical, as SMP allows
        dict(encoder_name="tu-test_resnet", decoder_readout="cat", aux_params=AUX),
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_matches_smp_options(options):
    ours, theirs = build_pair(classes=2, **options)
    x = torch.randn(2, options.get("in_channels", 3), 64, 96)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_matches_smp_with_default_decoder_channels():
    ours, theirs = build_pair(decoder_intermediate_channels=(256, 512, 1024, 1024), decoder_fusion_channels=256)
    x = torch.randn(1, 3, 64, 64)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))


@pytest.mark.conformance
def test_dynamic_img_size_default_keeps_smp_outputs_at_native_size():
    # timm builds test_vit3 with a fixed 160x160 input; smp_like asks for dynamic_img_size=True, which at the
    # native size must not change a thing.
    ours, theirs = build_pair(encoder_name="tu-test_vit3")
    assert ours.encoder.model.dynamic_img_size and not theirs.encoder.model.dynamic_img_size
    x = torch.randn(1, 3, 160, 160)
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))
    assert eval_out(ours, torch.randn(1, 3, 64, 80)).shape == (1, 1, 64, 80)  # SMP: assertion error


@pytest.mark.conformance
def test_signature_matches_smp():
    ours, theirs = inspect.signature(smp.DPT).parameters, inspect.signature(smp_oracle.DPT).parameters
    extras = ["spatial_dims", "input_padding", "time_embedding_dim", "time_injection"]
    assert [n for n in ours if n not in extras] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name
    assert ours["spatial_dims"].default == 2 and ours["input_padding"].default == "constant"
    decoder_ours = inspect.signature(DPTDecoder).parameters
    decoder_theirs = inspect.signature(type(build_pair()[1].decoder)).parameters
    assert [n for n in decoder_ours if n != "spatial_dims"] == list(decoder_theirs)
    for name, parameter in decoder_theirs.items():
        assert decoder_ours[name].default == parameter.default, name


@pytest.mark.conformance
def test_smp_folder_loads_and_ours_loads_in_smp(tmp_path):
    _, theirs = build_pair(classes=2, decoder_readout="add", aux_params=dict(classes=3))
    theirs.eval().save_pretrained(tmp_path / "smp")
    ours = smp.from_pretrained(tmp_path / "smp")
    x = torch.randn(1, 3, 64, 64)
    assert type(ours) is smp.DPT
    assert_same_outputs(eval_out(ours, x), eval_out(theirs, x))

    mine = smp.DPT(encoder_weights=None, classes=2, **SMALL).eval()
    mine.save_pretrained(tmp_path / "ours")
    config = mine.get_config()
    assert "input_padding" not in config and "spatial_dims" not in config
    back = smp_oracle.from_pretrained(str(tmp_path / "ours")).eval()
    assert_same_outputs(eval_out(mine, x), eval_out(back, x))


# ----------------------------------------------------------------------------- any input size


@pytest.mark.parametrize("size", [(80, 80), (65, 64), (250, 251), (17, 33), (1, 1)])
def test_any_input_size(size):
    model = smp.DPT(encoder_weights=None, classes=3, aux_params=dict(classes=2), **SMALL)
    mask, label = eval_out(model, torch.randn(1, 3, *size))
    assert mask.shape == (1, 3, *size) and label.shape == (1, 2)


def test_padding_is_invisible_when_sizes_divide():
    model = smp.DPT(encoder_weights=None, **SMALL).eval()
    x = torch.randn(1, 3, 64, 96)
    strict = smp.DPT(encoder_weights=None, input_padding=None, **SMALL).eval()
    strict.load_state_dict(model.state_dict())
    assert_same_outputs(eval_out(model, x), eval_out(strict, x), atol=0)
    # A cropped region of a padded input: the mask of the unpadded input equals the padded run's crop.
    odd = torch.randn(1, 3, 50, 70)
    padded = torch.nn.functional.pad(odd, (0, 10, 0, 14))
    assert_same_outputs(eval_out(model, odd), eval_out(model, padded)[..., :50, :70], atol=1e-6)


def test_strict_mode_keeps_smps_error():
    model = smp.DPT(encoder_weights=None, input_padding=None, **SMALL).eval()
    with pytest.raises(ValueError, match=r"Wrong input shape \(65, 64\).*divisible.*16.*Pad the input to \(80, 64\)"):
        model(torch.randn(1, 3, 65, 64))
    # Multiples of the patch size with an odd token grid: SMP fails inside its decoder, smp_like decodes them.
    assert eval_out(model, torch.randn(1, 3, 80, 48)).shape == (1, 1, 80, 48)
    assert model.input_stride == 16


def test_patch_size_not_a_power_of_two():
    model = smp.DPT(encoder_weights=None, patch_size=14, **SMALL).eval()
    assert model.input_stride == 14
    for size in [(70, 70), (64, 64), (33, 100)]:
        assert eval_out(model, torch.randn(1, 3, *size)).shape == (1, 1, *size)


def test_fixed_size_encoder_is_checked_at_forward():
    model = smp.DPT(encoder_weights=None, encoder_name="tu-test_vit_relpos",
                    decoder_intermediate_channels=(8, 8, 8, 8), decoder_fusion_channels=8,
                    decoder_readout="ignore").eval()
    with pytest.raises(ValueError, match=r"only \(160, 160\) inputs.*got \(64, 64\)"):
        model(torch.randn(1, 3, 64, 64))
    assert eval_out(model, torch.randn(1, 3, 150, 155)).shape == (1, 1, 150, 155)  # padded to 160 x 160


def test_duplicate_output_indices_use_every_level():
    model = smp.DPT(encoder_weights=None, encoder_output_indices=[5, 5, 5, 5], **SMALL)
    features, _ = model.encoder(torch.randn(1, 3, 32, 32))
    assert len(features) == 4  # SMP silently gets one feature here and fuses only one level
    assert eval_out(model, torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_trains_one_step():
    torch.manual_seed(0)
    model = smp.DPT(encoder_weights=None, classes=2, aux_params=dict(classes=3), **SMALL)
    x, target = torch.randn(2, 3, 48, 64), torch.randint(0, 2, (2, 48, 64))
    mask, label = model(x)
    loss = torch.nn.functional.cross_entropy(mask, target) + label.square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    used = [*model.decoder.parameters(), *model.segmentation_head.parameters(),
            *model.encoder.model.blocks.parameters()]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in used)
    torch.optim.SGD(model.parameters(), lr=0.01).step()


# ----------------------------------------------------------------------------- 3D and bad input


def test_3d_is_refused():
    with pytest.raises(ValueError, match=r"DPT is 2D only.*spatial_dims=3"):
        smp.DPT(encoder_weights=None, spatial_dims=3, **SMALL)
    with pytest.raises(ValueError, match="2D only"):
        DPTDecoder(spatial_dims=3)


def test_no_prefix_tokens_warns_like_smp():
    with pytest.warns(UserWarning, match="no prefix tokens.*'cat'.*decoder_readout='ignore'"):
        smp.DPT(encoder_weights=None, encoder_name="tu-test_convnext", decoder_intermediate_channels=(8,) * 4,
                decoder_fusion_channels=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smp.DPT(encoder_weights=None, **SMALL)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(encoder_name="resnet18"), ValueError, r"Only timm encoders.*'tu-'.*'resnet18'"),
        (dict(encoder_name="resnet34"), ValueError, r"Only timm encoders"),
        (dict(spatial_dims=4), ValueError, r"spatial_dims.*\(2, 3\).*4"),
        (dict(decoder_readout="foo"), ValueError, r"decoder_readout.*\('ignore', 'add', 'cat'\).*'foo'"),
        (dict(encoder_depth=0), ValueError, r"encoder_depth.*>= 1.*0"),
        (dict(encoder_depth=7, decoder_intermediate_channels=(8,) * 7), ValueError, r"cannot exceed.*6 blocks"),
        (dict(decoder_intermediate_channels=(8, 8, 8)), ValueError,
         r"decoder_intermediate_channels.*encoder_depth=4"),
        (dict(decoder_intermediate_channels=(8, 8, 8, 0)), ValueError, r"decoder_intermediate_channels.*positive"),
        (dict(decoder_fusion_channels=0), ValueError, r"decoder_fusion_channels.*positive.*0"),
        (dict(encoder_output_indices=[1, 2, 3]), ValueError, r"encoder_output_indices.*3.*depth 4"),
        (dict(encoder_output_indices=[1, 2, 3, 6]), ValueError, r"range \[-6, 6\).*index 6"),
        (dict(output_stride=16), ValueError, r"dilation.*output_stride.*16"),
        (dict(classes=0), ValueError, r"classes.*0"),
        (dict(aux_params=dict(classes=2, foo=1)), TypeError, r"aux_params.*\['foo'\]"),
        (dict(input_padding="zeros"), ValueError, r"input_padding.*'zeros'"),
        (dict(encoder_weights="in22k_nope"), ValueError, r"encoder_weights.*'in22k_nope'"),
    ],
)
def test_bad_construction(kwargs, error, pattern):
    kwargs = {**SMALL, "encoder_weights": None, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(error, match=pattern):
            smp.DPT(**kwargs)


def test_bad_forward_input():
    model = smp.DPT(encoder_weights=None, **SMALL).eval()
    with pytest.raises(ValueError, match=r"3 channels"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"4 dims"):
        model(torch.randn(1, 3, 8, 32, 32))
    features, prefix = model.encoder(torch.randn(1, 3, 32, 32))
    with pytest.raises(TypeError, match="time_emb"):  # the dead parameter is gone
        model.decoder(features, prefix, time_emb=torch.zeros(1))
    with pytest.raises(ValueError, match="4 encoder features, got 3"):
        model.decoder(features[:3], prefix[:3])
    with pytest.raises(ValueError, match="prefix_tokens"):
        model.decoder(features)  # readout='cat' needs them
