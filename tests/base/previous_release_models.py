"""The small models whose folders (saved by the release before the core refactor) live in
tests/fixtures/previous_release/: how each was built and how its output is probed.

``tests/fixtures/previous_release/make_fixtures.py`` wrote the folders with that release's code (commit ecb4476);
``test_previous_release.py`` loads them with today's code and compares the probes' outputs bit for bit.
"""
from typing import Callable, Dict, Tuple

import torch

TINY_UNET = dict(encoder_name="tu-test_resnet", encoder_depth=2, encoder_weights=None, decoder_channels=(8, 4))


def _builders() -> Dict[str, Callable[[], torch.nn.Module]]:
    import smp_like as smp

    def ae_small(cls):
        return cls(encoder_name="tu-test_resnet", encoder_depth=2, in_channels=1, decoder_channels=(8, 4),
                   latent_channels=4)

    return {
        "unet": lambda: smp.Unet(**TINY_UNET, classes=2, aux_params=dict(classes=3, dropout=0.1)),
        "vae": lambda: ae_small(smp.VAE),
        "ae": lambda: ae_small(smp.AE),
        "unet_time_hooks": lambda: smp.Unet(**TINY_UNET, classes=1, time_embedding_dim=16),
        "unet_time_res_conv": lambda: smp.Unet(**TINY_UNET, classes=1, decoder_block="res_conv",
                                               time_embedding_dim=16, time_injection="gate"),
        "ddpm": lambda: smp.DDPM(**TINY_UNET, in_channels=1, time_embedding_dim=16, num_train_timesteps=20,
                                 num_classes=2),
        "sdim": lambda: smp.SDIM(**TINY_UNET, in_channels=1, classes=1, time_embedding_dim=16,
                                 num_train_timesteps=20, num_ensemble=2),
        "ldpm": lambda: smp.LDPM(ae_small(smp.AE).get_config(), encoder_name="tu-test_resnet", encoder_depth=2,
                                 decoder_channels=(8, 4), time_embedding_dim=16, num_train_timesteps=20,
                                 latent_scale=0.5),
        "meshnet": lambda: smp.MeshNet(in_channels=1, classes=2, channels=4, dilations=(1, 2, 1)),
        "hsem": lambda: smp.HSeM(**TINY_UNET, classes=2),
        "clm": lambda: smp.ClM("tu-test_resnet", encoder_depth=2, classes=3, hidden_channels=(8,)),
    }


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return _builders()[name]()


NAMES = ("unet", "vae", "ae", "unet_time_hooks", "unet_time_res_conv", "ddpm", "sdim", "ldpm", "meshnet",
         "hsem", "clm")


def make_inputs(name: str) -> Dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    channels = 1 if name in ("vae", "ae", "ddpm", "sdim", "ldpm", "meshnet") else 3
    inputs = {"x": torch.randn(2, channels, 32, 32, generator=g)}
    if name.startswith("unet_time") or name in ("ddpm", "sdim", "ldpm"):
        inputs["t"] = torch.tensor([3, 17])
    if name == "ddpm":
        inputs["labels"] = torch.tensor([0, 1])
    return inputs


def probe(name: str, model: torch.nn.Module, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Deterministic outputs of ``model`` (in eval mode) on ``inputs``."""
    model.eval()
    x = inputs["x"]
    with torch.no_grad():
        if name in ("unet", "clm"):
            out = model(x)
            return {"mask": out[0], "label": out[1]} if isinstance(out, tuple) else {"out": out}
        if name.startswith("unet_time"):
            return {"out": model(x, inputs["t"])}
        if name == "vae":
            mu, logvar = model.encode(x)
            return {"mu": mu, "logvar": logvar, "decoded": model.decode(mu, x.shape[2:])}
        if name == "ddpm":
            return {"out": model.predict_noise(x, inputs["t"], labels=inputs["labels"])}
        if name == "sdim":
            return {"out": model.predict_noise(torch.zeros_like(x), inputs["t"], condition=x)}
        if name == "ldpm":
            z = model.encode_latent(x)
            return {"z": z, "eps": model.predict_noise(z, inputs["t"]), "decoded": model.decode_latent(z, (32, 32))}
        return {"out": model(x)}
