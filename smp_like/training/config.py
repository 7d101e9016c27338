"""The training configuration: a YAML file validated by a pydantic schema before anything is built.

``load_config(path, overrides)`` reads the YAML with ``yaml.safe_load`` (plus ``1e-4``-style floats, which YAML 1.1
would read as strings), applies dotted ``--set`` overrides, and validates. Every error names the key path, the value
and what was expected; unknown keys suggest the closest known name. ``TrainConfig.to_yaml()`` writes the resolved
config (defaults filled) that ``load_config`` reads back unchanged.

Sections: ``model``, ``data``, ``loss``, ``metrics``, ``optimizer``, ``scheduler``, ``trainer``, ``checkpoint``,
``early_stopping``, ``plots``, plus ``seed``, ``output_dir``, ``run_name``, ``resume``, ``skip_nonfinite``. See
docs/configuration.md for every key.
"""

import difflib
import inspect
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Sequence, Tuple, Union

try:
    import yaml
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "smp_like.training.config needs pydantic and pyyaml; install them with `pip install smp_like[train]`."
    ) from err

__all__ = [
    "ConfigError",
    "TrainConfig",
    "load_config",
    "parse_config",
    "apply_overrides",
    "OPTIMIZERS",
    "SCHEDULERS",
    "METRICS",
    "IMAGE_METRICS",
    "resolve_task",
    "task_kind",
]

TASKS = ("binary", "multiclass", "multilabel")
MASK_FORMATS = ("index", "binary", "colour")
#: Metric names accepted in ``metrics.names`` (functions of ``smp_like.metrics`` on confusion counts).
METRICS: Tuple[str, ...] = ("iou", "dice", "precision", "recall", "accuracy", "specificity")
#: Image metrics of reconstruction / generation runs (``smp_like.training.image_metrics``).
IMAGE_METRICS: Tuple[str, ...] = ("ssim", "psnr", "mse")
#: ``task`` values; ``auto`` resolves from ``model.arch`` (:func:`resolve_task`).
RUN_TASKS: Tuple[str, ...] = ("auto", "segmentation", "classification", "reconstruction", "generation")
#: Architectures (lower case) of each resolved task; every other architecture is a segmentation model.
AUTOENCODER_ARCHS = ("ae", "vae", "hae")
DIFFUSION_ARCHS = ("ddpm", "ddim", "ldpm", "ldim")
SUPERVISED_DIFFUSION_ARCHS = ("sdpm", "sdim")
CLASSIFIER_ARCHS = ("clm",)


class ConfigError(ValueError):
    """An invalid configuration; ``errors`` lists one ``"key.path: message"`` line per problem.

    Args:
        errors: the problems, one ``"key.path: message"`` each.
        source: the config file, named in the message.
    """

    def __init__(self, errors: Sequence[str], source: Optional[str] = None):
        self.errors = list(errors)
        where = f" in {source}" if source else ""
        super().__init__(f"invalid configuration{where}:\n  " + "\n  ".join(self.errors))


