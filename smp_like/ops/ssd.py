"""Mamba-2's state-space-duality (SSD) chunked scan in pure PyTorch, with dispatch to mamba_ssm's Triton kernel.

Implements Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms Through Structured
State Space Duality", sec. 6 (the chunked "SSD algorithm"), for a scalar decay per head::

    h_t = exp(Δ_t A) h_{t-1} + Δ_t x_t B_tᵀ      (state (headdim, d_state) per head)
    y_t = h_t C_t + D x_t ,   out_t = y_t · silu(z_t)

The sequence is cut into chunks of ``chunk_size``; inside a chunk the output is the quadratic (attention-like) form
with the 1-semiseparable mask L[i, j] = exp(Σ_{k=j+1..i} a_k) (eq. 16 / sec. 6.1, "diagonal blocks"); the chunk
states are passed between chunks by a short recurrence (sec. 6.2, "low-rank blocks"). Every segment sum is
computed directly as a masked cumulative sum inside one chunk (never as a difference of two large cumulative
sums), masked to -inf above the diagonal, and only exponentials of sums of non-positive numbers appear, so
nothing overflows. Gradients come from autograd through these operations.
"""

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .selective_scan import autocast_disabled, check_backend

__all__ = ["ssd_scan", "mamba_ssm_ssd_available"]

_MISSING = object()
_mamba_chunk_scan = _MISSING


def _load_mamba_chunk_scan():
    """mamba_ssm's ``mamba_chunk_scan_combined``, or None if it cannot be imported (cached, imported lazily)."""
    global _mamba_chunk_scan
    if _mamba_chunk_scan is _MISSING:
        try:
            from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
        # ImportError, or a broken Triton/CUDA install raising something else at import.
        except Exception:  # noqa: BLE001
            mamba_chunk_scan_combined = None
        _mamba_chunk_scan = mamba_chunk_scan_combined
    return _mamba_chunk_scan


def mamba_ssm_ssd_available() -> bool:
    """Whether mamba_ssm's ``mamba_chunk_scan_combined`` can be imported."""
    return _load_mamba_chunk_scan() is not None


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """S[..., i, j] = Σ_{k=j+1..i} a[..., k] for i >= j, -inf above the diagonal; a of shape (..., Q).

    Computed as a cumulative sum over i of a[..., i] masked to i > j, so each entry is a plain sum of the
    terms it contains (no difference of cumulative sums, no cancellation).
    """
    q = a.shape[-1]
    strict_lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril(-1)  # i > j
    terms = a.unsqueeze(-1).expand(*a.shape, q).masked_fill(~strict_lower, 0.0)  # [..., i, j] = a_i if i > j
    s = torch.cumsum(terms, dim=-2)
    lower = torch.ones(q, q, dtype=torch.bool, device=a.device).tril()
    return s.masked_fill(~lower, float("-inf"))


