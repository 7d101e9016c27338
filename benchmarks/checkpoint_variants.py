"""Where gradient checkpointing's memory goes: which segments, and which torch checkpoint variant.

A 3D Unet-resnet18 train step (batch 1), peak of live tensors counted exactly (``tensor_memory.peak_tensor_mib``)
and step time relative to the plain model (median of paired rounds, 1 thread):

- ``whole blocks``: each encoder stage and decoder block checkpointed as one unit with plain
  ``torch.utils.checkpoint`` (what ``set_gradient_checkpointing`` did first);
- ``segments``: ``set_gradient_checkpointing(True)`` today: decoder blocks in two halves, the ResNet stem and
  max-pool as segments of their own, the decoder's last segment plain (see ``smp_like/base/checkpointing.py``);
- ``whole blocks, use_reentrant=True``: the reentrant variant, which an earlier reading blamed
  (it is no better: the non-reentrant "+126 MiB" measured before was the counter counting parameters' ``detach``
  aliases as new memory, fixed in ``tensor_memory.py``).

    PYTHONPATH=$PWD python benchmarks/checkpoint_variants.py [--size 96] [--rounds 4]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import torch
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from tensor_memory import peak_tensor_mib  # noqa: E402

import smp_like  # noqa: E402


def make() -> torch.nn.Module:
    torch.manual_seed(0)
    return smp_like.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2, spatial_dims=3).train()


def whole_blocks(model: torch.nn.Module, reentrant: bool) -> torch.nn.Module:
    blocks = [getattr(model.encoder, f"layer{i}") for i in range(1, 5)] + list(model.decoder.blocks)
    for block in blocks:
        forward = block.forward

        def run(*args, _forward=forward):
            if reentrant and not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
                return _forward(*args)  # reentrant checkpointing would drop this block's parameter gradients
            return checkpoint(_forward, *args, use_reentrant=reentrant)

        block.forward = run
    return model


def step(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model(x).mean().backward()
        model.zero_grad(set_to_none=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(1, 1, args.size, args.size, args.size)
    segmented = make()
    segmented.set_gradient_checkpointing(True)
    models: Dict[str, torch.nn.Module] = {
        "plain": make(),
        "whole blocks (use_reentrant=False)": whole_blocks(make(), reentrant=False),
        "whole blocks (use_reentrant=True)": whole_blocks(make(), reentrant=True),
        "segments (set_gradient_checkpointing)": segmented,
    }
    peaks = {name: peak_tensor_mib(step(model, x)) for name, model in models.items()}
    times: Dict[str, list] = {name: [] for name in models}
    for i in range(args.rounds):
        for name in list(models) if i % 2 == 0 else list(models)[::-1]:
            start = time.perf_counter()
            step(models[name], x)()
            times[name].append(time.perf_counter() - start)
    print(f"3D Unet-resnet18, 1x1x{args.size}^3 train step, 1 thread, {args.rounds} rounds\n")
    print("| variant | peak live-tensor MiB | peak / plain | step time / plain [min-max] |\n| --- | --- | --- | --- |")
    for name in models:
        ratios = [t / p for t, p in zip(times[name], times["plain"])]
        print(f"| {name} | {peaks[name]:.1f} | {peaks[name] / peaks['plain']:.2f} | {statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] |")


if __name__ == "__main__":
    main()
