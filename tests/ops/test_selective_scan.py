"""Tests of smp_like.ops.selective_scan against a plain sequential loop written here (Gu & Dao 2023, eq. 2a/2b)."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from smp_like.ops import selective_scan
from smp_like.ops.selective_scan import mamba_ssm_available


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The recurrence h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t, y_t = C_t·h_t + D u_t, one step at a time."""
    b, d, length = u.shape
    n = A.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B = B if B.dim() == 4 else B[:, None]
    C = C if C.dim() == 4 else C[:, None]
    B = B.repeat_interleave(d // B.shape[1], dim=1)  # channel i uses group i // (d // g)
    C = C.repeat_interleave(d // C.shape[1], dim=1)
    h = u.new_zeros(b, d, n)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, :, :, t]
        ys.append((h * C[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y, h


def make_inputs(
    b,
    d,
    n,
    length,
    *,
    groups=None,
    D=True,
    z=True,
    bias=True,
    dtype=torch.float64,
    seed=0,
    a_scale=1.0,
    delta_scale=1.0,
    delta_shift=0.0,
):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    bc_shape = (b, n, length) if groups is None else (b, groups, n, length)
    inputs = {
        "u": rnd(b, d, length),
        "delta": rnd(b, d, length) * delta_scale + delta_shift,
        "A": -torch.rand(d, n, generator=gen, dtype=torch.float64) * 4 * a_scale - 0.01,
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
        "D": rnd(d) if D else None,
        "z": rnd(b, d, length) if z else None,
        "delta_bias": rnd(d) * 0.5 if bias else None,
    }
    return {k: (v.to(dtype).requires_grad_() if v is not None else None) for k, v in inputs.items()}


def outputs_and_grads(fn, inputs, softplus, seed=1, **kwargs):
    y, last = fn(**inputs, delta_softplus=softplus, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    gy = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.dtype)
    gl = torch.randn(last.shape, generator=gen, dtype=torch.float64).to(last.dtype)
    names = [k for k, v in inputs.items() if v is not None]
    grads = torch.autograd.grad((y * gy).sum() + (last * gl).sum(), [inputs[k] for k in names])
    return y, last, dict(zip(names, grads))


def ours(**kwargs):
    return selective_scan(**kwargs, return_last_state=True)


def assert_close(actual, expected, rel, what):
    scale = max(1.0, expected.abs().max().item())
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rel * scale, f"{what}: max error {err:.3e} > {rel:.1e} * {scale:.3e}"


def compare(inputs, softplus, rel, ref_inputs=None, **kwargs):
    y, last, grads = outputs_and_grads(ours, inputs, softplus, **kwargs)
    y_ref, last_ref, grads_ref = outputs_and_grads(reference_scan, ref_inputs or inputs, softplus)
    assert y.dtype == inputs["u"].dtype
    assert_close(y, y_ref, rel, "out")
    assert_close(last, last_ref, rel, "last_state")
    assert set(grads) == set(grads_ref)
    for name in grads:
        assert_close(grads[name], grads_ref[name], rel, f"grad of {name}")


@pytest.mark.parametrize("n", [1, 16])
@pytest.mark.parametrize("length", [1, 7, 64, 1000, 4096])
def test_float64_all_options_against_loop(length, n):
    b = 1 if length >= 1000 else 2
    inputs = make_inputs(b, 4, n, length, groups=2, seed=length + n)
    compare(inputs, softplus=True, rel=1e-10)


@pytest.mark.parametrize("D, z, bias, softplus, grouped", list(itertools.product([False, True], repeat=5)))
def test_float64_option_combinations(D, z, bias, softplus, grouped):
    inputs = make_inputs(2, 6, 3, 37, groups=3 if grouped else None, D=D, z=z, bias=bias)
    compare(inputs, softplus=softplus, rel=1e-10)


@pytest.mark.parametrize("n", [1, 16])
@pytest.mark.parametrize("length", [1, 7, 64, 1000, 4096])
def test_float32_against_float64_loop(length, n):
    b = 1 if length >= 1000 else 2
    ref_inputs = make_inputs(b, 4, n, length, groups=2, seed=7 * length + n)
    inputs = {
        k: (v.detach().float().requires_grad_() if v is not None else None) for k, v in ref_inputs.items()
    }
    compare(inputs, softplus=True, rel=1e-4, ref_inputs=ref_inputs)


@pytest.mark.parametrize(
    "a_scale, delta_scale, delta_shift, softplus",
    [
        (1e4, 1.0, 5.0, False),  # |A|·Δ up to ~1e5: decays underflow to exactly 0
        (1.0, 1e-8, 1e-6, False),  # tiny Δ: decays ~1, states barely move
        (1.0, 1.0, -30.0, True),  # softplus of very negative numbers: Δ ~ 1e-13
        (1e3, 10.0, 20.0, True),  # large Δ after softplus and large |A|
    ],
)
@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_stress_parameters(a_scale, delta_scale, delta_shift, softplus, dtype, rel):
    ref_inputs = make_inputs(
        1, 4, 16, 300, groups=2, a_scale=a_scale, delta_scale=delta_scale, delta_shift=delta_shift
    )
    inputs = {
        k: (v.detach().to(dtype).requires_grad_() if v is not None else None) for k, v in ref_inputs.items()
    }
    y, last, grads = outputs_and_grads(ours, inputs, softplus)
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    compare(inputs, softplus=softplus, rel=rel, ref_inputs=ref_inputs)


def test_gradcheck_tiny():
    inputs = make_inputs(1, 4, 2, 6, groups=2, seed=3)
    names = list(inputs)

    def fn(*args):
        return selective_scan(
            **dict(zip(names, args)), delta_softplus=True, return_last_state=True, chunk_size=2
        )

    assert torch.autograd.gradcheck(fn, tuple(inputs[k] for k in names))


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 64])
def test_chunk_size_does_not_change_result(chunk_size):
    inputs = make_inputs(2, 4, 3, 23, seed=5)
    compare(inputs, softplus=True, rel=1e-10, chunk_size=chunk_size)


def test_separate_group_counts_for_B_and_C():
    inputs = make_inputs(1, 6, 3, 20, seed=2)
    gen = torch.Generator().manual_seed(9)
    inputs["B"] = torch.randn(1, 2, 3, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs["C"] = torch.randn(1, 3, 3, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    compare(inputs, softplus=False, rel=1e-10)


def test_return_types_and_low_precision():
    inputs = make_inputs(2, 4, 3, 16, dtype=torch.bfloat16)
    out = selective_scan(**inputs)
    assert out.shape == (2, 4, 16) and out.dtype == torch.bfloat16
    out, last = selective_scan(**inputs, return_last_state=True)
    assert last.shape == (2, 4, 3)
    out.float().sum().backward()
    assert inputs["u"].grad.dtype == torch.bfloat16


def test_no_grad_path_matches():
    inputs = make_inputs(1, 4, 3, 50)
    with torch.no_grad():
        y = selective_scan(**inputs, delta_softplus=True)
    y_ref, _ = reference_scan(
        **{k: v.detach() if v is not None else None for k, v in inputs.items()}, delta_softplus=True
    )
    assert_close(y, y_ref, 1e-10, "out")


def test_bad_input_messages():
    x = make_inputs(2, 4, 3, 10, D=False, z=False, bias=False)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(x["u"], x["delta"][..., :5], x["A"], x["B"], x["C"])
    with pytest.raises(ValueError, match="A must have shape"):
        selective_scan(x["u"], x["delta"], x["A"][:3], x["B"], x["C"])
    with pytest.raises(ValueError, match="B must have shape"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"][:, :2], x["C"])
    with pytest.raises(ValueError, match="divisible by groups"):
        selective_scan(x["u"], x["delta"], x["A"], torch.zeros(2, 3, 3, 10, dtype=torch.float64), x["C"])
    with pytest.raises(ValueError, match="D must have shape"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], D=torch.zeros(5))
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend="cuda")
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        selective_scan([1.0], x["delta"], x["A"], x["B"], x["C"])


@pytest.mark.skipif(mamba_ssm_available(), reason="mamba_ssm is installed")
def test_mamba_ssm_backend_without_package_names_install():
    x = make_inputs(1, 4, 3, 10)
    with pytest.raises(ImportError, match="pip install mamba-ssm"):
        selective_scan(**x, backend="mamba_ssm")
    # "auto" on CPU (or without the package) is the pure-PyTorch path.
    torch.testing.assert_close(selective_scan(**x), selective_scan(**x, backend="torch"))


@pytest.mark.slow
@pytest.mark.parametrize("length", [1000, 4096])
def test_float32_wider_slow(length):
    ref_inputs = make_inputs(2, 16, 16, length, groups=4, seed=11)
    inputs = {
        k: (v.detach().float().requires_grad_() if v is not None else None) for k, v in ref_inputs.items()
    }
    compare(inputs, softplus=True, rel=1e-4, ref_inputs=ref_inputs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("grouped", [False, True])
def test_parity_with_mamba_ssm_kernel(grouped):
    if not mamba_ssm_available():
        pytest.skip("needs mamba_ssm")
    inputs = make_inputs(2, 8, 16, 500, groups=2 if grouped else None, dtype=torch.float32)
    inputs = {k: (v.detach().cuda().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    y1, l1, g1 = outputs_and_grads(ours, inputs, True, backend="torch")
    y2, l2, g2 = outputs_and_grads(ours, inputs, True, backend="mamba_ssm")
    assert_close(y1, y2, 1e-3, "out")
    assert_close(l1, l2, 1e-3, "last_state")
    for name in g1:
        assert_close(g1[name], g2[name], 1e-3, f"grad of {name}")


@pytest.mark.gpu
def test_pure_torch_path_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    inputs = make_inputs(1, 4, 3, 40)
    cuda_inputs = {
        k: (v.detach().cuda().requires_grad_() if v is not None else None) for k, v in inputs.items()
    }
    y, last, grads = outputs_and_grads(ours, cuda_inputs, True, backend="torch")
    y_ref, last_ref, grads_ref = outputs_and_grads(reference_scan, inputs, True)
    assert_close(y.cpu(), y_ref, 1e-10, "out")
    assert_close(last.cpu(), last_ref, 1e-10, "last_state")
    for name in grads:
        assert_close(grads[name].cpu(), grads_ref[name], 1e-10, f"grad of {name}")
