"""smp_like vs segmentation_models_pytorch, side by side in one run, reported as ratios.

1. Forward (eval, ``torch.inference_mode``) and one training step (train mode, forward + backward of the mean
   output) for each architecture with resnet34, batch 2, 3x256x256. Both libraries' models hold the same weights,
   get the same input tensor and the same mode, are warmed up the same number of calls (interleaved), and alternate
   in one process (the order flips every round). The time ratio is the median of the per-round ratios
   ours_i / SMP_i (each round's pair ran back to back, so load that drifts over seconds cancels), reported with
   its spread (25th-75th percentile); a row whose spread is wider than +-5 % is flagged "noisy". The load
   average at start and end is written in the header: numbers taken on a loaded machine say so.
   Peak extra resident memory (Linux: /proc/self/clear_refs resets the high-water mark; free heap is trimmed
   first) is measured the same way (ratio smp_like / SMP, target <= 1.00).

   Why: an earlier version (one warm-up call, medians of each side taken separately, no spread, two OpenMP
   threads on a 2-core machine shared with other jobs) reported FPN and PSPNet as 1.7-3.7x faster than SMP. Rerun
   with the same code, the same architectures came out anywhere from 0.74 to 1.03 from run to run; side by side
   on a quiet machine they are ~1.0. The artefact was contention: with as many threads as cores, an OpenMP
   parallel region waits for its slowest thread, so a descheduled thread stalls whichever model is running, and
   separate medians over few rounds do not cancel bursts that hit one side more often.
2. ``import`` times in fresh processes (medians), as ratios to ``import torch``.

Usage:
    python benchmarks/vs_smp.py                      # Unet forward + imports (issue 2's measurement)
    python benchmarks/vs_smp.py --all --write benchmarks/results.md   # every architecture, table to a file
"""

import argparse
import ctypes
import os
import gc
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_memory import peak_tensor_mib  # noqa: E402

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
        with torch.inference_mode():
            model(x)

    return run


def _train_step(model, x):
    def run():
        out = model(x)
        loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.float().mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def _quantile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def compare(runs: Dict[str, Callable[[], None]], repeats: int, warmup: int) -> Dict[str, float]:
    """Time two callables fairly: interleaved warm-up, alternating order, paired per-round ratios with spread.

    ``runs`` has keys "ours" and "theirs". Returns medians (ms, MiB) of each side and the median, 25th and 75th
    percentile of the per-round ratios ours / theirs.
    """
    for _ in range(warmup):
        for name in ("ours", "theirs"):
            runs[name]()
    samples: Dict[str, List[Dict]] = {"ours": [], "theirs": []}
    for i in range(repeats):
        order = ["ours", "theirs"] if i % 2 == 0 else ["theirs", "ours"]
        for name in order:
            samples[name].append(measure(runs[name]))
    ratios = [a["s"] / b["s"] for a, b in zip(samples["ours"], samples["theirs"])]
    result = {"ratio": statistics.median(ratios), "ratio_p25": _quantile(ratios, 0.25),
              "ratio_p75": _quantile(ratios, 0.75)}
    for name in ("ours", "theirs"):
        result[f"{name}_ms"] = statistics.median(s["s"] for s in samples[name]) * 1e3
        mems = [s["mib"] for s in samples[name] if s["mib"] is not None]
        result[f"{name}_mib"] = statistics.median(mems) if mems else float("nan")
    result["mem_ratio"] = result["ours_mib"] / result["theirs_mib"]
    return result


