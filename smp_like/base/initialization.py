"""Initial weights of decoders and heads (encoders bring their own or pretrained ones)."""

import torch.nn as nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd


def initialize_decoder(module: nn.Module) -> None:
    """He-uniform convs (ReLU follows them), unit norms, Xavier linears, zero biases."""
    for m in module.modules():
        if isinstance(m, _ConvNd):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (_NormBase, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def initialize_head(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for the output layers (no ReLU follows them)."""
    for m in module.modules():
        if isinstance(m, (_ConvNd, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
