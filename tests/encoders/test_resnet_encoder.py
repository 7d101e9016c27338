"""ResNet family: SMP parity of keys and features, in_channels adaptation, 2D -> 3D inflation, dilation."""

import pytest
import segmentation_models_pytorch as smp_oracle
import torch
import torch.nn.functional as F

import smp_like
from smp_like.encoders import get_encoder
from smp_like.encoders._utils import inflate_state_dict

pytestmark = pytest.mark.conformance


def features(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


@pytest.mark.parametrize(
    "name, depth, in_channels, output_stride",
    [(n, d, c, 32) for n in ["resnet18", "resnet34", "resnet50", "resnext50_32x4d"] for d in (3, 5) for c in (1, 3, 4)]
    + [(n, 5, 3, s) for n in ["resnet18", "resnext50_32x4d"] for s in (16, 8)]
    + [("resnet18", d, 3, 32) for d in (1, 2)],
)
def test_matches_smp_encoder(name, depth, in_channels, output_stride):
    torch.manual_seed(0)
    theirs = smp_oracle.encoders.get_encoder(
        name, in_channels=in_channels, depth=depth, weights=None, output_stride=output_stride
    )
    ours = get_encoder(name, in_channels=in_channels, depth=depth, weights=None, output_stride=output_stride)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert list(ours.out_channels) == list(theirs.out_channels)
    assert ours.output_stride == theirs.output_stride
    x = torch.randn(2, in_channels, 32, 32)
    for a, b in zip(features(ours, x), features(theirs, x), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["resnet101", "resnet152", "resnext101_32x4d", "resnext101_32x8d", "resnext101_32x16d",
             "resnext101_32x32d", "resnext101_32x48d"]
)
def test_matches_smp_encoder_large(name):
    theirs = smp_oracle.encoders.get_encoder(name, weights=None)
    ours = get_encoder(name, weights=None)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(features(ours, x), features(theirs, x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_state_dict_keys_equal_smp_for_every_name_on_meta():
    for name in ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                 "resnext101_32x4d", "resnext101_32x8d", "resnext101_32x16d", "resnext101_32x32d",
                 "resnext101_32x48d"]:
        with torch.device("meta"):
            theirs = smp_oracle.encoders.get_encoder(name, weights=None).state_dict()
            ours = get_encoder(name, weights=None).state_dict()
        assert list(ours) == list(theirs), name
        assert all(ours[k].shape == theirs[k].shape for k in ours), name


def _pretend_pretrained(name="resnet18", **kwargs):
    """An encoder whose first conv came from 'pretrained' RGB weights, adapted as if loaded."""
    torch.manual_seed(1)
    rgb = get_encoder(name, weights=None)
    adapted = get_encoder(name, weights=None)
    adapted.load_state_dict(rgb.state_dict())
    return rgb, adapted


def test_one_channel_sums_rgb_kernels():
    rgb, adapted = _pretend_pretrained()
    adapted.set_in_channels(1, pretrained=True)
    gray = torch.randn(1, 1, 32, 32)
    # A grey image seen as RGB (three equal channels) must give the same first-conv response.
    expected = rgb.conv1(gray.repeat(1, 3, 1, 1))
    torch.testing.assert_close(adapted.conv1(gray), expected, rtol=1e-5, atol=1e-5)
    assert adapted.in_channels == 1 and adapted.out_channels[0] == 1


@pytest.mark.parametrize("n", [2, 4, 7])
def test_n_channels_repeat_and_rescale(n):
    rgb, adapted = _pretend_pretrained()
    adapted.set_in_channels(n, pretrained=True)
    weight = adapted.conv1.weight
    assert weight.shape[1] == n
    for i in range(n):
        torch.testing.assert_close(weight[:, i], rgb.conv1.weight[:, i % 3] * 3 / n)


def test_random_weights_are_reinitialised_for_new_channels():
    encoder = get_encoder("resnet18", in_channels=5, weights=None)
    assert encoder.conv1.weight.shape[1] == 5
    assert encoder.conv1.weight.std() > 0


def test_inflation_gives_2d_response_on_constant_depth():
    torch.manual_seed(0)
    enc2d = get_encoder("resnet18", weights=None)
    enc3d = get_encoder("resnet18", weights=None, spatial_dims=3)
    state = inflate_state_dict(enc2d.state_dict(), enc3d)
    enc3d.load_state_dict(state)
    # conv1 kernel is 7 deep: slices far enough from the volume's ends see 7 identical slices.
    image = torch.randn(1, 3, 32, 32)
    volume = image.unsqueeze(2).repeat(1, 1, 16, 1, 1)
    out3d = F.conv3d(volume, enc3d.conv1.weight, stride=2, padding=3)
    out2d = F.conv2d(image, enc2d.conv1.weight, stride=2, padding=3)
    torch.testing.assert_close(out3d[:, :, 4], out2d, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(enc3d.conv1.weight.sum(2), enc2d.conv1.weight, rtol=1e-5, atol=1e-6)


def test_dilation_matches_smp_rates():
    # Stride-16 encoders keep the spatial size in the last stage and enlarge the receptive field.
    encoder = get_encoder("resnet18", weights=None, output_stride=16)
    convs = [m for m in encoder.layer4.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.stride == (1, 1) for m in convs)
    assert {m.dilation for m in convs if m.kernel_size == (3, 3)} == {(2, 2)}
    encoder8 = get_encoder("resnet18", weights=None, output_stride=8)
    assert {m.dilation for m in encoder8.layer3.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)} == {(2, 2)}
    assert {m.dilation for m in encoder8.layer4.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)} == {(4, 4)}


@pytest.mark.parametrize("bad", [0, 6, 2.5, True])
def test_depth_out_of_range(bad):
    with pytest.raises(ValueError, match=r"depth.*1\.\.5"):
        get_encoder("resnet18", depth=bad)


def test_time_embedding_refused():
    encoder = get_encoder("resnet18", weights=None, depth=2)
    with pytest.raises(ValueError, match="time embedding"):
        encoder(torch.randn(1, 3, 32, 32), time_emb=torch.randn(1, 8))


# ----------------------------------------------------------------------------- anisotropic strides (3D)

THICK_SLICES = [(1, 2, 2), (1, 2, 2), 2, 2, 2]


def test_anisotropic_strides_give_per_axis_reductions():
    encoder = get_encoder("resnet18", spatial_dims=3, strides=THICK_SLICES)
    expected = ((1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32))
    assert encoder.reductions == expected and encoder.output_stride == (8, 32, 32)
    x = torch.randn(1, 3, 17, 37, 41)
    for feature, reduction, channels in zip(encoder(x), expected, encoder.out_channels):
        # conv/pool with kernel 3 (padding 1) or 7 (padding 3) and stride s gives ceil(size / s) per axis.
        assert tuple(feature.shape[2:]) == tuple(-(-n // r) for n, r in zip(x.shape[2:], reduction))
        assert feature.shape[1] == channels


def test_anisotropic_strides_with_dilation_stop_reducing_dilated_stages():
    encoder = get_encoder("resnet18", spatial_dims=3, strides=THICK_SLICES, output_stride=16)
    assert encoder.reductions[-2:] == ((4, 16, 16), (4, 16, 16))
    assert tuple(encoder(torch.randn(1, 3, 16, 32, 32))[-1].shape[2:]) == (4, 2, 2)


def test_isotropic_strides_keep_integer_reductions():
    encoder = get_encoder("resnet18", strides=[2, 2, 2, 2, 1])
    assert encoder.reductions == (1, 2, 4, 8, 16, 16)


@pytest.mark.parametrize(
    "bad", [[2, 2, 2, 2], [3, 2, 2, 2, 2], [(1, 2), 2, 2, 2, 2], "22222", [True, 2, 2, 2, 2]]
)
def test_bad_strides_are_refused(bad):
    with pytest.raises(ValueError, match="strides"):
        get_encoder("resnet18", spatial_dims=3, strides=bad)


@pytest.mark.parametrize("arch", ["Unet", "UnetPlusPlus", "MAnet"])
def test_skip_resizing_decoders_take_anisotropic_encoders(arch):
    model = getattr(smp_like, arch)("resnet18", encoder_weights=None, spatial_dims=3, strides=THICK_SLICES,
                                    decoder_channels=(16, 16, 16, 16, 16)).eval()
    assert model.input_stride == (8, 32, 32)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 13, 37, 41)).shape == (1, 1, 13, 37, 41)


@pytest.mark.parametrize("arch", ["FPN", "DeepLabV3", "Linknet"])
def test_other_decoders_refuse_anisotropic_encoders_clearly(arch):
    with pytest.raises(ValueError, match="anisotropic `strides`.*Unet"):
        getattr(smp_like, arch)("resnet18", encoder_weights=None, spatial_dims=3, strides=THICK_SLICES)
