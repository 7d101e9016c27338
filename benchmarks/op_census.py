"""Which aten operators (and how many) one forward or train step of each library runs, side by side.

Two models with the same weights that run the same operator multiset on the same shapes do the same arithmetic;
a time ratio away from 1.00 between them is then measurement noise or memory layout, not extra work. Used to
explain the Segformer train-step outlier of results.md (see benchmarks/performance_results.md).

Usage: python benchmarks/op_census.py Segformer DeepLabV3Plus
"""

import collections
import sys
from typing import Any, Callable, Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class OpCensus(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))[:2]
        self.ops[(str(func), shapes)] += 1
        return func(*args, **(kwargs or {}))


def census(fn: Callable[[], Any]) -> Counter:
    with OpCensus() as c:
        fn()
    return c.ops


def main() -> None:
    import segmentation_models_pytorch as smp_ref

    import smp_like

    x = torch.randn(2, 3, 256, 256)
    for arch in sys.argv[1:] or ["Segformer"]:
        torch.manual_seed(0)
        theirs = getattr(smp_ref, arch)("resnet34", encoder_weights=None)
        ours = getattr(smp_like, arch)("resnet34", encoder_weights=None)
        ours.load_state_dict(theirs.state_dict())
        for mode in ("forward", "train"):
            def step(m):
                def run():
                    m.train(mode == "train")
                    if mode == "forward":
                        with torch.inference_mode():
                            m(x)
                    else:
                        m(x).mean().backward()
                        m.zero_grad(set_to_none=True)
                return run
            a, b = census(step(ours)), census(step(theirs))
            only_ours, only_theirs = a - b, b - a
            print(f"{arch} {mode}: {sum(a.values())} ops (smp_like) vs {sum(b.values())} (SMP); "
                  f"only in smp_like: {dict(only_ours) or 'none'}; only in SMP: {dict(only_theirs) or 'none'}")


if __name__ == "__main__":
    main()
