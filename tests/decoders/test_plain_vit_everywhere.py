"""Plain (non-hierarchical) timm ViTs in every decoder, not only DPT (SMP issue #1184).

``tu-test_vit`` (timm's tiny ViT, patch 16, all blocks at stride 16) becomes a multi-scale encoder through the
simple feature pyramid (transposed convs up to strides 4 and 8, identity at 16, pooling down to 32): each decoder
must build with it, return a mask of the input's size (any size: inputs are padded to the pyramid's stride), and
train one step (finite loss, gradients reaching the ViT, parameters changing).
"""

import pytest
import torch

import smp_like as smp

DECODERS = {
    "Unet": dict(decoder_channels=(32, 16, 16, 8)),
    "FPN": dict(decoder_pyramid_channels=32, decoder_segmentation_channels=32),
    "DeepLabV3Plus": dict(decoder_channels=32),
    "UPerNet": dict(decoder_channels=32),
    "Segformer": dict(decoder_segmentation_channels=32),
}


def build(arch):
    torch.manual_seed(0)
    depth = {"Unet": 4}.get(arch)
    kwargs = dict(DECODERS[arch], encoder_name="tu-test_vit", encoder_weights=None, classes=3)
    if depth is not None:
        kwargs["encoder_depth"] = depth
    return getattr(smp, arch)(**kwargs)


@pytest.mark.parametrize("arch", list(DECODERS))
def test_plain_vit_gives_masks_of_the_input_size(arch):
    model = build(arch).eval()
    assert model.encoder.reductions[-1] in (16, 32) and len(set(model.encoder.reductions[2:])) > 1
    with torch.no_grad():
        for size in ((64, 64), (70, 90)):
            assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size)


@pytest.mark.parametrize("arch", list(DECODERS))
def test_plain_vit_trains_one_step(arch):
    model = build(arch).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 3, (2, 64, 64))
    vit_weight = next(p for n, p in model.encoder.named_parameters() if "blocks" in n and n.endswith("weight"))
    before = vit_weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), target)
    assert torch.isfinite(loss)
    loss.backward()
    assert vit_weight.grad is not None and vit_weight.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(vit_weight.detach(), before)