def _suggest(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def _torch_names(module: Any, base: type) -> List[str]:
    return sorted(
        name for name, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("_")
    )


def _optimizers() -> List[str]:
    import torch

    return _torch_names(torch.optim, torch.optim.Optimizer)


def _schedulers() -> List[str]:
    import torch

    names = _torch_names(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
    return sorted(set(names + ["ReduceLROnPlateau"]) - {"LRScheduler", "SequentialLR", "ChainedScheduler"})


OPTIMIZERS = _optimizers
SCHEDULERS = _schedulers


def _check_kwargs(owner: str, target: Any, kwargs: Dict[str, Any], skip: Sequence[str] = ()) -> List[str]:
    """Errors for keyword arguments ``target`` (a class or function) does not take, with close-name suggestions."""
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins without a signature: let the constructor decide
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    known = [n for n in params if n not in ("self", "params") and n not in skip]
    name = getattr(target, "__name__", str(target))
    return [
        f"{owner}.{key}: {name} takes no argument {key!r}{_suggest(key, known)} (it takes: {', '.join(known)})"
        for key in kwargs if key not in params
    ]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _OpenSection(BaseModel):
    """A section whose extra keys are constructor arguments, checked against the constructor's signature."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @property
    def kwargs(self) -> Dict[str, Any]:
        return dict(self.model_extra or {})


# --------------------------------------------------------------------------------------------------- sections


class ModelConfig(_OpenSection):
    """``model``: an architecture by name plus its constructor arguments, or ``from_pretrained: folder``.

    ``classes`` is filled from ``data.classes`` when not given; other keys go to the constructor as they are.
    """

    arch: Optional[str] = "Unet"
    from_pretrained: Optional[str] = None
    encoder_name: Optional[str] = "resnet34"
    encoder_weights: Optional[str] = "imagenet"
    in_channels: int = Field(3, ge=1)
    gradient_checkpointing: bool = False  # model.set_gradient_checkpointing(True): less memory, ~1 more forward


class Split(_Section):
    """One data root: an image folder and a mask folder (or none: images only).

    ``image_suffix`` may be a list: one file per modality, stacked as channels in list order (volumes). ``pairing``
    ``stem`` matches files of one folder by stem; ``flemme`` matches the same relative path under both folders
    (recursive) with the suffix replaced, as Flemme does (``flair/case1_flair.nii.gz`` <-> ``seg/case1_seg.nii.gz``).
    """

    images: str
    masks: Optional[str] = None  # null/absent: images only (reconstruction, generation, unlabelled test)
    image_suffix: Union[str, List[str]] = ""
    mask_suffix: str = ""
    pairing: Literal["stem", "flemme"] = "stem"

    @field_validator("image_suffix")
    @classmethod
    def _suffixes(cls, value: Union[str, List[str]]) -> Union[str, List[str]]:
        if isinstance(value, list):
            if not value:
                raise ValueError("image_suffix list is empty: give one suffix per modality")
            if len(set(value)) != len(value):
                raise ValueError(f"image_suffix lists a modality twice: {value}")
        return value


class NormalizationConfig(_Section):
    """Input normalisation (see :class:`smp_like.io.Preprocessing`); default: the encoder's statistics (2D), per
    channel z-score (3D). ``ct``: clip to the training set's ``percentiles`` (foreground voxels), then z-score with
    the clipped foreground's mean and std (nnU-Net's CT scheme; volumes only)."""

    normalization: Literal["mean_std", "zscore", "ct", "none"] = "mean_std"
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    max_pixel_value: float = Field(255.0, gt=0)
    clip: Optional[Tuple[float, float]] = None
    percentiles: Tuple[float, float] = (0.5, 99.5)

    @model_validator(mode="after")
    def _percentiles(self) -> "NormalizationConfig":
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {list(self.percentiles)}")
        return self


class CropNonzero(_Section):
    """``crop_nonzero``: crop each volume to the bounding box of its nonzero input voxels, plus ``margin``."""

    margin: Union[int, List[int]] = 0


class Transform(_OpenSection):
    """One albumentations transform: ``name`` (a class of ``albumentations``) and its arguments."""

    name: str


class AugmentConfig(_Section):
    train: List[Transform] = Field(default_factory=list)
    eval: List[Transform] = Field(default_factory=list)


class DataConfig(_Section):
    """``data``: where the images and masks are and how to read them (2D images or 3D volumes, see docs/volumes.md)."""

    dim: Literal[2, 3] = 2
    layout: Literal["folder", "nnunet"] = "folder"
    root: Optional[str] = None
    task: Literal["binary", "multiclass", "multilabel"] = "multiclass"
    classes: List[str] = Field(min_length=1)
    train: List[Split] = Field(default_factory=list)
    val: List[Split] = Field(default_factory=list)
    test: List[Split] = Field(default_factory=list)
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    mask_format: Literal["index", "binary", "colour"] = "index"
    colour_map: Optional[List[Tuple[int, int, int]]] = None
    ignore_index: Optional[int] = None
    normalization: Optional[NormalizationConfig] = None
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    crop_size: Optional[Tuple[int, int]] = None
    patch_size: Optional[Tuple[int, int, int]] = None
    patches_per_volume: int = Field(1, ge=1)
    foreground_oversampling: float = Field(0.33, ge=0.0, le=1.0)
    crop_nonzero: Optional[CropNonzero] = None
    label_map: Optional[Dict[int, int]] = None
    label_offset: Optional[int] = None
    relabel_consecutive: bool = False
    mask_threshold: Optional[float] = None
    invert_intensity: bool = False
    grayscale: bool = False
    resize: Optional[List[int]] = None
    batch_size: int = Field(8, ge=1)
    val_batch_size: Optional[int] = Field(None, ge=1)
    num_workers: int = Field(0, ge=0)
    aux_labels: Optional[str] = None
    labels_csv: Optional[str] = None
    val_roi_size: Optional[List[int]] = None
    val_overlap: float = Field(0.25, ge=0.0, lt=1.0)

    @field_validator("train", "val", "test", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="before")
    @classmethod
    def _nnunet_classes(cls, value: Any) -> Any:
        # nnU-Net layout: the classes come from dataset.json's labels when the config leaves them out.
        if (isinstance(value, dict) and value.get("layout") == "nnunet" and not value.get("classes")
                and value.get("root")):
            from smp_like.datasets.nnunet import read_dataset_json

            try:
                info = read_dataset_json(value["root"])
            except (OSError, ValueError) as err:
                raise ValueError(f"root: {err}") from None
            value = dict(value, classes=info.classes)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "DataConfig":
        if self.layout == "nnunet":
            if not self.root:
                raise ValueError("layout 'nnunet' needs root: the dataset folder (dataset.json, imagesTr/, labelsTr/)")
            if self.dim != 3:
                raise ValueError("layout 'nnunet' reads volumes: set dim: 3")
        elif not self.train:
            raise ValueError("train: at least one {images: DIR, masks: DIR} root is needed (or layout: nnunet)")
        if self.dim == 2:
            for key in ("patch_size", "crop_nonzero"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is for volumes (dim: 3); 2D images use crop_size")
            if self.normalization is not None and self.normalization.normalization == "ct":
                raise ValueError("normalization 'ct' is for volumes (dim: 3); use mean_std with clip for 2D images")
            if self.resize is not None and len(self.resize) != 2:
                raise ValueError(f"resize must be [h, w] for dim 2, got {self.resize}")
            if self.val_roi_size is not None and len(self.val_roi_size) != 2:
                raise ValueError(f"val_roi_size must be [h, w] for dim 2, got {self.val_roi_size}")
        else:
            if self.crop_size is not None:
                raise ValueError("crop_size is for 2D images; volumes (dim: 3) use patch_size: [d, h, w]")
            if self.resize is not None and len(self.resize) != 3:
                raise ValueError(f"resize must be [d, h, w] for dim 3, got {self.resize}")
            if self.val_roi_size is None and self.patch_size is not None:
                self.__dict__["val_roi_size"] = list(self.patch_size)  # no re-validation (validate_assignment)
            if self.val_roi_size is not None and len(self.val_roi_size) != 3:
                raise ValueError(f"val_roi_size must be [d, h, w] for dim 3, got {self.val_roi_size}")
            if self.grayscale:
                raise ValueError("grayscale converts RGB images (dim: 2); volumes have no RGB channels")
            if self.mask_format == "colour":
                raise ValueError("mask_format 'colour' is for 2D images; volume masks hold class indices")
            if self.task == "multilabel":
                raise ValueError("task 'multilabel' is not supported for volumes (dim: 3); use multiclass or binary")
            if self.aux_labels is not None:
                raise ValueError("aux_labels is not supported for volumes (dim: 3)")
        if self.patch_size is not None and min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be positive, got {list(self.patch_size)}")
        if self.resize is not None and min(self.resize) < 1:
            raise ValueError(f"resize must be positive, got {self.resize}")
        if self.val_roi_size is not None and min(self.val_roi_size) < 1:
            raise ValueError(f"val_roi_size must be positive, got {self.val_roi_size}")
        if self.crop_nonzero is not None and isinstance(self.crop_nonzero.margin, list):
            if len(self.crop_nonzero.margin) != 3 or min(self.crop_nonzero.margin) < 0:
                raise ValueError(f"crop_nonzero.margin must be one int or [d, h, w] >= 0, got "
                                 f"{self.crop_nonzero.margin}")
        if sum(x is not None for x in (self.label_map, self.label_offset)) + self.relabel_consecutive > 1:
            raise ValueError("label_map, label_offset and relabel_consecutive are exclusive "
                             "(Flemme's Relabel does one)")
        if self.mask_format == "colour":
            if not self.colour_map:
                raise ValueError("mask_format 'colour' needs colour_map: one [r, g, b] per class, in classes order")
            if len(self.colour_map) != len(self.classes):
                raise ValueError(
                    f"colour_map has {len(self.colour_map)} colours but classes has {len(self.classes)} names"
                )
        if self.task == "multiclass" and len(self.classes) < 2:
            raise ValueError("task 'multiclass' needs at least 2 classes (background included)")
        if self.task == "binary" and len(self.classes) != 1:
            raise ValueError(f"task 'binary' has one class (the foreground), got classes={self.classes}")
        if self.aux_labels not in (None, "mask") and not str(self.aux_labels).endswith(".csv"):
            raise ValueError(f"aux_labels must be null, 'mask' or a .csv file, got {self.aux_labels!r}")
        return self


class LossTerm(_OpenSection):
    """One ``smp_like.losses`` loss by name, its ``weight`` and constructor arguments (``mode`` follows the task)."""

    name: str
    weight: float = Field(1.0, ge=0.0)


class LossConfig(_Section):
    """``loss``: a weighted sum of terms, plus the aux-head weight and deep supervision (``PyramidLoss``)."""

    terms: List[LossTerm] = Field(default_factory=lambda: [LossTerm(name="CrossEntropy"), LossTerm(name="Dice")])
    aux_weight: float = Field(0.2, ge=0.0)
    deep_supervision: bool = False
    side_weights: Optional[List[float]] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `loss: Dice`, `loss: [Dice, {name: CE, weight: 0.5}]` and `loss: {name: Dice}` mean a list of terms.
        if isinstance(value, str):
            return {"terms": [{"name": value}]}
        if isinstance(value, list):
            return {"terms": [{"name": t} if isinstance(t, str) else t for t in value]}
        if isinstance(value, dict) and "name" in value:
            return {"terms": [value]}
        if isinstance(value, dict) and isinstance(value.get("terms"), list):
            value = dict(value, terms=[{"name": t} if isinstance(t, str) else t for t in value["terms"]])
        return value


class MetricsConfig(_Section):
    """``metrics``: which scores to log, the one to monitor, and how per-class scores are averaged."""

    names: List[Literal["iou", "dice", "precision", "recall", "accuracy", "specificity", "ssim", "psnr", "mse"]] = (
        Field(default_factory=lambda: ["iou", "dice"])
    )
    monitor: str = "val/iou"
    mode: Literal["max", "min"] = "max"
    include_background: bool = False
    hd95: bool = False


class OptimizerConfig(_OpenSection):
    """``optimizer``: any ``torch.optim`` class by name; extra keys are its arguments."""

    name: str = "AdamW"
    lr: float = Field(1e-3, gt=0)
    encoder_lr: Optional[float] = Field(None, gt=0)
    decoder_lr: Optional[float] = Field(None, gt=0)


class SchedulerConfig(_OpenSection):
    """``scheduler``: any ``torch.optim.lr_scheduler`` by name (or null), its interval and a linear warmup."""

    name: Optional[str] = None
    interval: Literal["epoch", "step"] = "epoch"
    warmup: int = Field(0, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0, le=1)


class TrainerConfig(_OpenSection):
    """``trainer``: arguments of ``lightning.pytorch.Trainer`` (the common ones typed, any other passes through)."""

    max_epochs: int = Field(10, ge=1)
    max_steps: int = -1
    accelerator: str = "auto"
    devices: Union[int, str, List[int]] = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    precision: Union[str, int] = "32-true"
    accumulate_grad_batches: int = Field(1, ge=1)
    gradient_clip_val: Optional[float] = None
    deterministic: Union[bool, str] = False
    log_every_n_steps: int = Field(10, ge=1)
    check_val_every_n_epoch: int = Field(1, ge=1)
    enable_progress_bar: bool = True


class CheckpointConfig(_Section):
    """``checkpoint``: best-k by the monitored metric, ``last.ckpt`` every epoch and every N steps; with
    ``flemme_dir``, also Flemme's ``ckp_last.pth`` / ``ckp_best_loss.pth`` / ``ckp_best_score.pth`` there, every
    ``every_n_epochs`` epochs (see :mod:`smp_like.training.flemme.checkpoint`)."""

    save_top_k: int = Field(1, ge=-1)
    every_n_train_steps: Optional[int] = Field(None, ge=1)
    flemme_dir: Optional[str] = None
    every_n_epochs: Optional[int] = Field(None, ge=1)


class TestConfig(_Section):
    """``test``: what ``smp-like test`` scores and writes (Flemme test configs: ``model_path``, ``seg_dir``, ...).

    ``checkpoint``: a Flemme-style ``.pth``, a ``.ckpt``, a saved folder, ``best`` or ``last`` (``--checkpoint``
    wins); ``output_dir``: where outputs go (default ``<run folder>/test``).
    """

    checkpoint: Optional[str] = None
    output_dir: Optional[str] = None
    save_inputs: bool = False
    save_targets: bool = False
    colorize: bool = False


class EarlyStoppingConfig(_Section):
    patience: Optional[int] = Field(None, ge=1)
    min_delta: float = 0.0


class PlotsConfig(_Section):
    every_n_epochs: int = Field(1, ge=1)
    num_samples: int = Field(4, ge=1, le=16)


class GenerationConfig(_Section):
    """``generation``: sample grids during training and the sampling settings of test runs (generative models)."""

    sample_every_n_epochs: int = Field(1, ge=1)
    num_samples: int = Field(8, ge=1, le=64)
    seed: int = 0
    num_inference_steps: Optional[int] = Field(None, ge=1)
    clip_range: Optional[Tuple[float, float]] = None
    num_ensemble: int = Field(1, ge=1)
    interpolation: bool = False

    @field_validator("clip_range")
    @classmethod
    def _ordered(cls, value: Optional[Tuple[float, float]]) -> Optional[Tuple[float, float]]:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"clip_range must be [low, high] with low < high, got {list(value)}")
        return value


def resolve_task(task: str, arch: Optional[str], from_pretrained: Optional[str] = None) -> str:
    """The run's task: ``task`` itself unless ``"auto"``, which follows the architecture.

    AE/VAE/HAE -> reconstruction; DDPM/DDIM/LDPM/LDIM -> generation; ClM -> classification; SDPM/SDIM and every
    segmentation architecture -> segmentation. With ``from_pretrained`` the saved folder's class decides.
    """
    if task != "auto":
        return task
    name = _saved_class(from_pretrained) if from_pretrained else None
    name = (name or arch or "").lower()
    if name in AUTOENCODER_ARCHS:
        return "reconstruction"
    if name in DIFFUSION_ARCHS:
        return "generation"
    if name in CLASSIFIER_ARCHS:
        return "classification"
    return "segmentation"


def task_kind(cfg: "TrainConfig") -> str:
    """Which Lightning task trains ``cfg``: ``segmentation`` (``SegmentationTask``), ``supervised`` (SDPM / SDIM on
    segmentation data), ``generative`` (AE, VAE, HAE, DDPM, DDIM, LDPM, LDIM) or ``classification``."""
    task = cfg.resolved_task
    if task == "segmentation":
        arch = str(cfg.model.arch).lower()
        if cfg.model.from_pretrained:
            arch = str(_saved_class(cfg.model.from_pretrained) or arch).lower()
        return "supervised" if arch in SUPERVISED_DIFFUSION_ARCHS else "segmentation"
    return "classification" if task == "classification" else "generative"


def _saved_class(folder: Optional[str]) -> Optional[str]:
    import json

    path = Path(str(folder)) / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("_model_class") or "") or None
    except (OSError, ValueError, AttributeError):
        return None


def _task_defaults(values: Dict[str, Any]) -> Dict[str, Any]:
    """Fill the ``metrics``, ``loss`` and ``data.classes`` defaults that depend on the resolved task (keys the user
    wrote are kept as written)."""
    if not isinstance(values, dict):
        return values
    model = values.get("model") if isinstance(values.get("model"), dict) else {}
    arch = model.get("arch", "Unet")
    task = values.get("task", "auto")
    if task not in RUN_TASKS:
        return values  # the Literal reports it
    resolved = resolve_task(task, arch if isinstance(arch, str) else None, model.get("from_pretrained"))
    arch_l = str(arch).lower() if isinstance(arch, str) else ""
    values = dict(values)
    metrics = dict(values["metrics"]) if isinstance(values.get("metrics"), dict) else {}
    if "metrics" in values and not isinstance(values["metrics"], dict):
        return values
    if resolved == "reconstruction":
        metrics.setdefault("names", ["psnr", "ssim", "mse"])
        names = metrics["names"] if isinstance(metrics["names"], list) else []
        # Monitor PSNR (or SSIM) when logged, else the validation loss.
        monitor, mode = next(((f"val/{n}", "max") for n in ("psnr", "ssim") if n in names), ("val/loss", "min"))
        if "monitor" not in metrics:
            metrics["monitor"] = monitor
            metrics.setdefault("mode", mode)
        metrics.setdefault("mode", "max")
        if "loss" not in values:
            terms = [{"name": "MSELoss"}]
            if arch_l == "vae":
                terms.append({"name": "KLDivergenceLoss", "weight": 1e-3})
            values["loss"] = {"terms": terms}
    elif resolved == "generation":
        metrics.setdefault("names", ["psnr", "ssim", "mse"])
        metrics.setdefault("monitor", "val/loss")
        metrics.setdefault("mode", "min")
        if "loss" not in values:
            values["loss"] = {"terms": [{"name": "MSELoss"}]}
    elif resolved == "classification":
        metrics.setdefault("names", ["accuracy"])
        metrics.setdefault("monitor", "val/accuracy")
        metrics.setdefault("mode", "max")
        if "loss" not in values:
            values["loss"] = {"terms": [{"name": "CrossEntropy"}]}
    elif arch_l in SUPERVISED_DIFFUSION_ARCHS:
        # Validation of a supervised diffusion model is its diffusion loss (sampling every epoch is costly);
        # the segmentation metrics of the ensemble mean come from `smp-like test`.
        metrics.setdefault("monitor", "val/loss")
        metrics.setdefault("mode", "min")
        if "loss" not in values:
            values["loss"] = {"terms": [{"name": "MSELoss"}]}
    if metrics:
        values["metrics"] = metrics
    data = values.get("data")
    if resolved in ("reconstruction", "generation") and isinstance(data, dict) and "classes" not in data:
        # Images only: no classes; one name (and the one-class task) keeps the data schema whole.
        values["data"] = dict(data, classes=["image"], task=data.get("task", "binary"))
    return values


class TrainConfig(_Section):
    """The whole configuration (see the module docstring); every key is listed in docs/config_reference.md.

    Attributes:
        model: the architecture and its arguments (or a saved model to fine-tune).
        data: folders, splits, transforms, normalisation and loaders.
        loss: the loss (one, or a weighted combination).
        metrics: the metrics logged during validation and testing.
        optimizer: any ``torch.optim`` optimizer by name, with its arguments.
        scheduler: any ``torch.optim.lr_scheduler`` by name, with its arguments.
        trainer: arguments of Lightning's ``Trainer``.
        checkpoint: what is kept in ``checkpoints/``.
        early_stopping: stop when the monitored metric stops improving.
        plots: the curves and prediction figures written to the run folder.
        seed: global random seed (None: not seeded).
        output_dir: the run folder is ``output_dir/run_name``.
        run_name: name of the run folder.
        resume: continue from ``checkpoints/last.ckpt``.
        skip_nonfinite: skip batches whose loss is NaN/Inf instead of stopping.
        channels_last: train in the channels-last memory format.
    """

    task: Literal["auto", "segmentation", "classification", "reconstruction", "generation"] = "auto"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    plots: PlotsConfig = Field(default_factory=PlotsConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    test: TestConfig = Field(default_factory=TestConfig)
    seed: Optional[int] = 0
    output_dir: str = "runs"
    run_name: str = "run"
    resume: bool = False
    skip_nonfinite: bool = False
    channels_last: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_task(cls, values: Any) -> Any:
        return _task_defaults(values)

    @property
    def resolved_task(self) -> str:
        """``task`` with ``auto`` resolved from the architecture (:func:`resolve_task`)."""
        return resolve_task(self.task, self.model.arch, self.model.from_pretrained)

    def to_dict(self) -> Dict[str, Any]:
        """The resolved config as plain data (extra constructor arguments included)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir).expanduser() / self.run_name


