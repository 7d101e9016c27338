"""3D volume datasets: image/label folders (Flemme's layout, several modalities as channels) checked before training.

A case is one or more image files (one per modality, stacked as channels in the order of ``image_suffix``) and
optionally a label file. :func:`scan_volume_cases` finds them:

* ``pairing="stem"``: files of the image folder (not recursive) by name; ``case1_flair.nii.gz`` with
  ``image_suffix="_flair.nii.gz"`` is case ``case1``, whose label is ``case1<mask_suffix>`` (+ any volume ending
  when ``mask_suffix`` has none) in the mask folder.
* ``pairing="flemme"``: Flemme's rule: the same relative path under the mask folder (recursive), with the suffix
  replaced: ``flair/a/case1_flair.nii.gz`` <-> ``seg/a/case1_seg.nii.gz`` (``mask_suffix`` "" = the image suffix).

With ``check_contents`` every case's geometry is compared (modalities and label: same shape and affine) and the
label values checked; every problem, naming the files, is reported in one :class:`DataError`.

:class:`VolumeDataset` yields the datasets contract: ``image`` ``(C, D, H, W)`` float, ``mask`` ``(D, H, W)`` long
(multiclass) or ``(1, D, H, W)`` float (binary), ``meta`` (path, stem, original size, affine, crop box, resize).
Training items are random patches (:class:`~smp_like.datasets.patches.PatchSampler`), evaluation items whole volumes.
"""

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from smp_like.datasets.folder import DataError, suffix_files
from smp_like.datasets.labels import LabelTransform, invert_intensity
from smp_like.datasets.patches import PatchSampler, crop_to_bbox, foreground_coords, nonzero_bbox
from smp_like.io.volumes import SITK_SUFFIXES, VOLUME_SUFFIXES, is_sitk_path, read_volume

__all__ = ["VolumeCase", "scan_volume_cases", "check_cases", "VolumeDataset", "read_geometry", "resize_volume"]

ENDINGS: Tuple[str, ...] = VOLUME_SUFFIXES + SITK_SUFFIXES


@dataclass
class VolumeCase:
    """One case: its image files (one per modality, in channel order), its label file (or None) and its name."""

    images: List[Path]
    mask: Optional[Path]
    stem: str


def scan_volume_cases(roots: Sequence[Dict[str, Any]]) -> List[VolumeCase]:
    """Pair image files (one per modality) with label files in every root.

    Args:
        roots: mappings with ``images``, ``masks`` (a folder or None: images only), ``image_suffix`` (one or a list
            of modalities), ``mask_suffix`` and ``pairing`` (``"stem"`` or ``"flemme"``).

    Returns:
        The cases, sorted by root then name.

    Raises:
        DataError: listing every missing folder, image without a label, label without an image and missing
            modality file.
    """
    problems: List[str] = []
    cases: List[VolumeCase] = []
    for root in roots:
        images_dir = Path(root["images"])
        masks_dir = Path(root["masks"]) if root.get("masks") else None
        missing = [str(d) for d in (images_dir, masks_dir) if d is not None and not d.is_dir()]
        if missing:
            problems += [f"{d}: no such folder" for d in missing]
            continue
        flemme = root.get("pairing", "stem") == "flemme"
        suffixes = root.get("image_suffix") or ""
        suffixes = list(suffixes) if isinstance(suffixes, (list, tuple)) else [suffixes]
        modalities = [suffix_files(images_dir, s, ENDINGS, recursive=flemme) for s in suffixes]
        if not modalities[0]:
            problems.append(f"{images_dir}: no volume files ending in {suffixes[0] or ', '.join(ENDINGS)}")
        mask_suffix = root.get("mask_suffix", "")
        if flemme and not mask_suffix:
            mask_suffix = suffixes[0]  # Flemme: the label suffix defaults to the data suffix
        labels = suffix_files(masks_dir, mask_suffix, ENDINGS, recursive=flemme) if masks_dir is not None else {}
        for key, first in modalities[0].items():
            files = [first]
            for suffix, found in zip(suffixes[1:], modalities[1:]):
                if key not in found:
                    problems.append(f"{first}: no {suffix!r} modality file for case {key!r} in {images_dir}")
                    files = []
                    break
                files.append(found[key])
            if not files:
                continue
            mask = None
            if masks_dir is not None:
                mask = labels.get(key)
                if mask is None:
                    problems.append(f"{first}: image without a label (looked for {key!r} + {mask_suffix!r} in "
                                    f"{masks_dir})")
                    continue
            cases.append(VolumeCase(images=files, mask=mask, stem=key.replace("/", "_")))
        for key, mask in labels.items():
            if key not in modalities[0]:
                problems.append(f"{mask}: label without an image (no {key!r} + {suffixes[0]!r} in {images_dir})")
    if problems:
        raise DataError(problems)
    return cases


