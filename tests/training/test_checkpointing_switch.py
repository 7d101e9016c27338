"""`model.gradient_checkpointing: true` reaches every kind of model the pipeline builds (wrappers included)."""

import pytest

from smp_like.base.checkpointing import checkpointed_modules
from smp_like.training.builders import build_model
from smp_like.training.config import ModelConfig

TINY = dict(encoder_name="resnet18", encoder_depth=3, encoder_weights=None, decoder_channels=[16, 8, 4])


@pytest.mark.parametrize("arch, kwargs", [
    ("Unet", TINY),
    ("AE", TINY),
    ("DDPM", dict(encoder_weights=None, num_train_timesteps=10, in_channels=1, time_embedding_dim=16,
                  eps_model=dict(arch="Unet", **{k: v for k, v in TINY.items() if k != "encoder_weights"}))),
])
def test_switch_checkpoints_blocks(arch, kwargs):
    plain = build_model(ModelConfig(arch=arch, **kwargs), 1, pretrained=False)
    assert not list(checkpointed_modules(plain))
    model = build_model(ModelConfig(arch=arch, gradient_checkpointing=True, **kwargs), 1, pretrained=False)
    # encoder stages (3 + stem) and decoder blocks (3) of the network that runs the forward
    assert len(list(checkpointed_modules(model))) >= 6
