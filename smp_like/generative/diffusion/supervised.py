"""Supervised diffusion (Flemme's SDPM / SDIM): segmentation by conditional diffusion.

The input image is the condition (concatenated to the noisy mask, ``image_conditioning="concat"``, or encoded by a
condition encoder with ``"encoder"``), the mask — or any dense target, e.g. a clean image for restoration — is what
is diffused. Targets in [0, 1] are mapped to the diffusion range [-1, 1] by ``2·y − 1`` and back.

At inference ``model(image)`` draws ``num_ensemble`` samples per image (one batched sampling run) and returns their
mean in [0, 1], so the model is used like a segmentation model: ``model.predict(images)`` gives
(N, classes, *spatial) probabilities (the ensemble average of Wolleb et al. 2022, "Diffusion Models for Implicit
Image Segmentation Ensembles"). Training: ``model.loss(images, masks)``.
"""
from typing import Any, Dict, Optional

import torch

from smp_like.base.checks import check_image_batch, check_positive_int
from smp_like.generative.diffusion.model import DDPM

__all__ = ["SDPM", "SDIM"]


class SDPM(DDPM):
    """Supervised DDPM: p(mask | image) by diffusion over the mask, conditioned on the image.

    Args:
        architecture, encoder_name, encoder_weights: the eps-model (as for :class:`DDPM`).
        in_channels: channels of the input (conditioning) image.
        classes: channels of the target (mask) that is diffused.
        num_ensemble: samples averaged per image at inference.
        image_conditioning: ``"concat"`` (default) or ``"encoder"``.
        **kwargs: any other :class:`DDPM` argument (scheduler, sampler, time embedding, ``num_inference_steps``,
            model kwargs such as ``encoder_depth``). ``condition_dropout`` / ``guidance_scale`` need
            ``image_conditioning="encoder"``.

    Returns (forward):
        (N, classes, *spatial) ensemble mean in [0, 1].
    """

    _default_sampler = "ddpm"
    _shares_checkpoints = True  # SDPM and SDIM load each other's folders
    # DDPM arguments that SDPM sets itself (the image is the condition, the mask is what is diffused).
    _derived_arguments = ("condition_channels", "num_classes", "class_embedding")

    def __init__(
        self,
        architecture: str = "unet",
        encoder_name: str = "resnet18",
        encoder_weights: Optional[str] = None,
        in_channels: int = 3,
        classes: int = 1,
        num_ensemble: int = 4,
        image_conditioning: str = "concat",
        **kwargs: Any,
    ):
        for taken in ("condition_channels", "num_classes"):
            if taken in kwargs:
                raise ValueError(f"`{taken}` is set by {type(self).__name__} (the image is the condition)")
        if isinstance(num_ensemble, bool) or not isinstance(num_ensemble, int) or num_ensemble < 1:
            raise ValueError(f"`num_ensemble` must be a positive int, got {num_ensemble!r}")
        # DDPM checks these under its own names (condition_channels, in_channels): check them under SDPM's.
        check_positive_int("in_channels", in_channels)
        check_positive_int("classes", classes)
        super().__init__(
            architecture=architecture,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=classes,
            condition_channels=in_channels,
            image_conditioning=image_conditioning,
            **kwargs,
        )
        self.num_ensemble = num_ensemble
        self.image_channels = in_channels
        self.classes = classes

    def loss(  # type: ignore[override]
        self, images: torch.Tensor, masks: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Diffusion loss on ``2·masks − 1`` conditioned on ``images`` (masks in [0, 1], same spatial size)."""
        check_image_batch(images, self.spatial_dims, self.image_channels)
        check_image_batch(masks, self.spatial_dims, self.classes, name="masks", floating=False)
        if masks.shape[0] != images.shape[0] or masks.shape[2:] != images.shape[2:]:
            raise ValueError(
                f"`masks` {tuple(masks.shape)} must match `images` {tuple(images.shape)} in batch and spatial size"
            )
        return super().loss(masks.to(images.dtype) * 2 - 1, condition=images, generator=generator)

    def forward(  # type: ignore[override]
        self,
        images: torch.Tensor,
        num_ensemble: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        progress: bool = False,
        **sample_kwargs: Any,
    ) -> torch.Tensor:
        """Ensemble mean of ``num_ensemble`` sampled masks per image, in [0, 1] (see the module docstring)."""
        check_image_batch(images, self.spatial_dims, self.image_channels)
        k = self.num_ensemble if num_ensemble is None else num_ensemble
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`num_ensemble` must be a positive int, got {k!r}")
        n = images.shape[0]
        repeated = images.repeat_interleave(k, dim=0)  # sample j of image i at row i·k + j
        samples = self.sample(condition=repeated, generator=generator, progress=progress, **sample_kwargs)
        samples = samples.reshape(n, k, *samples.shape[1:])
        return ((samples.mean(dim=1) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Inference: eval mode, no gradients, ``forward``."""
        if self.training:
            self.eval()
        return self(images, **kwargs)


class SDIM(SDPM):
    """:class:`SDPM` sampling with DDIM by default (``num_inference_steps``, ``eta``); loads SDPM checkpoints."""

    _default_sampler = "ddim"
