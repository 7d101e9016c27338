"""Latent diffusion (Flemme's LDPM / LDIM; Rombach et al. 2022): DDPM / DDIM in the latent space of a trained
:class:`~smp_like.generative.autoencoder.AE` or :class:`~smp_like.generative.autoencoder.VAE`.

* ``z0 = latent_scale · E(x)`` — the AE's latent map, or the VAE's mean ``mu`` (Rombach et al. sec. 3 scale the
  latent to unit variance: :meth:`LDPM.estimate_latent_scale` sets ``latent_scale = 1 / std(z)`` from data);
* the diffusion model (any time-capable architecture) is trained on ``z0`` (:meth:`LDPM.loss`);
* :meth:`LDPM.sample` draws a latent map of the latent size of the requested image size and decodes
  ``D(z / latent_scale)`` at exactly that size.

The auto-encoder is a sub-module: frozen by default (no gradients, kept in eval mode), or trained jointly with
``freeze_autoencoder=False``. Its configuration is saved with the model and its weights are in the same
safetensors file, so ``LDPM.from_pretrained`` rebuilds everything.
"""
from typing import Any, Dict, Optional, Union

import torch

from smp_like.base.hub import CLASS_KEY
from smp_like.base.registry import get_model_class
from smp_like.generative.autoencoder import AE, VAE
from smp_like.generative.diffusion.model import DDPM, Size

__all__ = ["LDPM", "LDIM"]


def _build_autoencoder(autoencoder: Union[AE, Dict[str, Any]]) -> AE:
    if isinstance(autoencoder, AE):
        return autoencoder
    if isinstance(autoencoder, dict):
        config = dict(autoencoder)
        cls = get_model_class(config.pop(CLASS_KEY, "AE"))
        if not (isinstance(cls, type) and issubclass(cls, AE)):
            raise ValueError(f"`autoencoder` config must describe an AE or VAE, got {cls.__name__}")
        config["encoder_weights"] = None  # its weights are part of the diffusion model's state dict
        return cls(**config)
    raise TypeError(
        f"`autoencoder` must be an AE/VAE instance or its get_config() dict, got {type(autoencoder).__name__}"
    )


class LDPM(DDPM):
    """Latent DDPM over a (trained) AE / VAE.

    Args:
        autoencoder: an :class:`AE` / :class:`VAE` (typically trained), or its ``get_config()`` dict.
        freeze_autoencoder: keep the auto-encoder fixed (no gradients, eval mode).
        latent_scale: multiplier of the latents (see :meth:`estimate_latent_scale`).
        architecture, encoder_name, encoder_weights, **kwargs: the latent eps-model and diffusion settings, as for
            :class:`DDPM` (``in_channels`` is the AE's ``latent_channels``).
    """

    _default_sampler = "ddpm"
    _shares_checkpoints = True  # LDPM and LDIM load each other's folders
    # DDPM's ``in_channels`` is the auto-encoder's ``latent_channels``: not an argument of LDPM.
    _derived_arguments = ("in_channels",)

    def __init__(
        self,
        autoencoder: Union[AE, Dict[str, Any]],
        freeze_autoencoder: bool = True,
        latent_scale: float = 1.0,
        architecture: str = "unet",
        encoder_name: str = "resnet18",
        encoder_weights: Optional[str] = None,
        **kwargs: Any,
    ):
        if "in_channels" in kwargs:
            raise ValueError("`in_channels` of a latent diffusion model is the auto-encoder's `latent_channels`")
        if not isinstance(freeze_autoencoder, bool):
            raise TypeError(f"`freeze_autoencoder` must be True or False, got {freeze_autoencoder!r}")
        if not (isinstance(latent_scale, (int, float)) and latent_scale > 0):
            raise ValueError(f"`latent_scale` must be a positive number, got {latent_scale!r}")
        ae = _build_autoencoder(autoencoder)
        kwargs.setdefault("spatial_dims", ae.spatial_dims)
        if kwargs["spatial_dims"] != ae.spatial_dims:
            raise ValueError(
                f"`spatial_dims`={kwargs['spatial_dims']} differs from the auto-encoder's {ae.spatial_dims}"
            )
        super().__init__(
            architecture=architecture,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=ae.latent_channels,
            **kwargs,
        )
        self.autoencoder = ae
        self.freeze_autoencoder = freeze_autoencoder
        self.register_buffer("latent_scale", torch.tensor(float(latent_scale)))
        if freeze_autoencoder:
            for parameter in ae.parameters():
                parameter.requires_grad = False
            ae.eval()

    def _config_overrides(self) -> Dict[str, Any]:
        """The auto-encoder's own config (its weights are in this model's state dict) and the current
        ``latent_scale`` (which :meth:`estimate_latent_scale` may have changed)."""
        return {"autoencoder": self.autoencoder.get_config(), "latent_scale": float(self.latent_scale)}

    def train(self, mode: bool = True) -> "LDPM":
        super().train(mode)
        if self.freeze_autoencoder:
            self.autoencoder.eval()  # a frozen AE keeps its norm statistics
        return self

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """``latent_scale · E(x)`` (the VAE's mean); without gradients when the auto-encoder is frozen."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_autoencoder):
            z = self.autoencoder.encode(x)
            if isinstance(self.autoencoder, VAE):
                z = z[0]
        return z * self.latent_scale

    def decode_latent(self, z: torch.Tensor, size: Size) -> torch.Tensor:
        """``D(z / latent_scale)`` at spatial ``size``."""
        return self.autoencoder.decode(z / self.latent_scale, size)

    @torch.no_grad()
    def estimate_latent_scale(self, x: torch.Tensor) -> float:
        """Set ``latent_scale = 1 / std(E(x))`` over a batch of data (Rombach et al. 2022, sec. 4.3.2 / app. G) and
        return it."""
        z = self.encode_latent(x) / self.latent_scale
        std = float(z.float().std())
        if not std > 0:
            raise ValueError("the latents of this batch have zero variance; cannot estimate `latent_scale`")
        self.latent_scale.fill_(1.0 / std)
        return 1.0 / std

    def loss(  # type: ignore[override]
        self,
        x: torch.Tensor,
        labels: Optional[torch.Tensor] = None,
        condition: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Diffusion loss on the latents of the images ``x``."""
        return super().loss(self.encode_latent(x), labels, condition, generator)

    @torch.no_grad()
    def sample(self, num_samples: Optional[int] = None, size: Optional[Size] = None, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """Images of spatial ``size``: a latent map of ``autoencoder.latent_size(size)`` sampled as in
        :meth:`DDPM.sample` (same keyword arguments), then decoded."""
        if size is None:
            raise ValueError("`size` (the image size to generate) is required for latent diffusion")
        size = self._spatial_size(size)
        latent = super().sample(num_samples, self.autoencoder.latent_size(size), **kwargs)
        return self.decode_latent(latent, size)


class LDIM(LDPM):
    """:class:`LDPM` sampling with DDIM by default; loads LDPM checkpoints.

    Args:
        autoencoder: the trained ``AE`` / ``VAE`` (or its saved config), as in LDPM.
        freeze_autoencoder: keep the auto-encoder's weights fixed.
        latent_scale: multiplies latents before diffusion (see ``estimate_latent_scale``).
        architecture: the latent eps-model's architecture.
        encoder_name: the eps-model's encoder.
        encoder_weights: the eps-model's encoder weights.
        **kwargs: the other arguments of :class:`LDPM` (DDIM sampling by default).
    """

    _default_sampler = "ddim"
