"""Images-only folder data for reconstruction, generation and classification runs.

A root is ``{images: DIR, image_suffix: ...}`` (its ``masks`` are not read). Every image file of the folder (2D:
PNG/JPEG/TIFF/BMP/``.npy``; 3D: ``.nii``/``.nii.gz``) is an item whose stem is the file name without
``image_suffix``. Values are scaled to [0, 1] for reconstruction and generation (8-bit: /255, 16-bit: /65535,
floats and volumes: min-max per image); classification runs normalise as segmentation runs do
(``data.normalization`` or the encoder's statistics). Classification labels come from ``data.labels_csv``
(columns ``stem``, ``label``: an index or a class name).

Loading, shuffling and augmentation follow :mod:`smp_like.training.data`: resumable ``StatefulDataLoader`` s and an
epoch-seeded :class:`~smp_like.training.data.EpochShuffle`, so resumed runs see the batches an unbroken run would.
"""

import csv
import math
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

try:
    import lightning.pytorch as pl
    from torchdata.stateful_dataloader import StatefulDataLoader
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("the data module needs lightning and torchdata; `pip install smp_like[train]`") from err

from smp_like.datasets.augment import build_pipeline
from smp_like.datasets.folder import DataError
from smp_like.io.images import IMAGE_SUFFIXES, ImageReadError, read_image
from smp_like.io.preprocessing import Preprocessing
from smp_like.io.volumes import VOLUME_SUFFIXES, is_volume_path, read_volume
from smp_like.training.data import EpochShuffle, collate, preprocessing_for

__all__ = ["ImageItem", "scan_images", "read_labels_csv", "scale_to_unit", "ImageFolderDataset", "ImageDataModule"]


class ImageItem:
    """One image file and its stem."""

    __slots__ = ("path", "stem")

    def __init__(self, path: Path, stem: str):
        self.path = Path(path)
        self.stem = stem

    def __repr__(self) -> str:
        return f"ImageItem({str(self.path)!r})"


def _stem(path: Path, suffix: str) -> Optional[str]:
    name = path.name
    for ending in VOLUME_SUFFIXES + tuple(IMAGE_SUFFIXES):
        if name.lower().endswith(ending):
            name = name[: -len(ending)]
            break
    if suffix:
        if not name.endswith(suffix):
            return None
        name = name[: -len(suffix)]
    return name


def scan_images(roots: Sequence[Any], dim: int = 2) -> Tuple[List[ImageItem], List[str]]:
    """Every image (``dim`` 2) or NIfTI volume (``dim`` 3) of each root's ``images`` folder, sorted by path.

    Returns:
        ``(items, problems)``: problems name each missing or empty folder.
    """
    items: List[ImageItem] = []
    problems: List[str] = []
    for root in roots:
        folder = Path(root["images"] if isinstance(root, dict) else root.images)
        suffix = (root.get("image_suffix") if isinstance(root, dict) else root.image_suffix) or ""
        if not folder.is_dir():
            problems.append(f"{folder}: no such folder (data images)")
            continue
        found = []
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            volume = is_volume_path(path)
            if (dim == 3) != volume or (not volume and path.suffix.lower() not in IMAGE_SUFFIXES):
                continue
            stem = _stem(path, suffix)
            if stem is not None:
                found.append(ImageItem(path, stem))
        if not found:
            kinds = ", ".join(VOLUME_SUFFIXES if dim == 3 else IMAGE_SUFFIXES)
            problems.append(f"{folder}: no image files ({kinds}) ending in {suffix!r}" if suffix else
                            f"{folder}: no image files ({kinds})")
        items += found
    return items, problems