# ------------------------------------------------------------------------------------------------ semantics


def _semantic_errors(cfg: TrainConfig) -> List[str]:
    """Checks that need the registries: names of losses, optimizers, schedulers, models, transforms."""
    import torch

    from smp_like.losses import LOSSES, get_loss_class

    errors: List[str] = []
    for i, term in enumerate(cfg.loss.terms):
        try:
            cls = get_loss_class(term.name)
        except ValueError:
            errors.append(
                f"loss.terms.{i}.name: unknown loss {term.name!r}{_suggest(term.name, LOSSES)} "
                f"(choices: {', '.join(sorted(LOSSES))})"
            )
            continue
        errors += _check_kwargs(f"loss.terms.{i}", cls, term.kwargs)

    optimizers = _optimizers()
    opt = cfg.optimizer
    if opt.name not in optimizers:
        errors.append(
            f"optimizer.name: unknown optimizer {opt.name!r}{_suggest(opt.name, optimizers)} "
            f"(choices: {', '.join(optimizers)})"
        )
    else:
        errors += _check_kwargs("optimizer", getattr(torch.optim, opt.name), opt.kwargs, skip=("lr",))

    sched = cfg.scheduler
    if sched.name is not None:
        schedulers = _schedulers()
        if sched.name not in schedulers:
            errors.append(
                f"scheduler.name: unknown scheduler {sched.name!r}{_suggest(sched.name, schedulers)} "
                f"(choices: {', '.join(schedulers)})"
            )
        else:
            errors += _check_kwargs("scheduler", getattr(torch.optim.lr_scheduler, sched.name), sched.kwargs,
                                    skip=("optimizer",))

    model = cfg.model
    task = cfg.resolved_task
    generative = _is_wrapper(model.arch) and model.from_pretrained is None
    if generative or task != "segmentation":
        errors += _task_errors(cfg, task)
    elif model.from_pretrained is None:
        cls = _model_class(model.arch)
        if cls is None:
            errors.append(f"model.arch: unknown architecture {model.arch!r}{_suggest(str(model.arch), _archs())} "
                          f"(choices: {', '.join(_archs())})")
        else:
            errors += _check_kwargs("model", cls.__init__, model.kwargs) or _trial_build(cls, model)
        if model.arch is not None and "classes" in model.kwargs:
            expected = len(cfg.data.classes)
            if int(model.kwargs["classes"]) != expected:
                errors.append(f"model.classes: {model.kwargs['classes']} disagrees with data.classes "
                              f"({expected} names); leave it out to have it filled")
    errors += _trainer_errors(cfg.trainer)
    if cfg.data.augment.train or cfg.data.augment.eval:
        errors += _transform_errors(cfg.data.augment, cfg.data.dim)
    if cfg.data.aux_labels is not None and not (model.kwargs.get("aux_params") or model.from_pretrained):
        errors.append("data.aux_labels: the model has no classification head; add model.aux_params: {dropout: 0.2}")
    errors += _metric_name_errors(cfg, task)
    if task == "segmentation":
        errors += _mask_errors(cfg)
    monitor_metric = cfg.metrics.monitor.split("/")[-1]
    allowed = set(cfg.metrics.names) | {"loss"}
    if monitor_metric not in allowed:
        errors.append(f"metrics.monitor: {cfg.metrics.monitor!r} is not logged; use 'val/<name>' with a name from "
                      f"{sorted(allowed)}")
    return errors


