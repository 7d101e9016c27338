"""Property-based: random valid Unet configurations give the right shapes; invalid ones fail early and clearly."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import smp_like as smp

ENCODERS = ["resnet18", "tu-test_resnet"]


@st.composite
def valid_configs(draw):
    depth = draw(st.integers(1, 5))
    spatial_dims = draw(st.sampled_from([2, 3]))
    encoder = "resnet18" if spatial_dims == 3 else draw(st.sampled_from(ENCODERS))
    config = dict(
        encoder_name=encoder,
        encoder_weights=None,
        encoder_depth=depth,
        decoder_channels=tuple(draw(st.lists(st.integers(1, 12), min_size=depth, max_size=depth))),
        decoder_use_norm=draw(st.sampled_from([True, False, "batchnorm", "identity", "layernorm", "instancenorm"])),
        decoder_attention_type=draw(st.sampled_from([None, "scse"])),
        decoder_interpolation=draw(st.sampled_from(["nearest", "bilinear"])),
        in_channels=draw(st.integers(1, 4)),
        classes=draw(st.integers(1, 4)),
        activation=draw(st.sampled_from([None, "sigmoid", "softmax", "tanh"])),
        spatial_dims=spatial_dims,
    )
    if draw(st.booleans()):
        config["aux_params"] = dict(classes=draw(st.integers(1, 3)), pooling=draw(st.sampled_from(["avg", "max"])))
    low, high = (1, 40) if spatial_dims == 2 else (1, 12)
    if config["decoder_use_norm"] == "instancenorm":
        # Instance statistics need more than one element in every decoder stage, the deepest included.
        low = 2**depth + 1
        high = max(high, low)
    size = tuple(draw(st.integers(low, high)) for _ in range(spatial_dims))
    return config, size


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_configs())
def test_valid_configurations_give_input_sized_outputs(case):
    config, size = case
    model = smp.Unet(**config).eval()
    x = torch.randn(1, config["in_channels"], *size)
    with torch.no_grad():
        out = model(x)
    mask = out[0] if "aux_params" in config else out
    assert mask.shape == (1, config["classes"], *size)
    if "aux_params" in config:
        assert out[1].shape == (1, config["aux_params"]["classes"])


INVALID = st.one_of(
    st.fixed_dictionaries({"encoder_depth": st.sampled_from([0, 6, 7, -1])}),
    st.fixed_dictionaries({"decoder_channels": st.lists(st.integers(1, 8), min_size=0, max_size=4)}),
    st.fixed_dictionaries({"decoder_channels": st.lists(st.integers(-3, 0), min_size=5, max_size=5)}),
    st.fixed_dictionaries({"classes": st.sampled_from([0, -2, 1.5, "3"])}),
    st.fixed_dictionaries({"in_channels": st.sampled_from([0, -1])}),
    st.fixed_dictionaries({"encoder_name": st.text(min_size=1, max_size=8).filter(lambda s: s not in smp.encoders.encoders and not s.startswith("tu-"))}),
    st.fixed_dictionaries({"spatial_dims": st.sampled_from([0, 1, 4])}),
    st.fixed_dictionaries({"decoder_use_norm": st.sampled_from(["bn", 3, None, {"type": "x"}])}),
    st.fixed_dictionaries({"decoder_attention_type": st.sampled_from(["sse", "cbam2", 1])}),
    st.fixed_dictionaries({"decoder_interpolation": st.sampled_from(["cubic", "foo"])}),
    st.fixed_dictionaries({"activation": st.sampled_from(["relu9", "foo"])}),
    st.fixed_dictionaries({"aux_params": st.sampled_from([{"classes": 2, "x": 1}, {"classes": 0}, {"pooling": "avg"},
                                                           {"classes": 2, "dropout": 1.5}, [1]])}),
    st.fixed_dictionaries({"encoder_weights": st.sampled_from(["imagenet21k", "foo"])}),
    st.fixed_dictionaries({"output_stride": st.sampled_from([4, 12, 64])}),
)


@settings(max_examples=60, deadline=None)
@given(INVALID)
def test_invalid_configurations_raise_clear_errors(bad):
    config = dict(encoder_name="resnet18", encoder_weights=None, decoder_channels=(8, 8, 8, 8, 8))
    config.update(bad)
    if "encoder_depth" in bad:
        config["decoder_channels"] = (8,) * max(bad["encoder_depth"], 0)
    with pytest.raises((ValueError, TypeError)) as info:
        smp.Unet(**config)
    # The message names the offending argument (or its value); never a shape error from deep inside a layer.
    name, value = next(iter(bad.items()))
    message = str(info.value)
    assert name.split("_")[-1] in message or repr(value) in message or str(value) in message, message


@settings(max_examples=20, deadline=None)
@given(channels=st.integers(1, 6).filter(lambda c: c != 3), extra_dims=st.integers(0, 2).filter(lambda d: d != 2))
def test_invalid_inputs_raise_before_any_layer(channels, extra_dims):
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=2, decoder_channels=(8, 8))
    shape = (1, 3) + (16,) * extra_dims if extra_dims != 2 else (1, channels, 16, 16)
    for x in (torch.randn(*shape), torch.randn(1, channels, 16, 16)):
        with pytest.raises(ValueError, match=r"input must have"):
            model(x)
