"""SMP's Oxford-IIIT Pet datasets (``segmentation_models_pytorch.datasets``), reading a local copy.

The Oxford-IIIT Pet data set (Parkhi et al. 2012, https://www.robots.ox.ac.uk/~vgg/data/pets/) is laid out as

```
root/images/<name>.jpg
root/annotations/trimaps/<name>.png      # 1 = pet, 2 = background, 3 = pet border
root/annotations/trainval.txt            # "<name> <class id> <species> <breed id>" per line
root/annotations/test.txt
```

:class:`OxfordPetDataset` and :class:`SimpleOxfordPetDataset` take SMP's arguments and return SMP's items. One
deliberate difference: smp_like never downloads at run time, so :meth:`OxfordPetDataset.download` refuses and
says what to fetch and where to put it (see docs/migrating_from_smp.md). Pillow is imported when an item is read.
"""

import os
from typing import Any, Callable, Dict, List, Optional

import numpy as np
from torch.utils.data import Dataset

__all__ = ["OxfordPetDataset", "SimpleOxfordPetDataset", "OXFORD_PET_URLS", "OXFORD_PET_MODES"]

#: Where the two archives of the data set are published (for the manual download).
OXFORD_PET_URLS = (
    "https://thor.robots.ox.ac.uk/datasets/pets/images.tar.gz",
    "https://thor.robots.ox.ac.uk/datasets/pets/annotations.tar.gz",
)
OXFORD_PET_MODES = ("train", "valid", "test")
# SMP's split of trainval.txt: every tenth listed image (0, 10, 20, ...) is held out for validation.
_VALID_EVERY = 10
# Trimap values that count as "pet" in the binary mask: the pet itself and its border.
_PET_VALUES = (1, 3)
_SIMPLE_SIZE = 256


def _pil_image() -> Any:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - Pillow comes with the train extra (matplotlib)
        raise ImportError("OxfordPetDataset reads JPEG/PNG files with Pillow: pip install smp_like[train]") from err
    return Image


def _download_instructions(root: str) -> str:
    return (
        "smp_like does not download data sets at run time. Fetch the Oxford-IIIT Pet archives "
        f"{list(OXFORD_PET_URLS)} yourself and extract both into {root!r} (giving {root!r}/images and "
        f"{root!r}/annotations), then build the dataset again."
    )


class OxfordPetDataset(Dataset):
    """Binary pet-vs-background segmentation on a local copy of Oxford-IIIT Pet, as SMP's class.

    Items are dicts of NumPy arrays: ``image`` (H, W, 3) uint8 RGB, ``mask`` (H, W) float32 (1 = pet or its
    border, 0 = background) and ``trimap`` (H, W) uint8 (the raw annotation). With ``transform``, the item is
    ``transform(image=..., mask=..., trimap=...)`` (an albumentations-style callable returning a dict).

    Args:
        root: folder holding ``images/`` and ``annotations/``.
        mode: ``"train"`` (trainval.txt without every tenth line), ``"valid"`` (every tenth line of
            trainval.txt) or ``"test"`` (test.txt).
        transform: optional callable applied to every item.

    Raises:
        ValueError: for an unknown ``mode``.
        FileNotFoundError: when the layout is missing (with what to download) or listed files are absent (all of
            them named).
    """

    def __init__(self, root: str, mode: str = "train", transform: Optional[Callable[..., Dict[str, Any]]] = None):
        if mode not in OXFORD_PET_MODES:
            raise ValueError(f"`mode` must be one of {OXFORD_PET_MODES}, got {mode!r}")
        self.root = root
        self.mode = mode
        self.transform = transform
        self.images_directory = os.path.join(root, "images")
        self.masks_directory = os.path.join(root, "annotations", "trimaps")
        self.filenames = self._read_split()
        self._check_files()

    def _read_split(self) -> List[str]:
        split_file = "test.txt" if self.mode == "test" else "trainval.txt"
        path = os.path.join(self.root, "annotations", split_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Oxford-IIIT Pet split file {path!r} not found. {_download_instructions(self.root)}"
            )
        with open(path, encoding="utf-8") as handle:
            names = [line.split()[0] for line in handle if line.strip()]
        if self.mode == "train":
            return [name for i, name in enumerate(names) if i % _VALID_EVERY != 0]
        if self.mode == "valid":
            return [name for i, name in enumerate(names) if i % _VALID_EVERY == 0]
        return names

    def _check_files(self) -> None:
        # Report every missing file at once, before any training starts.
        missing = [
            path
            for name in self.filenames
            for path in (self._image_path(name), self._trimap_path(name))
            if not os.path.isfile(path)
        ]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} file(s) listed by the {self.mode!r} split of {self.root!r} are missing: {missing}"
            )

    def _image_path(self, name: str) -> str:
        return os.path.join(self.images_directory, name + ".jpg")

    def _trimap_path(self, name: str) -> str:
        return os.path.join(self.masks_directory, name + ".png")

    def __len__(self) -> int:
        return len(self.filenames)

    def __getitem__(self, idx: int) -> Dict[str, Any]:
        image_module = _pil_image()
        name = self.filenames[idx]
        with image_module.open(self._image_path(name)) as handle:
            image = np.array(handle.convert("RGB"))
        with image_module.open(self._trimap_path(name)) as handle:
            trimap = np.array(handle)
        sample = dict(image=image, mask=self._preprocess_mask(trimap), trimap=trimap)
        if self.transform is not None:
            sample = self.transform(**sample)
        return sample

    @staticmethod
    def _preprocess_mask(trimap: np.ndarray) -> np.ndarray:
        return np.isin(trimap, _PET_VALUES).astype(np.float32)

    @staticmethod
    def download(root: str) -> None:
        """SMP downloads and extracts the data set here; smp_like refuses (no network at run time).

        Raises:
            RuntimeError: always, naming the archives to fetch and the folder to extract them into.
        """
        raise RuntimeError(_download_instructions(root))


class SimpleOxfordPetDataset(OxfordPetDataset):
    """:class:`OxfordPetDataset` resized to 256 x 256 and channels-first, as SMP's class.

    Items: ``image`` (3, 256, 256) uint8 (bilinear resize), ``mask`` (1, 256, 256) float32 and ``trimap``
    (1, 256, 256) uint8 (nearest resize), after the optional ``transform``.
    """

    def __getitem__(self, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        sample = super().__getitem__(*args, **kwargs)
        image_module = _pil_image()
        size = (_SIMPLE_SIZE, _SIMPLE_SIZE)

        def resized(array: np.ndarray, resample: Any) -> np.ndarray:
            return np.array(image_module.fromarray(array).resize(size, resample))

        sample["image"] = np.moveaxis(resized(sample["image"], image_module.BILINEAR), -1, 0)
        sample["mask"] = resized(sample["mask"], image_module.NEAREST)[None]
        sample["trimap"] = resized(sample["trimap"], image_module.NEAREST)[None]
        return sample
