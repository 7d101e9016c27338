"""``preprocessing.json``: how a model's inputs were normalised and what its outputs mean, saved beside its weights.

``save_pretrained`` writes ``config.json`` in SMP's format; what SMP has no key for (normalisation, class names,
the task, the palette) lives in this separate file, so SMP still loads the folder and ``smp-like predict`` needs no
flags. Training writes it into ``best/``; prediction reads it (flags override single fields).

Normalisation of a channels-first float image ``x`` (in the stored pixel scale):

* ``"mean_std"`` (default, SMP/timm style): ``(x / max_pixel_value - mean) / std`` per channel;
* ``"zscore"``: per image and channel, ``(x - mean(x)) / std(x)`` (nnU-Net's non-CT scheme);
* ``"none"``: ``x`` as is.

``clip = (low, high)``, when given, clips intensities first (a CT window, in stored units).
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from smp_like.io.atomic import atomic_output

PREPROCESSING_NAME = "preprocessing.json"
TASKS: Tuple[str, ...] = ("binary", "multiclass", "multilabel")
NORMALIZATIONS: Tuple[str, ...] = ("mean_std", "zscore", "none")


@dataclass
class Preprocessing:
    """Input normalisation and output meaning of a trained model.

    Attributes:
        normalization: ``"mean_std"``, ``"zscore"`` or ``"none"`` (see the module docstring).
        mean: per-channel mean (``mean_std``), in the scale after dividing by ``max_pixel_value``.
        std: per-channel standard deviation (``mean_std``).
        max_pixel_value: divisor applied before ``mean``/``std`` (255 for 8-bit images).
        clip: optional ``(low, high)`` intensity window applied first.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``: how logits become a mask.
        class_names: one name per output class (``multiclass`` includes the background).
        threshold: probability threshold for ``binary`` / ``multilabel``.
        palette: one RGB colour per class for mask PNGs and overlays.
        spatial_dims: 2 for images, 3 for volumes.
    """

    normalization: str = "mean_std"
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    max_pixel_value: float = 255.0
    clip: Optional[List[float]] = None
    task: str = "multiclass"
    class_names: Optional[List[str]] = None
    threshold: float = 0.5
    palette: Optional[List[List[int]]] = None
    spatial_dims: int = 2
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {self.task!r}")
        if self.normalization == "mean_std":
            if (self.mean is None) != (self.std is None):
                raise ValueError("`mean` and `std` go together: give both or neither")
            if self.mean is not None and len(self.mean) != len(self.std):
                raise ValueError(f"`mean` ({len(self.mean)} values) and `std` ({len(self.std)}) differ in length")
            if self.std is not None and any(float(s) <= 0 for s in self.std):
                raise ValueError(f"`std` values must be > 0, got {self.std}")
        if not float(self.max_pixel_value) > 0:
            raise ValueError(f"`max_pixel_value` must be > 0, got {self.max_pixel_value!r}")
        if self.clip is not None and (len(self.clip) != 2 or not float(self.clip[0]) < float(self.clip[1])):
            raise ValueError(f"`clip` must be (low, high) with low < high, got {self.clip!r}")
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"`threshold` must be in (0, 1), got {self.threshold!r}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"`spatial_dims` must be 2 or 3, got {self.spatial_dims!r}")

    @property
    def num_classes(self) -> Optional[int]:
        return None if self.class_names is None else len(self.class_names)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """Normalise a channels-first image ``(C, *spatial)``; returns float32.

        Raises:
            ValueError: when ``mean``/``std`` have another length than the image has channels.
        """
        x = np.asarray(image, dtype=np.float32)
        if self.clip is not None:
            x = np.clip(x, float(self.clip[0]), float(self.clip[1]))
        if self.normalization == "none":
            return x
        axes = tuple(range(1, x.ndim))
        shape = (-1,) + (1,) * (x.ndim - 1)
        if self.normalization == "zscore":
            mean = x.mean(axis=axes, keepdims=True)
            std = x.std(axis=axes, keepdims=True)
            return (x - mean) / np.maximum(std, 1e-8)
        x = x / np.float32(self.max_pixel_value)
        if self.mean is None:
            return x
        if len(self.mean) != x.shape[0]:
            raise ValueError(
                f"the model expects {len(self.mean)} input channels (its normalisation has {len(self.mean)} "
                f"means), the image has {x.shape[0]}"
            )
        mean = np.asarray(self.mean, np.float32).reshape(shape)
        std = np.asarray(self.std, np.float32).reshape(shape)
        return (x - mean) / std

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def save(self, folder: Union[str, Path]) -> Path:
        """Write ``folder/preprocessing.json`` (atomically)."""
        path = Path(folder) / PREPROCESSING_NAME
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "Preprocessing":
        """Build from a dict, refusing unknown keys (naming them).

        Raises:
            ValueError: for unknown keys or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    @classmethod
    def load(cls, folder: Union[str, Path]) -> Optional["Preprocessing"]:
        """Read ``folder/preprocessing.json``; None when the folder has none (e.g. a folder written by SMP).

        Raises:
            ValueError: for a file that is not valid JSON or holds invalid values (naming the file).
        """
        path = Path(folder) / PREPROCESSING_NAME
        if not path.is_file():
            return None
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(values)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None


def from_encoder(encoder_name: str, encoder_weights: Optional[str], in_channels: int = 3,
                 **kwargs: Any) -> Preprocessing:
    """The ``mean_std`` normalisation an encoder's pretrained weights expect (ImageNet's when unknown).

    Channels beyond the encoder's three reuse its statistics cyclically, as ``set_in_channels`` repeats RGB weights;
    one channel gets their average.
    """
    from smp_like.encoders import get_preprocessing_params

    try:
        params = get_preprocessing_params(encoder_name, pretrained=encoder_weights or "imagenet")
    except (KeyError, ValueError):
        params = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    mean, std = list(params.get("mean") or [0.485, 0.456, 0.406]), list(params.get("std") or [0.229, 0.224, 0.225])
    # Weights trained on 0..255 inputs (input_range [0, 255]) divide 8-bit pixels by 1, not by 255.
    top = float((params.get("input_range") or [0, 1])[1])
    kwargs.setdefault("max_pixel_value", 255.0 / top)
    if in_channels == 1:
        mean, std = [float(np.mean(mean))], [float(np.mean(std))]
    else:
        mean = [float(mean[i % len(mean)]) for i in range(in_channels)]
        std = [float(std[i % len(std)]) for i in range(in_channels)]
    return Preprocessing(normalization="mean_std", mean=mean, std=std, **kwargs)