def _is_wrapper(arch: Optional[str]) -> bool:
    """AE/VAE/HAE, the diffusion models and ClM: built by :func:`smp_like.training.builders.build_model` from
    nested settings, not as ``SegmentationModel`` s."""
    return str(arch).lower() in AUTOENCODER_ARCHS + DIFFUSION_ARCHS + SUPERVISED_DIFFUSION_ARCHS + CLASSIFIER_ARCHS


_TASK_ARCHS = {
    "reconstruction": AUTOENCODER_ARCHS,
    "generation": DIFFUSION_ARCHS + ("vae",),
    "classification": CLASSIFIER_ARCHS,
}


def _task_errors(cfg: TrainConfig, task: str) -> List[str]:
    """The model and data of reconstruction / generation / classification runs and of supervised diffusion."""
    errors: List[str] = []
    model = cfg.model
    arch = str(model.arch).lower()
    if model.from_pretrained is None:
        allowed = _TASK_ARCHS.get(task)
        if allowed is not None and arch not in allowed:
            errors.append(f"task: {task!r} needs model.arch among {sorted(a.upper() if a != 'clm' else 'ClM' for a in allowed)}"
                          f", got {model.arch!r}")
        elif task == "segmentation" and arch in _TASK_ARCHS["reconstruction"] + DIFFUSION_ARCHS + CLASSIFIER_ARCHS:
            errors.append(f"task: 'segmentation' cannot train model.arch {model.arch!r}; use task: auto")
        else:
            errors += _build_errors(cfg)
    terms = [t.name for t in cfg.loss.terms]
    if task == "generation" or arch in SUPERVISED_DIFFUSION_ARCHS:
        if arch != "vae" and terms != ["MSELoss"] and terms != ["MSE"]:
            errors.append(f"loss.terms: a diffusion model trains with the MSE to its scheduler's target (loss: MSELoss);"
                          f" got {terms}")
    elif task == "classification":
        if terms not in (["CrossEntropy"], ["CE"], ["SoftCrossEntropyLoss"], ["CrossEntropyLoss"]):
            errors.append(f"loss.terms: a classification run trains with cross-entropy (loss: CrossEntropy), got {terms}")
        if not cfg.data.labels_csv:
            errors.append("data.labels_csv: a classification run needs a CSV of image stem -> class (columns stem, "
                          "label)")
    if task in ("reconstruction", "generation") and cfg.data.normalization is not None:
        errors.append("data.normalization: reconstruction and generation runs scale images to [0, 1] themselves "
                      "(diffusion models map them to [-1, 1]); remove it")
    if task == "reconstruction" or (task == "generation" and arch == "vae"):
        for i, term in enumerate(cfg.loss.terms):
            if term.name in ("KLDivergenceLoss", "KLLoss", "KL") and arch != "vae":
                errors.append(f"loss.terms.{i}.name: {term.name} needs a VAE (model.arch {model.arch!r} has no latent "
                              "distribution)")
    return errors