def read_geometry(path: Path) -> Tuple[Tuple[int, ...], np.ndarray]:
    """``(spatial shape, affine)`` of a volume file, from its header only where the format allows.

    Raises:
        ValueError: for an unreadable file (naming it).
    """
    if is_sitk_path(path):
        vol = read_volume(path)
        return vol.spatial_shape, vol.affine
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises several types for bad files
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    return tuple(int(s) for s in image.shape[:3]), np.asarray(image.affine, dtype=np.float64)


def _same_geometry(a: Tuple[Tuple[int, ...], np.ndarray], b: Tuple[Tuple[int, ...], np.ndarray]) -> Optional[str]:
    if a[0] != b[0]:
        return f"shape {'x'.join(map(str, b[0]))} vs {'x'.join(map(str, a[0]))}"
    if not np.allclose(a[1], b[1], atol=1e-3, rtol=1e-4):
        diff = float(np.abs(a[1] - b[1]).max())
        return f"affine differs by up to {diff:.4g} (voxel size, orientation or origin)"
    return None


def check_cases(cases: Sequence[VolumeCase], num_classes: Optional[int], label_transform: Optional[LabelTransform],
                ignore_index: Optional[int] = None, check_values: bool = True) -> List[str]:
    """Problems of the cases: unreadable files, modalities or labels whose geometry (shape, affine) differs from
    the first image, label values outside ``0 .. num_classes - 1`` (after ``label_transform``)."""
    problems: List[str] = []
    for case in cases:
        try:
            reference = read_geometry(case.images[0])
        except ValueError as err:
            problems.append(str(err))
            continue
        others = case.images[1:] + ([case.mask] if case.mask is not None else [])
        for path in others:
            try:
                geometry = read_geometry(path)
            except ValueError as err:
                problems.append(str(err))
                continue
            why = _same_geometry(reference, geometry)
            if why:
                kind = "label" if path == case.mask else "modality"
                problems.append(f"{path}: {kind} geometry differs from image {case.images[0]}: {why}")
        if check_values and case.mask is not None and num_classes is not None and not problems:
            try:
                mask = _read_mask(case.mask, label_transform)
            except ValueError as err:
                problems.append(str(err))
                continue
            bad = (mask < 0) | (mask >= num_classes)
            if ignore_index is not None:
                bad &= mask != ignore_index
            if bad.any():
                problems.append(f"{case.mask}: label values {sorted(np.unique(mask[bad]).tolist())[:10]} outside the "
                                f"classes 0..{num_classes - 1}")
    return problems


def _read_mask(path: Path, label_transform: Optional[LabelTransform]) -> np.ndarray:
    vol = read_volume(path)
    if vol.data.shape[0] != 1:
        raise ValueError(f"{path}: a label volume has one channel, this one has {vol.data.shape[0]}")
    data = vol.data[0]
    if np.issubdtype(data.dtype, np.floating) and (label_transform is None or label_transform.threshold is None):
        data = np.rint(data)
    mask = data.astype(np.int64) if label_transform is None or label_transform.threshold is None else data
    if label_transform is not None and label_transform.active:
        mask = label_transform(mask)
    return np.asarray(mask, dtype=np.int64)


