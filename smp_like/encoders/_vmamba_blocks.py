"""N-d visual state-space (VSS) blocks: VMamba's SS2D generalised to 2D and 3D grids, with Mamba or Mamba-2
scans.

A VSS block (Liu et al. 2024, "VMamba: Visual State Space Model", sec. 4 and fig. 3; v2 block with an MLP) is

    x ← x + DropPath(SSM(Norm(x)))            (optional embedding injection after this residual)
    x ← x + DropPath(MLP(Norm(x)))            (when mlp_hidden_ratio > 0)

and its SSM mixer ("SS2D", here n-d) is

    (x, z) = Linear(h)                        inner width D = inner_factor · C
    x      = SiLU(DepthwiseConv(x))
    x_k    = scan_k(x), k = 1..K               the grid read as K 1-d sequences (smp_like.ops.scan_sequences)
    (Δ_k, B_k, C_k) = per-direction projections of x_k, Δ_k = W_Δ,k · (low-rank dt) + b_Δ,k
    y_k    = selective scan of x_k            Gu & Dao 2023, eq. 2a-2b with ZOH (eq. 4):
             h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t,  y_t = C_t h_t + D x_t,  Δ = softplus(Δ + b_Δ)
    y      = Σ_k unscan_k(y_k)                 (smp_like.ops.merge_sequences)
    out    = Linear(LayerNorm(y) · SiLU(z))

``vmamba2`` replaces the selective scan by Mamba-2's state-space duality scan (Dao & Gu 2024, sec. 3-6, eq.
16: scalar ``A`` per head, ``head_channel`` channels per head, chunked with ``chunk_size``;
``smp_like.ops.ssd_scan``).

Initialisation follows Mamba (Gu & Dao 2023, sec. 3.6 and appendix): ``Δ`` bias = softplus⁻¹(dt) with dt
log-uniform in ``[dt_min, dt_max]`` and floored at ``dt_init_floor``; ``A = -exp(A_log)`` with ``A_log =
log(1..N)`` (S4D-real, Gu et al. 2022); ``D = 1``. Mamba-2 uses ``A`` uniform in ``[1, 16]`` per head.

All K directions are scanned in one call: the directions are folded into the channel (v1) or head (v2) axis,
and each direction's ``B``/``C`` is one group of the grouped scan.

Blocks work on channels-last tokens ``(N, *spatial, C)``; :class:`VMambaStage` wraps them for channels-first
maps.
"""

import math
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from smp_like.base import nd
from smp_like.base.checks import check_positive_int
from smp_like.base.embedding import EmbeddingInjection, check_injection_mode
from smp_like.base.modules import DropPath
from smp_like.base.norms import make_activation

__all__ = [
    "BUILDING_BLOCKS",
    "SCAN_MODES",
    "NORMALIZATIONS",
    "count_directions",
    "SS2D",
    "VSSBlock",
    "VMambaStage",
    "make_vmamba_block",
    "check_block_kwargs",
]

BUILDING_BLOCKS = ("vmamba", "vmamba2", "double_vmamba", "double_vmamba2", "res_vmamba", "res_vmamba2")
SCAN_MODES = ("single", "simplified", "cross")
NORMALIZATIONS = ("layer", "rms", "batch", "group", "instance")


def _ops() -> Any:
    """smp_like.ops, imported where first used (it may dispatch to optional CUDA kernels)."""
    try:
        from smp_like import ops
    except ImportError as err:  # pragma: no cover - ops is part of the package
        raise ImportError("VMamba blocks need smp_like.ops (selective_scan, scan_sequences)") from err
    return ops


def count_directions(scan_mode: str, spatial_dims: int, flip_scan: bool) -> int:
    """Number K of scan sequences: single 1, simplified one per axis, cross every axis order; doubled by flip.

    Raises:
        ValueError: for an unknown ``scan_mode``.
    """
    if scan_mode not in SCAN_MODES:
        raise ValueError(f"`scan_mode` must be one of {SCAN_MODES}, got {scan_mode!r}")
    k = {"single": 1, "simplified": spatial_dims, "cross": math.factorial(spatial_dims)}[scan_mode]
    return 2 * k if flip_scan else k


# ----------------------------------------------------------------------------------------------- validation


def _non_negative_float(name: str, value: Any, upper: Optional[float] = None) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (upper is not None and value >= upper)
    ):
        bound = f" and < {upper}" if upper is not None else ""
        raise ValueError(f"`{name}` must be a number >= 0{bound}, got {value!r}")
    return float(value)