def bench_architecture(arch: str, repeats: int, warmup: int = 3, size: int = 256) -> Dict[str, float]:
    import segmentation_models_pytorch as smp_ref

    import smp_like

    torch.manual_seed(0)
    theirs = getattr(smp_ref, arch)("resnet34", encoder_weights=None)
    ours = getattr(smp_like, arch)("resnet34", encoder_weights=None)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, size, size)
    result = {}
    for mode in ("forward", "train"):
        for model in (ours, theirs):
            model.train(mode == "train")
        make = _forward if mode == "forward" else _train_step
        r = compare({"ours": make(ours, x), "theirs": make(theirs, x)}, repeats, warmup)
        for key, value in r.items():
            result[f"{mode}_{key}"] = value
        result[f"{mode}_time_ratio"] = r["ratio"]
        # Resident-memory peaks move by +-5 % with heap state; the live-tensor peak is exact and load-independent.
        for name, model in (("ours", ours), ("theirs", theirs)):
            result[f"{mode}_{name}_tensor_mib"] = peak_tensor_mib(make(model, x))
    return result


def _spread(r: Dict[str, float], mode: str) -> str:
    low, high = r[f"{mode}_ratio_p25"], r[f"{mode}_ratio_p75"]
    flag = " noisy" if high - low > 0.10 else ""
    return f"{r[mode + '_time_ratio']:.3f} [{low:.2f}-{high:.2f}]{flag}"


def load_average() -> str:
    try:
        with open("/proc/loadavg") as handle:
            return handle.read().split()[0]
    except OSError:
        return "n/a"


def format_table(results: Dict[str, Dict[str, float]], threads: int, repeats: int, size: int = 256,
                 loads: str = "") -> str:
    lines = [
        f"resnet34, batch 2, 3x{size}x{size}, CPU, {threads} thread(s), {repeats} alternating rounds after an "
        "interleaved warm-up; time ratio = median of per-round ratios smp_like / SMP [25th-75th percentile] "
        f"(target <= 1.00); load average {loads} (cores: {os.cpu_count()})",
        "",
        "| architecture | forward ms (ours / SMP) | forward time ratio | forward peak RSS MiB (ours / SMP) | ratio "
        "| forward live-tensor MiB (exact) | ratio | train step ms (ours / SMP) | train time ratio "
        "| train peak RSS MiB (ours / SMP) | ratio | train live-tensor MiB (exact) | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arch, r in results.items():
        cells = [arch]
        for mode in ("forward", "train"):
            tensors = (r[f"{mode}_ours_tensor_mib"], r[f"{mode}_theirs_tensor_mib"])
            cells += [f"{r[mode + '_ours_ms']:.0f} / {r[mode + '_theirs_ms']:.0f}", _spread(r, mode),
                      f"{r[mode + '_ours_mib']:.0f} / {r[mode + '_theirs_mib']:.0f}", f"{r[mode + '_mem_ratio']:.3f}",
                      f"{tensors[0]:.1f} / {tensors[1]:.1f}", f"{tensors[0] / tensors[1]:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
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
    parser.add_argument("--warmup", type=int, default=3, help="interleaved warm-up calls of each side")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="128x128, 5 rounds, 1 warm-up: a smoke run")
    parser.add_argument("--import-repeats", type=int, default=7)
    # One thread by default: as many threads as cores on a shared machine is what produced the artefact above.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", help="also write the results as markdown to this file")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats, args.warmup, args.import_repeats = 128, 5, 1, 0
    torch.set_num_threads(args.threads)
    load_start = load_average()
    archs = args.arch or (ARCHITECTURES if args.all else ["Unet"])
    results = {}
    for arch in archs:
        results[arch] = bench_architecture(arch, args.repeats, args.warmup, args.size)
        print(f"{arch}: forward ratio {results[arch]['forward_time_ratio']:.3f}, "
              f"train ratio {results[arch]['train_time_ratio']:.3f}", flush=True)
    table = format_table(results, args.threads, args.repeats, args.size, f"{load_start} -> {load_average()}")
    imports = bench_imports(args.import_repeats) if args.import_repeats > 0 else ""
    print(table)
    print(imports)
    if args.write:
        with open(args.write, "w") as handle:
            handle.write(f"# smp_like vs SMP\n\nCommand: `python {' '.join(sys.argv)}`\n\n{table}\n\n```\n{imports}\n```\n")


if __name__ == "__main__":
    main()
