"""2D image/mask pairs from folders, matched by file stem, checked before training.

Layout: an image folder and a mask folder per root (several roots at once); ``cat.png`` pairs with
``cat.png``/``cat.tif``/... in the mask folder, or with ``cat_mask.png`` given ``mask_suffix="_mask"``.
Multilabel data has one sub-folder per class in the mask folder (``masks/<class name>/<stem>.png``, 0/1 or 0/255).

Masks are read as class indices (``"index"``), as binary 0/255 images (``"binary"``), or as RGB colour masks with one
colour per class (``"colour"``). :func:`scan_pairs` reports every problem (an image without a mask, a mask without an
image, sizes that differ, mask values outside the declared classes, unreadable files) in one :class:`DataError`.

Items follow the datasets contract: ``{"image": (C, H, W) float, "mask": (H, W) long or (K, H, W) float,
"meta": {...}}``; ``"label"`` (K,) float is added for the aux classification head.
"""

import csv
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from smp_like.datasets.labels import invert_intensity, to_grayscale
from smp_like.io.images import IMAGE_SUFFIXES, ImageReadError, read_image, read_mask

__all__ = ["DataError", "Pair", "scan_pairs", "FolderDataset", "mask_to_target", "read_aux_csv", "split_pairs",
           "suffix_files"]


