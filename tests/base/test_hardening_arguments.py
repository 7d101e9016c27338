"""Issue 17 item 7: wrong argument types and silently accepted nonsense raise a ValueError/TypeError naming the
argument and the value at construction, instead of a raw Python error or a later failure."""
import pytest

import smp_like as smp
from smp_like import generative as G
from smp_like.base.checks import check_positive_int

E = dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=3)


@pytest.mark.parametrize("build", [
    lambda: smp.Unet(**E, decoder_channels=16),
    lambda: smp.UnetPlusPlus(**E, decoder_channels=16),
    lambda: smp.MAnet(**E, decoder_channels=16),
    lambda: smp.HSeM(**E, decoder_channels=16),
    lambda: G.AE(**E, decoder_channels=16),
], ids=["Unet", "UnetPlusPlus", "MAnet", "HSeM", "AE"])
def test_an_int_decoder_channels_is_named(build):
    with pytest.raises(ValueError, match=r"`decoder_channels` must be a sequence of positive ints, got 16"):
        build()


def test_clm_hidden_channels_int_is_named():
    with pytest.raises(ValueError, match=r"`hidden_channels` must be a sequence of positive ints, got 256"):
        smp.ClM(hidden_channels=256)


def test_encoder_weights_list_is_named():
    with pytest.raises(TypeError, match=r"`encoder_weights` must be a weights tag .* got \['imagenet'\]"):
        smp.Unet("resnet18", encoder_weights=["imagenet"], encoder_depth=3, decoder_channels=(8, 8, 8))


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_upsampling_is_refused(value):
    # Refused for every argument before any constructor runs (check_argument_values), naming it.
    with pytest.raises(ValueError, match=r"`upsampling` must be a finite number"):
        smp.FPN(**E, upsampling=value)


def test_huge_latent_channels_are_refused_before_allocating():
    with pytest.raises(ValueError, match=r"`latent_channels`=9223372036854775808 is out of range"):
        G.VAE(**E, decoder_channels=(8, 8, 8), latent_channels=2**63)
    with pytest.raises(ValueError, match=r"`latent_channels` must lie in \[1, 65536\], got 100000"):
        G.VAE(**E, decoder_channels=(8, 8, 8), latent_channels=100_000)
    assert check_positive_int("n", 7, maximum=7) == 7
