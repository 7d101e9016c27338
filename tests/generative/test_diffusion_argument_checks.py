"""Issue 17 item 7: diffusion arguments of the wrong type or out of range fail at construction (or at the call)
with a TypeError/ValueError naming the argument and the value."""
import pytest
import torch

from smp_like.base.checks import check_real
from smp_like.generative import DDIM, DDPM

TINY = dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(8, 8, 8), in_channels=1,
            time_embedding_dim=8, num_train_timesteps=10, num_classes=2)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(condition_dropout="0.1"), TypeError, r"`condition_dropout` must be a real number, got '0.1'"),
    (dict(beta_start="1e-4"), TypeError, r"`beta_start` must be a real number, got '1e-4'"),
    (dict(clip_range="1"), TypeError, r"`clip_range` must be a real number, got '1'"),
    (dict(eta="0"), TypeError, r"`eta` must be a real number, got '0'"),
    (dict(guidance_scale="2"), TypeError, r"`guidance_scale` must be a real number, got '2'"),
    (dict(guidance_scale=float("nan")), ValueError, r"`guidance_scale` must be a finite number.*nan"),
    (dict(guidance_scale=float("inf")), ValueError, r"`guidance_scale` must be a finite number.*inf"),
    (dict(beta_start=0.5, beta_end=0.1), ValueError, r"`beta_start`=0.5 must be <= `beta_end`=0.1"),
    (dict(clip_range=0.0), ValueError, r"`clip_range` must lie in \(0, inf\), got 0.0"),
    (dict(eta=-1.0), ValueError, r"`eta` must lie in \[0, inf\), got -1.0"),
])
def test_bad_diffusion_arguments_raise_at_construction(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        DDPM(**TINY, **kwargs)


def test_ddim_steps_beyond_the_training_schedule_raise_at_construction():
    with pytest.raises(ValueError, match=r"`num_inference_steps` must lie in \[1, num_train_timesteps=10\], got 20"):
        DDIM(**TINY, num_inference_steps=20)
    assert DDIM(**TINY, num_inference_steps=10).num_inference_steps == 10
    assert DDIM(**TINY).num_inference_steps == 10  # the default of 50 is capped at a shorter schedule


def test_sample_time_overrides_are_checked():
    model = DDIM(**TINY, num_inference_steps=2).eval()
    with pytest.raises(TypeError, match="`guidance_scale` must be a real number"):
        model.sample(1, (8, 8), labels=torch.tensor([0]), progress=False, guidance_scale="2")
    with pytest.raises(ValueError, match=r"`eta` must lie in \[0, inf\)"):
        model.sample(1, (8, 8), labels=torch.tensor([0]), progress=False, eta=-0.5)


@pytest.mark.parametrize("bad", [-1, 10])
def test_forward_refuses_timesteps_outside_the_schedule(bad):
    model = DDPM(**TINY).eval()
    with pytest.raises(ValueError, match=rf"`timesteps` must lie in \[0, num_train_timesteps=10\), got {bad}"):
        model(torch.randn(2, 1, 8, 8), torch.tensor([0, bad]), labels=torch.tensor([0, 1]))
    assert model(torch.randn(2, 1, 8, 8), torch.tensor([0, 9]), labels=torch.tensor([0, 1])).shape == (2, 1, 8, 8)


def test_check_real_accepts_numbers_and_numpy_scalars_only():
    np = pytest.importorskip("numpy")
    assert check_real("x", np.float32(0.5), low=0.0, high=1.0) == 0.5
    assert check_real("x", 3) == 3.0
    with pytest.raises(TypeError, match="`x` must be a real number, got True"):
        check_real("x", True)
    with pytest.raises(ValueError, match=r"`x` must lie in \[0, 1\), got 1"):
        check_real("x", 1, low=0.0, high=1.0, high_open=True)