class DataError(ValueError):
    """Problems found in the data; ``problems`` holds one line per offending file (all of them)."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the data:\n  " + "\n  ".join(self.problems))


@dataclass
class Pair:
    """An image and its mask file(s): one mask, or one per class for multilabel data."""

    image: Path
    masks: List[Path]
    stem: str
    extra: Dict[str, Any] = field(default_factory=dict)


def _files(folder: Path, suffix: str) -> Dict[str, Path]:
    """Stem (without ``suffix``) -> file, for readable image files in ``folder``."""
    found: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        stem = path.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        found.setdefault(stem, path)
    return found


def suffix_files(folder: Path, suffix: str, endings: Sequence[str], recursive: bool = False) -> Dict[str, Path]:
    """Key -> file for the files of ``folder`` with one of ``endings`` (``.png``, ``.nii.gz``, ...) and ``suffix``.

    A ``suffix`` that ends with one of ``endings`` (``"_flair.nii.gz"``, ``".png"``) must end the file name; any other
    (``"_flair"``, ``""``) must end the name without its ending. The key is the name without both, and with
    ``recursive`` the folder path relative to ``folder`` in front (``"a/case1"``): Flemme's pairing rule, the same
    relative path with the suffix replaced.
    """
    endings = sorted((e.lower() for e in endings), key=len, reverse=True)
    full = any(suffix.lower().endswith(e) for e in endings)
    found: Dict[str, Path] = {}
    for path in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        name = path.name
        if not path.is_file() or name.startswith("."):
            continue
        ending = next((e for e in endings if name.lower().endswith(e)), None)
        if ending is None:
            continue
        if full:
            if not name.lower().endswith(suffix.lower()):
                continue
            key = name[: len(name) - len(suffix)]
        else:
            base = name[: len(name) - len(ending)]
            if suffix and not base.endswith(suffix):
                continue
            key = base[: len(base) - len(suffix)]
        if recursive:
            key = str(path.parent.relative_to(folder) / key)
        found.setdefault(key, path)
    return found


def mask_to_target(
    mask: np.ndarray, mask_format: str, num_classes: int, colour_map: Optional[Sequence[Sequence[int]]] = None,
    ignore_index: Optional[int] = None,
) -> Tuple[np.ndarray, List[str]]:
    """Turn a stored mask into class indices; also return the problems found (values outside the classes).

    Args:
        mask: ``(H, W)`` values or ``(H, W, 3)`` colours, as :func:`smp_like.io.read_mask` returns.
        mask_format: ``"index"``, ``"binary"`` (0 and 255, or 0 and 1) or ``"colour"``.
        num_classes: the number of declared classes (values ``0 .. num_classes - 1`` are valid).
        colour_map: one RGB colour per class (``"colour"``).
        ignore_index: a value that is kept as it is (pixels left out of loss and metrics).

    Returns:
        ``(indices (H, W) int64, problems)``; problems is empty for a valid mask.
    """
    problems: List[str] = []
    if mask_format == "colour":
        if mask.ndim != 3:
            return mask.astype(np.int64), ["a colour mask must be RGB (H, W, 3), this one is single-channel"]
        out = np.full(mask.shape[:2], -1, dtype=np.int64)
        for index, colour in enumerate(colour_map or ()):
            out[np.all(mask == np.asarray(colour, dtype=mask.dtype), axis=-1)] = index
        if (out < 0).any():
            colours = np.unique(mask[out < 0].reshape(-1, 3), axis=0)[:5]
            problems.append(f"colours not in colour_map: {[tuple(int(v) for v in c) for c in colours]}")
        return out, problems
    if mask.ndim != 2:
        return mask[..., 0].astype(np.int64), [f"an {mask_format} mask must be single-channel, got shape {mask.shape}"]
    out = mask.astype(np.int64)
    if mask_format == "binary":
        values = set(np.unique(out).tolist()) - ({ignore_index} if ignore_index is not None else set())
        if values - {0, 1, 255}:
            problems.append(f"a binary mask holds 0 and 255 (or 0 and 1), found {sorted(values)[:10]}")
        out = np.where((out == 255) & (ignore_index != 255), 1, out)
        return out, problems
    bad = (out < 0) | (out >= num_classes)
    if ignore_index is not None:
        bad &= out != ignore_index
    if bad.any():
        problems.append(f"values {sorted(np.unique(out[bad]).tolist())[:10]} outside the classes 0..{num_classes - 1}")
    return out, problems


def scan_pairs(
    roots: Sequence[Dict[str, Any]],
    task: str,
    classes: Sequence[str],
    mask_format: str = "index",
    colour_map: Optional[Sequence[Sequence[int]]] = None,
    ignore_index: Optional[int] = None,
    check_contents: bool = True,
    label_transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> List[Pair]:
    """Match images with masks by stem in every root and check them; raise one error listing all problems.

    Args:
        roots: mappings with ``images``, ``masks`` (folders; ``masks`` None: images only) and optional
            ``image_suffix``, ``mask_suffix``, ``pairing`` (``"stem"``, or ``"flemme"``: the same relative path under
            both folders, recursive, with ``image_suffix``/``mask_suffix`` as full name endings such as ``".png"``).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"`` (one mask sub-folder per class).
        classes: class names.
        mask_format, colour_map, ignore_index: see :func:`mask_to_target`.
        check_contents: read every file to check readability, sizes and mask values.
        label_transform: applied to a stored index mask before its values are checked (Flemme's Relabel).

    Returns:
        The pairs, sorted by root then stem.

    Raises:
        DataError: listing every missing folder, unmatched file, unreadable file, size mismatch and bad mask.
    """
    problems: List[str] = []
    pairs: List[Pair] = []
    num_classes = len(classes) if task == "multiclass" else 2
    for root in roots:
        suffix = root.get("image_suffix", "") or ""
        if isinstance(suffix, (list, tuple)):
            problems.append(f"{root['images']}: image_suffix lists modalities {list(suffix)}: that is for volumes "
                            "(data.dim 3); 2D images have one file each")
            continue
        images_dir = Path(root["images"])
        masks_dir = Path(root["masks"]) if root.get("masks") else None
        missing = [str(d) for d in (images_dir, masks_dir) if d is not None and not d.is_dir()]
        if missing:
            problems += [f"{d}: no such folder" for d in missing]
            continue
        flemme = root.get("pairing", "stem") == "flemme"
        mask_suffix = root.get("mask_suffix", "") or ""
        if flemme:
            mask_suffix = mask_suffix or suffix  # Flemme: the label suffix defaults to the data suffix
            images = suffix_files(images_dir, suffix or ".png", IMAGE_SUFFIXES, recursive=True)
        else:
            images = _files(images_dir, suffix)
        if not images:
            problems.append(f"{images_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        if masks_dir is None:
            pairs += [Pair(image=image, masks=[], stem=stem.replace("/", "_")) for stem, image in images.items()]
            continue

        def mask_files(folder: Path) -> Dict[str, Path]:
            if flemme:
                return suffix_files(folder, mask_suffix or ".png", IMAGE_SUFFIXES, recursive=True)
            return _files(folder, mask_suffix)

        if task == "multilabel":
            mask_sets = []
            for name in classes:
                sub = masks_dir / name
                if not sub.is_dir():
                    problems.append(f"{sub}: no such folder (multilabel masks: one folder per class)")
                    mask_sets.append({})
                else:
                    mask_sets.append(mask_files(sub))
        else:
            mask_sets = [mask_files(masks_dir)]
        for stem, image in images.items():
            found = [m.get(stem) for m in mask_sets]
            lost = [i for i, f in enumerate(found) if f is None]
            if lost:
                where = masks_dir if task != "multilabel" else ", ".join(str(masks_dir / classes[i]) for i in lost)
                problems.append(f"{image}: image without a mask (looked for {stem!r} in {where})")
                continue
            pairs.append(Pair(image=image, masks=list(found), stem=stem.replace("/", "_")))
        for masks in mask_sets:
            for stem, mask in masks.items():
                if stem not in images:
                    problems.append(f"{mask}: mask without an image (no {stem!r} in {images_dir})")
    if check_contents:
        for pair in pairs:
            problems += _check_pair(pair, task, classes, mask_format, colour_map, ignore_index, num_classes,
                                    label_transform)
    if problems:
        raise DataError(problems)
    return pairs


def _check_pair(pair: Pair, task: str, classes: Sequence[str], mask_format: str,
                colour_map: Optional[Sequence[Sequence[int]]], ignore_index: Optional[int],
                num_classes: int, label_transform: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> List[str]:
    problems = []
    try:
        size = read_image(pair.image).shape[:2]
    except ImageReadError as err:
        return [str(err)]
    fmt = "binary" if task in ("binary", "multilabel") and mask_format == "index" else mask_format
    for path in pair.masks:
        try:
            mask = read_mask(path)
        except ImageReadError as err:
            problems.append(str(err))
            continue
        if mask.shape[:2] != size:
            problems.append(f"{path}: mask size {mask.shape[0]}x{mask.shape[1]} differs from image {pair.image.name} "
                            f"{size[0]}x{size[1]}")
            continue
        if label_transform is not None and mask.ndim == 2:
            mask = label_transform(mask)
        problems += [f"{path}: {p}" for p in mask_to_target(mask, fmt, num_classes, colour_map, ignore_index)[1]]
    return problems


def split_pairs(pairs: Sequence[Pair], val_fraction: float, seed: int) -> Tuple[List[Pair], List[Pair]]:
    """Shuffle with ``seed`` and hold out ``round(val_fraction * n)`` pairs (at least one when the fraction is > 0).

    Raises:
        DataError: when too few pairs remain for training.
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(pairs))) if val_fraction > 0 else 0
    if n_val >= len(pairs):
        raise DataError([f"val_fraction={val_fraction} leaves no training image out of {len(pairs)}"])
    def key(p: Any) -> str:  # 2D pairs have one image, volume cases one per modality
        return str(p.image if hasattr(p, "image") else p.images[0])

    val = sorted((pairs[i] for i in order[:n_val]), key=key)
    train = sorted((pairs[i] for i in order[n_val:]), key=key)
    return train, val