def _mask_errors(cfg: TrainConfig) -> List[str]:
    return [f"data.{split}.{i}.masks: a segmentation run needs mask folders for {split}"
            for split in ("train", "val") for i, root in enumerate(getattr(cfg.data, split)) if root.masks is None]


def _build_errors(cfg: TrainConfig) -> List[str]:
    """Build a wrapper on the meta device (no memory) to report bad nested arguments before any training."""
    import torch

    import smp_like

    if str(cfg.model.arch).lower() in ("ldpm", "ldim"):
        ae = cfg.model.kwargs.get("autoencoder")
        if not isinstance(ae, dict) or not (ae.get("from_pretrained") or ae.get("arch")):
            return ["model.autoencoder: a latent diffusion model needs autoencoder: {from_pretrained: <AE/VAE folder>} "
                    "or {arch: AE|VAE, ...its arguments}"]
        if ae.get("from_pretrained"):
            return []  # loading a folder on the meta device is not possible; the real build reports it
    try:
        with torch.device("meta"):
            if str(cfg.model.arch).lower() == "clm":
                kwargs = dict(cfg.model.kwargs)
                kwargs.setdefault("classes", len(cfg.data.classes))
                smp_like.create_model("ClM", encoder_name=cfg.model.encoder_name, encoder_weights=None,
                                      in_channels=cfg.model.in_channels, **kwargs)
            else:
                from smp_like.training.wrappers import build_wrapper

                build_wrapper(cfg.model, len(cfg.data.classes), pretrained=False)
    except (TypeError, ValueError) as err:
        return [f"model: {cfg.model.arch} cannot be built from these arguments: {err}"]
    except Exception:  # noqa: BLE001 - an op without meta support is left to the real build
        return []
    return []


