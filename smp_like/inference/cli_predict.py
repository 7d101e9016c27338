"""``smp-like predict`` and ``smp-like export``: argument setup and handlers (``smp_like/cli.py`` wires them in).

Exit codes: 0 success; 1 when some files failed (predict: all are listed at the end; export: the exported model
disagrees with eager mode or the export failed); 2 for usage errors.
"""

import argparse
import sys
from typing import Any, Dict, List, Optional

__all__ = ["add_predict_arguments", "run_predict", "add_export_arguments", "run_export"]


def _sizes(values: Optional[List[int]]) -> Any:
    if values is None:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="saved model folder (save_pretrained / training best/) or "
                        "Hub repository")
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image/volume files, folders (searched recursively) or glob patterns (quote them)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--roi", type=int, nargs="+", metavar="N", help="sliding-window size (one value, or one "
                        "per axis); default: each image in one pass (large TIFFs: 512)")
    parser.add_argument("--overlap", type=float, default=0.25, help="window overlap in [0, 1) (default 0.25)")
    parser.add_argument("--blend", choices=("gaussian", "constant"), default="gaussian",
                        help="window blending (default gaussian)")
    parser.add_argument("--tta", choices=("none", "flip", "d4", "flip3d", "flip3d_rot90"), default="none",
                        help="test-time augmentation (default none)")
    parser.add_argument("--merge", choices=("mean", "gmean", "max", "min", "tsharpen"), default="mean",
                        help="how TTA copies are merged (default mean)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call: windows x TTA copies")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write float16 probabilities (<name>_probs.npy / .nii.gz / .tif)")
    parser.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png (2D)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: skip them)")
    parser.add_argument("--stream-pixels", type=int, default=None, metavar="N",
                        help="TIFFs with more pixels are predicted band by band into a tiled TIFF (default 2^26)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("preprocessing overrides (default: the model's preprocessing.json)")
    group.add_argument("--normalization", choices=("mean_std", "zscore", "none"))
    group.add_argument("--mean", type=float, nargs="+", help="per-channel mean (after dividing by max pixel value)")
    group.add_argument("--std", type=float, nargs="+", help="per-channel std")
    group.add_argument("--max-pixel-value", type=float, help="divisor before mean/std (255 for 8-bit images)")
    group.add_argument("--task", choices=("binary", "multiclass", "multilabel"))
    group.add_argument("--classes", nargs="+", metavar="NAME", help="class names, one per output channel")
    group.add_argument("--threshold", type=float, help="probability threshold for binary / multilabel")


def run_predict(args: argparse.Namespace) -> int:
    from smp_like.inference.predict import DEFAULT_STREAM_PIXELS, load_model, predict_files, resolve_device
    from smp_like.inference.predict import resolve_preprocessing

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive int, got {args.batch_size}")
    overrides: Dict[str, Any] = dict(
        normalization=args.normalization, mean=args.mean, std=args.std, max_pixel_value=args.max_pixel_value,
        task=args.task, class_names=args.classes, threshold=args.threshold,
    )
    model = load_model(args.model, resolve_device(args.device))
    preprocessing, note = resolve_preprocessing(model, args.model, overrides)
    if note:
        print(f"note: {note}", file=sys.stderr)
    report = predict_files(
        model, args.input, args.output, preprocessing=preprocessing, roi_size=_sizes(args.roi),
        overlap=args.overlap, blend=args.blend, tta=None if args.tta == "none" else args.tta, merge=args.merge,
        batch_size=args.batch_size, device=args.device, save_probabilities=args.save_probabilities,
        overlay=args.overlay, overwrite=args.overwrite, progress=not args.no_progress,
        stream_pixels=args.stream_pixels or DEFAULT_STREAM_PIXELS,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(f"wrote {len(report.written)} files to {args.output}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} inputs whose outputs exist (--overwrite replaces them):")
        for path in report.skipped:
            print(f"  {path}")
    if report.failed:
        print(f"FAILED {len(report.failed)} inputs:", file=sys.stderr)
        for path, reason in report.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="saved model folder or Hub repository")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript", "exported-program"))
    parser.add_argument("--output", help="file to write (default: <model>/model.onnx, model.torchscript.pt or "
                        "model.pt2)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18; 17 needs sizes that are "
                        "multiples of the output stride)")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic batch and spatial sizes (TorchScript always is)")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N",
                        help="spatial size of the tracing example (default: from the model's stride)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch of the tracing example (default 1)")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest allowed |export - eager| on the check input (default 1e-3)")


def run_export(args: argparse.Namespace) -> int:
    from smp_like.inference.export import ExportMismatch, export_model

    try:
        result = export_model(args.model, args.format, output=args.output, opset=args.opset, dynamic=args.dynamic,
                              input_size=_sizes(args.input_size), batch_size=args.batch_size, atol=args.atol)
    except ExportMismatch as err:
        print(f"smp-like export: {err}", file=sys.stderr)
        return 1
    print(f"wrote {result.path}")
    print(f"checked at input shape {tuple(result.check_shape)} (traced at {tuple(result.example_shape)}): "
          f"max |{args.format} - eager| = {result.max_abs_diff:.3g} (tolerance {args.atol:g})")
    for note in result.notes:
        print(f"note: {note}")
    return 0
