"""Prediction over files: images (PNG, JPEG, BMP, TIFF, NPY), NIfTI volumes and TIFFs larger than memory.

:func:`predict_files` is what ``smp-like predict`` runs. For each input it reads the file, normalises it as the
model's ``preprocessing.json`` says (flags override single fields), runs the model (whole, or window by window
with :func:`~smp_like.inference.sliding_window`, with optional test-time augmentation), turns probabilities into a
mask and writes:

* 2D: ``<name>.png``, a palette PNG of class indices (``<name>_<class>.png`` per label for multilabel models);
* 3D: ``<name>.nii.gz`` with the input's affine and header;
* TIFFs above ``stream_pixels``: ``<name>.tif``, a tiled palette TIFF written band by band (see
  :mod:`smp_like.inference.streaming`);
* ``save_probabilities``: ``<name>_probs.npy`` (float16, ``(K, H, W)``), ``<name>_probs.nii.gz`` or
  ``<name>_probs.tif``;
* ``overlay``: ``<name>_overlay.png``, the image with the mask blended over it (2D).

A file that cannot be read, has the wrong number of channels or dimensions, or fails in the model is reported and
skipped; the others are still written, and the report lists every failure.
"""

import glob
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from smp_like.inference.masks import argmax_channels
from smp_like.inference.sliding_window import count_windows, sliding_window
from smp_like.inference.tta import TTA, TRANSFORM_SETS, get_activation, tta_transforms
from smp_like.io.images import IMAGE_SUFFIXES
from smp_like.io.preprocessing import PREPROCESSING_NAME, Preprocessing
from smp_like.io.volumes import is_volume_path

__all__ = ["PredictReport", "predict_files", "load_model", "resolve_preprocessing", "collect_inputs"]

PathLike = Union[str, Path]
TASK_ACTIVATION = {"binary": "sigmoid", "multilabel": "sigmoid", "multiclass": "softmax"}
#: TIFFs with more pixels than this are predicted band by band (about 200 MB as 8-bit RGB, 800 MB as float32).
DEFAULT_STREAM_PIXELS = 1 << 26