def _metric_name_errors(cfg: TrainConfig, task: str) -> List[str]:
    names = list(cfg.metrics.names)
    if task in ("reconstruction", "generation"):
        bad = [n for n in names if n not in IMAGE_METRICS]
        valid = IMAGE_METRICS
    elif task == "classification":
        bad = [n for n in names if n != "accuracy"]
        valid = ("accuracy",)
    else:
        bad = [n for n in names if n not in METRICS]
        valid = METRICS
    if bad:
        return [f"metrics.names: {bad} are not metrics of a {task} run (choices: {list(valid)})"]
    return []


def _trial_build(cls: type, model: ModelConfig) -> List[str]:
    """Build the model on the meta device (no memory, no weights) to check arguments a ``**kwargs`` passes on."""
    import torch

    kwargs = dict(model.kwargs)
    kwargs.setdefault("classes", 1)
    try:
        with torch.device("meta"):
            cls(encoder_name=model.encoder_name, encoder_weights=None, in_channels=model.in_channels, **kwargs)
    except (TypeError, ValueError) as err:
        text = str(err)
        match = re.search(r"unexpected keyword argument(?:\(s\))? \[?'([^']+)'", text)
        if match:
            key = match.group(1)
            known = [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "kwargs")]
            return [f"model.{key}: {cls.__name__} takes no argument {key!r}{_suggest(key, known)} ({text})"]
        return [f"model: {cls.__name__} cannot be built from these arguments: {text}"]
    except Exception:  # noqa: BLE001 - anything else (e.g. an op without meta support) is left to the real build
        return []
    return []