def resize_volume(array: np.ndarray, size: Sequence[int], is_mask: bool) -> np.ndarray:
    """Resize ``(C, *spatial)`` images (trilinear) or ``(*spatial)`` masks (nearest, voxel centres: an integer
    up-scaling followed by the inverse down-scaling gives the mask back) to ``size``."""
    import torch.nn.functional as F

    size = tuple(int(s) for s in size)
    if is_mask:
        t = torch.from_numpy(np.ascontiguousarray(array)).float()[None, None]
        return F.interpolate(t, size=size, mode="nearest-exact").round().long()[0, 0].numpy()
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    return F.interpolate(t, size=size, mode="trilinear", align_corners=False)[0].numpy()


class VolumeDataset(Dataset):
    """Volumes of :func:`scan_volume_cases` (or the nnU-Net reader): random patches for training, whole volumes
    otherwise.

    Loading a case: read and stack the modalities, read the label and apply ``label_transform``, crop to the
    nonzero bounding box (``crop_margin`` not None), invert intensities, resize, normalise. Loaded cases are kept in
    memory (``cache``), so each is read once per process.

    Args:
        cases: the cases.
        task: ``"multiclass"`` or ``"binary"``.
        normalize: ``(C, *spatial)`` float32 -> normalised float32 (e.g. per channel z-score).
        patch_size: training patch size; None: whole volumes.
        patches_per_volume: patches drawn per case per epoch (the dataset's length is cases x this).
        foreground_oversampling: see :class:`~smp_like.datasets.patches.PatchSampler`.
        transform: a :class:`~smp_like.datasets.transforms3d.VolumePipeline` (applied to training patches).
        label_transform: Flemme's Relabel/ToBinaryMask of the config.
        crop_margin: ``crop_nonzero`` margin (int or per axis), or None for no cropping.
        invert: ``invert_intensity`` (``1 - x`` after per-channel min-max scaling).
        resize: ``[d, h, w]`` or None.
        ignore_index: label value of padding (else 0).
        seed: the random stream of patches and augmentation is a function of ``(seed, epoch, index)``.
        cache: keep loaded cases in memory.
    """

    def __init__(self, cases: Sequence[VolumeCase], task: str = "multiclass",
                 normalize: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 patch_size: Optional[Sequence[int]] = None, patches_per_volume: int = 1,
                 foreground_oversampling: float = 0.33, transform: Optional[Callable[..., Any]] = None,
                 label_transform: Optional[LabelTransform] = None, crop_margin: Union[None, int, Sequence[int]] = None,
                 invert: bool = False, resize: Optional[Sequence[int]] = None, ignore_index: Optional[int] = None,
                 seed: int = 0, cache: bool = True):
        if task not in ("multiclass", "binary"):
            raise ValueError(f"`task` must be 'multiclass' or 'binary' for volumes, got {task!r}")
        self.cases = list(cases)
        self.task = task
        self.normalize = normalize
        self.patch_size = tuple(patch_size) if patch_size is not None else None
        self.patches_per_volume = int(patches_per_volume) if patch_size is not None else 1
        mask_pad = ignore_index if ignore_index is not None else 0
        self.sampler = PatchSampler(patch_size, foreground_oversampling, mask_pad) if patch_size is not None else None
        self.transform = transform
        self.label_transform = label_transform
        self.crop_margin = crop_margin
        self.invert = invert
        self.resize = tuple(resize) if resize is not None else None
        self.seed = int(seed)
        self.epoch = 0
        self.cache = cache
        self._cache: Dict[int, Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, Dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self.cases) * self.patches_per_volume

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def load_raw(self, case_index: int) -> Tuple[np.ndarray, Optional[np.ndarray], Dict[str, Any]]:
        """A case before normalisation: ``(image (C, *spatial) float32, mask or None, meta)``.

        Raises:
            DataError: for a file that cannot be read or whose shape differs from the first image's.
        """
        case = self.cases[case_index]
        channels, affine, header = [], None, None
        for path in case.images:
            try:
                vol = read_volume(path)
            except ValueError as err:
                raise DataError([str(err)]) from None
            if channels and vol.spatial_shape != channels[0].shape[1:]:
                raise DataError([f"{path}: modality shape {vol.spatial_shape} differs from image {case.images[0]} "
                                 f"{channels[0].shape[1:]}"])
            if affine is None:
                affine, header = vol.affine, vol.header
            channels.append(vol.data.astype(np.float32))
        image = np.concatenate(channels, axis=0)
        mask = None
        if case.mask is not None:
            try:
                mask = _read_mask(case.mask, self.label_transform)
            except ValueError as err:
                raise DataError([str(err)]) from None
            if mask.shape != image.shape[1:]:
                raise DataError([f"{case.mask}: label shape {mask.shape} differs from image {case.images[0]} "
                                 f"{image.shape[1:]}"])
        meta: Dict[str, Any] = {"path": str(case.images[0]), "stem": case.stem, "original_size": image.shape[1:],
                                "affine": affine, "crop": None, "resized_from": None}
        if self.crop_margin is not None:
            box = nonzero_bbox(image, self.crop_margin)
            image = crop_to_bbox(image, box)
            mask = crop_to_bbox(mask, box) if mask is not None else None
            meta["crop"] = box
        if self.invert:
            image = np.stack([invert_intensity(c) for c in image])
        if self.resize is not None:
            meta["resized_from"] = tuple(image.shape[1:])
            image = resize_volume(image, self.resize, False)
            mask = resize_volume(mask, self.resize, True) if mask is not None else None
        return np.ascontiguousarray(image, dtype=np.float32), mask, meta

    def _load(self, case_index: int) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, Dict[str, Any]]:
        if case_index in self._cache:
            return self._cache[case_index]
        image, mask, meta = self.load_raw(case_index)
        if self.normalize is not None:
            image = np.ascontiguousarray(self.normalize(image), dtype=np.float32)
        coords = foreground_coords(mask, seed=case_index) if self.sampler is not None else np.zeros((0, 3), np.int64)
        entry = (image, mask, coords, meta)
        if self.cache:
            self._cache[case_index] = entry
        return entry

    def read(self, index: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The whole normalised volume ``(C, *spatial)`` of case ``index`` and its mask."""
        image, mask, _, _ = self._load(index)
        return image, mask

    def restore(self, prediction: np.ndarray, meta: Dict[str, Any]) -> np.ndarray:
        """Map a prediction ``(*spatial)`` of an evaluation item back to the file's voxel grid (undo the resize and
        the nonzero crop; voxels outside the crop are 0)."""
        out = np.asarray(prediction)
        if meta.get("resized_from") is not None:
            out = resize_volume(out, meta["resized_from"], True)
        if meta.get("crop") is not None:
            full = np.zeros(tuple(meta["original_size"]), dtype=out.dtype)
            full[tuple(slice(a, b) for a, b in meta["crop"])] = out
            out = full
        return out

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        epoch, index = (int(index[0]), int(index[1])) if isinstance(index, tuple) else (self.epoch, int(index))
        case_index = index // self.patches_per_volume
        image, mask, coords, meta = self._load(case_index)
        if self.sampler is not None:
            rng = np.random.default_rng(zlib.crc32(f"{self.seed}/{epoch}/{index}".encode()))
            image, mask, _ = self.sampler(image, mask, rng, coords)
            if self.transform is not None:
                image, mask = self.transform(image, mask, rng)
        item: Dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                                "meta": dict(meta)}
        if mask is not None:
            mask = np.ascontiguousarray(mask)
            if self.task == "multiclass":
                item["mask"] = torch.from_numpy(mask.astype(np.int64))
            else:
                item["mask"] = torch.from_numpy(mask[None].astype(np.float32))
        return item
