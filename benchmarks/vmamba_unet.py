"""Forward + backward time of ``smp.Unet(encoder_name="vmamba")`` against the plain resnet18 Unet, side by
side.

Both models get the same input (2x3x128x128 by default) on the same device in one run; the script prints the
median of ``--runs`` timed iterations (after ``--warmup`` untimed ones) and the ratio vmamba / resnet18.

    python benchmarks/vmamba_unet.py --runs 5 --threads 1

Results: benchmarks/vmamba_unet_results.md.
"""

import argparse
import statistics
import time
from typing import Dict, List

import torch

import smp_like as smp
from smp_like.encoders import encoders
from smp_like.encoders.flemme_vmamba import flemme_vmamba_encoders


def time_forward_backward(model: torch.nn.Module, x: torch.Tensor, runs: int, warmup: int) -> List[float]:
    """Seconds per forward + backward (loss = mean of the output), ``runs`` timed after ``warmup`` untimed."""
    times = []
    for i in range(warmup + runs):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        model(x).mean().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name, entry in flemme_vmamba_encoders.items():  # until the family is wired into the registry
        encoders.setdefault(name, entry)

    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    models = {
        "resnet18": smp.Unet(encoder_name="resnet18", encoder_weights=None),
        "vmamba": smp.Unet(encoder_name="vmamba", encoder_weights=None),
    }
    medians: Dict[str, float] = {}
    print(f"input {tuple(x.shape)}, device {args.device}, threads {args.threads}, torch {torch.__version__}")
    for name, model in models.items():
        model = model.to(args.device).train()
        params = sum(p.numel() for p in model.parameters())
        times = time_forward_backward(model, x, args.runs, args.warmup)
        medians[name] = statistics.median(times)
        print(
            f"Unet({name:8s}) params {params / 1e6:6.2f} M  "
            f"forward+backward median {medians[name] * 1e3:8.1f} ms "
            f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in times)})"
        )
    print(f"ratio vmamba / resnet18: {medians['vmamba'] / medians['resnet18']:.2f}x")


if __name__ == "__main__":
    main()
