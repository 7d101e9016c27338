"""smp_like vs segmentation_models_pytorch, side by side in one run, reported as ratios.

1. Forward (eval, no_grad) and one training step (train mode, forward + backward of the mean output) for each
   architecture with resnet34, batch 2, 3x256x256. Both libraries' models hold the same weights and alternate
   in one process (the order flips every round, so load drift hits both). Reports median latency and peak extra
   resident memory (Linux: /proc/self/clear_refs resets the high-water mark; free heap is trimmed first), each
   with the ratio smp_like / SMP (target <= 1.00).
2. ``import`` times in fresh processes (medians), as ratios to ``import torch``.

Usage:
    python benchmarks/vs_smp.py                      # Unet forward + imports (issue 2's measurement)
    python benchmarks/vs_smp.py --all --write benchmarks/results.md   # every architecture, table to a file
"""

import argparse
import ctypes
import gc
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

ARCHITECTURES = ["Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "PAN",
                 "UPerNet", "Segformer"]


def _status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn: Callable[[], None]) -> Dict[str, Optional[float]]:
    """Seconds and peak extra resident memory (MiB) of one call of ``fn``."""
    _trim_heap()
    baseline = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM (peak RSS) to the current RSS
        can_measure = baseline is not None
    except OSError:
        can_measure = False
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if can_measure else None
    return {"s": seconds, "mib": (peak - baseline) / 1024 if peak is not None else None}


def _forward(model, x):
    def run():
        with torch.no_grad():
            model(x)

    return run


def _train_step(model, x):
    def run():
        out = model(x)
        loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.float().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def bench_architecture(arch: str, repeats: int) -> Dict[str, float]:
    import segmentation_models_pytorch as smp_ref

    import smp_like

    torch.manual_seed(0)
    theirs = getattr(smp_ref, arch)("resnet34", encoder_weights=None)
    ours = getattr(smp_like, arch)("resnet34", encoder_weights=None)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 256, 256)
    result = {}
    for mode in ("forward", "train"):
        for model in (ours, theirs):
            model.train(mode == "train")
        make = _forward if mode == "forward" else _train_step
        runs = {"ours": make(ours, x), "theirs": make(theirs, x)}
        for run in runs.values():  # warm-up
            run()
        samples: Dict[str, List[Dict]] = {"ours": [], "theirs": []}
        for i in range(repeats):
            order = ["ours", "theirs"] if i % 2 == 0 else ["theirs", "ours"]
            for name in order:
                samples[name].append(measure(runs[name]))
        for name in ("ours", "theirs"):
            result[f"{mode}_{name}_ms"] = statistics.median(s["s"] for s in samples[name]) * 1e3
            mems = [s["mib"] for s in samples[name] if s["mib"] is not None]
            result[f"{mode}_{name}_mib"] = statistics.median(mems) if mems else float("nan")
        result[f"{mode}_time_ratio"] = result[f"{mode}_ours_ms"] / result[f"{mode}_theirs_ms"]
        result[f"{mode}_mem_ratio"] = result[f"{mode}_ours_mib"] / result[f"{mode}_theirs_mib"]
    return result


def format_table(results: Dict[str, Dict[str, float]], threads: int, repeats: int) -> str:
    lines = [
        f"resnet34, batch 2, 3x256x256, CPU, {threads} thread(s), median of {repeats} alternating runs; "
        "ratio = smp_like / SMP (target <= 1.00)",
        "",
        "| architecture | forward ms (ours / SMP) | forward time ratio | forward peak MiB (ours / SMP) | forward mem ratio "
        "| train step ms (ours / SMP) | train time ratio | train peak MiB (ours / SMP) | train mem ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arch, r in results.items():
        lines.append(
            f"| {arch} | {r['forward_ours_ms']:.0f} / {r['forward_theirs_ms']:.0f} | {r['forward_time_ratio']:.3f} "
            f"| {r['forward_ours_mib']:.0f} / {r['forward_theirs_mib']:.0f} | {r['forward_mem_ratio']:.3f} "
            f"| {r['train_ours_ms']:.0f} / {r['train_theirs_ms']:.0f} | {r['train_time_ratio']:.3f} "
            f"| {r['train_ours_mib']:.0f} / {r['train_theirs_mib']:.0f} | {r['train_mem_ratio']:.3f} |"
        )
    return "\n".join(lines)


def import_time(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def bench_imports(repeats: int) -> str:
    # `import smp_like` alone does not import torch (everything is lazy), so the fair lines are "smp_like + torch"
    # and "smp_like.Unet" (which also resolves the model modules): what a user's first line costs.
    statements = {
        "torch": "import torch",
        "smp_like": "import smp_like",
        "smp_like + torch": "import smp_like, torch",
        "smp_like.Unet": "import smp_like; smp_like.Unet",
        "segmentation_models_pytorch": "import segmentation_models_pytorch",
    }
    times: Dict[str, List[float]] = {name: [] for name in statements}
    for _ in range(repeats):
        for name, statement in statements.items():
            times[name].append(import_time(statement))
    medians = {name: statistics.median(values) for name, values in times.items()}
    lines = [f"import time, fresh processes, median of {repeats}"]
    for name, value in medians.items():
        lines.append(f"  import {name:<28} {value * 1e3:8.1f} ms   ratio to torch {value / medians['torch']:.3f}")
    worst = max(medians["smp_like + torch"], medians["smp_like.Unet"])
    lines.append(f"  worst smp_like line / torch = {worst / medians['torch']:.3f} (target <= 1.2); "
                 f"/ SMP = {worst / medians['segmentation_models_pytorch']:.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every architecture, not only Unet")
    parser.add_argument("--arch", nargs="*", help="these architectures only")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--import-repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--write", help="also write the results as markdown to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    archs = args.arch or (ARCHITECTURES if args.all else ["Unet"])
    results = {}
    for arch in archs:
        results[arch] = bench_architecture(arch, args.repeats)
        print(f"{arch}: forward ratio {results[arch]['forward_time_ratio']:.3f}, "
              f"train ratio {results[arch]['train_time_ratio']:.3f}", flush=True)
    table = format_table(results, args.threads, args.repeats)
    imports = bench_imports(args.import_repeats) if args.import_repeats > 0 else ""
    print(table)
    print(imports)
    if args.write:
        with open(args.write, "w") as handle:
            handle.write(f"# smp_like vs SMP\n\nCommand: `python {' '.join(sys.argv)}`\n\n{table}\n\n```\n{imports}\n```\n")


if __name__ == "__main__":
    main()
