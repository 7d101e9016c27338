"""Encoder forward latency, smp_like vs segmentation_models_pytorch, side by side in one run, as ratios.

For each encoder (batch 2, 3x256x256, eval mode, no_grad): both libraries build it with random weights, ours
loads SMP's state dict (so they compute the same thing), and the two alternate (order flipped every round) for
``--repeats`` rounds after a warm-up. Reports median latency and the ratio smp_like / SMP (target <= 1.00).

Usage:
    python benchmarks/encoders_vs_smp.py
    python benchmarks/encoders_vs_smp.py --write benchmarks/encoder_results.md
"""

import argparse
import statistics
import sys
import time
import warnings
from typing import Dict, List

import torch

ENCODERS = ["mobilenet_v2", "efficientnet-b0", "densenet121", "mit_b0", "resnet50"]


def bench_encoder(name: str, repeats: int) -> Dict[str, float]:
    import segmentation_models_pytorch as smp_ref

    from smp_like.encoders import get_encoder

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = smp_ref.encoders.get_encoder(name, weights=None).eval()
    ours = get_encoder(name).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 256, 256)
    models = {"ours": ours, "theirs": theirs}
    with torch.no_grad():
        for model in models.values():  # warm-up
            model(x)
        samples: Dict[str, List[float]] = {"ours": [], "theirs": []}
        for i in range(repeats):
            for side in (("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")):
                start = time.perf_counter()
                models[side](x)
                samples[side].append(time.perf_counter() - start)
    ours_ms = statistics.median(samples["ours"]) * 1e3
    theirs_ms = statistics.median(samples["theirs"]) * 1e3
    return {"ours_ms": ours_ms, "theirs_ms": theirs_ms, "ratio": ours_ms / theirs_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="*", default=ENCODERS)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--write", help="also write the table as markdown to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        f"batch 2, 3x256x256, eval, CPU, {args.threads} thread(s), median of {args.repeats} alternating runs; "
        "ratio = smp_like / SMP (target <= 1.00)",
        "",
        "| encoder | forward ms (ours / SMP) | ratio |",
        "| --- | --- | --- |",
    ]
    for name in args.encoders:
        r = bench_encoder(name, args.repeats)
        print(f"{name}: {r['ours_ms']:.1f} / {r['theirs_ms']:.1f} ms, ratio {r['ratio']:.3f}", flush=True)
        lines.append(f"| {name} | {r['ours_ms']:.1f} / {r['theirs_ms']:.1f} | {r['ratio']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        with open(args.write, "w") as handle:
            handle.write(f"# Encoders: smp_like vs SMP\n\nCommand: `python {' '.join(sys.argv)}`\n\n{table}\n")


if __name__ == "__main__":
    main()
