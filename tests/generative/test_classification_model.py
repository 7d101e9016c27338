"""ClM (Flemme's classification model): shapes in 2D/3D, pooling against closed forms, backward, save/load, errors."""

import pytest
import torch

import smp_like
from smp_like.decoders.classification.model import ClM

ENCODERS = ["resnet18", "tu-test_resnet"]


def small(encoder_name: str = "resnet18", **kwargs) -> ClM:
    kwargs.setdefault("encoder_depth", 3)
    kwargs.setdefault("hidden_channels", (8,))
    return ClM(encoder_name=encoder_name, **kwargs)


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_forward_backward_shapes(encoder_name):
    torch.manual_seed(0)
    model = small(encoder_name, classes=4)
    x = torch.randn(2, 3, 24, 20)
    logits = model(x)
    assert logits.shape == (2, 4)
    logits.sum().backward()
    first_conv = next(m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0


def test_3d_shapes():
    model = small("resnet18", classes=2, spatial_dims=3)
    assert model(torch.randn(2, 3, 8, 12, 8)).shape == (2, 2)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pooling_matches_closed_form(pooling, spatial_dims):
    torch.manual_seed(0)
    model = small("resnet18", pooling=pooling, spatial_dims=spatial_dims, hidden_channels=(), dropout=None).eval()
    x = torch.randn(2, 3, *([16] * spatial_dims))
    deepest = model.encoder(x)[-1]
    axes = tuple(range(2, 2 + spatial_dims))
    pooled = deepest.mean(dim=axes) if pooling == "avg" else deepest.amax(dim=axes)
    # No hidden layer and no dropout: the head is one affine map, written out here.
    expected = pooled @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(model(x), expected)


def test_mlp_layout_and_activation():
    model = small("resnet18", hidden_channels=(16, 8), dropout=0.5, classes=3, activation="softmax").eval()
    linears = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(model.encoder.out_channels[-1], 16), (16, 8)]
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.mlp) == 3
    probs = model(torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize("encoder_name", ENCODERS)
def test_save_load_identical(tmp_path, encoder_name):
    torch.manual_seed(0)
    model = small(encoder_name, classes=3, pooling="max", activation="sigmoid").eval()
    x = torch.randn(2, 3, 16, 16)
    expected = model(x)
    model.save_pretrained(tmp_path)
    for loaded in (ClM.from_pretrained(tmp_path), smp_like.from_pretrained(tmp_path)):
        assert type(loaded) is ClM and not loaded.training
        assert loaded.get_config() == model.get_config()
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"pooling": "sum"}, "pooling"),
        ({"classes": 0}, "classes"),
        ({"hidden_channels": (8, 0)}, "hidden_channels"),
        ({"hidden_channels": "8"}, "hidden_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"spatial_dims": 1}, "spatial_dims"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small("resnet18", **kwargs)


def test_bad_input():
    model = small("resnet18")
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[1.0]])
    with pytest.raises(ValueError, match="4 dims"):
        model(torch.randn(2, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(2, 1, 16, 16))


def test_registered_for_create_model():
    from smp_like.base.model import MODEL_REGISTRY

    assert type(smp_like.create_model("clm", "resnet18", encoder_weights=None, encoder_depth=3, classes=2)) is ClM
    # Registry-wide code (the anisotropic-stride error of segmentation models) reads this attribute.
    assert all(hasattr(c, "supports_anisotropic_strides") for c in MODEL_REGISTRY.values())