def read_labels_csv(path: Union[str, Path], classes: Sequence[str]) -> Dict[str, int]:
    """``stem -> class index`` from a CSV with columns ``stem`` and ``label`` (an index or a class name).

    Raises:
        DataError: for a missing file or columns, or labels that are neither an index nor a class name (every bad
            row listed).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError([f"{path}: no such file (data.labels_csv)"])
    names = {c: i for i, c in enumerate(classes)}
    labels: Dict[str, int] = {}
    problems: List[str] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "stem" not in columns or "label" not in columns:
            raise DataError([f"{path}: needs columns 'stem' and 'label' (has {columns})"])
        for line, row in enumerate(reader, start=2):
            value = (row["label"] or "").strip()
            if value in names:
                labels[row["stem"]] = names[value]
            elif value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
                labels[row["stem"]] = int(value)
            else:
                problems.append(f"{path}:{line}: label {value!r} is neither an index 0..{len(classes) - 1} nor one of "
                                f"{list(classes)}")
    if problems:
        raise DataError(problems)
    return labels


def scale_to_unit(array: np.ndarray) -> np.ndarray:
    """Values in [0, 1]: unsigned integers divided by their maximum (255, 65535), anything else min-max scaled."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


class ImageFolderDataset(Dataset):
    """Items ``{"image": (C, *spatial) float, "meta": {...}}`` (+ ``"label"`` with labels).

    Args:
        items: the files (:func:`scan_images`).
        dim: 2 (images) or 3 (NIfTI volumes).
        normalize: ``None`` to scale to [0, 1], or a function of the ``(C, H, W)`` float array (classification).
        transform: an albumentations pipeline for 2D images (re-seeded per item from ``(seed, epoch, index)``).
        labels: ``stem -> class index`` or None.
        seed: augmentation seed.
    """

    def __init__(self, items: Sequence[ImageItem], dim: int = 2, normalize: Any = None, transform: Any = None,
                 labels: Optional[Dict[str, int]] = None, seed: int = 0):
        self.items = list(items)
        self.dim = dim
        self.normalize = normalize
        self.transform = transform
        self.labels = labels
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def read(self, index: int) -> Tuple[np.ndarray, Dict[str, Any]]:
        """The stored array (2D: ``(H, W, C)``; 3D: ``(C, X, Y, Z)``) and its meta data (3D: affine and header)."""
        item = self.items[index]
        meta: Dict[str, Any] = {"path": str(item.path), "stem": item.stem}
        if self.dim == 3:
            volume = read_volume(item.path)
            meta.update(affine=volume.affine, header=volume.header)
            return volume.data, meta
        return read_image(item.path), meta

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        epoch, index = (int(index[0]), int(index[1])) if isinstance(index, tuple) else (self.epoch, int(index))
        array, meta = self.read(index)
        meta["original_size"] = tuple(array.shape[1:]) if self.dim == 3 else tuple(array.shape[:2])
        if self.dim == 3:
            chw = scale_to_unit(array) if self.normalize is None else self.normalize(array.astype(np.float32))
        else:
            image = array if array.dtype == np.uint8 else array.astype(np.float32)
            if self.transform is not None:
                self.transform.set_random_seed(zlib.crc32(f"{self.seed}/{epoch}/{index}".encode()))
                image = self.transform(image=image, mask=np.zeros(image.shape[:2], np.uint8))["image"]
            if self.normalize is None:
                chw = np.moveaxis(scale_to_unit(np.asarray(image)), -1, 0)
            else:
                chw = self.normalize(np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0))
        out: Dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32)), "meta": meta}
        if self.labels is not None:
            out["label"] = torch.tensor(self.labels[self.items[index].stem], dtype=torch.long)
        return out


def _split(items: List[ImageItem], fraction: float, seed: int) -> Tuple[List[ImageItem], List[ImageItem]]:
    if fraction <= 0 or len(items) < 2:
        return items, []
    n_val = min(len(items) - 1, max(1, int(math.ceil(len(items) * fraction))))
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(int(seed))).tolist()
    val = set(order[:n_val])
    return [it for i, it in enumerate(items) if i not in val], [it for i, it in enumerate(items) if i in val]


