"""optimize_for_inference: BatchNorm folding (checked against the eager model), channels-last, save refusal."""

import copy

import pytest
import torch
import torch.nn as nn

import smp_like
from smp_like.base.fusion import find_conv_bn_pairs, fold_batch_norms, fuse_conv_bn_weights
from smp_like.base.optimize import channels_last_helps

from perf_models import ARCHS, MIT_ARCHS, build, example


def _outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, tuple) else (out,)


def _norm_calls(model, x):
    """How many BatchNorm modules run in one forward pass (the graph that is actually used)."""
    calls = []
    handles = [m.register_forward_hook(lambda *a: calls.append(1)) for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    _outputs(model, x)
    for handle in handles:
        handle.remove()
    return len(calls)


def _check_fast_path(model, x, channels_last=True):
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = smp_like.optimize_for_inference(model, channels_last=channels_last)
    assert _norm_calls(model, x) > 0, "the test model must have BatchNorms to fold"
    assert _norm_calls(fast, x) == 0, "a BatchNorm survived in the fused forward pass"
    for a, b in zip(_outputs(model, x), _outputs(fast, x)):
        assert a.shape == b.shape and (b.is_contiguous() or not a.is_contiguous())  # never worse than eager
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    after = model.state_dict()  # the original is untouched
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return fast


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_path_equals_eager_resnet18_2d(arch, tmp_path):
    model = build(arch)
    fast = _check_fast_path(model, example(model))
    with pytest.raises(RuntimeError, match="optimize_for_inference.*Save the original"):
        fast.save_pretrained(tmp_path / "fused")
    assert not (tmp_path / "fused").exists()


@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in ("MeshNet", "ATrousNet")])
def test_fast_path_equals_eager_timm_2d(arch):
    model = build(arch, encoder="tu-test_resnet")
    _check_fast_path(model, example(model))


@pytest.mark.parametrize("arch", ["Unet", "DeepLabV3Plus", "MeshNet"])
def test_fast_path_equals_eager_3d(arch):
    model = build(arch, spatial_dims=3)
    _check_fast_path(model, example(model, size=16))


@pytest.mark.slow
@pytest.mark.parametrize("arch", [a for a in ARCHS if a not in ("Unet", "DeepLabV3Plus", "MeshNet")])
def test_fast_path_equals_eager_3d_every_architecture(arch):
    model = build(arch, spatial_dims=3)
    _check_fast_path(model, example(model, size=16))


@pytest.mark.parametrize("arch", MIT_ARCHS)
def test_fast_path_equals_eager_mit_b0(arch):
    model = build(arch, encoder="mit_b0", **MIT_ARCHS[arch])
    fast = smp_like.optimize_for_inference(model.eval())
    x = example(model, size=64)
    for a, b in zip(_outputs(model, x), _outputs(fast, x)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
    assert _norm_calls(fast, x) == 0  # the decoders' BatchNorms are folded (mit_b0 itself uses LayerNorm)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_flemme_cnn_encoder_is_fused(spatial_dims):
    model = build("Unet", encoder="cnn_small", spatial_dims=spatial_dims)
    _check_fast_path(model, example(model, size=32 if spatial_dims == 2 else 16))


def test_fold_matches_closed_form_and_transposed_and_1d():
    torch.manual_seed(0)
    for conv in (nn.Conv1d(3, 4, 3, bias=False), nn.ConvTranspose2d(3, 4, 2, stride=2), nn.Conv3d(3, 4, 1)):
        dims = conv.weight.dim() - 2
        bn = getattr(nn, f"BatchNorm{dims}d")(4).eval()
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
        x = torch.randn(2, 3, *([5] * dims))
        with torch.no_grad():
            y = conv(x)
            # Closed form, per channel: gamma * (y - mean) / sqrt(var + eps) + beta.
            shape = (1, -1) + (1,) * dims
            expected = (y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            expected = expected * bn.weight.view(shape) + bn.bias.view(shape)
            fuse_conv_bn_weights(conv, bn)
            torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-5)


def test_conv_output_used_twice_is_not_folded():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the pre-norm value is read again: folding would change it

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), Residual()).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.fill_(4.0)
    x = torch.randn(1, 3, 8, 8)
    assert find_conv_bn_pairs(model, x) == [("0", "1")]
    expected = model(x)
    fold_batch_norms(model, x)
    assert isinstance(model[1], nn.Identity) and isinstance(model[2].bn, nn.BatchNorm2d)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)


def test_timm_batchnorm_act_keeps_its_activation():
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4, act_layer=nn.ReLU)).eval()
    model[1].running_mean.fill_(0.3)
    x = torch.randn(1, 3, 8, 8)
    expected = model(x)
    fold_batch_norms(model, x)
    assert isinstance(model[1], nn.ReLU)
    torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)
    assert expected.min() == 0  # the activation ran


def test_training_mode_and_bad_arguments_are_refused():
    model = build("Linknet")
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(model.train(), example(model))
    with pytest.raises(TypeError, match="`fuse` must be True or False"):
        smp_like.optimize_for_inference(model, fuse="yes")
    with pytest.raises(TypeError, match="`model` must be a torch.nn.Module"):
        smp_like.optimize_for_inference("Unet")
    with pytest.raises(ValueError, match="example_inputs"):
        smp_like.optimize_for_inference(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)))


def test_optimized_copy_is_inference_only_and_refuses_push(tmp_path):
    model = build("Unet")
    fast = smp_like.optimize_for_inference(model, channels_last=False)
    assert not fast.training and not any(p.requires_grad for p in fast.parameters())
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match="push_to_hub refused"):
        fast.push_to_hub("user/repo")
    # A copy of the copy still refuses; the original still saves.
    with pytest.raises(RuntimeError, match="save_pretrained refused"):
        copy.deepcopy(fast).save_pretrained(tmp_path / "x")
    model.save_pretrained(tmp_path / "original")
    assert (tmp_path / "original" / "model.safetensors").exists()


def test_channels_last_layout_and_policy():
    model = build("Unet")
    fast = smp_like.optimize_for_inference(model, fuse=False)
    conv = fast.encoder.conv1
    assert channels_last_helps(torch.device("cpu"), 2) == torch.backends.mkldnn.is_available()
    if channels_last_helps(torch.device("cpu"), 2):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not channels_last_helps(torch.device("cpu"), 3) and channels_last_helps(torch.device("cuda"), 3)
    out = fast(example(model))
    assert out.is_contiguous()


@pytest.mark.slow
def test_compile_option_matches_eager():
    model = build("Unet")
    fast = smp_like.optimize_for_inference(model, compile=True)
    x = example(model)
    torch.testing.assert_close(_outputs(fast, x)[0], _outputs(model.eval(), x)[0], rtol=0, atol=1e-4)
