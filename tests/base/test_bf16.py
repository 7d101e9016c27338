"""bf16 autocast: every architecture trains one step with a finite loss and finite gradients (CPU; CUDA too where a
GPU is present)."""

import pytest
import torch

from perf_models import ARCHS, MIT_ARCHS, build, example, loss_of


def _bf16_step(model, x, device="cpu"):
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with torch.autocast(device, dtype=torch.bfloat16):
        out = model(x)
        loss = loss_of(out)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights
    optimizer.step()
    return loss


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_train_step_2d(arch):
    model = build(arch)
    loss = _bf16_step(model, example(model, batch=2))
    # Close to the fp32 loss of the same weights and input (bf16 keeps ~3 significant digits).
    fp32 = loss_of(build(arch).train()(example(model, batch=2)))
    assert abs(loss.item() - fp32.item()) <= 0.05 * abs(fp32.item()) + 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA autocast needs a GPU (this machine has none)")
def test_bf16_train_step_cuda_every_architecture():
    for arch in ARCHS:  # one test, one skip line on CPU-only machines
        model = build(arch).cuda()
        x = example(model, batch=2).cuda()
        loss = _bf16_step(model, x, device="cuda")
        fp32 = loss_of(build(arch).cuda().train()(x))
        assert abs(loss.item() - fp32.item()) <= 0.05 * abs(fp32.item()) + 1e-3, arch


@pytest.mark.parametrize("arch", ["Unet", "DeepLabV3Plus"])
def test_bf16_train_step_3d(arch):
    model = build(arch, spatial_dims=3)
    _bf16_step(model, example(model, size=16, batch=2))


@pytest.mark.parametrize("arch", ["Segformer"])
def test_bf16_train_step_mit_b0(arch):
    model = build(arch, encoder="mit_b0", **MIT_ARCHS[arch])
    _bf16_step(model, example(model, size=64, batch=2))


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in ("Unet", "DeepLabV3Plus")])
def test_bf16_train_step_3d_every_architecture(arch):
    model = build(arch, spatial_dims=3)
    _bf16_step(model, example(model, size=16, batch=2))


def test_scans_and_attention_softmax_stay_float32_under_autocast():
    """The selective scan / SSD recurrences and the attention softmax are autocast-free regions: the same fp32
    inputs give the fp32 result (to rounding) inside bf16 autocast, not a bf16-rounded one."""
    from smp_like.ops.selective_scan import selective_scan
    from smp_like.ops.ssd import ssd_scan

    gen = torch.Generator().manual_seed(0)
    b, d, n, length = 1, 4, 3, 64
    scan = dict(u=torch.randn(b, d, length, generator=gen), delta=torch.randn(b, d, length, generator=gen),
                A=-torch.rand(d, n, generator=gen) - 0.1, B=torch.randn(b, n, length, generator=gen),
                C=torch.randn(b, n, length, generator=gen), delta_softplus=True)
    h, p, g = 2, 3, 1
    ssd = dict(x=torch.randn(b, length, h, p, generator=gen), dt=torch.randn(b, length, h, generator=gen),
               A=-torch.rand(h, generator=gen) - 0.1, B=torch.randn(b, length, g, n, generator=gen),
               C=torch.randn(b, length, g, n, generator=gen), chunk_size=16, dt_softplus=True)
    for fn, kwargs in ((selective_scan, scan), (ssd_scan, ssd)):
        reference = fn(**kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = fn(**kwargs)
        assert autocast.dtype == torch.float32
        torch.testing.assert_close(autocast, reference, rtol=1e-5, atol=1e-5)
