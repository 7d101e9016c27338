"""Tests of smp_like.ops.ssd_scan against the Mamba-2 recurrence run one step at a time (Dao & Gu 2024, sec. 6)."""

import pytest
import torch
import torch.nn.functional as F

from smp_like.ops import ssd_scan
from smp_like.ops.ssd import mamba_ssm_ssd_available


def reference_ssd(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """h_t = exp(Δ_t A_h) h_{t-1} + Δ_t x_t B_tᵀ, y_t = h_t C_t + D x_t, out = y·silu(z), step by step."""
    b, length, h, p = x.shape
    g, n = B.shape[2:]
    if dt_bias is not None:
        dt = dt + dt_bias
    if dt_softplus:
        dt = F.softplus(dt)
    B = B.repeat_interleave(h // g, dim=2)  # head i uses group i // (h // g)
    C = C.repeat_interleave(h // g, dim=2)
    state = x.new_zeros(b, h, p, n)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        ys.append((state * C[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z)
    return y, state


def make_inputs(
    b,
    length,
    h,
    p,
    g,
    n,
    *,
    D="vector",
    z=True,
    bias=True,
    dtype=torch.float64,
    seed=0,
    a_scale=1.0,
    dt_shift=0.0,
):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    inputs = {
        "x": rnd(b, length, h, p),
        "dt": rnd(b, length, h) + dt_shift,
        "A": -torch.rand(h, generator=gen, dtype=torch.float64) * 4 * a_scale - 0.01,
        "B": rnd(b, length, g, n),
        "C": rnd(b, length, g, n),
        "D": {"vector": rnd(h), "matrix": rnd(h, p), None: None}[D],
        "z": rnd(b, length, h, p) if z else None,
        "dt_bias": rnd(h) * 0.5 if bias else None,
    }
    return {k: (v.to(dtype).requires_grad_() if v is not None else None) for k, v in inputs.items()}


def run(fn, inputs, softplus, **kwargs):
    y, state = fn(**inputs, dt_softplus=softplus, **kwargs)
    gen = torch.Generator().manual_seed(1)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.dtype)
    gs = torch.randn(state.shape, generator=gen, dtype=torch.float64).to(state.dtype)
    names = [k for k, v in inputs.items() if v is not None]
    grads = torch.autograd.grad((y * gy).sum() + (state * gs).sum(), [inputs[k] for k in names])
    return y, state, dict(zip(names, grads))


def assert_close(actual, expected, rel, what):
    scale = max(1.0, expected.abs().max().item())
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rel * scale, f"{what}: max error {err:.3e} > {rel:.1e} * {scale:.3e}"


def compare(inputs, softplus, rel, chunk_size=64, ref_inputs=None):
    y, s, g = run(
        lambda **kw: ssd_scan(**kw, chunk_size=chunk_size, return_final_states=True), inputs, softplus
    )
    y2, s2, g2 = run(reference_ssd, ref_inputs or inputs, softplus)
    assert y.dtype == inputs["x"].dtype and y.shape == inputs["x"].shape
    assert_close(y, y2, rel, "out")
    assert_close(s, s2, rel, "final_states")
    for name in g2:
        assert_close(g[name], g2[name], rel, f"grad of {name}")


@pytest.mark.parametrize("length, chunk_size", [(1, 64), (7, 4), (64, 64), (1000, 64), (4096, 256)])
@pytest.mark.parametrize("n", [1, 16])
def test_float64_against_loop(length, chunk_size, n):
    b = 1 if length >= 1000 else 2
    compare(make_inputs(b, length, 4, 2, 2, n, seed=length + n), True, 1e-10, chunk_size)


@pytest.mark.parametrize("D", [None, "vector", "matrix"])
@pytest.mark.parametrize(
    "z, bias, softplus", [(False, False, False), (True, True, True), (True, False, True)]
)
def test_float64_options(D, z, bias, softplus):
    compare(make_inputs(2, 45, 6, 3, 3, 5, D=D, z=z, bias=bias), softplus, 1e-10, chunk_size=16)


@pytest.mark.parametrize("length", [7, 1000])
@pytest.mark.parametrize("n", [1, 16])
def test_float32_against_float64_loop(length, n):
    ref = make_inputs(1, length, 4, 2, 1, n, seed=3)
    inputs = {k: (v.detach().float().requires_grad_() if v is not None else None) for k, v in ref.items()}
    compare(inputs, True, 1e-4, ref_inputs=ref)


@pytest.mark.parametrize("a_scale, dt_shift", [(1e4, 5.0), (1.0, -30.0)])
@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_stress(a_scale, dt_shift, dtype, rel):
    ref = make_inputs(1, 200, 4, 2, 2, 8, a_scale=a_scale, dt_shift=dt_shift)
    inputs = {k: (v.detach().to(dtype).requires_grad_() if v is not None else None) for k, v in ref.items()}
    y, _, g = run(lambda **kw: ssd_scan(**kw, return_final_states=True), inputs, True)
    assert torch.isfinite(y).all() and all(torch.isfinite(v).all() for v in g.values())
    compare(inputs, True, rel, ref_inputs=ref)


def test_gradcheck_tiny():
    inputs = make_inputs(1, 5, 2, 2, 1, 2, seed=4)
    names = list(inputs)

    def fn(*args):
        return ssd_scan(**dict(zip(names, args)), chunk_size=2, dt_softplus=True, return_final_states=True)

    assert torch.autograd.gradcheck(fn, tuple(inputs[k] for k in names))


def test_bad_inputs():
    x = make_inputs(1, 8, 4, 2, 2, 3)
    with pytest.raises(ValueError, match="dt must have shape"):
        ssd_scan(x["x"], x["dt"][:, :3], x["A"], x["B"], x["C"])
    with pytest.raises(ValueError, match="divisible by ngroups"):
        ssd_scan(x["x"], x["dt"], x["A"], torch.zeros(1, 8, 3, 3), torch.zeros(1, 8, 3, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        ssd_scan(x["x"], x["dt"], x["A"], x["B"], x["C"], chunk_size=0)
    with pytest.raises(ValueError, match="backend"):
        ssd_scan(x["x"], x["dt"], x["A"], x["B"], x["C"], backend="triton")


@pytest.mark.skipif(mamba_ssm_ssd_available(), reason="mamba_ssm is installed")
def test_mamba_ssm_backend_without_package_names_install():
    x = make_inputs(1, 8, 4, 2, 2, 3)
    with pytest.raises(ImportError, match="pip install mamba-ssm"):
        ssd_scan(**x, backend="mamba_ssm")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parity_with_mamba_ssm_triton_kernel():
    if not mamba_ssm_ssd_available():
        pytest.skip("needs mamba_ssm")
    inputs = make_inputs(2, 300, 4, 16, 2, 16, dtype=torch.float32)
    inputs = {k: (v.detach().cuda().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    r1 = run(lambda **kw: ssd_scan(**kw, return_final_states=True, backend="torch"), inputs, True)
    r2 = run(lambda **kw: ssd_scan(**kw, return_final_states=True, backend="mamba_ssm"), inputs, True)
    assert_close(r1[0], r2[0], 1e-3, "out")
    assert_close(r1[1], r2[1], 1e-3, "final_states")
    for name in r1[2]:
        assert_close(r1[2][name], r2[2][name], 1e-3, f"grad of {name}")
