"""Performance measures of issue 18: the inference fast path vs SMP, gradient checkpointing, bf16, scaling.

Every comparison runs both sides in one process, interleaved after a warm-up, and reports the median of the
per-round ratios with its 25th-75th percentile spread (see ``vs_smp.compare``). Memory is the peak extra resident
memory of one call (Linux VmHWM reset through /proc/self/clear_refs), less sensitive to machine load than time.

Usage:
    python benchmarks/performance.py --quick                       # small sizes, a few rounds (minutes)
    python benchmarks/performance.py --write benchmarks/performance_results.md   # the full measures
    python benchmarks/performance.py --only fastpath scaling       # some sections (fastpath compile checkpointing
                                                                   # bf16 scaling)
"""

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensor_memory import peak_tensor_mib  # noqa: E402
from vs_smp import ARCHITECTURES, _forward, _train_step, compare, load_average, measure  # noqa: E402


ONLY_ARCHITECTURES: List[str] = []  # --arch: the fast path and compile sections measure these only


def _same_weights(arch: str) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """smp_like's and SMP's ``arch`` with resnet34 and the same (random) weights, in eval mode."""
    import segmentation_models_pytorch as smp_ref

    import smp_like

    torch.manual_seed(0)
    theirs = getattr(smp_ref, arch)("resnet34", encoder_weights=None).eval()
    ours = getattr(smp_like, arch)("resnet34", encoder_weights=None)
    ours.load_state_dict(theirs.state_dict())
    return ours.eval(), theirs


def fastpath(quick: bool) -> List[str]:
    """optimize_for_inference(smp_like) vs SMP eager, same weights, resnet34, batch 2."""
    import smp_like

    size, repeats = (128, 5) if quick else (256, 11)
    archs = ONLY_ARCHITECTURES or (["Unet", "FPN", "DeepLabV3Plus"] if quick else ARCHITECTURES)
    lines = [f"### optimize_for_inference vs SMP eager (resnet34, batch 2, 3x{size}x{size}, forward under "
             f"inference_mode, {repeats} rounds)", "",
             "| architecture | fast ms / SMP ms | time ratio [p25-p75] | eager ratio [p25-p75] | peak MiB fast / SMP |",
             "| --- | --- | --- | --- | --- |"]
    x = torch.randn(2, 3, size, size)
    for arch in archs:
        ours, theirs = _same_weights(arch)
        fast = smp_like.optimize_for_inference(ours)
        r = compare({"ours": _forward(fast, x), "theirs": _forward(theirs, x)}, repeats, warmup=2)
        e = compare({"ours": _forward(ours, x), "theirs": _forward(theirs, x)}, repeats, warmup=1)
        lines.append(f"| {arch} | {r['ours_ms']:.0f} / {r['theirs_ms']:.0f} | {r['ratio']:.3f} "
                     f"[{r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}] | {e['ratio']:.3f} "
                     f"[{e['ratio_p25']:.2f}-{e['ratio_p75']:.2f}] | {r['ours_mib']:.0f} / {r['theirs_mib']:.0f} |")
        print(lines[-1], flush=True)
    return lines


def compiled(quick: bool) -> List[str]:
    """optimize_for_inference(compile=True) vs SMP + torch.compile, same weights, resnet34, batch 2."""
    import smp_like

    size, repeats = (128, 5) if quick else (256, 11)
    archs = ONLY_ARCHITECTURES or (["Unet"] if quick else ARCHITECTURES)
    lines = [f"### optimize_for_inference(compile=True) vs SMP + torch.compile (resnet34, batch 2, 3x{size}x{size}, "
             f"forward under inference_mode, {repeats} rounds; compile time = first call)", "",
             "| architecture | fast+compile ms / SMP+compile ms | time ratio [p25-p75] | compile s (ours / SMP) "
             "| max output difference / max output |",
             "| --- | --- | --- | --- | --- |"]
    x = torch.randn(2, 3, size, size)
    for arch in archs:
        ours, theirs = _same_weights(arch)
        torch._dynamo.reset()
        try:
            fast = smp_like.optimize_for_inference(ours, compile=True)
            theirs_compiled = torch.compile(theirs)
            first = {}
            for name, model in (("ours", fast), ("theirs", theirs_compiled)):
                start = time.perf_counter()
                _forward(model, x)()
                first[name] = time.perf_counter() - start
            with torch.inference_mode():  # the same computation: how far apart the two outputs are, reported
                a, b = fast(x), theirs_compiled(x)
                difference = ((a - b).abs().max() / b.abs().max()).item()
            r = compare({"ours": _forward(fast, x), "theirs": _forward(theirs_compiled, x)}, repeats, warmup=2)
        except Exception as error:  # a model that does not compile here is reported, not hidden
            lines.append(f"| {arch} | does not compile: {type(error).__name__}: {str(error)[:80]} | | | |")
            print(lines[-1], flush=True)
            continue
        lines.append(f"| {arch} | {r['ours_ms']:.0f} / {r['theirs_ms']:.0f} | {r['ratio']:.3f} "
                     f"[{r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}] | {first['ours']:.0f} / {first['theirs']:.0f} "
                     f"| {difference:.1e} |")
        print(lines[-1], flush=True)
    return lines