def read_aux_csv(path: Path, classes: Sequence[str]) -> Dict[str, np.ndarray]:
    """Read image-level labels: a CSV with a ``stem`` column and one 0/1 column per class name.

    Raises:
        DataError: for a missing file, missing columns or values other than 0/1 (every bad row listed).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError([f"{path}: no such file (data.aux_labels)"])
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ["stem", *classes] if c not in columns]
        if missing:
            raise DataError([f"{path}: missing columns {missing} (has {columns})"])
        labels, problems = {}, []
        for line, row in enumerate(reader, start=2):
            try:
                values = [float(row[c]) for c in classes]
            except (TypeError, ValueError):
                values = [-1.0]
            if any(v not in (0.0, 1.0) for v in values):
                problems.append(f"{path}:{line}: labels must be 0 or 1, got {[row[c] for c in classes]}")
                continue
            labels[row["stem"]] = np.asarray(values, dtype=np.float32)
    if problems:
        raise DataError(problems)
    return labels


class FolderDataset(Dataset):
    """Image/mask pairs from :func:`scan_pairs`, augmented and normalised.

    Augmentation is a pure function of ``(seed, epoch, index)``: the transform is re-seeded per item, so a run
    resumed mid-epoch, or run with any number of loader workers, sees the same augmented batches.

    Args:
        pairs: the pairs.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        classes: class names.
        normalize: maps a ``(C, H, W)`` float32 array to the network input (e.g. ``Preprocessing.normalize``).
        transform: an albumentations ``Compose`` called as ``transform(image=..., mask=...)``, or None.
        mask_format, colour_map, ignore_index: see :func:`mask_to_target`.
        aux: None, ``"mask"`` (labels: which classes the mask holds) or a stem -> labels mapping (from a CSV).
        seed: augmentation seed.
        label_transform: applied to stored index masks first (Flemme's Relabel / ToBinaryMask).
        grayscale: RGB -> one channel (Flemme's GrayScale).
        invert: ``1 - x`` on intensities scaled to [0, 1] (Flemme's InverseColor; 8-bit: ``255 - x``).
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        task: str,
        classes: Sequence[str],
        normalize: Callable[[np.ndarray], np.ndarray],
        transform: Optional[Callable[..., Dict[str, Any]]] = None,
        mask_format: str = "index",
        colour_map: Optional[Sequence[Sequence[int]]] = None,
        ignore_index: Optional[int] = None,
        aux: Any = None,
        seed: int = 0,
        label_transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
        grayscale: bool = False,
        invert: bool = False,
    ):
        self.label_transform = label_transform
        self.grayscale = grayscale
        self.invert = invert
        self.pairs = list(pairs)
        self.task = task
        self.classes = list(classes)
        self.normalize = normalize
        self.transform = transform
        self.mask_format = mask_format
        self.colour_map = colour_map
        self.ignore_index = ignore_index
        self.aux = aux
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (called by the data module each epoch)."""
        self.epoch = int(epoch)

    def read(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """The stored image ``(H, W, C)`` and the mask as class indices ``(H, W)`` (multilabel: ``(H, W, K)``)."""
        pair = self.pairs[index]
        image = read_image(pair.image)
        if self.grayscale:
            image = to_grayscale(image)
        if self.invert:
            image = invert_intensity(image, 255.0 if image.dtype == np.uint8 else (
                65535.0 if image.dtype == np.uint16 else None))
            image = image.astype(np.float32)
        if not pair.masks:
            return image, None
        num_classes = len(self.classes) if self.task == "multiclass" else 2
        if self.task == "multiclass":
            fmt = self.mask_format
        else:
            fmt = "binary" if self.mask_format == "index" else self.mask_format
        masks = []
        for path in pair.masks:
            stored = read_mask(path)
            if self.label_transform is not None and stored.ndim == 2:
                stored = self.label_transform(stored)
            target, problems = mask_to_target(stored, fmt, num_classes, self.colour_map, self.ignore_index)
            if problems:  # files changed since the scan
                raise DataError([f"{path}: {p}" for p in problems])
            masks.append(target)
        mask = masks[0] if len(masks) == 1 else np.stack(masks, axis=-1)
        return image, mask

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        # ``(epoch, index)`` (from an epoch-aware sampler) selects that epoch's augmentation; a plain index uses
        # the epoch last given to set_epoch.
        epoch, index = (int(index[0]), int(index[1])) if isinstance(index, tuple) else (self.epoch, int(index))
        image, mask = self.read(index)
        pair = self.pairs[index]
        original_size = tuple(image.shape[:2])
        if image.dtype != np.uint8:
            image = image.astype(np.float32)  # albumentations takes uint8 or float32; values stay in stored units
        if self.transform is not None:
            seed = zlib.crc32(f"{self.seed}/{epoch}/{index}".encode())
            self.transform.set_random_seed(seed)
            out = self.transform(image=image, mask=mask) if mask is not None else self.transform(image=image)
            image, mask = out["image"], out.get("mask")
        chw = np.ascontiguousarray(np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0))
        item: Dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(self.normalize(chw), dtype=np.float32)),
            "meta": {"path": str(pair.image), "stem": pair.stem, "original_size": original_size},
        }
        if mask is None:  # images only (masks: null)
            return item
        mask = np.asarray(mask)
        if self.task == "multiclass":
            item["mask"] = torch.from_numpy(mask.astype(np.int64))
        else:
            k_hw = mask[None] if mask.ndim == 2 else np.moveaxis(mask, -1, 0)
            item["mask"] = torch.from_numpy(np.ascontiguousarray(k_hw, dtype=np.float32))
        if self.aux is not None:
            item["label"] = torch.from_numpy(self._label(mask, pair))
        return item

    def _label(self, mask: np.ndarray, pair: Pair) -> np.ndarray:
        if isinstance(self.aux, dict):
            if pair.stem not in self.aux:
                raise DataError([f"{pair.image}: no row {pair.stem!r} in data.aux_labels"])
            return self.aux[pair.stem]
        k = len(self.classes)
        if self.task == "multiclass":
            return np.asarray([(mask == c).any() for c in range(k)], dtype=np.float32)
        km = mask[..., None] if mask.ndim == 2 else mask
        return np.asarray([(km[..., c] == 1).any() for c in range(k)], dtype=np.float32)
