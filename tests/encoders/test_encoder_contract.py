"""The encoder contract (DESIGN.md) over the whole registry: counts, channels and reductions match real outputs."""

import pytest
import torch

from smp_like.encoders import get_encoder, get_encoder_names

# Only the light encoders run on CPU in the default run; the others are built on the meta device, where shapes
# propagate through the very same ops without allocating (up to ~800M) parameters. Every encoder also runs for
# real on CPU in the slow set, and the model-level SMP conformance tests run resnet50-sized ones on CPU.
LIGHT = {"resnet18", "resnet34"}
TIMM_NAMES = ["tu-test_resnet", "tu-test_convnext", "tu-test_efficientnet"]


def check_contract(encoder, features, x):
    depth = encoder.depth
    assert len(features) == depth + 1 == len(encoder.out_channels) == len(encoder.reductions)
    assert encoder.reductions[0] == 1
    assert encoder.output_stride == encoder.reductions[-1]
    for feature, channels, reduction in zip(features, encoder.out_channels, encoder.reductions):
        assert feature.shape[0] == x.shape[0]
        assert feature.shape[1] == channels
        expected = tuple(-(-s // reduction) for s in x.shape[2:])  # ceil: convs with padding round up
        assert tuple(feature.shape[2:]) == expected, (reduction, feature.shape)


def run(encoder, x):
    with torch.no_grad():
        return encoder.eval()(x)


@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("depth", [3, 4, 5])
@pytest.mark.parametrize("name", get_encoder_names())
def test_contract_every_registered_encoder(name, depth, in_channels):
    device = "cpu" if name in LIGHT else "meta"
    with torch.device(device):
        encoder = get_encoder(name, in_channels=in_channels, depth=depth, weights=None)
        x = torch.randn(2, in_channels, 64, 96)
    assert encoder.in_channels == in_channels and encoder.depth == depth and encoder.spatial_dims == 2
    check_contract(encoder, run(encoder, x), x)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in get_encoder_names() if n not in LIGHT])
def test_contract_on_cpu(name):
    encoder = get_encoder(name, in_channels=3, depth=5, weights=None)
    x = torch.randn(1, 3, 64, 64)
    check_contract(encoder, run(encoder, x), x)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "tu-test_resnet"])
def test_contract_shallow_depths(name, depth):
    encoder = get_encoder(name, depth=depth, weights=None)
    x = torch.randn(1, 3, 32, 32)
    check_contract(encoder, run(encoder, x), x)


@pytest.mark.parametrize("in_channels", [1, 3, 4])
@pytest.mark.parametrize("depth", [3, 4, 5])
@pytest.mark.parametrize("name", TIMM_NAMES)
def test_contract_timm_encoders(name, depth, in_channels):
    encoder = get_encoder(name, in_channels=in_channels, depth=depth, weights=None)
    x = torch.randn(2, in_channels, 64, 96)
    check_contract(encoder, run(encoder, x), x)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "tu-test_resnet"])
def test_dilation_keeps_the_contract(name, output_stride):
    encoder = get_encoder(name, depth=5, weights=None, output_stride=output_stride)
    x = torch.randn(1, 3, 64, 64)
    features = run(encoder, x)
    assert encoder.output_stride == output_stride
    assert encoder.reductions == tuple(min(2**i, output_stride) for i in range(6))
    check_contract(encoder, features, x)


@pytest.mark.parametrize("depth", [3, 4, 5])
@pytest.mark.parametrize("name", [n for n in get_encoder_names() if n.startswith(("resnet", "resnext"))])
def test_contract_3d(name, depth):
    device = "cpu" if name == "resnet18" else "meta"
    with torch.device(device):
        encoder = get_encoder(name, in_channels=2, depth=depth, weights=None, spatial_dims=3)
        x = torch.randn(1, 2, 16, 20, 12)
    assert encoder.spatial_dims == 3
    check_contract(encoder, run(encoder, x), x)
    assert all(f.dim() == 5 for f in run(encoder, x))


def test_3d_dilation():
    encoder = get_encoder("resnet18", depth=5, weights=None, spatial_dims=3, output_stride=16)
    x = torch.randn(1, 3, 32, 32, 32)
    check_contract(encoder, run(encoder, x), x)
