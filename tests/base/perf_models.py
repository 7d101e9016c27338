"""Tiny configurations of every architecture, shared by the fast-path, checkpointing and bf16 tests."""

import copy

import torch

import smp_like as smp

# encoder_depth 3 and narrow decoders: each model builds and runs a 32x32 (or 16^3) batch in well under a second.
TINY = {
    "Unet": dict(encoder_depth=3, decoder_channels=(16, 8, 8)),
    "UnetPlusPlus": dict(encoder_depth=3, decoder_channels=(16, 8, 8)),
    "MAnet": dict(encoder_depth=3, decoder_channels=(16, 8, 8), decoder_pab_channels=8),
    "Linknet": dict(encoder_depth=3),
    "FPN": dict(encoder_depth=3, decoder_pyramid_channels=16, decoder_segmentation_channels=32),
    "PSPNet": dict(encoder_depth=3, psp_out_channels=16),
    "DeepLabV3": dict(encoder_depth=3, decoder_channels=16),
    "DeepLabV3Plus": dict(encoder_depth=4, decoder_channels=16),
    "PAN": dict(decoder_channels=16),
    "UPerNet": dict(encoder_depth=3, decoder_channels=16),
    "Segformer": dict(encoder_depth=3, decoder_segmentation_channels=16),
    "HSeM": dict(encoder_depth=3, decoder_channels=(16, 8, 8)),
    "StackedHourglass": dict(encoder_depth=3, num_stacks=2, decoder_channels=(16,)),
    "MeshNet": dict(encoder_name=None),
    "ATrousNet": dict(encoder_name=None),
    "ClM": dict(encoder_depth=3),
}
ARCHS = list(TINY)
# mit_b0 where the architecture accepts it (2D only, all five stages, inputs of at least 64x64).
MIT_ARCHS = {
    "Unet": dict(encoder_depth=5, decoder_channels=(16, 16, 8, 8, 8)),
    "FPN": dict(encoder_depth=5),
    "Segformer": dict(encoder_depth=5),
}


def build(arch, encoder="resnet18", spatial_dims=2, **kwargs):
    """A tiny ``arch`` with random weights and randomised BatchNorm statistics (so folding has work to do); a
    fresh copy of a cached build (building resnet18 dominates the cost of these tests)."""
    key = (arch, encoder, spatial_dims, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = _build(arch, encoder, spatial_dims, **kwargs)
    return copy.deepcopy(_CACHE[key])


_CACHE = {}


def _build(arch, encoder, spatial_dims, **kwargs):
    config = dict(TINY[arch], encoder_weights=None, spatial_dims=spatial_dims)
    if config.get("encoder_name", "") is None:
        config.pop("encoder_weights")
    else:
        config.setdefault("encoder_name", encoder)
    config.update(kwargs)
    torch.manual_seed(0)
    model = getattr(smp, arch)(**config)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            if module.weight is not None:
                module.weight.data.uniform_(0.5, 1.5, generator=generator)
                module.bias.data.uniform_(-0.5, 0.5, generator=generator)
    return model


def example(model, size=32, batch=1):
    in_channels = model.encoder.in_channels if hasattr(model, "encoder") else 3
    dims = getattr(model, "spatial_dims", 2)
    torch.manual_seed(2)
    return torch.randn(batch, in_channels, *([size] * dims))


def loss_of(out):
    """A scalar from any output structure (mask, (mask, label), (main, side outputs))."""
    if isinstance(out, (tuple, list)):
        return sum(loss_of(o) for o in out)
    return out.float().square().mean()