def check_block_kwargs(
    building_block: str = "vmamba",
    normalization: str = "layer",
    num_norm_groups: int = 1,
    activation: str = "gelu",
    dropout: float = 0.0,
    drop_path: float = 0.0,
    mlp_hidden_ratio: float = 4.0,
    state_channel: int = 16,
    conv_kernel_size: int = 3,
    inner_factor: float = 2.0,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_init_floor: float = 1e-4,
    scan_mode: str = "cross",
    flip_scan: bool = False,
    head_channel: int = 16,
    chunk_size: int = 64,
) -> None:
    """Validate the VSS block arguments (the Flemme names) up front.

    Raises:
        ValueError: naming the argument, its value and the valid choices.
    """
    if building_block not in BUILDING_BLOCKS:
        raise ValueError(f"`building_block` must be one of {BUILDING_BLOCKS}, got {building_block!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {normalization!r}")
    check_positive_int("num_norm_groups", num_norm_groups)
    make_activation(activation, channel_dim=-1)  # raises ValueError naming `activation` for an unknown name
    _non_negative_float("dropout", dropout, 1.0)
    _non_negative_float("drop_path", drop_path, 1.0)
    _non_negative_float("mlp_hidden_ratio", mlp_hidden_ratio)
    check_positive_int("state_channel", state_channel)
    check_positive_int("conv_kernel_size", conv_kernel_size)
    if isinstance(inner_factor, bool) or not isinstance(inner_factor, (int, float)) or inner_factor <= 0:
        raise ValueError(f"`inner_factor` must be a number > 0, got {inner_factor!r}")
    for name, value in (("dt_min", dt_min), ("dt_max", dt_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"`{name}` must be a number > 0, got {value!r}")
    if dt_max < dt_min:
        raise ValueError(f"`dt_max` must be >= `dt_min`, got dt_min={dt_min!r}, dt_max={dt_max!r}")
    _non_negative_float("dt_init_floor", dt_init_floor)
    if scan_mode not in SCAN_MODES:
        raise ValueError(f"`scan_mode` must be one of {SCAN_MODES}, got {scan_mode!r}")
    if not isinstance(flip_scan, bool):
        raise ValueError(f"`flip_scan` must be a bool, got {flip_scan!r}")
    check_positive_int("head_channel", head_channel)
    check_positive_int("chunk_size", chunk_size)


# --------------------------------------------------------------------------------------------------- layers


class TokenNorm(nn.Module):
    """A normalisation of channels-last tokens ``(N, *spatial, C)`` chosen by name (see
    :data:`NORMALIZATIONS`).

    ``layer`` and ``rms`` normalise each token; ``batch``, ``group`` and ``instance`` normalise channels over
    the batch / groups / tokens as their channels-first counterparts do.
    """

    def __init__(self, kind: str, channels: int, num_groups: int = 1):
        super().__init__()
        if kind not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {kind!r}")
        self.kind = kind
        if kind == "layer":
            self.norm: nn.Module = nn.LayerNorm(channels)
        elif kind == "rms":
            self.norm = nn.RMSNorm(channels)
        elif kind == "batch":
            self.norm = nn.BatchNorm1d(channels)
        elif kind == "group":
            if channels % num_groups:
                raise ValueError(
                    f"`num_norm_groups`={num_groups!r} must divide every width, got {channels} channels"
                )
            self.norm = nn.GroupNorm(num_groups, channels)
        else:
            self.norm = nn.InstanceNorm1d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind in ("layer", "rms"):
            return self.norm(x)
        shape = x.shape
        tokens = x.reshape(shape[0], -1, shape[-1]).transpose(1, 2)  # (N, C, L)
        return self.norm(tokens).transpose(1, 2).reshape(shape)


def inverse_softplus_dt(
    shape: Sequence[int], dt_min: float, dt_max: float, dt_init_floor: float
) -> torch.Tensor:
    """Mamba's ``Δ`` bias: ``softplus⁻¹(dt)``, dt log-uniform in ``[dt_min, dt_max]``, floored at
    ``dt_init_floor``.

    ``softplus⁻¹(y) = y + log(-expm1(-y))`` (Gu & Dao 2023, sec. 3.6 / appendix E: "inverse of softplus").
    """
    u = torch.rand(*shape)
    dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


class SS2D(nn.Module):
    """The n-d selective-scan mixer of a VSS block (VMamba's SS2D; ``version=2`` uses the Mamba-2 SSD scan).

    Args:
        channels: token width C.
        spatial_dims: 2 or 3.
        version: 1 (Mamba selective scan, per-channel diagonal ``A``) or 2 (Mamba-2 SSD, scalar ``A`` per
            head).
        state_channel: state size N.
        conv_kernel_size: depthwise conv kernel.
        inner_factor: inner width D = round(inner_factor · C).
        dt_min, dt_max, dt_init_floor: the ``Δ`` initialisation range (see :func:`inverse_softplus_dt`).
        scan_mode, flip_scan: how the grid is read as sequences (``smp_like.ops.scan_sequences``).
        head_channel: channels per head (version 2; must divide D).
        chunk_size: SSD chunk length (version 2).
        dropout: dropout after the output projection.

    Forward: ``x`` (N, *spatial, C) → (N, *spatial, C).
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        version: int = 1,
        state_channel: int = 16,
        conv_kernel_size: int = 3,
        inner_factor: float = 2.0,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_mode: str = "cross",
        flip_scan: bool = False,
        head_channel: int = 16,
        chunk_size: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.spatial_dims = nd.check_spatial_dims(spatial_dims)
        if version not in (1, 2):
            raise ValueError(f"`version` must be 1 or 2, got {version!r}")
        inner = max(1, int(round(inner_factor * channels)))
        self.version = version
        self.inner = inner
        self.state_channel = state_channel
        self.scan_mode = scan_mode
        self.flip_scan = flip_scan
        self.chunk_size = chunk_size
        k = count_directions(scan_mode, self.spatial_dims, flip_scan)
        self.num_directions = k

        self.in_proj = nn.Linear(channels, 2 * inner, bias=False)
        self.conv = nd.conv_type(self.spatial_dims)(
            inner, inner, conv_kernel_size, padding=conv_kernel_size // 2, groups=inner, bias=True
        )
        if version == 1:
            # Low-rank Δ as in Mamba: dt_rank = ceil(C / 16).
            self.dt_rank = math.ceil(channels / 16)
            self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * state_channel, inner))
            self.dt_proj_weight = nn.Parameter(torch.empty(k, inner, self.dt_rank))
            self.dt_bias = nn.Parameter(inverse_softplus_dt((k, inner), dt_min, dt_max, dt_init_floor))
            # S4D-real: A_n = -(n + 1), stored as log for positivity (A = -exp(A_log)).
            a = torch.arange(1, state_channel + 1, dtype=torch.float32).repeat(k * inner, 1)
            self.A_log = nn.Parameter(torch.log(a))
            self.D = nn.Parameter(torch.ones(k * inner))
            bound = self.dt_rank**-0.5
            nn.init.uniform_(self.dt_proj_weight, -bound, bound)
        else:
            if inner % head_channel:
                raise ValueError(
                    f"`head_channel`={head_channel!r} must divide the inner width inner_factor·C = {inner} "
                    f"(channels={channels}, inner_factor={inner_factor})"
                )
            self.num_heads = inner // head_channel
            self.head_channel = head_channel
            self.x_proj_weight = nn.Parameter(torch.empty(k, self.num_heads + 2 * state_channel, inner))
            self.dt_bias = nn.Parameter(
                inverse_softplus_dt((k, self.num_heads), dt_min, dt_max, dt_init_floor)
            )
            self.A_log = nn.Parameter(torch.log(torch.empty(k * self.num_heads).uniform_(1.0, 16.0)))
            self.D = nn.Parameter(torch.ones(k * self.num_heads))
        nn.init.uniform_(self.x_proj_weight, -(inner**-0.5), inner**-0.5)
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, channels, bias=False)
        self.dropout = nn.Dropout(dropout)

    def extra_repr(self) -> str:
        return (
            f"version={self.version}, inner={self.inner}, state_channel={self.state_channel}, "
            f"scan_mode={self.scan_mode!r}, flip_scan={self.flip_scan}, directions={self.num_directions}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ops = _ops()
        spatial = tuple(x.shape[1:-1])
        batch = x.shape[0]
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv(torch.movedim(x, -1, 1)))  # (N, D, *spatial)
        xs = ops.scan_sequences(x, mode=self.scan_mode, flip=self.flip_scan)  # (N, K, D, L)
        k, length = xs.shape[1], xs.shape[-1]
        proj = torch.einsum("nkdl,kcd->nkcl", xs, self.x_proj_weight)
        n = self.state_channel
        if self.version == 1:
            dt, b, c = proj.split([self.dt_rank, n, n], dim=2)
            dt = torch.einsum("nkrl,kdr->nkdl", dt, self.dt_proj_weight)
            # Directions folded into channels; direction k's B/C is group k of the grouped scan.
            y = ops.selective_scan(
                xs.reshape(batch, k * self.inner, length),
                dt.reshape(batch, k * self.inner, length),
                -torch.exp(self.A_log.float()),
                b.contiguous(),
                c.contiguous(),
                D=self.D.float(),
                delta_bias=self.dt_bias.reshape(-1).float(),
                delta_softplus=True,
            ).reshape(batch, k, self.inner, length)
        else:
            h, p = self.num_heads, self.head_channel
            dt, b, c = proj.split([h, n, n], dim=2)
            # Heads of direction k are heads k·H .. k·H + H - 1, and use B/C group k.
            xh = xs.reshape(batch, k * h, p, length).permute(0, 3, 1, 2)  # (N, L, K·H, P)
            y = ops.ssd_scan(
                xh,
                dt.reshape(batch, k * h, length).transpose(1, 2),
                -torch.exp(self.A_log.float()),
                b.permute(0, 3, 1, 2),
                c.permute(0, 3, 1, 2),
                chunk_size=self.chunk_size,
                D=self.D.float(),
                dt_bias=self.dt_bias.reshape(-1).float(),
                dt_softplus=True,
            )  # (N, L, K·H, P)
            y = y.permute(0, 2, 3, 1).reshape(batch, k, self.inner, length)
        y = ops.merge_sequences(y.to(x.dtype), self.scan_mode, self.flip_scan, spatial)  # (N, D, *spatial)
        y = self.out_norm(torch.movedim(y, 1, -1)) * F.silu(z)
        return self.dropout(self.out_proj(y))


class VSSBlock(nn.Module):
    """One VSS block on channels-last tokens: ``x + DropPath(mixers(Norm(x)))`` then ``x +
    DropPath(MLP(Norm(x)))``.

    Args:
        channels: token width.
        spatial_dims: 2 or 3.
        version: 1 (Mamba) or 2 (Mamba-2 SSD).
        num_mixers: SS2D mixers chained inside the residual branch (2 for the ``res_*`` building blocks, each
            with its own pre-norm).
        normalization, num_norm_groups: the pre-norms (see :class:`TokenNorm`).
        activation: MLP activation.
        mlp_hidden_ratio: MLP hidden width / channels; 0 removes the MLP.
        drop_path: stochastic-depth rate of both residual branches.
        dropout: dropout in the mixer output and MLP.
        **ssm_kwargs: passed to :class:`SS2D`.

    Forward: ``x`` (N, *spatial, C), optional ``embedding`` (N, E) (or (N, S, E) for cross-attention) injected
    after the mixer residual once :meth:`enable_time_embedding` was called.
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        version: int = 1,
        num_mixers: int = 1,
        normalization: str = "layer",
        num_norm_groups: int = 1,
        activation: str = "gelu",
        mlp_hidden_ratio: float = 4.0,
        drop_path: float = 0.0,
        dropout: float = 0.0,
        **ssm_kwargs: Any,
    ):
        super().__init__()
        self.norms = nn.ModuleList(
            TokenNorm(normalization, channels, num_norm_groups) for _ in range(num_mixers)
        )
        self.mixers = nn.ModuleList(
            SS2D(channels, spatial_dims, version=version, dropout=dropout, **ssm_kwargs)
            for _ in range(num_mixers)
        )
        self.drop_path = DropPath(drop_path)
        hidden = int(round(mlp_hidden_ratio * channels))
        if hidden > 0:
            self.mlp_norm: Optional[nn.Module] = TokenNorm(normalization, channels, num_norm_groups)
            self.mlp: Optional[nn.Module] = nn.Sequential(
                nn.Linear(channels, hidden),
                make_activation(activation, channel_dim=-1),
                nn.Dropout(dropout),
                nn.Linear(hidden, channels),
                nn.Dropout(dropout),
            )
        else:
            self.mlp_norm, self.mlp = None, None
        self.channels = channels
        self.injection: Optional[EmbeddingInjection] = None

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Add an :class:`EmbeddingInjection` (``mode``) of an (N, ``embedding_dim``) embedding to this
        block."""
        self.injection = EmbeddingInjection(self.channels, embedding_dim, check_injection_mode(mode))

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = x
        for norm, mixer in zip(self.norms, self.mixers):
            h = mixer(norm(h))
        x = x + self.drop_path(h)
        if self.injection is not None:
            x = self.injection(x, time_emb, channel_dim=-1)
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.mlp_norm(x)))
        return x


def make_vmamba_block(
    building_block: str, channels: int, spatial_dims: int, drop_path: float = 0.0, **kwargs: Any
) -> List[VSSBlock]:
    """The VSS blocks one Flemme building block stands for.

    ``vmamba``/``vmamba2``: one block; ``double_*``: two blocks in sequence; ``res_*``: one block whose
    residual branch chains two SS2D mixers (an outer residual around two mixers). ``*2`` uses the Mamba-2 SSD
    scan.

    Raises:
        ValueError: for an unknown ``building_block``.
    """
    if building_block not in BUILDING_BLOCKS:
        raise ValueError(f"`building_block` must be one of {BUILDING_BLOCKS}, got {building_block!r}")
    version = 2 if building_block.endswith("2") else 1
    base = building_block.rstrip("2")
    if base == "double_vmamba":
        return [VSSBlock(channels, spatial_dims, version, 1, drop_path=drop_path, **kwargs) for _ in range(2)]
    mixers = 2 if base == "res_vmamba" else 1
    return [VSSBlock(channels, spatial_dims, version, mixers, drop_path=drop_path, **kwargs)]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return torch.movedim(x, 1, -1)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return torch.movedim(x, -1, 1)


class VMambaStage(nn.Module):
    """``num_blocks`` VMamba building blocks on a channels-first map (N, C, *spatial) → same shape.

    Usable as a decoder stage (e.g. a Unet ``decoder_block="vmamba"``) or inside the VMamba encoder.

    Args:
        channels: channels of the map.
        spatial_dims: 2 or 3.
        num_blocks: number of building blocks.
        building_block: one of :data:`BUILDING_BLOCKS`.
        drop_path: a float (same rate for every block) or one rate per block.
        time_embedding_dim: if given, every block injects an (N, time_embedding_dim) embedding.
        time_injection: ``gate_bias``, ``gate``, ``bias`` or ``cross_attention``.
        **kwargs: VSS block arguments (normalization, num_norm_groups, activation, dropout, mlp_hidden_ratio,
            state_channel, conv_kernel_size, inner_factor, dt_min, dt_max, dt_init_floor, scan_mode,
            flip_scan, head_channel, chunk_size).

    Raises:
        ValueError: for any invalid argument (named).
    """

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 2,
        num_blocks: int = 2,
        building_block: str = "vmamba",
        drop_path: Any = 0.0,
        time_embedding_dim: Optional[int] = None,
        time_injection: str = "gate_bias",
        **kwargs: Any,
    ):
        super().__init__()
        check_positive_int("channels", channels)
        nd.check_spatial_dims(spatial_dims)
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
            raise ValueError(f"`num_blocks` must be an int >= 0, got {num_blocks!r}")
        rates = [drop_path] * num_blocks if isinstance(drop_path, (int, float)) else list(drop_path)
        if len(rates) != num_blocks:
            raise ValueError(f"`drop_path` must be a float or have {num_blocks} entries, got {drop_path!r}")
        check_block_kwargs(building_block=building_block, drop_path=max(rates, default=0.0), **kwargs)
        self.blocks = nn.ModuleList(
            block
            for rate in rates
            for block in make_vmamba_block(building_block, channels, spatial_dims, drop_path=rate, **kwargs)
        )
        self.channels = channels
        self.spatial_dims = spatial_dims
        if time_embedding_dim is not None:
            self.enable_time_embedding(time_embedding_dim, time_injection)

    def enable_time_embedding(self, embedding_dim: int, mode: str = "gate_bias") -> None:
        """Let every block inject an (N, ``embedding_dim``) embedding by ``mode``."""
        check_positive_int("time_embedding_dim", embedding_dim)
        check_injection_mode(mode)
        for block in self.blocks:
            block.enable_time_embedding(embedding_dim, mode)

    @property
    def takes_embedding(self) -> bool:
        return any(b.injection is not None for b in self.blocks)

    def forward_tokens(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The blocks on channels-last tokens (N, *spatial, C)."""
        for block in self.blocks:
            x = block(x, time_emb)
        return x

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"VMambaStage expects (N, {self.channels}, *{self.spatial_dims} spatial sizes), "
                f"got {tuple(x.shape)}"
            )
        if time_emb is not None and not self.takes_embedding:
            raise ValueError(
                "this VMambaStage takes no embedding: build it with time_embedding_dim=... first"
            )
        if not self.blocks:
            return x
        return _channels_first(self.forward_tokens(_channels_last(x), time_emb))


def block_kwargs_of(kwargs: dict) -> Tuple[dict, dict]:
    """Split ``kwargs`` into (VSS block arguments, the rest)."""
    names = set(check_block_kwargs.__code__.co_varnames[: check_block_kwargs.__code__.co_argcount])
    names.discard("building_block")
    names.discard("drop_path")
    block = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return block, rest
