"""Regenerate the documentation's figures (docs/figures/*.png) from the code itself.

    python docs/figures/make_figures.py              # all figures (the demo's default run and a tiny DDPM: minutes)
    python docs/figures/make_figures.py --quick      # a very short demo run (seconds; a weak model)
    python docs/figures/make_figures.py architecture blending   # only some figures

Figures:
    architecture.png       encoder -> decoder -> heads of a real Unet (stage channels and strides measured by
                           a forward pass)
    demo_predictions.png   the demo's ``predictions.png`` (held-out images, truth, prediction) after its default
                           run (seed 0)
    training_curve.png     that run's ``curves.png``: losses and validation scores per epoch, from the run's logs
    blending.png           the sliding window's Gaussian importance map, the windows over an image and the blended
                           output of windows that each predict one constant (smp_like.inference)
    diffusion_samples.png  DDPM and DDIM samples of a tiny DDPM trained briefly on the synthetic shapes
    benchmark_bars.png     time and memory ratios smp_like / SMP per architecture, from benchmarks/results.md
                           ("Run 2 (final code)")

Every figure is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import smp_like as smp  # noqa: E402


def _save(fig, name: str, dpi: int = 110) -> Path:
    path = HERE / name
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def _copy(src: Path, name: str) -> Path:
    path = HERE / name
    tmp = path.with_name(f".{path.stem}.tmp.png")
    shutil.copyfile(src, tmp)
    os.replace(tmp, path)
    print(f"wrote {path.relative_to(ROOT)} (from {src.name})")
    return path


def architecture() -> None:
    """Boxes for a Unet(resnet34, classes=3, aux_params) with the channels and strides of a real forward pass."""
    torch.manual_seed(0)
    model = smp.Unet("resnet34", encoder_weights=None, classes=3, aux_params={"classes": 5}).eval()
    x = torch.randn(1, 3, 256, 256)
    decoder_shapes = []
    hooks = [block.register_forward_hook(lambda m, i, o: decoder_shapes.append(tuple(o.shape)))
             for block in model.decoder.blocks]
    with torch.no_grad():
        features = model.encoder(x)
        mask, label = model(x)
    for h in hooks:
        h.remove()
    enc = [(f.shape[1], x.shape[-1] // f.shape[-1]) for f in features]
    dec = [(s[1], x.shape[-1] // s[-1]) for s in decoder_shapes]

    fig, ax = plt.subplots(figsize=(11, 5.2))
    ax.set_xlim(0, 11)
    ax.set_ylim(-0.6, len(enc) + 0.4)
    ax.axis("off")

    def box(cx, cy, w, text, color):
        ax.add_patch(plt.Rectangle((cx - w / 2, cy - 0.32), w, 0.64, fc=color, ec="k", lw=1))
        ax.text(cx, cy, text, ha="center", va="center", fontsize=8.5)

    top = len(enc) - 1
    for i, (c, s) in enumerate(enc):  # finest at the top
        y = top - i
        box(2.0, y, 2.4, f"f{i}: {c} ch, 1/{s}" + (" (input)" if i == 0 else ""), "#cfe2f3")
        if i:
            ax.annotate("", (2.0, y + 0.32), (2.0, y + 0.68), arrowprops=dict(arrowstyle="<-", lw=0.8))
    for j, (c, s) in enumerate(dec):  # coarse to fine; block j works at the stride of feature len(enc) - 2 - j
        level = len(enc) - 2 - j
        y = top - level
        box(6.2, y, 2.4, f"decoder block {j}: {c} ch, 1/{s}", "#d9ead3")
        if level >= 1:  # the skip: the encoder feature of the same stride, concatenated after upsampling
            ax.annotate("", (5.0, y), (3.2, y), arrowprops=dict(arrowstyle="->", lw=0.7, color="0.4", ls="--"))
        if j:
            ax.annotate("", (6.2, y - 0.32), (6.2, y - 0.68), arrowprops=dict(arrowstyle="<-", lw=0.8))
    ax.annotate("", (6.2, top - (len(enc) - 2) - 0.32), (3.2, 0.0), arrowprops=dict(arrowstyle="->", lw=0.9))
    box(9.3, top, 2.2, f"SegmentationHead\nmask {tuple(mask.shape[1:])}", "#fce5cd")
    ax.annotate("", (8.2, top), (7.4, top), arrowprops=dict(arrowstyle="->", lw=0.9))
    box(9.3, 0, 2.2, f"ClassificationHead\nlabel {tuple(label.shape[1:])}", "#fce5cd")
    ax.annotate("", (8.2, 0), (3.2, 0), arrowprops=dict(arrowstyle="->", lw=0.9, color="0.3"))
    ax.text(2.0, top + 0.55, "Encoder (resnet34)", ha="center", fontsize=10, weight="bold")
    ax.text(6.2, top + 0.55, "Unet decoder", ha="center", fontsize=10, weight="bold")
    ax.text(9.3, top + 0.55, "Heads", ha="center", fontsize=10, weight="bold")
    ax.set_title("smp.Unet('resnet34', classes=3, aux_params={'classes': 5}) on a 3x256x256 input "
                 "(dashed: skip connections)", fontsize=9.5)
    _save(fig, "architecture.png")


# The demo's default run (4 epochs over 1536 images; a few minutes on one thread); --quick for a smoke run.
DEMO_FIGURE: dict = {}
DEMO_QUICK = dict(epochs=1, train_size=32, val_size=8, test_size=8)


def demo(quick: bool) -> None:
    """Run the demo (the real training pipeline) and keep its predictions and curves."""
    from smp_like.training import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        kwargs = DEMO_QUICK if quick else DEMO_FIGURE
        result = run_demo(output_dir=tmp, progress=False, seed=0, **kwargs)
        run_dir = Path(result["run_dir"])
        print(f"demo mean foreground test IoU {result['mean_iou']:.3f}")
        _copy(run_dir / "predictions.png", "demo_predictions.png")
        _copy(run_dir / "curves.png", "training_curve.png")


def blending() -> None:
    """The Gaussian weight of one window, the windows over an image, and how constant windows blend."""
    from smp_like.inference import importance_map, sliding_window, window_starts

    roi, size, overlap = 64, (150, 200), 0.25
    weight = importance_map((roi, roi), "gaussian")
    values = iter(torch.linspace(0.0, 1.0, 64)[torch.randperm(64, generator=torch.Generator().manual_seed(0))])

    def one_value_per_window(w: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.full_like(w[i, :1], float(next(values))) for i in range(w.shape[0])])

    image = torch.zeros(1, 1, *size)
    blended = sliding_window(one_value_per_window, image, roi_size=roi, overlap=overlap, sw_batch_size=1,
                             mode="gaussian")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].imshow(weight.numpy(), cmap="viridis")
    axes[0].set_title(f"importance_map(({roi}, {roi}), 'gaussian')", fontsize=9)
    # The sum of the window weights at each pixel (what the blend divides by), drawn with the windows on top.
    total = np.zeros(size)
    starts = [(y, x) for y in window_starts(size[0], roi, overlap) for x in window_starts(size[1], roi, overlap)]
    for y, x in starts:
        total[y : y + roi, x : x + roi] += weight.numpy()
    axes[1].imshow(total, cmap="magma")
    colors = plt.cm.tab10(np.arange(len(starts)) % 10)
    for (y, x), color in zip(starts, colors):
        axes[1].add_patch(plt.Rectangle((x - 0.5, y - 0.5), roi, roi, fill=False, ec=color, lw=1.2))
    axes[1].set_title(f"{len(starts)} windows of {roi}x{roi} (overlap {overlap}) on {size[0]}x{size[1]};\n"
                      "colour: summed weights", fontsize=9)
    axes[2].imshow(blended[0, 0].numpy(), cmap="viridis")
    axes[2].set_title("blended output: each window predicts one constant", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, "blending.png")


def diffusion_samples(steps: int = 500) -> None:
    """A tiny DDPM trained for ``steps`` steps on 32x32 shapes; DDPM and DDIM samples from the same noise."""
    from smp_like.datasets.shapes import ShapesDataset

    torch.manual_seed(0)
    data = ShapesDataset(n=256, image_size=32, seed=0, normalize=False)
    images = torch.stack([data[i][0] for i in range(len(data))]) * 2 - 1
    model = smp.DDPM(architecture="unet", encoder_name="resnet18", in_channels=3, time_embedding_dim=64,
                     num_train_timesteps=200, beta_schedule="cosine", prediction_type="v_prediction",
                     encoder_depth=3, decoder_channels=(64, 32, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(1)
    model.train()
    for step in range(steps):
        batch = images[torch.randint(0, len(images), (16,), generator=g)]
        loss = model.loss(batch, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"diffusion: final training loss {loss.item():.4f} after {steps} steps")
    noise = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ddpm = model.sample(noise=noise.clone(), sampler="ddpm", progress=False)
    ddim = model.sample(noise=noise.clone(), sampler="ddim", num_inference_steps=25, progress=False)
    rows = [("training images", images[:8]), ("DDPM, 200 steps", ddpm), ("DDIM, 25 steps", ddim)]
    fig, axes = plt.subplots(3, 8, figsize=(10, 4.2))
    for r, (title, batch) in enumerate(rows):
        for c in range(8):
            axes[r, c].imshow(((batch[c].permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy(), interpolation="nearest")
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=9, loc="left")
    fig.suptitle(f"A tiny DDPM (resnet18 Unet, depth 3, v-prediction) trained only {steps} steps (batch 16) on "
                 "32x32 shapes on a CPU: far from converged", fontsize=9)
    _save(fig, "diffusion_samples.png", dpi=80)


def benchmark_bars() -> None:
    """Ratios smp_like / SMP from the final-code run of benchmarks/results.md (time medians, exact memory)."""
    text = (ROOT / "benchmarks" / "results.md").read_text()
    lines = text.splitlines()
    start = lines.index("### Run 2 (final code)")
    rows = []
    header = None
    setting = ""
    for line in lines[start + 1:]:
        if line.startswith("resnet34"):
            setting = line
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
        elif not set(line) <= set("|- "):
            rows.append(cells)
    # Time ratios are "median [p25-p75]"; each exact memory ratio is the "ratio" column after its MiB column.
    cols = {"forward time": header.index("forward time ratio"),
            "forward memory (exact)": header.index("forward live-tensor MiB (exact)") + 1,
            "train step time": header.index("train time ratio"),
            "train memory (exact)": header.index("train live-tensor MiB (exact)") + 1}
    wanted = list(cols)
    archs = [r[0] for r in rows]
    values = np.array([[float(r[c].split()[0]) for c in cols.values()] for r in rows])
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.2
    for k, name in enumerate(wanted):
        ax.bar(np.arange(len(archs)) + (k - 1.5) * width, values[:, k], width, label=name)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(archs)), archs, rotation=30, ha="right", fontsize=8.5)
    ax.set_ylabel("smp_like / SMP (lower is better)")
    ax.set_title(re.sub(r";.*", "", setting) or "benchmarks/results.md", fontsize=9)
    ax.set_ylim(0, max(1.4, values.max() * 1.15))
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    _save(fig, "benchmark_bars.png")


FIGURES = {
    "architecture": architecture,
    "demo": None,  # needs --quick
    "blending": blending,
    "diffusion": diffusion_samples,
    "benchmarks": benchmark_bars,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate docs/figures/*.png")
    parser.add_argument("figures", nargs="*", help=f"which figures, of {sorted(FIGURES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a very short demo run (weak model)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figures {unknown}; choose from {sorted(FIGURES)}")
    # One thread by default: on a shared machine, OpenMP threads that wait for each other cost more than they give.
    torch.set_num_threads(args.threads)
    for name in args.figures or list(FIGURES):
        if name == "demo":
            demo(args.quick)
        else:
            FIGURES[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
