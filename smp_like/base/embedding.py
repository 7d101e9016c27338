"""Time and condition embeddings, and how a block injects them into its features.

* :func:`sinusoidal_embedding` — the transformer position encoding of Vaswani et al. 2017 (sec. 3.5) applied to
  diffusion timesteps, as in Ho et al. 2020 (appendix B).
* :class:`TimeEmbedding` — sinusoidal embedding followed by a two-layer SiLU MLP: the vector every time-aware
  block receives.
* :class:`EmbeddingInjection` — puts an embedding into a feature map, by one of :data:`INJECTION_MODES`:

  ``gate_bias``        ``x · (1 + γ(e)) + β(e)``  (FiLM, Perez et al. 2018; the "scale-shift" of Dhariwal & Nichol 2021)
  ``gate``             ``x · (1 + γ(e))``
  ``bias``             ``x + β(e)``               (Ho et al. 2020's time-embedding addition)
  ``cross_attention``  ``x + Attention(q = x, k = v = e)`` over the embedding tokens (Rombach et al. 2022, sec. 3.3)

  ``e`` is a vector per sample, ``(N, E)``, or — for ``cross_attention`` — also a token sequence ``(N, S, E)``. A
  vector is first expanded by a learned linear map into ``context_tokens`` tokens (with a single key, softmax
  attention would be constant and reduce to ``bias``).

The same injection serves convolutional feature maps (channels first, ``channel_dim=1``) and transformer tokens
(channels last, ``channel_dim=-1``).
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base.checks import check_positive_int

__all__ = ["INJECTION_MODES", "sinusoidal_embedding", "TimeEmbedding", "EmbeddingInjection", "check_injection_mode"]

INJECTION_MODES = ("gate_bias", "gate", "bias", "cross_attention")


def check_injection_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`INJECTION_MODES`.

    Raises:
        ValueError: naming the valid modes otherwise.
    """
    if mode not in INJECTION_MODES:
        raise ValueError(f"`time_injection` must be one of {INJECTION_MODES}, got {mode!r}")
    return mode


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    ``out[:, i] = sin(t · ω_i)`` for ``i < dim/2`` and ``cos(t · ω_{i - dim/2})`` after, with
    ``ω_i = max_period^(-i / (dim/2))`` (Vaswani et al. 2017, sec. 3.5). An odd ``dim`` gets a final zero column.

    Args:
        timesteps: (N,) tensor (ints or floats).
        dim: embedding width.
        max_period: the longest wavelength.

    Returns:
        (N, dim) float32 tensor on ``timesteps``' device.

    Raises:
        ValueError: for a ``timesteps`` tensor that is not one-dimensional or a bad ``dim``.
    """
    check_positive_int("dim", dim)
    if not isinstance(timesteps, torch.Tensor) or timesteps.dim() != 1:
        shape = tuple(timesteps.shape) if isinstance(timesteps, torch.Tensor) else type(timesteps).__name__
        raise ValueError(f"`timesteps` must be a 1-D tensor (one per sample), got {shape}")
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / max(half, 1)
    )
    angles = timesteps.float()[:, None] * frequencies[None, :]
    out = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        out = F.pad(out, (0, 1))
    return out


class TimeEmbedding(nn.Module):
    """Timesteps → sinusoidal embedding → ``Linear(dim, hidden) → SiLU → Linear(hidden, dim)``.

    Args:
        dim: width of the sinusoidal embedding and of the output vector.
        hidden_factor: the MLP's hidden width is ``hidden_factor · dim`` (4, as in Ho et al. 2020's code).

    Returns (forward):
        (N, dim) embedding.
    """

    def __init__(self, dim: int, hidden_factor: int = 4):
        super().__init__()
        check_positive_int("time_embedding_dim", dim)
        check_positive_int("hidden_factor", hidden_factor)
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * hidden_factor), nn.SiLU(), nn.Linear(dim * hidden_factor, dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(timesteps, self.dim))


class EmbeddingInjection(nn.Module):
    """Inject an embedding into a feature map or token sequence (see the module docstring for the modes).

    Args:
        channels: channels of the features it modulates.
        embedding_dim: width ``E`` of the embedding.
        mode: one of :data:`INJECTION_MODES`.
        num_heads: attention heads for ``cross_attention`` (reduced to a divisor of ``channels`` if needed).
        context_tokens: tokens a vector embedding is expanded into for ``cross_attention``.

    Forward:
        ``x`` (N, C, *spatial) with ``channel_dim=1``, or (N, *tokens, C) with ``channel_dim=-1``; ``embedding``
        (N, E), or (N, S, E) for ``cross_attention``. Returns a tensor shaped like ``x``; ``embedding=None``
        returns ``x`` unchanged.

    Raises:
        ValueError: for a bad mode, mismatched batch or width, or a token sequence outside ``cross_attention``.
    """

    def __init__(
        self, channels: int, embedding_dim: int, mode: str = "gate_bias", num_heads: int = 4, context_tokens: int = 4
    ):
        super().__init__()
        check_positive_int("channels", channels)
        check_positive_int("embedding_dim", embedding_dim)
        self.mode = check_injection_mode(mode)
        self.channels = channels
        self.embedding_dim = embedding_dim
        if mode == "cross_attention":
            heads = max(h for h in range(1, max(1, num_heads) + 1) if channels % h == 0)
            check_positive_int("context_tokens", context_tokens)
            self.context_tokens = context_tokens
            self.to_tokens = nn.Linear(embedding_dim, context_tokens * embedding_dim)
            self.norm = nn.LayerNorm(channels)
            self.attention = nn.MultiheadAttention(
                channels, heads, kdim=embedding_dim, vdim=embedding_dim, batch_first=True
            )
        else:
            width = 2 * channels if mode == "gate_bias" else channels
            # SiLU first: the embedding MLP ends with a Linear, and the projection should see a non-linear input.
            self.projection = nn.Sequential(nn.SiLU(), nn.Linear(embedding_dim, width))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, embedding_dim={self.embedding_dim}, mode={self.mode!r}"

    def _check(self, x: torch.Tensor, embedding: torch.Tensor) -> None:
        if embedding.shape[0] != x.shape[0] or embedding.shape[-1] != self.embedding_dim:
            raise ValueError(
                f"embedding must have shape (N={x.shape[0]}, {self.embedding_dim}) for features {tuple(x.shape)}, "
                f"got {tuple(embedding.shape)}"
            )
        if embedding.dim() == 3 and self.mode != "cross_attention":
            raise ValueError(
                f"a token-sequence embedding {tuple(embedding.shape)} needs mode='cross_attention', not {self.mode!r}"
            )
        if embedding.dim() not in (2, 3):
            raise ValueError(f"embedding must be (N, E) or (N, S, E), got {tuple(embedding.shape)}")

    def forward(
        self, x: torch.Tensor, embedding: Optional[torch.Tensor], channel_dim: int = 1
    ) -> torch.Tensor:
        if embedding is None:
            return x
        self._check(x, embedding)
        if x.shape[channel_dim] != self.channels:
            raise ValueError(f"features must have {self.channels} channels on dim {channel_dim}, got {tuple(x.shape)}")
        channels_last = channel_dim in (-1, x.dim() - 1)
        if self.mode == "cross_attention":
            tokens = x.reshape(x.shape[0], -1, self.channels) if channels_last else x.flatten(2).transpose(1, 2)
            if embedding.dim() == 3:
                context = embedding
            else:
                context = self.to_tokens(embedding).reshape(x.shape[0], self.context_tokens, self.embedding_dim)
            attended, _ = self.attention(self.norm(tokens), context.to(tokens.dtype), context.to(tokens.dtype),
                                         need_weights=False)
            if channels_last:
                return x + attended.reshape(x.shape)
            return x + attended.transpose(1, 2).reshape(x.shape)
        params = self.projection(embedding).to(x.dtype)
        # Broadcast (N, width) over every non-channel axis of x.
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        shape[channel_dim] = -1
        if self.mode == "gate_bias":
            gamma, beta = params.chunk(2, dim=1)
            return x * (1 + gamma.reshape(shape)) + beta.reshape(shape)
        if self.mode == "gate":
            return x * (1 + params.reshape(shape))
        return x + params.reshape(shape)
