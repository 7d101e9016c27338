"""Selective scan (Mamba's S6 layer) in pure PyTorch, with dispatch to mamba_ssm's CUDA kernel.

Implements Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", eq. (2a)/(2b) with
the zero-order-hold discretisation of eq. (4) as used by the reference kernel (A_bar = exp(Δ A), B_bar x ≈ Δ B x)::

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t        (per channel d and state n)
    y_t = Σ_n C_t[n] h_t[n] + D u_t ,   out_t = y_t · silu(z_t)

The pure-PyTorch path treats the recurrence as a first-order linear recurrence h_t = a_t h_{t-1} + b_t, solved by a
two-level chunked scan (Blelloch 1990, "Prefix sums and their applications", sec. 1.4 — here with a sequential
step inside chunks of ~sqrt(L), vectorised across chunks):

1. every chunk is scanned from a zero state, all chunks at once (a loop over the position inside the chunk);
2. the chunk carries are propagated sequentially (a loop over chunks, on tiny tensors), using the chunk decay
   exp(A · Σ_chunk Δ) — an exponential of a non-positive number for A <= 0, so it never overflows;
3. every chunk is scanned again from its true initial state, producing the output.

Only products of decays a_t = exp(Δ_t A) in (0, 1] appear — no exponential of a cumulative sum, no division — so
extreme parameters (large |A|·Δ, tiny Δ) underflow to the correct 0 and never overflow. The backward is the same
chunked scan run in reverse (dh_t = g_t + a_{t+1} dh_{t+1}, g_t = C_t dy_t) with the gradients of u, Δ, A, B, C
derived analytically from it; D, z, delta_bias and softplus are plain autograd around that core. Memory is
O(b·d·n·l) (the states kept for the backward), never more.
"""

import contextlib
import math
from typing import ContextManager, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def autocast_disabled(device_type: str) -> ContextManager:
    """A region where autocast is off on ``device_type``, so the recurrences below run in the dtype they cast to.

    Devices without autocast (the meta device, used to size a model before allocating it) need nothing switched off,
    and ``torch.autocast`` refuses them, so they get a no-op context.
    """
    if not torch.amp.is_autocast_available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)

__all__ = ["selective_scan", "SCAN_BACKENDS", "mamba_ssm_available"]

SCAN_BACKENDS = ("auto", "torch", "mamba_ssm")

_MISSING = object()
_mamba_selective_scan_fn = _MISSING


def _load_mamba_selective_scan():
    """mamba_ssm's ``selective_scan_fn``, or None if mamba_ssm cannot be imported (cached, imported lazily)."""
    global _mamba_selective_scan_fn
    if _mamba_selective_scan_fn is _MISSING:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        # ImportError, or a broken CUDA extension raising something else at import.
        except Exception:  # noqa: BLE001
            selective_scan_fn = None
        _mamba_selective_scan_fn = selective_scan_fn
    return _mamba_selective_scan_fn


def mamba_ssm_available() -> bool:
    """Whether mamba_ssm's selective-scan kernel can be imported."""
    return _load_mamba_selective_scan() is not None


def check_backend(backend: str) -> str:
    """Validate a scan ``backend`` argument and return it.

    Raises:
        ValueError: if it is not one of ``SCAN_BACKENDS``.
    """
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"backend must be one of {SCAN_BACKENDS}, got backend={backend!r}")
    return backend


def _default_chunk(length: int) -> int:
    # A step of the chunk loop (work on all chunks) costs more than a step of the carry loop (one chunk's state):
    # measured on CPU, T ~ sqrt(2 L) balances the two (L = 3136 -> T = 79, 40 chunks).
    return max(1, round(math.sqrt(2 * length)))


def _to_steps(x: torch.Tensor, nc: int, t: int) -> torch.Tensor:
    """(..., nc*t) -> (t, nc, ...) contiguous, so step k of every chunk is one contiguous slice."""
    lead = x.dim() - 1
    return x.reshape(*x.shape[:-1], nc, t).permute(lead + 1, lead, *range(lead)).contiguous()


def _from_steps(x: torch.Tensor) -> torch.Tensor:
    """(t, nc, ...) -> (..., nc*t), the inverse of :func:`_to_steps`."""
    t, nc = x.shape[:2]
    return x.permute(*range(2, x.dim()), 1, 0).reshape(*x.shape[2:], nc * t)


