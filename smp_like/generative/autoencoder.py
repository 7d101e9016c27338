"""Auto-encoder (AE) and variational auto-encoder (VAE) over any registered encoder, 2D and 3D.

Both models are ``encoder -> 1x1 conv bottleneck -> no-skip decoder -> reconstruction head``. The encoder is any
name :func:`smp_like.encoders.get_encoder` accepts (native, ``tu-<timm model>``, user-registered); the decoder is
a U-Net decoder without skip connections (:class:`NoSkipDecoder`): per encoder stage, resize to the mirrored stage
size, then conv-norm-ReLU twice. Stage sizes are ``ceil(input_size / reduction)``, so any input size is
reconstructed at exactly its own size.

The VAE (Kingma & Welling 2014) predicts a diagonal Gaussian ``q(z|x) = N(mu, diag(exp(logvar)))`` per latent
pixel, samples it with the reparameterisation trick (their eq. 10) and regularises it with the closed-form KL
divergence from ``N(0, I)`` (their appendix B).

Both are ``nn.Module`` + :class:`~smp_like.base.hub.HubMixin`, which records their constructor arguments and
registers them by name, so ``save_pretrained`` / ``from_pretrained`` (and ``smp_like.from_pretrained``) round-trip
them.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from smp_like.base import nd
from smp_like.base.checks import MAX_CHANNELS, check_image_batch, check_positive_int
from smp_like.base.hub import HubMixin
from smp_like.base.modules import Activation
from smp_like.decoders.unet.decoder import UnetDecoderBlock
from smp_like.encoders import get_encoder
from smp_like.losses import L1Loss, MSELoss, SSIMLoss
from smp_like.losses.kl import kl_divergence_to_standard_normal

__all__ = ["AE", "VAE", "NoSkipDecoder", "RECON_LOSSES", "OUTPUT_ACTIVATIONS"]

RECON_LOSSES = ("mse", "l1", "ssim")
OUTPUT_ACTIVATIONS = (None, "sigmoid", "tanh")

Size = Union[int, Sequence[int]]


class NoSkipDecoder(nn.Module):
    """U-Net-style decoder without skip connections: per stage, resize to a given size and conv-norm-ReLU twice.

    Args:
        in_channels: channels of the latent map it decodes.
        decoder_channels: output channels of each block, deepest first; one block per encoder stage.
        use_norm: normalisation of the convs (``"batchnorm"``, ``"instancenorm"``, ... or False).
        interpolation_mode: resize mode (``"nearest"``, ``"bilinear"``, ...; translated for 3D).
        spatial_dims: 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        decoder_channels: Sequence[int],
        use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        interpolation_mode: str = "nearest",
        spatial_dims: int = 2,
    ):
        super().__init__()
        widths = [in_channels] + list(decoder_channels)
        self.blocks = nn.ModuleList(
            UnetDecoderBlock(
                widths[i],
                0,
                widths[i + 1],
                use_norm=use_norm,
                interpolation_mode=interpolation_mode,
                spatial_dims=spatial_dims,
            )
            for i in range(len(decoder_channels))
        )

    def forward(self, z: torch.Tensor, sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        """Decode ``z`` through one block per entry of ``sizes`` (coarse to fine; the last is the output size)."""
        if len(sizes) != len(self.blocks):
            raise ValueError(
                f"`sizes` must have {len(self.blocks)} entries (one per block), got {len(sizes)}"
            )
        x = z
        for block, size in zip(self.blocks, sizes):
            x = block(x, list(size))
        return x


class AE(nn.Module, HubMixin):
    """Auto-encoder: encoder -> 1x1 conv to ``latent_channels`` -> :class:`NoSkipDecoder` -> 3x3 conv head.

    Args:
        encoder_name: registered encoder or ``tu-<timm model>``.
        encoder_depth: number of encoder stages (and of decoder blocks).
        encoder_weights: pretrained tag (``"imagenet"``, ...) or None for random weights.
        in_channels: input channels.
        out_channels: reconstruction channels (None: ``in_channels``).
        decoder_channels: output channels of each decoder block, deepest first; ``encoder_depth`` entries.
        latent_channels: channels of the latent map.
        decoder_use_norm: normalisation in the decoder convs.
        decoder_interpolation: resize mode of the decoder.
        output_activation: None, ``"sigmoid"`` (data in [0, 1]) or ``"tanh"`` (data in [-1, 1]).
        spatial_dims: 2 for images, 3 for volumes.
        **kwargs: passed to the encoder, as in every segmentation architecture (e.g. a Flemme ``cnn`` encoder's
            ``down_channels``, ``building_block`` or ``normalization``).

    Returns (forward):
        The reconstruction, (N, out_channels, *input spatial size).

    Raises:
        ValueError: for a bad argument, naming it, the value and the valid choices.
    """

    supports_anisotropic_strides: bool = False
    _latent_factor = 1  # the bottleneck predicts latent_channels * _latent_factor maps (VAE: mu and logvar)

    def __init__(
        self,
        encoder_name: str = "resnet18",
        encoder_depth: int = 5,
        encoder_weights: Optional[str] = None,
        in_channels: int = 3,
        out_channels: Optional[int] = None,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        latent_channels: int = 16,
        decoder_use_norm: Union[bool, str, Dict[str, Any]] = "batchnorm",
        decoder_interpolation: str = "nearest",
        output_activation: Optional[str] = None,
        spatial_dims: int = 2,
        **kwargs: Any,
    ):
        super().__init__()
        nd.check_spatial_dims(spatial_dims)
        check_positive_int("in_channels", in_channels)
        check_positive_int("encoder_depth", encoder_depth)
        check_positive_int("latent_channels", latent_channels, maximum=MAX_CHANNELS)
        if out_channels is not None:
            check_positive_int("out_channels", out_channels)
        if not isinstance(decoder_channels, (list, tuple)) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in decoder_channels
        ):
            raise ValueError(
                f"`decoder_channels` must be a sequence of positive ints, got {decoder_channels!r}"
            )
        if len(decoder_channels) != encoder_depth:
            raise ValueError(
                f"`decoder_channels` must have one entry per encoder stage (encoder_depth={encoder_depth}), "
                f"got {len(decoder_channels)}: {tuple(decoder_channels)}"
            )
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"`output_activation` must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        out_channels = in_channels if out_channels is None else out_channels

        self.encoder = get_encoder(
            encoder_name,
            in_channels=in_channels,
            depth=encoder_depth,
            weights=encoder_weights,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        conv = nd.conv_type(spatial_dims)
        self.bottleneck = conv(
            self.encoder.out_channels[-1], latent_channels * self._latent_factor, kernel_size=1
        )
        self.decoder = NoSkipDecoder(
            latent_channels, decoder_channels, decoder_use_norm, decoder_interpolation, spatial_dims
        )
        self.reconstruction_head = nn.Sequential(
            conv(decoder_channels[-1], out_channels, kernel_size=3, padding=1), Activation(output_activation)
        )
        self.latent_channels = latent_channels
        self.out_channels = out_channels
        self.decoder_channels = tuple(decoder_channels)
        self.output_activation = output_activation
        self.name = f"{type(self).__name__.lower()}-{encoder_name}"

    def _config_overrides(self) -> Dict[str, Any]:
        """``out_channels`` as resolved (``in_channels`` when None was given), as the saved config always had."""
        return {"out_channels": self.out_channels}

    @property
    def spatial_dims(self) -> int:
        return self.encoder.spatial_dims

    # ----- shapes -------------------------------------------------------------------------------------------------

    def _spatial_size(self, size: Size) -> Tuple[int, ...]:
        return nd.spatial_size(size, self.spatial_dims)

    def stage_sizes(self, size: Size) -> List[Tuple[int, ...]]:
        """Spatial size of every encoder feature for an input of spatial ``size``, finest (the input) first.

        A stride-``r`` stage of a padded conv network maps ``n`` to ``ceil(n / r)``.
        """
        size = self._spatial_size(size)
        return [
            tuple(math.ceil(s / r) for s, r in zip(size, nd.as_tuple(red, self.spatial_dims)))
            for red in self.encoder.reductions
        ]

    def latent_size(self, size: Size) -> Tuple[int, ...]:
        """Spatial size of the latent map for an input of spatial ``size``."""
        return self.stage_sizes(size)[-1]

    def check_input_shape(self, x: torch.Tensor) -> None:
        """Validate the input's type, rank and channel count.

        Raises:
            TypeError: if ``x`` is not a tensor.
            ValueError: for a wrong rank or channel count.
        """
        check_image_batch(x, self.spatial_dims, self.encoder.in_channels)

    def _check_latent(self, z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"latent `z` must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() != self.spatial_dims + 2 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"latent `z` must have shape (N, {self.latent_channels}, *{self.spatial_dims} spatial dims) "
                f"(latent_channels={self.latent_channels}), got {tuple(z.shape)}"
            )

    # ----- model --------------------------------------------------------------------------------------------------

    def _bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input_shape(x)
        return self.bottleneck(self.encoder(x)[-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent map ``(N, latent_channels, *latent_size(x))``."""
        return self._bottleneck(x)

    def decode(self, z: torch.Tensor, size: Size) -> torch.Tensor:
        """Reconstruct an input of spatial ``size`` from the latent map ``z``.

        Args:
            z: (N, latent_channels, *spatial) latent map.
            size: spatial size of the output (the input's, for a reconstruction).

        Returns:
            (N, out_channels, *size).
        """
        self._check_latent(z)
        sizes = self.stage_sizes(size)[: len(self.decoder.blocks)][::-1]  # mirrored stages, coarse to fine
        return self.reconstruction_head(self.decoder(z, sizes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``, same spatial size, ``out_channels`` channels."""
        return self.decode(self.encode(x), x.shape[2:])

    def reconstruction_loss(
        self, x: torch.Tensor, recon: torch.Tensor, recon_loss: str = "mse"
    ) -> torch.Tensor:
        """Mean reconstruction loss between the data ``x`` and ``recon`` (``"mse"``, ``"l1"`` or ``"ssim"``).

        ``"ssim"`` is ``1 - SSIM`` (Wang et al. 2004) with data range 1; every spatial size must be >= 11.

        Raises:
            ValueError: for an unknown ``recon_loss`` or mismatched shapes.
        """
        if recon_loss not in RECON_LOSSES:
            raise ValueError(f"`recon_loss` must be one of {RECON_LOSSES}, got {recon_loss!r}")
        if recon.shape != x.shape:
            raise ValueError(
                f"reconstruction shape {tuple(recon.shape)} must equal data shape {tuple(x.shape)} "
                f"(out_channels={self.out_channels})"
            )
        fn = {"mse": MSELoss, "l1": L1Loss, "ssim": SSIMLoss}[recon_loss]()
        return fn(recon, x)

    def loss(self, x: torch.Tensor, recon: torch.Tensor, recon_loss: str = "mse") -> torch.Tensor:
        """Training loss of the auto-encoder: :meth:`reconstruction_loss`."""
        return self.reconstruction_loss(x, recon, recon_loss)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: switch to eval mode and run ``forward`` without gradients."""
        if self.training:
            self.eval()
        return self(x)


class VAE(AE):
    """Variational auto-encoder (Kingma & Welling 2014) on the :class:`AE` architecture.

    The bottleneck predicts ``mu`` and ``logvar`` (``latent_channels`` maps each) of a diagonal Gaussian per latent
    pixel.

    Args:
        encoder_name: the encoder (any registered name).
        encoder_depth: encoder stages.
        encoder_weights: pretrained tag or None.
        in_channels: input channels.
        out_channels: reconstruction channels (default ``in_channels``).
        decoder_channels: channels of the decoder stages.
        latent_channels: channels of the latent (of ``mu`` and of ``logvar``).
        decoder_use_norm: the decoder's norm, as in :class:`AE`.
        decoder_interpolation: up-sampling mode of the decoder.
        output_activation: applied to the reconstruction (``"sigmoid"``, ``"tanh"``, None).
        spatial_dims: 2 or 3.

    Returns (forward):
        ``(reconstruction, mu, logvar)``. In training mode the decoded latent is a reparameterised sample
        ``z = mu + exp(logvar / 2) * eps``; in eval mode it is ``mu`` (deterministic reconstructions).
    """

    _latent_factor = 2

    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """``(mu, logvar)`` maps, each ``(N, latent_channels, *latent_size(x))``."""
        mu, logvar = self._bottleneck(x).chunk(2, dim=1)
        return mu, logvar

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Sample ``z ~ N(mu, exp(logvar))`` as ``mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``.

        The reparameterisation trick of Kingma & Welling 2014 (eq. 10 with ``g(eps, x) = mu + sigma * eps``):
        gradients flow to ``mu`` and ``logvar``.

        Args:
            mu, logvar: tensors of equal shape.
            generator: optional ``torch.Generator`` for reproducible noise (noise is drawn on its device).
        """
        if mu.shape != logvar.shape:
            raise ValueError(
                f"`mu` shape {tuple(mu.shape)} and `logvar` shape {tuple(logvar.shape)} must be equal"
            )
        device = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype).to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction, mu, logvar)``; the decoded latent is sampled in training mode, ``mu`` in eval mode."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if self.training else mu
        return self.decode(z, x.shape[2:]), mu, logvar

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over latent dimensions, mean over the batch.

        Closed form of Kingma & Welling 2014, appendix B: ``0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)``.
        """
        return kl_divergence_to_standard_normal(mu, logvar).mean()

    def loss(  # type: ignore[override]
        self,
        x: torch.Tensor,
        recon: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        recon_loss: str = "mse",
        beta: float = 1.0,
    ) -> torch.Tensor:
        """``reconstruction_loss(x, recon) + beta * kl_divergence(mu, logvar)`` (beta-VAE, Higgins et al. 2017).

        The reconstruction term is a mean over elements while the KL term is a sum over latent elements (mean
        over the batch); ``beta = 1 / (elements per sample)`` gives the negative ELBO of a Gaussian decoder up to
        scale and constants.

        Raises:
            ValueError: for an unknown ``recon_loss``, a negative ``beta`` or mismatched shapes.
        """
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"`beta` must be a non-negative number, got {beta!r}")
        return self.reconstruction_loss(x, recon, recon_loss) + beta * self.kl_divergence(mu, logvar)

    @torch.no_grad()
    def sample(self, n: int, size: Size, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decode ``n`` draws ``z ~ N(0, I)`` at the latent size of a spatial ``size`` input.

        Args:
            n: number of samples.
            size: spatial size of the samples (int or one entry per spatial dim).
            generator: optional ``torch.Generator`` for reproducible samples.

        Returns:
            (n, out_channels, *size), on the model's device.
        """
        check_positive_int("n", n)
        size = self._spatial_size(size)
        param = next(self.parameters())
        device = generator.device if generator is not None else param.device
        shape = (n, self.latent_channels, *self.latent_size(size))
        z = torch.randn(shape, generator=generator, device=device, dtype=param.dtype).to(param.device)
        return self.decode(z, size)
