"""Why gradient checkpointing raises the step's peak memory here: non-reentrant checkpointing itself does it.

The same 3D Unet-resnet18 train step (1x1x48^3, batch 1) measured three ways with the exact peak of live tensors
(``tensor_memory.peak_tensor_mib``): plain; ``torch.utils.checkpoint`` (no smp_like code) around encoder layer1..4
with ``use_reentrant=False``; the same with ``use_reentrant=True``. If the non-reentrant row alone is higher by about
the checkpointed layers' parameter size, the extra memory is PyTorch's non-reentrant path keeping a second copy of
those parameter gradients, not smp_like's wrapper.

    PYTHONPATH=$PWD python benchmarks/checkpoint_variants.py
"""

import sys
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from tensor_memory import peak_tensor_mib  # noqa: E402

import smp_like  # noqa: E402

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def make() -> torch.nn.Module:
    torch.manual_seed(0)
    return smp_like.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2, spatial_dims=3).train()


def step(model: torch.nn.Module, x: torch.Tensor):
    def run() -> None:
        model(x).mean().backward()
        model.zero_grad(set_to_none=True)

    return run


def main() -> None:
    torch.set_num_threads(1)
    x = torch.randn(1, 1, 48, 48, 48)
    rows = []
    plain = make()
    layer_params = sum(p.numel() for n in LAYERS for p in getattr(plain.encoder, n).parameters()) * 4 / 2**20
    rows.append(("plain", peak_tensor_mib(step(plain, x))))
    for reentrant in (False, True):
        model = make()
        for name in LAYERS:
            layer = getattr(model.encoder, name)
            layer.forward = (lambda f: (lambda t: checkpoint(f, t, use_reentrant=reentrant)))(layer.forward)
        rows.append((f"torch checkpoint on layer1..4, use_reentrant={reentrant}", peak_tensor_mib(step(model, x))))
    print(f"3D Unet-resnet18, 1x1x48^3 train step; parameters of layer1..4: {layer_params:.0f} MiB\n")
    print("| variant | peak live-tensor MiB |\n| --- | --- |")
    for name, mib in rows:
        print(f"| {name} | {mib:.1f} |")


if __name__ == "__main__":
    main()