def _check_inputs(x, dt, A, B, C, D, z, dt_bias, chunk_size):
    for name, v in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if x.dim() != 4 or x.shape[1] < 1:
        raise ValueError(f"x must have shape (batch, length, nheads, headdim), got shape {tuple(x.shape)}")
    b, length, h, p = x.shape
    if tuple(dt.shape) != (b, length, h):
        raise ValueError(
            f"dt must have shape (batch, length, nheads)={(b, length, h)}, got {tuple(dt.shape)}"
        )
    if tuple(A.shape) != (h,):
        raise ValueError(f"A must have shape (nheads,)=({h},), got shape {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (b, length) or B.shape[2] < 1 or h % B.shape[2]:
        raise ValueError(
            f"B must have shape (batch={b}, length={length}, ngroups, d_state) with nheads={h} divisible by "
            f"ngroups, got shape {tuple(B.shape)}"
        )
    if tuple(C.shape) != tuple(B.shape):
        raise ValueError(f"C must have the shape of B {tuple(B.shape)}, got shape {tuple(C.shape)}")
    if D is not None:
        if not isinstance(D, torch.Tensor) or tuple(D.shape) not in ((h,), (h, p)):
            raise ValueError(
                f"D must have shape (nheads,)=({h},) or (nheads, headdim)={(h, p)}, got {D!r:.80}"
            )
    if z is not None and (not isinstance(z, torch.Tensor) or tuple(z.shape) != tuple(x.shape)):
        raise ValueError(f"z must be a tensor of x's shape {tuple(x.shape)}")
    if dt_bias is not None and (not isinstance(dt_bias, torch.Tensor) or tuple(dt_bias.shape) != (h,)):
        raise ValueError(f"dt_bias must be a tensor of shape (nheads,)=({h},)")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got chunk_size={chunk_size!r}")
    return b, length, h, p


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 64,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    dt_bias: Optional[torch.Tensor] = None,
    dt_softplus: bool = False,
    return_final_states: bool = False,
    backend: str = "auto",
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Mamba-2 SSD scan with mamba_ssm's ``mamba_chunk_scan_combined`` argument conventions.

    ``h_t = exp(Δ_t A) h_t-1 + Δ_t x_t B_tᵀ``, ``y_t = h_t C_t + D x_t``, ``out = y · silu(z)`` with
    ``Δ = softplus(dt + dt_bias)`` when ``dt_softplus`` (Dao & Gu 2024, sec. 6).

    Args:
        x: input, shape ``(batch, length, nheads, headdim)``.
        dt: time steps, shape ``(batch, length, nheads)``.
        A: scalar decay rate per head (negative for a stable model), shape ``(nheads,)``.
        B: input projection, shape ``(batch, length, ngroups, d_state)``; head ``i`` uses group
            ``i // (nheads // ngroups)``.
        C: output projection, same shape as ``B``.
        chunk_size: chunk length of the chunked algorithm (a speed knob; results agree up to rounding).
        D: skip connection, shape ``(nheads,)`` or ``(nheads, headdim)``.
        z: gate of ``x``'s shape; the output is multiplied by ``silu(z)``.
        dt_bias: added to ``dt`` before the softplus, shape ``(nheads,)``.
        dt_softplus: apply softplus to ``dt + dt_bias``.
        return_final_states: also return the final state.
        backend: ``"auto"`` (mamba_ssm's Triton kernel for CUDA inputs when it imports, else pure PyTorch),
            ``"torch"`` or ``"mamba_ssm"``.

    Returns:
        ``out`` of ``x``'s shape and dtype, or ``(out, final_states)`` with ``final_states`` of shape
        ``(batch, nheads, headdim, d_state)``.

    Raises:
        TypeError: if an argument is not a tensor.
        ValueError: on inconsistent shapes, an unknown backend, or ``backend="mamba_ssm"`` on CPU tensors.
        ImportError: ``backend="mamba_ssm"`` when mamba_ssm is not installed.
    """
    check_backend(backend)
    b, length, h, p = _check_inputs(x, dt, A, B, C, D, z, dt_bias, chunk_size)
    use_kernel = False
    if backend == "mamba_ssm":
        if _load_mamba_chunk_scan() is None:
            raise ImportError("backend='mamba_ssm' needs the mamba_ssm package: pip install mamba-ssm")
        if not x.is_cuda:
            raise ValueError(f"backend='mamba_ssm' needs CUDA tensors, got x on device {x.device}")
        use_kernel = True
    elif backend == "auto":
        use_kernel = x.is_cuda and _load_mamba_chunk_scan() is not None
    if use_kernel:
        return _load_mamba_chunk_scan()(
            x,
            dt,
            A,
            B,
            C,
            chunk_size,
            D=D,
            z=z,
            dt_bias=dt_bias,
            dt_softplus=dt_softplus,
            return_final_states=return_final_states,
        )

    # The SSD recurrence (chunk states, decays exp(segsum(A·Δ)) and their products) stays in float32: under
    # bf16/fp16 autocast its einsums would otherwise run in half precision, and products of decays over long
    # sequences lose the precision the state needs. Inputs are cast to float32 below; the output is cast back.
    with autocast_disabled(x.device.type):
        out_dtype = x.dtype
        cdtype = torch.promote_types(x.dtype, torch.float32) if x.is_floating_point() else torch.float32
        g, n = B.shape[2], B.shape[3]
        xc = x.to(cdtype)
        delta = dt.to(cdtype)
        if dt_bias is not None:
            delta = delta + dt_bias.to(cdtype)
        if dt_softplus:
            delta = F.softplus(delta)
        q = min(chunk_size, length)
        nc = -(-length // q)
        pad = nc * q - length
        # Padding with Δ = 0 (decay 1, no input) leaves the final state unchanged.
        xp = F.pad(xc, (0, 0, 0, 0, 0, pad)).reshape(b, nc, q, h, p)
        dp = F.pad(delta, (0, 0, 0, pad)).reshape(b, nc, q, h)
        heads_per_group = h // g
        bp = (
            F.pad(B.to(cdtype), (0, 0, 0, 0, 0, pad))
            .reshape(b, nc, q, g, n)
            .repeat_interleave(heads_per_group, 3)
        )
        cp = (
            F.pad(C.to(cdtype), (0, 0, 0, 0, 0, pad))
            .reshape(b, nc, q, g, n)
            .repeat_interleave(heads_per_group, 3)
        )

        a = (dp * A.to(cdtype)).permute(0, 3, 1, 2)  # log-decays Δ_t A, (b, h, nc, q)
        seg = _segsum(a)  # (b, h, nc, q, q)
        xdt = xp * dp.unsqueeze(-1)  # Δ_t x_t, (b, nc, q, h, p)

        # 1. Diagonal blocks: y_i = Σ_{j<=i} (C_i·B_j) exp(seg[i, j]) Δ_j x_j.
        scores = torch.einsum("bcihn,bcjhn->bhcij", cp, bp) * torch.exp(seg)
        y = torch.einsum("bhcij,bcjhp->bcihp", scores, xdt)
        # 2. State of every chunk from a zero start: Σ_j exp(Σ_{k=j+1..q-1} a_k) Δ_j x_j B_jᵀ.
        decay_to_end = torch.exp(seg[..., -1, :])  # (b, h, nc, q)
        chunk_states = torch.einsum("bcjhn,bhcj,bcjhp->bchpn", bp, decay_to_end, xdt)
        # 3. Pass states between chunks: H_{c+1} = exp(Σ_chunk a) H_c + chunk_states_c.
        chunk_decay = torch.exp(a.sum(-1))  # (b, h, nc)
        state = torch.zeros(b, h, p, n, dtype=cdtype, device=x.device)
        starts = []
        for c in range(nc):
            starts.append(state)
            state = chunk_decay[:, :, c, None, None] * state + chunk_states[:, c]
        starts = torch.stack(starts, dim=1)  # (b, nc, h, p, n)
        # 4. Contribution of the incoming state: y_i += exp(Σ_{k<=i} a_k) C_i H_c.
        decay_from_start = torch.exp(torch.cumsum(a, dim=-1))  # (b, h, nc, q)
        y = y + torch.einsum("bcihn,bchpn,bhci->bcihp", cp, starts, decay_from_start)

        y = y.reshape(b, nc * q, h, p)[:, :length]
        if D is not None:
            dd = D.to(cdtype)
            y = y + xc * (dd[:, None] if dd.dim() == 1 else dd)
        if z is not None:
            y = y * F.silu(z.to(cdtype))
        out = y.to(out_dtype)
        if return_final_states:
            return out, state
        return out
