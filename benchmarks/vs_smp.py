"""smp_like vs segmentation_models_pytorch, side by side in one run.

1. Unet-resnet34 forward (eval, no_grad, batch 2, 3x256x256), the two models alternating in one process with the
   same weights; prints each median and the ratio smp_like / SMP (target <= 1.00).
2. ``import smp_like``, ``import segmentation_models_pytorch`` and ``import torch``, each in fresh processes,
   alternating; prints medians and the ratio to torch (target: smp_like within 1.2x of torch).

Usage: python benchmarks/vs_smp.py [--repeats 30] [--import-repeats 7] [--threads N]
"""

import argparse
import statistics
import subprocess
import sys
import time

import torch


def time_forward(model, x, repeats):
    with torch.no_grad():
        start = time.perf_counter()
        model(x)
        return time.perf_counter() - start


def bench_forward(repeats: int, threads: int) -> None:
    import segmentation_models_pytorch as smp_ref

    import smp_like

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    theirs = smp_ref.Unet("resnet34", encoder_weights=None).eval()
    ours = smp_like.Unet("resnet34", encoder_weights=None).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        max_diff = (ours(x) - theirs(x)).abs().max().item()
    for _ in range(3):  # warm-up both
        time_forward(ours, x, 1)
        time_forward(theirs, x, 1)
    ours_times, theirs_times = [], []
    for i in range(repeats):
        # Alternate which goes first so drift in machine load hits both equally.
        pair = [(ours, ours_times), (theirs, theirs_times)]
        for model, sink in (pair if i % 2 == 0 else pair[::-1]):
            sink.append(time_forward(model, x, 1))
    a, b = statistics.median(ours_times), statistics.median(theirs_times)
    print(f"forward Unet-resnet34 eval no_grad 2x3x256x256, {threads} thread(s), {repeats} runs each "
          f"(max |diff| {max_diff:.1e})")
    print(f"  smp_like median {a * 1e3:8.1f} ms")
    print(f"  SMP      median {b * 1e3:8.1f} ms")
    print(f"  ratio smp_like/SMP = {a / b:.3f}  (target <= 1.00)")


def import_time(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_imports(repeats: int) -> None:
    # `import smp_like` alone does not even import torch (everything is lazy), so the fair line is
    # "smp_like + torch"; "smp_like.Unet" also resolves the model modules, which is what a user's first line costs.
    statements = {
        "torch": "import torch",
        "smp_like": "import smp_like",
        "smp_like + torch": "import smp_like, torch",
        "smp_like.Unet": "import smp_like; smp_like.Unet",
        "segmentation_models_pytorch": "import segmentation_models_pytorch",
    }
    times = {name: [] for name in statements}
    for _ in range(repeats):
        for name, statement in statements.items():
            times[name].append(import_time(statement))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"import time, fresh processes, {repeats} runs each (median)")
    for name, value in medians.items():
        print(f"  import {name:<28} {value * 1e3:8.1f} ms   ratio to torch {value / medians['torch']:.3f}")
    worst = max(medians["smp_like + torch"], medians["smp_like.Unet"])
    print(f"  (smp_like with torch, or with smp_like.Unet resolved)/torch = {worst / medians['torch']:.3f} "
          f"(target <= 1.2); vs SMP = {worst / medians['segmentation_models_pytorch']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--import-repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    bench_forward(args.repeats, args.threads)
    bench_imports(args.import_repeats)


if __name__ == "__main__":
    main()