def _archs() -> List[str]:
    import smp_like

    base = getattr(smp_like, "SegmentationModel")
    names = []
    for name in sorted(set(getattr(smp_like, "__all__", ())) | set(dir(smp_like))):
        if not name[:1].isupper():
            continue
        try:  # names of the lazy top-level package import on access; one that fails is no architecture
            obj = getattr(smp_like, name)
        except Exception:  # noqa: BLE001
            continue
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base:
            names.append(name)
    return names


def _model_class(arch: Optional[str]) -> Optional[type]:
    import smp_like

    if arch is None:
        return None
    lowered = {n.lower(): n for n in _archs()}
    name = lowered.get(arch.lower())
    return getattr(smp_like, name) if name else None


def _trainer_errors(trainer: TrainerConfig) -> List[str]:
    try:
        from lightning.pytorch import Trainer
    except ImportError:  # pragma: no cover - depends on the environment
        return ["trainer: lightning is not installed; `pip install smp_like[train]`"]
    reserved = {"callbacks", "logger", "default_root_dir", "enable_checkpointing", "use_distributed_sampler"}
    errors = [f"trainer.{k}: set by smp_like (the run folder and callbacks); remove it" for k in trainer.kwargs
              if k in reserved]
    return errors + _check_kwargs("trainer", Trainer.__init__, {k: v for k, v in trainer.kwargs.items()
                                                                  if k not in reserved})


def _transform_errors(augment: AugmentConfig, dim: int = 2) -> List[str]:
    try:
        import albumentations as A
    except ImportError:  # pragma: no cover - depends on the environment
        return ["data.augment: albumentations is not installed; `pip install smp_like[train]`"]
    names = sorted(n for n in dir(A) if inspect.isclass(getattr(A, n)) and
                   issubclass(getattr(A, n), A.BasicTransform))
    from smp_like.datasets.transforms3d import TRANSFORMS_3D

    errors: List[str] = []
    for split in ("train", "eval"):
        for i, t in enumerate(getattr(augment, split)):
            if t.name in TRANSFORMS_3D:  # smp_like's own volume transforms (data.dim 3)
                if dim != 3:
                    errors.append(f"data.augment.{split}.{i}.name: {t.name} transforms volumes; set data.dim: 3")
                errors += _check_kwargs(f"data.augment.{split}.{i}", TRANSFORMS_3D[t.name], t.kwargs)
            elif t.name not in names:
                errors.append(f"data.augment.{split}.{i}.name: unknown albumentations transform {t.name!r}"
                              f"{_suggest(t.name, names)}")
            else:
                errors += _check_kwargs(f"data.augment.{split}.{i}", getattr(A, t.name), t.kwargs)
    return errors


