"""Diffusion sampling and training cost, side by side in one run (issue 6's measure).

1. Wall time per image of DDIM (50 steps) against DDPM (all 1000 steps) with the same trained-shape network, a
   small Unet at 64x64: the ratio is what DDIM saves.
2. One training step (forward + backward + AdamW) of the eps-model (the same Unet with a time embedding injected
   into every decoder block) against the plain Unet on the same batch: the cost of time injection.

Usage: python benchmarks/sampling.py [--threads 2] [--repeats 3] [--write benchmarks/sampling_results.md]
"""
import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import smp_like as smp

UNET = dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=(64, 32, 16, 8))


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="training batch size")
    parser.add_argument("--write", default=None, help="markdown file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = smp.DDPM(in_channels=3, time_embedding_dim=64, num_train_timesteps=1000, **{
        k: v for k, v in UNET.items() if k != "encoder_weights"}).eval()
    n_images = 1

    def ddim():
        model.sample(n_images, 64, sampler="ddim", num_inference_steps=50, progress=False,
                     generator=torch.Generator().manual_seed(0))

    def ddpm():
        model.sample(n_images, 64, sampler="ddpm", progress=False, generator=torch.Generator().manual_seed(0))

    t_ddim = _median_time(ddim, args.repeats) / n_images
    t_ddpm = _median_time(ddpm, max(1, args.repeats // 3)) / n_images

    plain = smp.Unet(**UNET, classes=3).train()
    eps = smp.Unet(**UNET, classes=3, time_embedding_dim=64).train()
    x = torch.randn(args.batch, 3, 64, 64)
    target = torch.randn_like(x)
    t = torch.randint(0, 1000, (args.batch,))
    opt_plain = torch.optim.AdamW(plain.parameters())
    opt_eps = torch.optim.AdamW(eps.parameters())

    def step_plain():
        loss = F.mse_loss(plain(x), target)
        opt_plain.zero_grad()
        loss.backward()
        opt_plain.step()

    def step_eps():
        loss = F.mse_loss(eps(x, t), target)
        opt_eps.zero_grad()
        loss.backward()
        opt_eps.step()

    # Interleave the two so load changes on a shared machine hit both alike.
    plain_times, eps_times = [], []
    step_plain(), step_eps()
    for _ in range(args.repeats * 3):
        start = time.perf_counter()
        step_plain()
        plain_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        step_eps()
        eps_times.append(time.perf_counter() - start)
    t_plain, t_eps = statistics.median(plain_times), statistics.median(eps_times)
    n_plain = sum(p.numel() for p in plain.parameters())
    n_eps = sum(p.numel() for p in eps.parameters())

    lines = [
        "# Diffusion sampling and training cost",
        "",
        f"`python benchmarks/sampling.py --threads {args.threads} --repeats {args.repeats}` on "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, CPU, {args.threads} threads.",
        "Network: Unet(resnet18, encoder_depth=4, decoder_channels=(64, 32, 16, 8)), 64x64 RGB, time embedding 64.",
        "",
        "| sampling, per image | seconds | ratio to DDIM 50 |",
        "|---|---:|---:|",
        f"| DDIM, 50 steps | {t_ddim:.3f} | 1.00 |",
        f"| DDPM, 1000 steps | {t_ddpm:.3f} | {t_ddpm / t_ddim:.2f} |",
        "",
        f"| one training step, batch {args.batch} | parameters | ms (median) | ratio to plain |",
        "|---|---:|---:|---:|",
        f"| plain Unet | {n_plain:,} | {t_plain * 1000:.1f} | 1.00 |",
        f"| eps-model (time injection) | {n_eps:,} | {t_eps * 1000:.1f} | {t_eps / t_plain:.2f} |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