class _SelectiveScanCore(torch.autograd.Function):
    """y, last_state = scan(u, Δ, A, B, C) for u, Δ (b, d, l), A (d, n), B, C (b, g, n, l); no D, z, bias."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk):
        b, d, length = u.shape
        g, n = B.shape[1], B.shape[2]
        dg = d // g
        t = min(chunk, length)
        nc = -(-length // t)
        pad = nc * t - length
        if pad:
            # Padding with Δ = 0 (a = 1, b = 0) leaves the state unchanged: last_state is still exact.
            u, delta, B, C = (F.pad(v, (0, pad)) for v in (u, delta, B, C))
        us = _to_steps(u.reshape(b, g, dg, -1), nc, t).unsqueeze(-1)  # (t, nc, b, g, dg, 1)
        ds = _to_steps(delta.reshape(b, g, dg, -1), nc, t).unsqueeze(-1)
        bs = _to_steps(B, nc, t).unsqueeze(-2)  # (t, nc, b, g, 1, n)
        cs = _to_steps(C, nc, t).unsqueeze(-2)
        a_mat = A.reshape(g, dg, n)
        dus = ds * us
        state_shape = (nc, b, g, dg, n)

        # All decays a_t = exp(Δ_t A) in (0, 1] at once (one vectorised exp; reused by both passes and backward).
        a_all = torch.mul(ds, a_mat).exp_()  # (t, nc, b, g, dg, n)
        # Pass 1: every chunk from a zero state.
        h = torch.zeros(state_shape, dtype=u.dtype, device=u.device)
        for k in range(t):
            h = torch.addcmul(dus[k] * bs[k], a_all[k], h)
        decay = torch.exp(ds.sum(0) * a_mat)  # product of a over each chunk, (nc, b, g, dg, n)
        # Carries between chunks (sequential over chunks, tiny tensors).
        init = torch.empty(state_shape, dtype=u.dtype, device=u.device)
        s = torch.zeros(state_shape[1:], dtype=u.dtype, device=u.device)
        for c in range(nc):
            init[c] = s
            s = torch.addcmul(h[c], decay[c], s)
        last_state = s.reshape(b, d, n)
        # Pass 2: every chunk from its true initial state; keep the states for the backward.
        save = any(ctx.needs_input_grad[:5])
        hs = torch.empty((t,) + state_shape, dtype=u.dtype, device=u.device) if save else None
        ys = torch.empty((t, nc, b, g, dg), dtype=u.dtype, device=u.device)
        h = init
        for k in range(t):
            if save:
                h = torch.addcmul(dus[k] * bs[k], a_all[k], h, out=hs[k])
            else:
                h = torch.addcmul(dus[k] * bs[k], a_all[k], h)
            torch.sum(h * cs[k], dim=-1, out=ys[k])
        y = _from_steps(ys).reshape(b, d, -1)[..., :length]
        if save:
            ctx.save_for_backward(us, ds, a_mat, bs, cs, hs, init, decay, a_all)
        ctx.dims = (b, d, n, g, length, t, nc)
        return y, last_state

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dlast):
        us, ds, a_mat, bs, cs, hs, init, decay, a_all = ctx.saved_tensors
        b, d, n, g, length, t, nc = ctx.dims
        dg = d // g
        dtype, device = us.dtype, us.device
        state_shape = (nc, b, g, dg, n)
        if dy is None:
            dy = torch.zeros((b, d, length), dtype=dtype, device=device)
        pad = nc * t - length
        dys = _to_steps(F.pad(dy.to(dtype), (0, pad)).reshape(b, g, dg, -1), nc, t).unsqueeze(-1)
        # Reverse pass 1: dh inside every chunk with no contribution from later chunks.
        # dh_t = C_t dy_t + a_{t+1} dh_{t+1}; r carries a_{t+1} dh_{t+1} down to step t.
        r = torch.zeros(state_shape, dtype=dtype, device=device)
        for k in range(t - 1, -1, -1):
            r = a_all[k] * torch.addcmul(r, dys[k], cs[k])
        # Carries from later chunks: e_{c-1} = r_c + decay_c e_c, starting from dlast.
        e = torch.empty(state_shape, dtype=dtype, device=device)
        s = (
            dlast.to(dtype).reshape(b, g, dg, n)
            if dlast is not None
            else torch.zeros(state_shape[1:], dtype=dtype, device=device)
        )
        for c in range(nc - 1, -1, -1):
            e[c] = s
            s = torch.addcmul(r[c], decay[c], s)
        # Reverse pass 2: the true dh, and the gradients (Mamba eq. 2a/2b differentiated):
        #   du_t = Δ_t Σ_n dh_t B_t,  dΔ_t = u_t Σ_n dh_t B_t + Σ_n A dh_t a_t h_{t-1},
        #   dB_t = Σ_d dh_t Δ_t u_t,  dC_t = Σ_d dy_t h_t,  dA = Σ_{b,t} Δ_t dh_t a_t h_{t-1}.
        du = torch.empty((t, nc, b, g, dg), dtype=dtype, device=device)
        dd = torch.empty_like(du)
        db = torch.empty((t, nc, b, g, n), dtype=dtype, device=device)
        dc = torch.empty_like(db)
        da = torch.zeros(state_shape, dtype=dtype, device=device)
        r = e
        for k in range(t - 1, -1, -1):
            a = a_all[k]
            dh = torch.addcmul(r, dys[k], cs[k])
            h_prev = hs[k - 1] if k > 0 else init
            w = dh * a * h_prev
            q = (dh * bs[k]).sum(-1)  # (nc, b, g, dg)
            uk, dk = us[k].squeeze(-1), ds[k].squeeze(-1)
            du[k] = q * dk
            dd[k] = q * uk + (w * a_mat).sum(-1)
            torch.sum(dh * (dk * uk).unsqueeze(-1), dim=-2, out=db[k])
            torch.sum(hs[k] * dys[k], dim=-2, out=dc[k])
            da.add_(w * ds[k])
            r = a * dh
        du = _from_steps(du).reshape(b, d, -1)[..., :length]
        dd = _from_steps(dd).reshape(b, d, -1)[..., :length]
        db = _from_steps(db)[..., :length]
        dc = _from_steps(dc)[..., :length]
        da = da.sum((0, 1)).reshape(d, n)
        return du, dd, da, db, dc, None


def _check_tensor(name: str, value, shape: Optional[Tuple[int, ...]] = None, expected: str = "") -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {expected or tuple(shape)}, got shape {tuple(value.shape)}")


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> Tuple[int, int, int, int, int]:
    _check_tensor("u", u)
    if u.dim() != 3:
        raise ValueError(f"u must have shape (batch, dim, length), got shape {tuple(u.shape)}")
    b, d, length = u.shape
    if length < 1:
        raise ValueError(f"u must have a sequence length >= 1, got shape {tuple(u.shape)}")
    _check_tensor("delta", delta, (b, d, length), "(batch, dim, length) like u")
    _check_tensor("A", A)
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must have shape (dim={d}, d_state), got shape {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("A must be real; complex A is not supported by the pure-PyTorch selective scan")
    n = A.shape[1]
    for name, m in (("B", B), ("C", C)):
        _check_tensor(name, m)
        if m.dim() == 3:
            if tuple(m.shape) != (b, n, length):
                raise ValueError(
                    f"{name} must have shape (batch, d_state, length)={(b, n, length)} or (batch, groups, d_state,"
                    f" length), got shape {tuple(m.shape)}"
                )
        elif m.dim() == 4:
            if (m.shape[0], m.shape[2], m.shape[3]) != (b, n, length) or m.shape[1] < 1 or d % m.shape[1]:
                raise ValueError(
                    f"{name} must have shape (batch={b}, groups, d_state={n}, length={length}) with dim={d} "
                    f"divisible by groups, got shape {tuple(m.shape)}"
                )
        else:
            raise ValueError(
                f"{name} must have shape (batch, d_state, length) or (batch, groups, d_state, length), got shape "
                f"{tuple(m.shape)}"
            )
    gb = B.shape[1] if B.dim() == 4 else 1
    gc = C.shape[1] if C.dim() == 4 else 1
    if D is not None:
        _check_tensor("D", D, (d,), f"(dim,)=({d},)")
    if z is not None:
        _check_tensor("z", z, (b, d, length), "(batch, dim, length) like u")
    if delta_bias is not None:
        _check_tensor("delta_bias", delta_bias, (d,), f"(dim,)=({d},)")
    return b, d, length, n, (gb, gc)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor] = None,
    z: Optional[torch.Tensor] = None,
    delta_bias: Optional[torch.Tensor] = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
    chunk_size: Optional[int] = None,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Selective scan with mamba_ssm's ``selective_scan_fn`` argument conventions.

    ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t``, ``y_t = C_t · h_t + D u_t``, ``out = y · silu(z)``, with
    ``Δ = softplus(delta + delta_bias)`` when ``delta_softplus`` else ``delta + delta_bias`` (Gu & Dao 2023,
    eq. 2a/2b, ZOH discretisation as in their kernel). Differentiable in every tensor argument.

    Args:
        u: input, shape ``(batch, dim, length)``.
        delta: time steps Δ before bias/softplus, shape ``(batch, dim, length)``.
        A: state matrix (diagonal, real; negative for a stable model), shape ``(dim, d_state)``.
        B: input projection, shape ``(batch, d_state, length)`` or grouped ``(batch, groups, d_state, length)``
            with ``dim % groups == 0``; channel ``i`` uses group ``i // (dim // groups)``.
        C: output projection, same conventions as ``B`` (its group count may differ).
        D: skip connection, shape ``(dim,)``.
        z: gate, shape ``(batch, dim, length)``; the output is multiplied by ``silu(z)``.
        delta_bias: added to ``delta`` before the softplus, shape ``(dim,)``.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        return_last_state: also return the final state ``h_L``.
        backend: ``"auto"`` (mamba_ssm's CUDA kernel for CUDA inputs when it imports, else pure PyTorch),
            ``"torch"`` (always pure PyTorch, also on CUDA) or ``"mamba_ssm"`` (always the kernel).
        chunk_size: chunk length of the pure-PyTorch scan (default ``round(sqrt(2 * length))``); a speed knob
            that does not change the result beyond rounding.

    Returns:
        ``out`` of shape ``(batch, dim, length)`` in ``u``'s dtype, or ``(out, last_state)`` with
        ``last_state`` of shape ``(batch, dim, d_state)`` when ``return_last_state``.

    Raises:
        TypeError: if an argument is not a tensor.
        ValueError: on inconsistent shapes, an unknown backend, or ``backend="mamba_ssm"`` on CPU tensors.
        ImportError: ``backend="mamba_ssm"`` when mamba_ssm is not installed.
    """
    check_backend(backend)
    _, _, length, _, (gb, gc) = _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got chunk_size={chunk_size!r}")
    use_kernel = False
    if backend == "mamba_ssm":
        if _load_mamba_selective_scan() is None:
            raise ImportError("backend='mamba_ssm' needs the mamba_ssm package: pip install mamba-ssm")
        if not u.is_cuda:
            raise ValueError(f"backend='mamba_ssm' needs CUDA tensors, got u on device {u.device}")
        use_kernel = True
    elif backend == "auto":
        use_kernel = u.is_cuda and _load_mamba_selective_scan() is not None
    if use_kernel:
        return _load_mamba_selective_scan()(
            u,
            delta,
            A,
            B,
            C,
            D=D,
            z=z,
            delta_bias=delta_bias,
            delta_softplus=delta_softplus,
            return_last_state=return_last_state,
        )

    # The selective scan recurrence h_t = exp(Δ·A) h_{t-1} + Δ·B·u_t stays in float32 even under bf16/fp16
    # autocast (an autocast-disabled region): cumulative products of decays underflow or lose precision in half
    # precision. Inputs are cast to float32 below and the output is cast back to the input dtype.
    with autocast_disabled(u.device.type):
        out_dtype = u.dtype
        # Half precision inputs are scanned in float32, as the reference kernel does.
        cdtype = torch.promote_types(u.dtype, torch.float32) if u.is_floating_point() else torch.float32
        uc = u.to(cdtype)
        dt = delta.to(cdtype)
        if delta_bias is not None:
            dt = dt + delta_bias.to(cdtype)[:, None]
        if delta_softplus:
            dt = F.softplus(dt)
        # Groups: B and C are brought to a common group count g = lcm(gB, gC) (repeat_interleave of each, O(b·g·n·l)).
        g = gb * gc // math.gcd(gb, gc)
        Bc = B.to(cdtype) if B.dim() == 4 else B.to(cdtype).unsqueeze(1)
        Cc = C.to(cdtype) if C.dim() == 4 else C.to(cdtype).unsqueeze(1)
        if Bc.shape[1] != g:
            Bc = Bc.repeat_interleave(g // Bc.shape[1], dim=1)
        if Cc.shape[1] != g:
            Cc = Cc.repeat_interleave(g // Cc.shape[1], dim=1)
        y, last_state = _SelectiveScanCore.apply(
            uc, dt, A.to(cdtype), Bc, Cc, chunk_size or _default_chunk(length)
        )
        if D is not None:
            y = y + uc * D.to(cdtype)[:, None]
        if z is not None:
            y = y * F.silu(z.to(cdtype))
        out = y.to(out_dtype)
        if return_last_state:
            return out, last_state
        return out