# ------------------------------------------------------------------------------------------------ loading


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-4`` (no dot) as a float, as users write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml_value(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def apply_overrides(values: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a nested dict, in place; returns it.

    A list index is a number in the path (``data.train.0.images=...``).

    Raises:
        ConfigError: for an override without ``=`` or a path through a value that is not a mapping or list.
    """
    errors = []
    for item in overrides:
        if "=" not in item:
            errors.append(f"--set {item!r}: expected key.path=value")
            continue
        path, text = item.split("=", 1)
        keys = path.strip().split(".")
        node: Any = values
        try:
            for key in keys[:-1]:
                if isinstance(node, list):
                    node = node[int(key)]
                else:
                    node = node.setdefault(key, {})
                    if node is None:
                        raise TypeError
            last = keys[-1]
            if isinstance(node, list):
                node[int(last)] = _yaml_value(text)
            elif isinstance(node, dict):
                node[last] = _yaml_value(text)
            else:
                raise TypeError
        except (TypeError, ValueError, IndexError):
            errors.append(f"--set {item!r}: {path} does not lead through mappings or lists of the config")
    if errors:
        raise ConfigError(errors)
    return values


def _pydantic_errors(err: "ValidationError", values: Dict[str, Any]) -> List[str]:
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "literal["))]
        path = ".".join(loc) or "<root>"
        if e["type"] == "extra_forbidden":
            parent = TrainConfig
            for part in loc[:-1]:  # walk the schema to the section that refused the key
                field = getattr(parent, "model_fields", {}).get(part)
                if field is None:
                    break
                ann = field.annotation
                inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
                models = [a for a in inner if issubclass(a, BaseModel)]
                parent = models[0] if models else parent
            known = list(getattr(parent, "model_fields", {}))
            out.append(f"{path}: unknown key{_suggest(loc[-1], known)} (known: {', '.join(known)})")
        elif e["type"] == "missing":
            out.append(f"{path}: required key is missing")
        else:
            value = e.get("input")
            out.append(f"{path}: {e['msg']} (got {value!r})" if not isinstance(value, dict) else f"{path}: {e['msg']}")
    return out


def parse_config(values: Dict[str, Any], source: Optional[str] = None, check_names: bool = True) -> TrainConfig:
    """Validate plain data as a :class:`TrainConfig`.

    Args:
        values: the parsed YAML.
        source: file name for messages.
        check_names: also check loss, optimizer, scheduler, model, trainer and transform names and arguments.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: listing every problem with its key path.
    """
    if not isinstance(values, dict):
        raise ConfigError([f"<root>: expected a mapping of sections, got {type(values).__name__}"], source)
    try:
        cfg = TrainConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_pydantic_errors(err, values), source) from None
    _fill_model_from_data(cfg)
    if check_names:
        errors = _semantic_errors(cfg)
        if errors:
            raise ConfigError(errors, source)
    return cfg


def _fill_model_from_data(cfg: TrainConfig) -> None:
    """Model keys that follow from the data when the config leaves them out: ``spatial_dims`` from ``data.dim``, and
    ``in_channels`` from the modalities (volumes: the ``image_suffix`` list or nnU-Net's channels, else 1) or
    ``grayscale`` (1)."""
    d, model = cfg.data, cfg.model
    if model.from_pretrained:
        return
    extra = model.__pydantic_extra__ if model.__pydantic_extra__ is not None else {}
    if d.dim == 3 and "spatial_dims" not in extra:
        extra["spatial_dims"] = 3
    if "in_channels" in model.model_fields_set:
        return
    if d.grayscale:
        model.in_channels = 1
    elif d.dim == 3:
        if d.layout == "nnunet" and d.root:
            from smp_like.datasets.nnunet import read_dataset_json

            try:
                model.in_channels = len(read_dataset_json(d.root).channel_names)
            except (OSError, ValueError):
                pass  # reported by the data module with the file name
        else:
            suffix = d.train[0].image_suffix if d.train else ""
            model.in_channels = len(suffix) if isinstance(suffix, list) else 1


def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read, override and validate a YAML config file. Relative data paths are resolved against its folder.

    Args:
        path: the YAML file.
        overrides: ``key.path=value`` strings (``--set``).

    Returns:
        The validated config.

    Raises:
        ConfigError: for invalid YAML or any invalid key (all listed).
        OSError: when the file cannot be read.
    """
    path = Path(path)
    try:
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError([f"<yaml>: {err}"], str(path)) from None
    values = values if values is not None else {}
    from smp_like.training.flemme import is_flemme_config

    source = str(path)
    if is_flemme_config(values):  # --set and error messages then use the native key paths of the translation
        source = f"{path} (Flemme config, translated; see --print-config)"
        values = _translate_flemme(values, path)
    if isinstance(values, dict):
        data = values.get("data")
        if isinstance(data, dict):  # one root may be written as a mapping; overrides index the list form
            for split in ("train", "val", "test"):
                if isinstance(data.get(split), dict):
                    data[split] = [data[split]]
        values.setdefault("output_dir", "runs")  # relative to the config file, like the data folders
        apply_overrides(values, overrides)
        _resolve_paths(values, path.parent.resolve())
    return parse_config(values, source)


def _translate_flemme(values: Any, path: Path) -> Any:
    """A Flemme config (``model.name`` + ``loader``) becomes the native config it means; one warning lists what
    has no effect here. Flemme reads paths relative to the working directory, so the translation does too."""
    from smp_like.training.flemme import FlemmeConfigError, FlemmeConfigWarning, translate

    try:
        native, report = translate(values, source=str(path), base=Path.cwd())
    except FlemmeConfigError as err:
        raise ConfigError(err.errors, str(path)) from None
    message = report.message(str(path))
    if message:
        import warnings

        warnings.warn(message, FlemmeConfigWarning, stacklevel=3)
    return native


def _resolve_paths(values: Dict[str, Any], base: Path) -> None:
    """Relative folders in the config are relative to the config file, so a config runs from any directory."""

    def fix(p: Any) -> Any:
        return str(base / p) if isinstance(p, str) and not Path(p).expanduser().is_absolute() else p

    data = values.get("data")
    if isinstance(data, dict):
        for split in ("train", "val", "test"):
            roots = data.get(split)
            for root in [roots] if isinstance(roots, dict) else roots or []:
                if isinstance(root, dict):
                    for key in ("images", "masks"):
                        if isinstance(root.get(key), str):
                            root[key] = fix(root[key])
        if isinstance(data.get("root"), str):
            data["root"] = fix(data["root"])
        if isinstance(data.get("aux_labels"), str) and data["aux_labels"].endswith(".csv"):
            data["aux_labels"] = fix(data["aux_labels"])
        if isinstance(data.get("labels_csv"), str):
            data["labels_csv"] = fix(data["labels_csv"])
    if "output_dir" in values:
        values["output_dir"] = fix(values["output_dir"])
    for section, key in (("checkpoint", "flemme_dir"), ("test", "output_dir"), ("test", "checkpoint")):
        node = values.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and node[key] not in ("best", "last"):
            node[key] = fix(node[key])
    model = values.get("model")
    if isinstance(model, dict) and isinstance(model.get("from_pretrained"), str):
        candidate = base / model["from_pretrained"]
        if candidate.exists():
            model["from_pretrained"] = str(candidate)
    autoencoder = model.get("autoencoder") if isinstance(model, dict) else None
    if isinstance(autoencoder, dict) and isinstance(autoencoder.get("from_pretrained"), str):
        candidate = base / autoencoder["from_pretrained"]
        if candidate.exists():
            autoencoder["from_pretrained"] = str(candidate)