def checkpointing(quick: bool) -> List[str]:
    """3D Unet-resnet18 train step with and without gradient checkpointing."""
    import smp_like

    size, repeats = (48, 2) if quick else (96, 5)
    torch.manual_seed(0)
    plain = smp_like.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2, spatial_dims=3).train()
    ckpt = smp_like.Unet("resnet18", encoder_weights=None, in_channels=1, classes=2, spatial_dims=3).train()
    ckpt.load_state_dict(plain.state_dict())
    ckpt.set_gradient_checkpointing(True)
    x = torch.randn(1, 1, size, size, size)
    r = compare({"ours": _train_step(ckpt, x), "theirs": _train_step(plain, x)}, repeats, warmup=1)
    exact = {name: peak_tensor_mib(_train_step(m, x)) for name, m in (("plain", plain), ("ckpt", ckpt))}
    lines = [f"### Gradient checkpointing: 3D Unet-resnet18, 1x1x{size}^3, batch 1, train step ({repeats} rounds)", "",
             "| | plain | checkpointed | ratio |", "| --- | --- | --- | --- |",
             f"| step ms | {r['theirs_ms']:.0f} | {r['ours_ms']:.0f} | {r['ratio']:.2f} "
             f"[{r['ratio_p25']:.2f}-{r['ratio_p75']:.2f}] |",
             f"| peak extra RSS MiB | {r['theirs_mib']:.0f} | {r['ours_mib']:.0f} | {r['mem_ratio']:.2f} |",
             f"| peak live-tensor MiB (exact) | {exact['plain']:.0f} | {exact['ckpt']:.0f} | "
             f"{exact['ckpt'] / exact['plain']:.2f} |"]
    print("\n".join(lines[-3:]), flush=True)
    return lines


def bf16(quick: bool) -> List[str]:
    """Unet-resnet34 train step, fp32 vs CPU bf16 autocast."""
    import smp_like

    size, repeats = (128, 3) if quick else (256, 7)
    torch.manual_seed(0)
    model = smp_like.Unet("resnet34", encoder_weights=None).train()
    x = torch.randn(2, 3, size, size)
    fp32 = _train_step(model, x)

    def autocast_step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().mean().backward()
        model.zero_grad(set_to_none=True)

    r = compare({"ours": autocast_step, "theirs": fp32}, repeats, warmup=1)
    lines = [f"### bf16 autocast vs fp32: Unet-resnet34 train step, batch 2, 3x{size}x{size} ({repeats} rounds, "
             f"CPU bf16 support: {torch.backends.mkldnn.is_available()})", "",
             "| fp32 ms | bf16 ms | bf16 / fp32 time | bf16 / fp32 peak memory |", "| --- | --- | --- | --- |",
             f"| {r['theirs_ms']:.0f} | {r['ours_ms']:.0f} | {r['ratio']:.2f} [{r['ratio_p25']:.2f}-"
             f"{r['ratio_p75']:.2f}] | {r['mem_ratio']:.2f} |"]
    print(lines[-1], flush=True)
    return lines


def scaling(quick: bool) -> List[str]:
    """Forward time and peak memory per pixel/voxel of Unet-resnet34 (2D) and Unet-resnet18 (3D)."""
    import smp_like

    sizes2d = [128, 256, 512] if quick else [256, 512, 1024, 2048]
    sizes3d = [32, 48, 64] if quick else [64, 96, 128]
    repeats = 2 if quick else 3
    lines = ["### Scaling: eval forward (inference_mode), batch 1", "",
             "| model | input | ms | ns / pixel | peak extra RSS MiB | RSS bytes / pixel | live-tensor bytes / pixel |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    torch.manual_seed(0)
    for label, model, dims, sizes in (
        ("Unet-resnet34 2D", smp_like.Unet("resnet34", encoder_weights=None).eval(), 2, sizes2d),
        ("Unet-resnet18 3D", smp_like.Unet("resnet18", encoder_weights=None, in_channels=1, spatial_dims=3).eval(),
         3, sizes3d),
    ):
        channels = model.encoder.in_channels
        for s in sizes:
            x = torch.randn(1, channels, *([s] * dims))
            run = _forward(model, x)
            run()
            samples = [measure(run) for _ in range(repeats)]
            ms = statistics.median(m["s"] for m in samples) * 1e3
            mib = statistics.median(m["mib"] for m in samples if m["mib"] is not None)
            pixels = s ** dims
            tensor_mib = peak_tensor_mib(run)
            lines.append(f"| {label} | {s}^{dims} | {ms:.0f} | {ms * 1e6 / pixels:.1f} | {mib:.0f} | "
                         f"{mib * 2 ** 20 / pixels:.0f} | {tensor_mib * 2 ** 20 / pixels:.0f} |")
            print(lines[-1], flush=True)
    return lines


SECTIONS: Dict[str, Callable[[bool], List[str]]] = {
    "fastpath": fastpath, "compile": compiled, "checkpointing": checkpointing, "bf16": bf16, "scaling": scaling,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few rounds")
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), help="these sections only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", nargs="*", choices=ARCHITECTURES,
                        help="architectures of the fastpath/compile sections")
    parser.add_argument("--write", help="append the tables (markdown) to this file")
    args = parser.parse_args()
    ONLY_ARCHITECTURES[:] = args.arch or []
    torch.set_num_threads(args.threads)
    start, load = time.time(), load_average()
    out = [f"Command: `python {' '.join(sys.argv)}`; CPU, {args.threads} thread(s), torch {torch.__version__}, "
           f"load average at start {load} on {os.cpu_count()} cores", ""]
    for name in args.only or list(SECTIONS):
        out += SECTIONS[name](args.quick) + [""]
    out.append(f"(load average at end {load_average()}, {time.time() - start:.0f} s)")
    text = "\n".join(out)
    print(text)
    if args.write:
        with open(args.write, "a") as handle:
            handle.write(text + "\n\n")


if __name__ == "__main__":
    main()
