"""One vocabulary of layer names: SMP's wrappers (Activation, Attention) accept the block toolkit's names too."""

import pytest
import torch
from torch import nn

import smp_like
from smp_like.base import attention as toolkit_attention
from smp_like.base.modules import ACTIVATIONS, ATTENTION_TYPES, Activation, Attention, SCSEModule


def test_attention_types_are_the_toolkit_names_plus_none():
    assert ATTENTION_TYPES == (None,) + toolkit_attention.ATTENTIONS
    assert SCSEModule is toolkit_attention.SCSEModule  # one class, importable from both SMP's and the toolkit's path


@pytest.mark.parametrize("name", ["se", "cbam", "self"])
def test_smp_attention_wrapper_builds_toolkit_attentions(name):
    module = Attention(name, in_channels=8)
    expected = type(toolkit_attention.make_attention(name, 8))
    assert type(module.attention) is expected
    x = torch.randn(2, 8, 5, 6)
    assert module(x).shape == x.shape


def test_scse_keeps_smp_keys():
    keys = set(Attention("scse", in_channels=32).state_dict())
    assert keys == {"attention.cSE.1.weight", "attention.cSE.1.bias", "attention.cSE.3.weight",
                    "attention.cSE.3.bias", "attention.sSE.0.weight", "attention.sSE.0.bias"}


@pytest.mark.parametrize("name,cls", [("gelu", nn.GELU), ("relu", nn.ReLU), ("SiLU", nn.SiLU)])
def test_activation_accepts_any_torch_activation_name(name, cls):
    assert isinstance(Activation(name).activation, cls)
    assert name.lower() not in ACTIVATIONS  # reached through the toolkit's factory, not SMP's list


def test_unknown_names_still_fail_clearly():
    with pytest.raises(ValueError, match="activation"):
        Activation("not_an_activation")
    with pytest.raises(ValueError, match="decoder_attention_type"):
        Attention("bogus", in_channels=4)


def test_unet_decoder_attention_from_the_toolkit():
    model = smp_like.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4),
                          decoder_attention_type="cbam", activation="gelu")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
