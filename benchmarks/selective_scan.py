"""Benchmark: smp_like.ops.selective_scan (pure PyTorch, chunked parallel scan) against a sequential loop.

Measures forward+backward wall time and the peak memory added by one forward+backward (resident-set high-water
mark of a fresh subprocess during its first full-size run, above the resident set before it) for VMamba-like
shapes (B=1, D=384, L=3136 = 56x56) with N=1 and N=16, and checks the accuracy of our scan against the loop
(float32, relative to the largest magnitude).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/selective_scan.py [--threads 2] [--repeats 5] [--out results.md]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

CONFIGS = [dict(b=1, d=384, n=1, length=3136), dict(b=1, d=384, n=16, length=3136)]


def sequential_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The alternative: Gu & Dao 2023 eq. 2a/2b, one time step per Python iteration, autograd for the backward."""
    b, d, length = u.shape
    n = A.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(b, d, n)
    ys = []
    for t in range(length):
        h = (
            torch.exp(delta[:, :, t, None] * A) * h
            + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        )
        ys.append((h * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def make_inputs(b, d, n, length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    inputs = dict(
        u=torch.randn(b, d, length, generator=gen),
        delta=torch.randn(b, d, length, generator=gen) - 2.0,
        A=-torch.exp(torch.randn(d, n, generator=gen)),
        B=torch.randn(b, n, length, generator=gen),
        C=torch.randn(b, n, length, generator=gen),
        D=torch.randn(d, generator=gen),
        z=torch.randn(b, d, length, generator=gen),
        delta_bias=torch.randn(d, generator=gen) * 0.1,
    )
    return {k: v.requires_grad_() for k, v in inputs.items()}


def fwd_bwd(method, inputs):
    from smp_like.ops import selective_scan

    fn = selective_scan if method == "ours" else sequential_scan
    for v in inputs.values():
        v.grad = None
    y = fn(**inputs, delta_softplus=True)
    y.backward(torch.ones_like(y))
    return y.detach(), {k: v.grad.clone() for k, v in inputs.items()}


def child(method, cfg, repeats):
    """One measurement in a fresh process: time per fwd+bwd and peak memory above the inputs."""
    import smp_like.ops  # noqa: F401  (imported before the memory baseline)

    # One-off costs (thread pools, autograd engine, dispatch) are paid on a short warm-up sequence; the peak is
    # measured on the first full-size run (large blocks are fresh mmaps then, so the resident set tracks them).
    fwd_bwd(method, make_inputs(**{**cfg, "length": 64}))
    inputs = make_inputs(**cfg)
    base_kib = _reset_peak_rss()
    t0 = time.perf_counter()
    fwd_bwd(method, inputs)
    times = [time.perf_counter() - t0]
    peak_kib = _peak_rss() - base_kib
    for _ in range(repeats - 1):
        t0 = time.perf_counter()
        fwd_bwd(method, inputs)
        times.append(time.perf_counter() - t0)
    return dict(time_s=statistics.median(times), times=times, peak_mib=peak_kib / 1024)


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _reset_peak_rss():
    """Reset the resident-set high-water mark (Linux) and return the current resident set in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS")
    except OSError:  # not Linux: fall back to the process-wide high-water mark
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss():
    try:
        return _status_kib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def accuracy(cfg):
    inputs = make_inputs(**cfg)
    y1, g1 = fwd_bwd("ours", inputs)
    y2, g2 = fwd_bwd("sequential", inputs)
    rel = {"out": ((y1 - y2).abs().max() / y2.abs().max()).item()}
    for k in g1:
        rel[k] = ((g1[k] - g2[k]).abs().max() / g2[k].abs().max()).item()
    return rel


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seq-repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="write a markdown table here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        method, cfg = json.loads(args.child)
        print(json.dumps(child(method, cfg, args.repeats if method == "ours" else args.seq_repeats)))
        return
    rows = []
    load_before = os.getloadavg()
    for cfg in CONFIGS:
        res = {}
        for method in ("ours", "sequential"):
            cmd = [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--repeats",
                str(args.repeats),
                "--seq-repeats",
                str(args.seq_repeats),
                "--child",
                json.dumps([method, cfg]),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            res[method] = json.loads(out.strip().splitlines()[-1])
        rel = accuracy(cfg)
        speedup = res["sequential"]["time_s"] / res["ours"]["time_s"]
        rows.append((cfg, res, rel, speedup))
        print(
            f"{cfg}: ours {res['ours']['time_s'] * 1e3:.1f} ms ({res['ours']['peak_mib']:.0f} MiB), sequential "
            f"{res['sequential']['time_s'] * 1e3:.0f} ms ({res['sequential']['peak_mib']:.0f} MiB), "
            f"speed-up {speedup:.1f}x, max rel. error {max(rel.values()):.1e}",
            flush=True,
        )
    if args.out:
        lines = [
            f"torch {torch.__version__}, {args.threads} thread(s), float32, forward+backward "
            f"(delta_softplus, D, z, delta_bias; gradients of all inputs); median of {args.repeats} runs for ours, "
            f"{args.seq_repeats} for the loop. Peak memory = resident-set high-water mark of the first full-size run above the "
            f"resident set before it. Load average (1, 5, 15 min) before: "
            f"{', '.join(f'{x:.1f}' for x in load_before)}; after: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
            f"on {os.cpu_count()} CPUs (a load above the CPU count means other jobs shared the machine).",
            "",
            "| B, D, N, L | ours fwd+bwd | sequential fwd+bwd | speed-up | ours peak mem | sequential peak mem "
            "| max rel. error (out, grads) |",
            "|---|---|---|---|---|---|---|",
        ]
        for cfg, res, rel, speedup in rows:
            lines.append(
                f"| {cfg['b']}, {cfg['d']}, {cfg['n']}, {cfg['length']} | {res['ours']['time_s'] * 1e3:.1f} ms | "
                f"{res['sequential']['time_s'] * 1e3:.0f} ms | {speedup:.1f}x | {res['ours']['peak_mib']:.0f} MiB | "
                f"{res['sequential']['peak_mib']:.0f} MiB | {max(rel.values()):.1e} |"
            )
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