@dataclass
class PredictReport:
    """What :func:`predict_files` did.

    Attributes:
        written: output files written.
        skipped: inputs skipped because their output exists (pass ``overwrite=True``).
        failed: ``(input, reason)`` for every file that could not be predicted.
        notes: remarks (e.g. the normalisation used when the model folder has no ``preprocessing.json``).
    """

    written: List[Path] = field(default_factory=list)
    skipped: List[Path] = field(default_factory=list)
    failed: List[Tuple[Path, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``None``/``"auto"``: CUDA when available, else CPU.

    Raises:
        ValueError: for a device string torch does not know.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


def load_model(
    model: Union[PathLike, torch.nn.Module], device: Union[str, torch.device, None] = None
) -> torch.nn.Module:
    """A saved model (folder or Hub repository) or a module, in eval mode on ``device``."""
    if not isinstance(model, torch.nn.Module):
        import smp_like

        model = smp_like.from_pretrained(str(model))
    return model.to(resolve_device(device)).eval()


def _load_saved_preprocessing(source: PathLike) -> Optional[Preprocessing]:
    folder = Path(source)
    if folder.is_dir():
        return Preprocessing.load(folder)
    from smp_like.base.hub import HubDownloadError, fetch_file

    try:  # a Hub repository: preprocessing.json is optional there too (the one fast-failing fetch path)
        path = fetch_file(str(source), PREPROCESSING_NAME, what="the saved preprocessing", optional=True)
    except HubDownloadError:  # offline or unreachable: the model itself loaded, so fall back like a bare folder
        return None
    if path is None:
        return None
    return Preprocessing.load(Path(path).parent)


def resolve_preprocessing(
    model: torch.nn.Module,
    source: Optional[PathLike] = None,
    overrides: Optional[Dict[str, Any]] = None,
) -> Tuple[Preprocessing, Optional[str]]:
    """The saved ``preprocessing.json`` (or the encoder's normalisation), with ``overrides`` applied.

    Args:
        model: the loaded model (its config names the encoder, classes and input channels).
        source: the folder or repository it came from.
        overrides: fields to replace (``mean``, ``std``, ``task``, ``class_names``, ...); None values are ignored.

    Returns:
        ``(preprocessing, note)``; the note says when the encoder's defaults were used.

    Raises:
        ValueError: for invalid overrides or class names that do not match the model's outputs.
    """
    from smp_like.io.preprocessing import from_encoder

    config = model.get_config() if hasattr(model, "get_config") else {}
    saved = _load_saved_preprocessing(source) if source is not None else None
    note = None
    classes = config.get("classes")
    spatial_dims = int(getattr(model, "spatial_dims", 2))
    if saved is None:
        task = "binary" if classes == 1 else "multiclass"
        encoder = config.get("encoder_name")
        if encoder is not None:
            saved = from_encoder(encoder, config.get("encoder_weights"), int(config.get("in_channels", 3)),
                                 task=task, spatial_dims=spatial_dims)
            note = (f"no {PREPROCESSING_NAME} beside the model: normalising with {encoder}'s pretrained statistics "
                    f"(mean {[round(m, 3) for m in saved.mean]}, std {[round(s, 3) for s in saved.std]}, pixels / "
                    f"{saved.max_pixel_value:g}); pass --mean/--std or add the file to change it")
        else:
            saved = Preprocessing(task=task, spatial_dims=spatial_dims)
            note = f"no {PREPROCESSING_NAME} beside the model: pixels divided by 255, no mean/std"
    values = {k: v for k, v in (overrides or {}).items() if v is not None}
    if values:
        saved = replace(saved, **values)  # __post_init__ validates the combination
    if classes is not None and saved.class_names is not None and len(saved.class_names) != int(classes):
        raise ValueError(f"{len(saved.class_names)} class names given ({saved.class_names}) but the model predicts "
                         f"{classes} channels")
    return saved, note


def collect_inputs(inputs: Sequence[PathLike]) -> Tuple[List[Tuple[Path, Path]], List[Tuple[Path, str]]]:
    """Expand files, folders (recursively) and glob patterns into ``(file, output stem relative path)`` pairs.

    Returns:
        ``(found, failures)``: the files in order (folders sorted) and the inputs that matched nothing.
    """
    found: List[Tuple[Path, Path]] = []
    failures: List[Tuple[Path, str]] = []

    def readable(path: Path) -> bool:
        return path.suffix.lower() in IMAGE_SUFFIXES or is_volume_path(path)

    for entry in inputs:
        text = str(entry)
        path = Path(text)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and readable(p) and not p.name.startswith("."))
            if not files:
                failures.append((path, "folder holds no image or volume files"))
            found.extend((p, p.relative_to(path)) for p in files)
        elif any(ch in text for ch in "*?["):
            files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not files:
                failures.append((path, "pattern matched no files"))
            found.extend((p, Path(p.name)) for p in files if readable(p))
        elif path.is_file():
            if readable(path):
                found.append((path, Path(path.name)))
            else:
                supported = list(IMAGE_SUFFIXES) + [".nii", ".nii.gz"]
                failures.append((path, f"unsupported file type; supported: {supported}"))
        else:
            failures.append((path, "no such file or folder"))
    return found, failures


def _stem(relative: Path) -> Path:
    name = relative.name
    for suffix in (".nii.gz", ".nii") + IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return relative.parent / name


class _Predictor:
    """Model + activation (+ TTA) as a window function returning probabilities on the CPU."""

    def __init__(self, model: torch.nn.Module, activation: str, device: torch.device, tta: Optional[str],
                 merge: str, batch_size: int, spatial_dims: int):
        self.model, self.device = model, device
        act = get_activation(activation)
        if tta:
            self.copies = len(tta_transforms(tta, spatial_dims))
            inner: Callable = TTA(model, tta, merge=merge, activation=activation, max_batch=batch_size)
        else:
            self.copies = 1

            def inner(b: torch.Tensor) -> torch.Tensor:
                out = model(b)
                return act(out[0] if isinstance(out, (tuple, list)) else out)

        self._inner = inner
        self.sw_batch_size = max(1, batch_size // self.copies)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._inner(batch.to(self.device)).float().cpu()


def _mask_from_probs(probs: np.ndarray, task: str, threshold: float) -> np.ndarray:
    if task == "multiclass":
        return argmax_channels(probs)
    mask = (probs > threshold).astype(np.uint8)
    return mask[0] if task == "binary" else mask


def _overlay_index(probs: np.ndarray, mask: np.ndarray, task: str) -> np.ndarray:
    if task != "multilabel":
        return mask
    # One colour per pixel: the most probable label among those above the threshold (class i -> index i + 1).
    return np.where(mask.any(0), probs.argmax(0) + 1, 0).astype(np.uint8)


def predict_files(
    model: Union[PathLike, torch.nn.Module],
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    *,
    preprocessing: Optional[Preprocessing] = None,
    roi_size: Union[int, Sequence[int], None] = None,
    overlap: float = 0.25,
    blend: str = "gaussian",
    tta: Optional[str] = None,
    merge: str = "mean",
    batch_size: int = 4,
    device: Union[str, torch.device, None] = None,
    save_probabilities: bool = False,
    overlay: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stream_pixels: int = DEFAULT_STREAM_PIXELS,
    log: Callable[[str], None] = print,
) -> PredictReport:
    """Predict every image and volume in ``inputs`` and write masks to ``output_dir``.

    Args:
        model: a saved model folder / Hub repository, or a loaded model.
        inputs: files, folders (searched recursively) and glob patterns.
        output_dir: where outputs go (folder inputs keep their sub-folders).
        preprocessing: normalisation and output meaning; default: the model's ``preprocessing.json`` (or the
            encoder's statistics, with a note).
        roi_size: window size for sliding-window inference; None runs each image whole (TIFFs above
            ``stream_pixels`` always use windows, 512 by default).
        overlap: window overlap, in [0, 1).
        blend: ``"gaussian"`` or ``"constant"`` window blending.
        tta: None or a transform set (``"flip"``, ``"d4"``, ``"flip3d"``, ``"flip3d_rot90"``).
        merge: TTA merge mode.
        batch_size: images per model call (windows x TTA copies).
        device: ``"auto"`` (default), ``"cpu"``, ``"cuda"``, ...
        save_probabilities: also write float16 probabilities.
        overlay: also write ``<name>_overlay.png`` (2D).
        overwrite: replace existing outputs (default: skip those inputs).
        progress: one tqdm bar over files and windows.
        stream_pixels: TIFFs with more pixels are streamed band by band.
        log: where notes go.

    Returns:
        A :class:`PredictReport`.

    Raises:
        ValueError: for invalid settings (before any file is read).
    """
    from smp_like.inference import streaming

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
    if tta is not None and tta not in TRANSFORM_SETS:
        raise ValueError(f"`tta` must be None or one of {TRANSFORM_SETS}, got {tta!r}")
    if blend not in ("gaussian", "constant"):
        raise ValueError(f"`blend` must be 'gaussian' or 'constant', got {blend!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"`overlap` must be in [0, 1), got {overlap!r}")
    source = None if isinstance(model, torch.nn.Module) else model
    torch_device = resolve_device(device)
    net = load_model(model, torch_device)
    report = PredictReport()
    if preprocessing is None:
        preprocessing, note = resolve_preprocessing(net, source)
        if note:
            report.notes.append(note)
            log(f"note: {note}")
    spatial_dims = int(getattr(net, "spatial_dims", 2))
    if tta is not None:
        tta_transforms(tta, spatial_dims)  # a 3D set for a 2D model fails here, before any file
    in_channels = getattr(getattr(net, "encoder", None), "in_channels", None)
    task, threshold = preprocessing.task, float(preprocessing.threshold)
    predictor = _Predictor(net, TASK_ACTIVATION[task], torch_device, tta, merge, batch_size, spatial_dims)
    class_names = preprocessing.class_names
    output_dir = Path(output_dir)

    files, missing = collect_inputs(inputs)
    report.failed.extend(missing)
    # Two inputs that would write the same output (a.png and a.jpg) are both reported instead of one overwriting.
    planned: Dict[Path, Path] = {}
    jobs: List[Tuple[Path, Path]] = []
    for path, relative in files:
        stem = _stem(relative)
        if stem in planned:
            report.failed.append((path, f"its output name {stem} is also the output of {planned[stem]}; rename one"))
            continue
        planned[stem] = path
        jobs.append((path, stem))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=0, unit="win", desc="predict", dynamic_ncols=True)
    try:
        for path, stem in jobs:
            if bar is not None:
                bar.set_description(path.name[-30:])
            try:
                written = _predict_one(
                    path, output_dir / stem, predictor, preprocessing, spatial_dims, in_channels, roi_size, overlap,
                    blend, task, threshold, class_names, save_probabilities, overlay, overwrite, stream_pixels, bar,
                    streaming, report,
                )
                if written is None:
                    report.skipped.append(path)
                else:
                    report.written.extend(written)
            except (ValueError, OSError, RuntimeError, TypeError) as err:
                report.failed.append((path, str(err)))
    finally:
        if bar is not None:
            bar.close()
    return report


def _predict_one(
    path: Path, out_stem: Path, predictor: _Predictor, prep: Preprocessing, spatial_dims: int,
    in_channels: Optional[int], roi_size: Any, overlap: float, blend: str, task: str, threshold: float,
    class_names: Optional[List[str]], save_probabilities: bool, overlay: bool, overwrite: bool, stream_pixels: int,
    bar: Any, streaming: Any, report: PredictReport,
) -> Optional[List[Path]]:
    from smp_like.io import default_palette, overlay_mask, read_image, read_volume, write_index_png, write_volume
    from smp_like.io.atomic import atomic_output

    volume = is_volume_path(path)
    if volume != (spatial_dims == 3):
        raise ValueError(f"a {'3D volume' if volume else '2D image'} needs a {'3D' if volume else '2D'} model; this "
                         f"model has spatial_dims={spatial_dims}")
    suffix = path.suffix.lower()
    big = False
    if suffix in (".tif", ".tiff"):
        from smp_like.io.tiled import tiff_shape

        height, width, _ = tiff_shape(path)
        big = height * width > stream_pixels
    main_out = out_stem.parent / (out_stem.name + (".nii.gz" if volume else ".tif" if big else ".png"))
    if task == "multilabel" and not volume and not big:
        names = class_names or [str(i) for i in range(1000)]
        main_out = out_stem.parent / f"{out_stem.name}_{names[0]}.png"
    if main_out.exists() and not overwrite:
        return None

    if big:
        roi = roi_size if roi_size is not None else 512
        return streaming.predict_tiff(
            path, out_stem, predictor, prep, in_channels, roi, overlap, blend, task, threshold,
            save_probabilities, bar, palette=prep.palette,
        )

    if volume:
        vol = read_volume(path)
        data, image = vol.data, None
    else:
        image = read_image(path)
        data = np.moveaxis(image, -1, 0)
    if in_channels is not None and data.shape[0] != in_channels:
        raise ValueError(f"the model expects {in_channels} input channels, the file has {data.shape[0]}")
    x = torch.from_numpy(np.ascontiguousarray(prep.normalize(data)))[None]
    spatial = tuple(x.shape[2:])
    if bar is not None:
        bar.total += count_windows(spatial, roi_size, overlap) if roi_size is not None else 1
        bar.refresh()
    if roi_size is not None:
        probs = sliding_window(predictor, x, roi_size, overlap=overlap, sw_batch_size=predictor.sw_batch_size,
                               mode=blend, progress=bar)
    else:
        probs = predictor(x)
        if bar is not None:
            bar.update(1)
    if tuple(probs.shape[2:]) != spatial:
        raise ValueError(f"the model's output size {tuple(probs.shape[2:])} differs from the input's {spatial}; "
                         "masks are written at input size, so use a model with mask_scale 1")
    probs_np = probs[0].numpy()
    mask = _mask_from_probs(probs_np, task, threshold)
    written: List[Path] = []
    n_classes = probs_np.shape[0]
    if volume:
        written.append(write_volume(main_out, mask, vol.affine, vol.header))
        if save_probabilities:
            written.append(write_volume(out_stem.parent / f"{out_stem.name}_probs.nii.gz",
                                        probs_np.astype(np.float16), vol.affine, vol.header))
        return written
    palette = prep.palette or default_palette(max(n_classes + (task == "multilabel"), 2))
    if task == "multilabel":
        names = class_names or [str(i) for i in range(n_classes)]
        for k in range(n_classes):
            written.append(write_index_png(out_stem.parent / f"{out_stem.name}_{names[k]}.png", mask[k],
                                           [palette[0], palette[min(k + 1, len(palette) - 1)]]))
    elif mask.max() > 255:
        target = out_stem.parent / f"{out_stem.name}.npy"
        with atomic_output(target) as tmp:
            np.save(tmp, mask)
        written.append(target)
    else:
        written.append(write_index_png(main_out, mask, palette if task == "multiclass" else palette[:2]))
    if save_probabilities:
        target = out_stem.parent / f"{out_stem.name}_probs.npy"
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, probs_np.astype(np.float16))
        written.append(target)
    if overlay:
        from smp_like.io import write_rgb_png

        index = _overlay_index(probs_np, mask, task)
        written.append(write_rgb_png(out_stem.parent / f"{out_stem.name}_overlay.png",
                                     overlay_mask(image, index, palette)))
    return written
