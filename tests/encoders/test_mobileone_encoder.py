"""MobileOne encoders (Vasu et al. 2023): re-parameterisation, stem adaptation, dilation, errors.

The inference form is checked against SMP's (``MobileOne(..., inference_mode=True)`` keys, SMP's own
``reparameterize_model`` outputs) and against our training form (same features within 1e-5 of their scale).
"""


import pytest
import torch
from encoder_testing import smp_encoder

from smp_like.encoders import get_encoder
from smp_like.encoders.mobileone import MobileOneBlock, MobileOneEncoder, reparameterize_model

smp_oracle = pytest.importorskip("segmentation_models_pytorch")
smp_mobileone = pytest.importorskip("segmentation_models_pytorch.encoders.mobileone")
pytestmark = pytest.mark.conformance


def randomise_norms(module, seed=0):
    """Non-trivial BN statistics and affine terms, so a wrong fold of any branch shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=generator))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
    return module.eval()


def run(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


def assert_close_features(got, expected, tolerance=1e-5):
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, i
        scale = max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() <= tolerance * scale, f"feature {i} differs"


def smp_inference_keys(name):
    params = dict(smp_oracle.encoders.encoders[name]["params"], inference_mode=True)
    with torch.device("meta"):
        return list(smp_mobileone.MobileOne(**params).state_dict())


@pytest.mark.parametrize(
    "name, output_stride", [("mobileone_s0", 32), ("mobileone_s4", 32), ("mobileone_s0", 8)]
)
def test_reparameterized_encoder_keeps_outputs_and_has_smp_inference_keys(name, output_stride):
    theirs = randomise_norms(smp_encoder(name, output_stride=output_stride))
    ours = get_encoder(name, output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    training_form = run(ours, x)
    assert_close_features(training_form, run(theirs, x))

    fused = reparameterize_model(ours)
    assert fused is not ours and not ours.inference_mode and ours.stage0.rbr_scale is not None  # a copy
    assert list(fused.state_dict()) == smp_inference_keys(name)
    assert all(not hasattr(b, "rbr_conv") for b in fused.modules() if isinstance(b, MobileOneBlock))
    assert_close_features(run(fused, x), training_form)
    # The fused tensors are SMP's: SMP's inference-form model takes them and computes the same features.
    theirs_fused = smp_mobileone.reparameterize_model(theirs)
    theirs_fused.load_state_dict(fused.state_dict(), strict=True)
    assert_close_features(run(theirs_fused, x), training_form)

    ours.reparameterize()  # in place
    assert ours.inference_mode and list(ours.state_dict()) == smp_inference_keys(name)
    assert_close_features(run(ours, x), training_form)


def test_inference_form_built_directly_loads_both_checkpoint_forms():
    theirs = randomise_norms(smp_encoder("mobileone_s0"), seed=1)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = run(theirs, x)

    ours = get_encoder("mobileone_s0", inference_mode=True)
    assert list(ours.state_dict()) == smp_inference_keys("mobileone_s0")
    ours.load_state_dict(theirs.state_dict(), strict=True)  # training form: branches are folded while loading
    assert_close_features(run(ours, x), expected)

    again = get_encoder("mobileone_s0", inference_mode=True)
    again.load_state_dict(smp_mobileone.reparameterize_model(theirs).state_dict(), strict=True)
    assert_close_features(run(again, x), expected)


@pytest.mark.parametrize("in_channels", [1, 6])
@pytest.mark.parametrize("inference_mode", [False, True])
def test_stem_adaptation_patches_every_stem_branch(in_channels, inference_mode):
    torch.manual_seed(0)
    rgb = randomise_norms(get_encoder("mobileone_s1", depth=2, inference_mode=inference_mode))
    adapted = get_encoder("mobileone_s1", depth=2, inference_mode=inference_mode)
    adapted.load_state_dict(rgb.state_dict())
    adapted.set_in_channels(in_channels, pretrained=True)
    convs = [m for m in adapted.stage0.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.in_channels == in_channels and c.weight.shape[1] == in_channels for c in convs)
    assert adapted.out_channels[0] == in_channels
    # An image constant over channels gives the RGB model's response (1 channel: RGB kernels summed; 6: RGB
    # kernels repeated twice and scaled by 3/6).
    grey = torch.randn(1, 1, 32, 32)
    assert_close_features(
        run(adapted, grey.repeat(1, in_channels, 1, 1))[1:], run(rgb, grey.repeat(1, 3, 1, 1))[1:]
    )


def test_dilated_stage_reparameterizes_with_its_dilation():
    ours = randomise_norms(get_encoder("mobileone_s0", output_stride=16))
    x = torch.randn(1, 3, 64, 64)
    expected = run(ours, x)
    ours.reparameterize()
    conv = ours.stage4[0].reparam_conv
    assert conv.dilation == (2, 2) and conv.padding == (2, 2) and conv.stride == (1, 1)
    assert_close_features(run(ours, x), expected)


@pytest.mark.parametrize("depth, output_stride", [(1, 32), (2, 32), (4, 16), (5, 16)])
def test_shallow_depths_and_dilation_match_smp(depth, output_stride):
    theirs = randomise_norms(smp_encoder("mobileone_s0", depth=depth, output_stride=output_stride), seed=2)
    ours = get_encoder("mobileone_s0", depth=depth, output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert tuple(ours.out_channels) == tuple(theirs.out_channels)
    assert ours.reductions[-1] == min(2**depth, output_stride)
    x = torch.randn(1, 3, 64, 64)
    assert_close_features(run(ours, x), run(theirs, x))


def test_state_dict_keys_and_shapes_equal_smp_on_meta():
    for name in ["mobileone_s0", "mobileone_s1", "mobileone_s2", "mobileone_s3", "mobileone_s4"]:
        with torch.device("meta"):
            theirs = smp_encoder(name).state_dict()
            ours = get_encoder(name).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


@pytest.mark.parametrize("depth", [0, 6])
def test_bad_depth_is_refused(depth):
    with pytest.raises(ValueError, match="depth"):
        get_encoder("mobileone_s0", depth=depth)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="output_stride"):
        get_encoder("mobileone_s0", output_stride=64)
    with pytest.raises(ValueError, match="encoder_weights"):
        get_encoder("mobileone_s0", weights="ssl")
    with pytest.raises(ValueError, match="spatial_dims"):
        get_encoder("mobileone_s0", spatial_dims=3)
    with pytest.raises(ValueError, match="width_multipliers"):
        MobileOneEncoder(out_channels=(3, 1, 1, 1, 1, 1), width_multipliers=(1.0, 1.0))
    with pytest.raises(ValueError, match="time embedding"):
        get_encoder("mobileone_s0", depth=1)(torch.randn(1, 3, 32, 32), time_emb=torch.zeros(1, 4))