class ImageDataModule(pl.LightningDataModule):
    """Train / val / test image folders of a reconstruction, generation or classification config.

    Args:
        cfg: the validated config.

    Raises:
        DataError: from :meth:`prepare`, listing every problem (missing folders, unreadable files, missing labels).
    """

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        self.classification = cfg.resolved_task == "classification"
        self.dim = int(getattr(cfg.data, "dim", 2) or 2)
        if self.classification:
            self.preprocessing = preprocessing_for(cfg)
        else:
            channels = int(cfg.model.in_channels)
            self.preprocessing = Preprocessing(normalization="mean_std", mean=[0.0] * channels, std=[1.0] * channels,
                                               max_pixel_value=255.0, task="binary", class_names=["image"],
                                               spatial_dims=self.dim)
        self.items: Dict[str, List[ImageItem]] = {}
        self.datasets: Dict[str, ImageFolderDataset] = {}
        self._prepared = False

    def _expected_channels(self) -> Optional[int]:
        model = self.cfg.model
        if model.from_pretrained:
            return None
        if str(model.arch).lower() in ("ldpm", "ldim"):
            ae = model.kwargs.get("autoencoder") or {}
            return int(ae["in_channels"]) if isinstance(ae, dict) and "in_channels" in ae else None
        return int(model.in_channels)

    def prepare(self) -> "ImageDataModule":
        """Scan every split, read every file once and check labels: all problems in one :class:`DataError`."""
        if self._prepared:
            return self
        d = self.cfg.data
        problems: List[str] = []
        for split in ("train", "val", "test"):
            roots = getattr(d, split)
            if roots:
                self.items[split], found = scan_images([r.model_dump() for r in roots], self.dim)
                problems += found
        labels = None
        if self.classification:
            try:
                labels = read_labels_csv(d.labels_csv, d.classes)
            except DataError as err:
                problems += err.problems
            else:
                problems += [f"{it.path}: no row {it.stem!r} in {d.labels_csv}" for split in self.items.values()
                             for it in split if it.stem not in labels]
        channels = self._expected_channels()
        for split in self.items.values():
            for it in split:
                try:
                    array = read_volume(it.path).data if self.dim == 3 else read_image(it.path)
                except (ImageReadError, ValueError) as err:
                    problems.append(str(err))
                    continue
                found = array.shape[0] if self.dim == 3 else array.shape[-1]
                if channels is not None and found != channels:
                    problems.append(f"{it.path}: {found} channels, but the model takes {channels} (model.in_channels)")
        if problems:
            raise DataError(problems)
        seed = self.cfg.seed or 0
        if "val" not in self.items:
            self.items["train"], val = _split(self.items["train"], d.val_fraction, seed)
            if val:
                self.items["val"] = val
        train_tf = build_pipeline([t.model_dump() for t in d.augment.train], d.crop_size, 0, seed) if self.dim == 2 \
            else None
        eval_tf = build_pipeline([t.model_dump() for t in d.augment.eval], None, 0, seed) if self.dim == 2 else None
        normalize = self.preprocessing.normalize if self.classification else None
        for split, items in self.items.items():
            self.datasets[split] = ImageFolderDataset(items, self.dim, normalize,
                                                      train_tf if split == "train" else eval_tf, labels, seed)
        self._prepared = True
        return self

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare()

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets.values():
            dataset.set_epoch(epoch)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> StatefulDataLoader:
        if split not in self.datasets:
            raise ValueError(f"no {split!r} data: add data.{split} folders to the config")
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        source = (lambda: trainer.current_epoch) if trainer is not None else None
        dataset = self.datasets[split]
        sampler = EpochShuffle(len(dataset), self.cfg.seed or 0, shuffle, rank, world, source)
        return StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=self.cfg.data.num_workers,
                                  collate_fn=collate, drop_last=False, persistent_workers=False)

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train", True, self.cfg.data.batch_size)

    def val_dataloader(self) -> StatefulDataLoader:
        d = self.cfg.data
        return self._loader("val", False, d.val_batch_size or d.batch_size)

    def test_dataloader(self) -> StatefulDataLoader:
        d = self.cfg.data
        return self._loader("test", False, d.val_batch_size or d.batch_size)
