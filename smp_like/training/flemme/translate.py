"""Flemme configuration dict -> smp_like native configuration dict.

:func:`translate` reads every key Flemme reads (``flemme.train_flemme``, ``test_flemme``, ``create_model``,
``create_encoder``, ``create_loader``, the datasets and transforms), keeps Flemme's defaults where a key is omitted,
and returns the native config plus a :class:`TranslationReport`: the keys that have no effect here (with the reason)
and the keys Flemme would not read either (with the closest known name). Nothing is dropped without being listed,
and nothing Flemme accepts is refused, except what smp_like cannot do at all (EDM, point-cloud encoders, datasets
that need a download), which is a :class:`FlemmeConfigError` that says why (a ``ConfigError`` from
``load_config``).

The native result is then validated by the strict native schema like any native file.
"""

import copy
import csv
import difflib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from smp_like.training.flemme import names as N

__all__ = ["translate", "TranslationReport", "FlemmeConfigWarning", "FlemmeConfigError"]


class FlemmeConfigWarning(UserWarning):
    """The one warning at start listing the Flemme keys that have no effect here and the unknown keys."""


@dataclass
class TranslationReport:
    """What the translation could not carry over.

    Attributes:
        ignored: ``(key path, reason)`` for keys Flemme reads that have no effect in smp_like.
        unknown: ``(key path, suggestion)`` for keys Flemme does not read either (stale or misspelled keys).
        notes: values translated to the closest smp_like equivalent rather than exactly.
    """

    ignored: List[Tuple[str, str]] = field(default_factory=list)
    unknown: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def ignored_keys(self) -> List[str]:
        return [k for k, _ in self.ignored]

    @property
    def unknown_keys(self) -> List[str]:
        return [k for k, _ in self.unknown]

    def message(self, source: Optional[str] = None) -> str:
        """The text of the start-up warning (empty when there is nothing to say)."""
        if not (self.ignored or self.unknown or self.notes):
            return ""
        where = f" {source}" if source else ""
        lines = [f"Flemme config{where} translated to smp_like's native config (`--print-config` shows it)."]
        if self.ignored:
            lines.append("Keys Flemme reads that have no effect here:")
            lines += [f"  - {k}: {why}" for k, why in self.ignored]
        if self.unknown:
            lines.append("Unknown keys (Flemme does not read them either):")
            lines += [f"  - {k}{hint}" for k, hint in self.unknown]
        if self.notes:
            lines.append("Translated to the closest equivalent:")
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)


class FlemmeConfigError(ValueError):
    """A Flemme config smp_like cannot run; ``errors`` lists ``"key.path: message"`` lines (``load_config``
    raises them as a :class:`~smp_like.training.config.ConfigError`)."""

    def __init__(self, errors: Sequence[str], source: Optional[str] = None):
        self.errors = list(errors)
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"invalid Flemme configuration{where}:\n  " + "\n  ".join(self.errors))


def _error(errors: Sequence[str], source: Optional[str]) -> Exception:
    return FlemmeConfigError(list(errors), source)


def _suggestion(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: Why a key Flemme reads has no effect here (keys without an entry get a generic reason).
_REASONS: Dict[str, str] = {
    "eval_batch_num": "smp_like scores the whole validation split every epoch, not the first N batches",
    "last_epoch": "training continues from the run folder's checkpoints/last.ckpt (`smp-like train --resume`)",
    "resume": "smp_like resumes from the run folder's checkpoints/last.ckpt: `smp-like train --resume`",
    "pretrained": "Flemme .pth weights do not fit smp_like's modules; start from a saved folder with "
                  "model.from_pretrained in a native config",
    "prediction": "test writes predictions always (test.output_dir)",
    "pickle_results": "test writes metrics.json and CSV tables instead of pickles",
    "pickle_path": "test writes metrics.json and CSV tables instead of pickles",
    "load_pickle_results": "test writes metrics.json and CSV tables instead of pickles",
    "tsne_visualization": "no t-SNE plot in smp_like",
    "split_files": "the splits are the loader folders (or data.val_fraction)",
    "write_sample_num": "predictions.png / samples.png show plots.num_samples / generation.num_samples images",
    "ema": "no exponential moving average of the weights in smp_like",
    "dense_channels": "smp_like latents are feature maps: no dense (fully-connected) layers",
    "decoder_dense_channels": "smp_like latents are feature maps: no dense (fully-connected) layers",
    "up_channels": "the decoder mirrors the encoder's widths",
    "final_channels": "the decoder mirrors the encoder's widths",
    "up_attens": "decoder blocks carry no attention option here",
    "final_attens": "decoder blocks carry no attention option here",
    "up_num_heads": "decoder heads: the decoder block's default",
    "final_num_heads": "decoder heads: the decoder block's default",
    "usample_function": "decoder up-sampling is interpolation + the decoder block",
    "z_count": "set by the architecture",
    "return_features": "set by the architecture",
    "last_activation": "the encoder's last block ends with its normalisation and activation",
    "depthwise": "the convolutions are full (not depth-wise)",
    "cn_order": "blocks use conv -> norm -> activation",
    "d_k": "attention width follows the channels",
    "qk_scale": "attention scale is 1/sqrt(head width)",
    "atten_dropout": "attention dropout follows `dropout`",
    "dt_rank": "set from the width", "dt_init": "random init", "dt_scale": "1.0", "conv_bias": "always on",
    "bias": "projections without bias", "learnable_init_states": "not used by the VSS blocks",
    "condition_first": "the condition is injected after the convolution",
    "decoder_in_channel": "derived from the encoder",
    "loss_reduction": "losses are averaged over the batch",
    "inter_mode": "side outputs are compared after resizing by the loss",
    "data_form": "images (2D or 3D)",
    "template_path": "give the model section itself",
    "lazy_loading": "files are always read lazily, one item at a time",
    "shuffle": "the training split is shuffled, the others are not",
    "drop_last": "the last incomplete batch is kept",
    "pin_memory": "Lightning decides pinning",
    "mode": "set by the verb (`smp-like train` / `smp-like test`)",
    "label_combine": "one label file per case",
    "slice_builder.stride_shape": "validation and test run on whole volumes by sliding windows",
    "slice_builder.threshold": "foreground patches come from data.foreground_oversampling",
    "slice_builder.slack_acceptance": "foreground patches come from data.foreground_oversampling",
    "reduction": "losses are averaged",
    "channel_dim": "channels first",
    "normalization": "Dice uses softmax for a multiclass run and sigmoid for a binary one",
    "is_supervised": "set by the architecture (SDPM/SDIM are supervised)",
    "is_supervising": "set by the dataset (a target_dir makes the AE supervised)",
    "type": "the condition is a class index",
    "name": "the sampler is the model's (DDPM or DDIM)",
    "interpolation_num": "interpolation uses generation.num_samples steps",
    "skip_connection": "set by the encoder name (U-shaped or not)",
    "fusion": "skips are concatenated",
    "time_injection": "translated by condition_injection / the model default (gate_bias)",
}
_GENERIC = "Flemme reads it; it has no effect in smp_like"


class _Section:
    """A mapping of the Flemme config that records which keys were read (see :meth:`finish`)."""

    def __init__(self, data: Any, path: str, known: Sequence[str], report: TranslationReport):
        self.data = data if isinstance(data, dict) else {}
        self.path = path
        self.known = tuple(known)
        self.report = report
        self.used: set = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data and self.data[name] is not None

    def get(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        value = self.data.get(name)
        return default if value is None else value

    def ignore(self, name: str, reason: Optional[str] = None) -> None:
        """List ``name`` (if present) as recognised but without effect."""
        if name in self.data and name not in self.used:
            self.used.add(name)
            self.report.ignored.append((self.key(name), reason or _REASONS.get(name, _GENERIC)))

    def sub(self, name: str, known: Sequence[str]) -> "_Section":
        return _Section(self.get(name), self.key(name), known, self.report)

    def finish(self) -> None:
        for name in self.data:
            if name in self.used:
                continue
            if name in self.known:
                self.ignore(name)
            else:
                self.used.add(name)
                self.report.unknown.append((self.key(name), _suggestion(name, self.known)))


def _abs(base: Path, path: Any) -> str:
    """Flemme reads paths relative to the working directory (``base``); the native config gets absolute ones."""
    p = Path(str(path)).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


_EXTENSIONS = (".nii.gz", ".nii", ".mha", ".nrrd", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")


def _stem_suffix(suffix: str) -> str:
    """Flemme's ``data_suffix`` (the whole file ending, ``_t1.nii.gz``) as a stem suffix (``_t1``): images-only
    folders are read by stem, which lists the files Flemme's ``glob('*' + data_suffix)`` lists."""
    for ext in _EXTENSIONS:
        if suffix.lower().endswith(ext):
            return suffix[: -len(ext)]
    return suffix


def _as_list(value: Any) -> List[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _named(item: Any) -> Dict[str, Any]:
    """A loss / metric / transform entry: ``{name: X, ...}`` or just ``X``."""
    if isinstance(item, str):
        return {"name": item}
    return dict(item) if isinstance(item, dict) else {}


# ------------------------------------------------------------------------------------------------ encoders


@dataclass
class _Encoder:
    """The translated ``encoder`` section."""

    name: str
    family: str
    shape: str
    depth: int
    in_channels: int
    out_channels: int
    encoder_kwargs: Dict[str, Any]
    decoder_channels: List[int]
    decoder_block: str
    decoder_block_kwargs: Optional[Dict[str, Any]]
    image_size: Optional[List[int]]
    latent_channels: int
    time_embedding_dim: Optional[int] = None


def _log2(name: str, value: Any, source: Optional[str]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value & (value - 1):
        raise _error([f"{name}: smp_like's Flemme encoders take a power of two (1, 2, 4, 8), got {value!r}"], source)
    return value.bit_length() - 1


def _encoder(sec: _Section, dim: int, source: Optional[str], role: str = "model") -> _Encoder:
    name = sec.get("name")
    if name not in N.ENCODER_FAMILIES:
        raise _error([f"{sec.key('name')}: {name!r} is not an image encoder smp_like can build "
                      f"(choices: {', '.join(N.ENCODER_FAMILIES)}); point-cloud and graph encoders are not "
                      f"supported{_suggestion(str(name), N.ENCODER_FAMILIES)}"], source)
    family, shape = N.ENCODER_FAMILIES[name]
    report = sec.report
    in_channels = int(sec.get("in_channel", 1))
    out_channels = int(sec.get("out_channel") or in_channels)
    patch_size = sec.get("patch_size", 2)
    patch_channel = int(sec.get("patch_channel", 32))
    down = [int(c) for c in _as_list(sec.get("down_channels"))]
    if not down:
        up = [int(c) for c in _as_list(sec.data.get("up_channels"))]
        down = up[::-1] if up else [64, 128, 256]
    middle = [int(c) for c in _as_list(sec.get("middle_channels"))]
    k = _log2(sec.key("patch_size"), patch_size, source)
    depth = k + len(down)
    if depth < 1:
        raise _error([f"{sec.key('down_channels')}: at least one down-sampling level is needed with "
                      f"patch_size 1"], source)
    block_name = sec.get("building_block", N.DEFAULT_BLOCKS[family])
    blocks = N.BUILDING_BLOCKS[family]
    if block_name not in blocks:
        raise _error([f"{sec.key('building_block')}: {block_name!r} is not a building block of the {name} encoder "
                      f"(choices: {', '.join(blocks)}){_suggestion(str(block_name), blocks)}"], source)
    block = blocks[block_name]

    image_size = sec.get("image_size")
    if image_size is not None:
        image_size = [int(s) for s in _as_list(image_size)]
        if len(image_size) == 1:
            image_size = image_size * dim

    # Width of the feature at stride 2^s (s = 0..depth): the patch level at stride 2^k, down level j at 2^(k+j);
    # finer strides (placeholders in the encoder) decode at patch_channel, as Flemme's back-projection does.
    def width(s: int) -> int:
        if s <= k:
            return patch_channel
        return down[s - k - 1]

    decoder_channels = [width(s) for s in range(depth - 1, -1, -1)]
    latent = middle[-1] if middle else down[-1]

    kwargs: Dict[str, Any] = {"patch_size": patch_size, "patch_channel": patch_channel, "down_channels": down}
    num_blocks = int(sec.get("num_blocks", 2))
    norm = sec.get("normalization", "group" if family == "cnn" else "layer")
    activation = sec.get("activation", "relu" if family == "cnn" else "silu")
    activation = N.ACTIVATIONS.get(str(activation).lower(), activation)
    # The architectures' own `activation` is their output activation, so the encoder's cannot be passed: the
    # encoder keeps its family's (relu for cnn, gelu for the token families); Flemme's silu default is close.
    native_activation = "relu" if family == "cnn" else "gelu"
    if sec.has("activation") and str(activation).lower() != native_activation:
        report.notes.append(f"{sec.key('activation')}={activation!r}: the {family} encoder uses {native_activation}")
    dropout = float(sec.get("dropout", 0.0))
    decoder_block_kwargs: Optional[Dict[str, Any]] = None
    if family == "cnn":
        kwargs.update(middle_channels=middle, building_block=block, num_blocks=num_blocks, normalization=norm,
                      num_norm_groups=int(sec.get("num_norm_groups", 8)), dropout=dropout)
        if sec.has("kernel_size"):
            kwargs["kernel_size"] = int(sec.get("kernel_size"))
        down_mode = sec.get("dsample_function", "conv")
        kwargs["down_mode"] = {"conv": "conv", "inter": "interpolate", "interpolate": "interpolate",
                               "pool": "pool"}.get(down_mode, "conv")
        attentions = [a for a in _as_list(sec.get("down_attens")) + _as_list(sec.get("middle_attens")) if a]
        channel_attention = sec.get("channel_attention")
        if attentions:
            kwargs["attention"] = "self"
            kwargs["order"] = "cnax"  # attention after each convolution block, as Flemme's down/middle attentions
            kinds = sorted(set(map(str, attentions)))
            report.notes.append(f"{sec.key('down_attens')}/{sec.key('middle_attens')} {kinds}"
                                f": self-attention in every encoder block (smp_like's 'self'), not per level")
        elif channel_attention:
            kwargs["attention"] = "se"
            kwargs["order"] = "cnax"
            report.notes.append(f"{sec.key('channel_attention')}={channel_attention!r}: squeeze-and-excitation "
                                f"('se') in every encoder block")
        decoder_block = "res_conv" if block == "res_conv" else "conv"
        if decoder_block == "res_conv":
            decoder_block_kwargs = {"norm": norm}
    else:
        for key in ("down_attens", "middle_attens", "channel_attention", "kernel_size", "dsample_function"):
            sec.ignore(key, f"a convolution option; the {name} encoder has none")
        if norm not in ("layer", "rms"):
            report.notes.append(f"{sec.key('normalization')}={norm!r}: token normalisation 'layer' (the {name} "
                                "family normalises tokens)")
            norm = "layer"
        if family in ("vit", "swin"):
            if middle:
                kwargs.update(middle_channels=middle[-1], num_middle_blocks=len(middle))
            kwargs.update(building_block=block, num_blocks=num_blocks, normalization=norm,
                          dropout=dropout, drop_path=float(sec.get("drop_path", 0.1)),
                          abs_pos_embedding=bool(sec.get("abs_pos_embedding", False)))
            ratio = sec.get("mlp_hidden_ratio", None)
            ratio = _as_list(sec.get("mlp_hidden_ratios")) if ratio is None else _as_list(ratio)
            if ratio:
                kwargs["mlp_hidden_ratio"] = float(ratio[0])
            if sec.has("qkv_bias"):
                kwargs["qkv_bias"] = bool(sec.get("qkv_bias"))
            heads = _as_list(sec.get("down_num_heads")) + _as_list(sec.get("middle_num_heads")) + \
                _as_list(sec.get("num_heads"))
            widths = [patch_channel] + down + ([middle[-1]] if middle else [])
            if heads:
                h = int(heads[0])
                if len(set(heads)) == 1 and all(w % h == 0 for w in widths):
                    kwargs["num_heads"] = h
                else:
                    report.notes.append(f"{sec.key('down_num_heads')}: {heads} do not divide every width {widths}; "
                                        "heads = width // 32 per stage")
            if family == "swin":
                kwargs["window_size"] = sec.get("window_size", 8)
            else:
                sec.ignore("window_size", "ViT attends globally (no windows)")
            decoder_block = "swin"
            decoder_block_kwargs = {"building_block": block if family == "swin" else "swin", "num_blocks": 2}
            if family == "swin":
                decoder_block_kwargs["window_size"] = kwargs["window_size"]
        else:  # vmamba
            if middle:
                kwargs["middle_channels"] = middle[-1]
                if len(middle) > 1:
                    report.notes.append(f"{sec.key('middle_channels')}={middle}: one middle stage of width "
                                        f"{middle[-1]}")
            kwargs.update(building_block=block, num_blocks=num_blocks, normalization=norm,
                          dropout=dropout, drop_path=float(sec.get("drop_path", 0.1)),
                          scan_mode=sec.get("scan_mode", "single"), flip_scan=bool(sec.get("flip_scan", True)))
            for key in ("state_channel", "conv_kernel_size", "inner_factor", "dt_min", "dt_max", "dt_init_floor",
                        "head_channel", "chunk_size", "num_norm_groups"):
                if sec.has(key):
                    kwargs[key] = sec.get(key)
            ratio = _as_list(sec.get("mlp_hidden_ratio")) or _as_list(sec.get("mlp_hidden_ratios"))
            if ratio:
                kwargs["mlp_hidden_ratio"] = float(ratio[0])
            decoder_block = "vmamba"
            decoder_block_kwargs = {"building_block": block, "num_blocks": 2,
                                    "scan_mode": kwargs["scan_mode"], "flip_scan": kwargs["flip_scan"]}
            for key in ("state_channel", "head_channel", "chunk_size"):
                if key in kwargs:
                    decoder_block_kwargs[key] = kwargs[key]
    scaling = _as_list(sec.get("shape_scaling"))
    if any(int(s) != 2 for s in scaling):
        report.notes.append(f"{sec.key('shape_scaling')}={scaling}: every level halves the size (smp_like's "
                            "encoders down-sample by 2)")
    time_channel = sec.get("time_channel")
    sec.finish()
    return _Encoder(name=name, family=family, shape=shape, depth=depth, in_channels=in_channels,
                    out_channels=out_channels, encoder_kwargs=kwargs, decoder_channels=decoder_channels,
                    decoder_block=decoder_block, decoder_block_kwargs=decoder_block_kwargs, image_size=image_size,
                    latent_channels=latent, time_embedding_dim=int(time_channel) if time_channel else None)


def _accepts(cls_name: str, key: str) -> bool:
    """Does the constructor of smp_like's ``cls_name`` take ``key`` (or any keyword)?"""
    import smp_like
    from smp_like.base.registry import get_model_class

    try:
        cls = get_model_class(cls_name)
    except Exception:  # noqa: BLE001 - a name the registry does not know
        cls = getattr(smp_like, cls_name, None)
    if cls is None:
        return False
    for klass in cls.__mro__:  # skip pass-through __init__(*args, **kwargs) of subclasses (HAE -> AE)
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        named = [n for n, p in params.items() if n != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                                 inspect.Parameter.VAR_KEYWORD)]
        if not named:
            continue
        return key in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return False


def _segmentation_model(enc: _Encoder, arch: Optional[str] = None) -> Dict[str, Any]:
    """A native segmentation-architecture model section (Unet / UnetPlusPlus / HSeM) for a translated encoder."""
    if arch is None:
        arch = "UnetPlusPlus" if enc.shape == "d" else "Unet"
    model: Dict[str, Any] = {"arch": arch, "encoder_name": enc.family, "encoder_weights": None,
                             "in_channels": enc.in_channels, "encoder_depth": enc.depth,
                             "decoder_channels": list(enc.decoder_channels)}
    if arch == "Unet":
        if enc.decoder_block != "conv":
            model["decoder_block"] = enc.decoder_block
        if enc.decoder_block_kwargs:
            model["decoder_block_kwargs"] = dict(enc.decoder_block_kwargs)
        if enc.shape == "plain":
            model["decoder_skip"] = "none"
    model.update(copy.deepcopy(enc.encoder_kwargs))
    return model


def _autoencoder_model(arch: str, enc: _Encoder, report: TranslationReport, path: str) -> Dict[str, Any]:
    """A native AE / VAE / HAE model section: smp_like's auto-encoder on the Flemme family's encoder."""
    model: Dict[str, Any] = {"arch": arch, "encoder_name": enc.family, "encoder_weights": None,
                             "in_channels": enc.in_channels, "encoder_depth": enc.depth,
                             "decoder_channels": list(enc.decoder_channels),
                             "latent_channels": enc.latent_channels}
    if enc.out_channels != enc.in_channels:
        model["out_channels"] = enc.out_channels
    passed = {k: v for k, v in enc.encoder_kwargs.items() if _accepts(arch, k)}
    dropped = sorted(set(enc.encoder_kwargs) - set(passed))
    if dropped:
        report.notes.append(f"{path}: smp_like's {arch} takes no encoder options, so {dropped} keep the "
                            f"'{enc.family}' encoder's defaults (depth {enc.depth}, latent {enc.latent_channels})")
    if enc.shape != "plain":
        report.notes.append(f"{path}.name={enc.name!r}: an auto-encoder has no skip connections (the latent is the "
                            "only path), so the U/D shape does not apply")
    model.update(passed)
    return model


# ------------------------------------------------------------------------------------------------ losses


def _losses(sec: _Section, key: str, report: TranslationReport, source: Optional[str]) -> List[Dict[str, Any]]:
    terms = []
    raw = sec.get(key)
    for i, item in enumerate(_as_list(raw)):
        entry = _named(item)
        path = sec.key(key) + (f".{i}" if isinstance(raw, list) else "")
        lsec = _Section(entry, path, N.LOSS_KEYS, report)
        name = lsec.get("name")
        if name not in N.LOSSES:
            raise _error([f"{path}.name: unknown Flemme loss {name!r} (choices: {', '.join(N.LOSSES)})"
                          f"{_suggestion(str(name), N.LOSSES)}"], source)
        term: Dict[str, Any] = {"name": N.LOSSES[name], "weight": float(lsec.get("weight", 1.0))}
        if name == "BCE":
            report.notes.append(f"{path}.name='BCE': binary cross-entropy with logits (smp_like models output logits)")
        lsec.finish()
        terms.append(term)
    return terms


# ------------------------------------------------------------------------------------------------ data


@dataclass
class _Loader:
    splits: List[Dict[str, Any]]
    kind: str
    dim: int
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    data: Dict[str, Any] = field(default_factory=dict)  # native data.* keys from the dataset and transforms
    augment: List[Dict[str, Any]] = field(default_factory=list)
    one_hot_classes: Optional[int] = None
    binary: bool = False
    modalities: int = 1
    cls_labels: Optional[Dict[str, int]] = None
    split_labels: List[int] = field(default_factory=list)  # ImgClsDataset: the class of each split (folder)
    normalize_path: Optional[str] = None  # where the intensity transform (Normalize, MinMaxNormalize) was


def _transforms_2d(name: str, args: Dict[str, Any], path: str, report: TranslationReport) -> Optional[Dict[str, Any]]:
    """A Flemme / torchvision random 2D transform as an albumentations transform (None: no equivalent)."""
    if name == "RandomHorizontalFlip":
        return {"name": "HorizontalFlip", "p": float(args.get("p", 0.5))}
    if name == "RandomVerticalFlip":
        return {"name": "VerticalFlip", "p": float(args.get("p", 0.5))}
    if name in ("RandomRotation", "RandomRotate"):
        degrees = args.get("degrees", args.get("angle_spectrum", 30))
        limit = degrees if isinstance(degrees, (list, tuple)) else (-abs(degrees), abs(degrees))
        return {"name": "Rotate", "limit": [float(v) for v in limit], "p": 1.0}
    if name == "GaussianBlur":
        ks = args.get("kernel_size", 3)
        ks = ks[0] if isinstance(ks, (list, tuple)) else ks
        sigma = args.get("sigma", (0.1, 2.0))
        sigma = sigma if isinstance(sigma, (list, tuple)) else (sigma, sigma)
        return {"name": "GaussianBlur", "blur_limit": [int(ks), int(ks)], "sigma_limit": [float(s) for s in sigma],
                "p": float(args.get("execution_probability", 1.0))}
    if name in ("CenterCrop", "RandomCrop"):
        size = _as_list(args.get("size"))
        size = size * 2 if len(size) == 1 else size
        return {"name": name, "height": int(size[0]), "width": int(size[1])}
    if name in ("ElasticDeform", "ElasticTransform"):
        return {"name": "ElasticTransform", "alpha": float(args.get("alpha", 50.0)),
                "sigma": float(args.get("sigma", 5.0)), "p": float(args.get("execution_probability", 0.1))}
    if name == "ColorJitter":
        return {"name": "ColorJitter", **{k: args[k] for k in ("brightness", "contrast", "saturation", "hue")
                                          if k in args}}
    return None


def _transforms_3d(name: str, args: Dict[str, Any], path: str, report: TranslationReport) -> Optional[Dict[str, Any]]:
    """A Flemme random volume transform as smp_like's 3D transform (None: no equivalent)."""
    if name == "RandomFlip":
        # Flemme flips each axis when uniform() > axis_prob: probability 1 - axis_prob per axis.
        return {"name": "RandomFlip3D", "axes": [0, 1, 2], "p": round(1.0 - float(args.get("axis_prob", 0.5)), 6)}
    if name == "RandomRotate90":
        return {"name": "RandomRotate90_3D", "axes": [1, 2], "p": 0.75}
    if name == "RandomContrast":
        alpha = _as_list(args.get("alpha", (0.5, 1.5)))
        scale = max(abs(1.0 - float(a)) for a in alpha) if alpha else 0.5
        report.notes.append(f"{path}: RandomContrast -> RandomIntensity (x * (1 + U(-{scale}, {scale}))), "
                            f"p={args.get('execution_probability', 0.1)}")
        return {"name": "RandomIntensity", "scale": float(scale), "shift": 0.0,
                "p": float(args.get("execution_probability", 0.1))}
    return None


_NOOP_TRANSFORMS = ("ToTensor",)
_GEOMETRIC = ("Resize", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "RandomRotate",
              "RandomFlip", "RandomRotate90", "ElasticDeform", "ElasticTransform", "CenterCrop", "RandomCrop",
              "CropToFixed", "RandomResizedCrop")


def _data_transforms(items: Any, path: str, dim: int, out: _Loader, report: TranslationReport,
                     source: Optional[str], random_allowed: bool = True) -> None:
    for i, item in enumerate(_as_list(items)):
        entry = _named(item)
        name = entry.pop("name", None)
        tpath = f"{path}.{i}"
        if name in _NOOP_TRANSFORMS:
            continue
        if name == "Resize":
            size = [int(s) for s in _as_list(entry.get("size"))]
            out.data["resize"] = size * dim if len(size) == 1 else size
            continue
        if name in ("Normalize", "MinMaxNormalize"):
            out.normalize_path = tpath
        if name == "Normalize":
            mean, std = entry.get("mean"), entry.get("std")
            if mean is None and std is None:
                out.data["normalization"] = {"normalization": "zscore"}
            else:
                norm = {"normalization": "mean_std", "mean": [float(m) for m in _as_list(mean)],
                        "std": [float(s) for s in _as_list(std)]}
                if dim == 3:
                    norm["max_pixel_value"] = 1.0
                out.data["normalization"] = norm
            continue
        if name == "MinMaxNormalize":
            report.notes.append(f"{tpath}: MinMaxNormalize -> per-volume z-score (data.normalization zscore)")
            out.data["normalization"] = {"normalization": "zscore"}
            continue
        if name == "GrayScale":
            out.data["grayscale"] = True
            continue
        if name == "InverseColor":
            out.data["invert_intensity"] = True
            continue
        translated = (_transforms_3d if dim == 3 else _transforms_2d)(name, entry, tpath, report)
        if translated is not None:
            if random_allowed:
                out.augment.append(translated)
            else:
                report.ignored.append((tpath, f"random transform {name!r}: augmentation applies to training only"))
            continue
        report.ignored.append((tpath, f"transform {name!r} has no smp_like equivalent for {dim}D data"))


def _label_transforms(items: Any, path: str, out: _Loader, report: TranslationReport) -> None:
    for i, item in enumerate(_as_list(items)):
        entry = _named(item)
        name = entry.pop("name", None)
        tpath = f"{path}.{i}"
        if name == "Relabel":
            pairs = entry.get("map") or []
            offset = entry.get("offset")
            if pairs:
                mapping = dict(pairs.items()) if isinstance(pairs, dict) else {int(k): int(v) for k, v in pairs}
                out.data["label_map"] = {int(k): int(v) for k, v in mapping.items()}
            elif offset is not None:
                out.data["label_offset"] = int(offset)
            else:
                out.data["relabel_consecutive"] = True
        elif name == "ToOneHot":
            if entry.get("num_classes") is not None:
                out.one_hot_classes = int(entry["num_classes"])
            if entry.get("ignore_background"):
                report.notes.append(f"{tpath}.ignore_background: background stays a class; metrics leave it out "
                                    "(metrics.include_background false)")
        elif name == "ToBinaryMask":
            out.data["mask_threshold"] = float(entry.get("threshold", 0))
            out.binary = True
        elif name in _NOOP_TRANSFORMS or name in _GEOMETRIC or name in ("Normalize",):
            continue  # geometric transforms are applied to image and mask together; the rest do not touch labels
        else:
            report.ignored.append((tpath, f"label transform {name!r} has no smp_like equivalent"))


def _loader(sec: _Section, role: str, source: Optional[str], base: Path) -> _Loader:
    report = sec.report
    dsec = sec.sub("dataset", N.DATASET_KEYS)
    name = dsec.get("name", "ImgSegDataset")
    if name in N.DOWNLOAD_DATASETS:
        local = dsec.get("data_path")
        folder = (base / str(local)).resolve() if local else None
        if folder is None or not folder.is_dir():
            raise _error([f"{dsec.key('name')}: {name} is downloaded by torchvision at run time; smp_like works "
                          f"offline: export the images to a folder (e.g. {name.lower()}/raw/*.png) and point "
                          f"{dsec.key('data_path')} at it (got {local!r})"], source)
        report.notes.append(f"{dsec.key('name')}={name!r}: read as images from the local copy {folder} (ImgDataset)")
        name = "ImgDataset"
    if name not in N.DATASETS:
        raise _error([f"{dsec.key('name')}: unknown Flemme dataset {name!r} for images (choices: "
                      f"{', '.join(N.DATASETS)}){_suggestion(str(name), N.DATASETS)}; point-cloud datasets are not "
                      "supported"], source)
    kind = N.DATASETS[name]
    dim = int(dsec.get("dim", 2))
    out = _Loader(splits=[], kind=kind, dim=dim)
    multimodal = name.startswith("MultiModality")
    default_data_dir = {"img": "", "cls": ""}.get(kind, "partial" if name == "ImgSegWithClassLabelDataset" else "raw")
    data_dir = dsec.get("data_dir", default_data_dir)
    data_suffix = dsec.get("data_suffix", ".png")
    label_dir = dsec.get("label_dir", "label")
    label_suffix = dsec.get("label_suffix")
    target_dir = dsec.get("target_dir", "target")
    target_suffix = dsec.get("target_suffix")
    data_dirs = _as_list(data_dir) if data_dir != "" else [""]
    suffixes = _as_list(data_suffix)
    if multimodal or len(suffixes) > 1 or len(data_dirs) > 1:
        out.modalities = max(len(suffixes), len(data_dirs))
        combine = dsec.get("data_combine", "mean")
        if combine != "cat" and out.modalities > 1:
            report.notes.append(f"{dsec.key('data_combine')}={combine!r}: the {out.modalities} modalities are "
                                "stacked as channels (Flemme's 'cat'); the model's in_channels is their number")
        if len(data_dirs) > 1 and len(set(data_dirs)) > 1:
            report.notes.append(f"{dsec.key('data_dir')}={data_dirs}: modality files are paired by replacing the "
                                f"suffix under {data_dirs[0]!r} and the folder for each modality")
    else:
        dsec.ignore("data_combine", "one modality")
    label_suffix = label_suffix or (suffixes[0] if len(suffixes) == 1 else None)
    if isinstance(label_suffix, list):
        label_suffix = label_suffix[0]

    roots = _as_list(sec.get("data_path_list")) or _as_list(dsec.get("data_path")) or _as_list(sec.get("data_path"))
    suffix_list = _as_list(sec.get("data_suffix_list"))
    label_suffix_list = _as_list(sec.get("label_suffix_list"))
    if not roots:
        raise _error([f"{dsec.key('data_path')}: the {role} loader names no data folder (dataset.data_path or "
                      f"{sec.key('data_path_list')})"], source)
    cls_label = dsec.get("cls_label") if kind == "cls" else None
    if name == "ImgSegWithClassLabelDataset":
        dsec.ignore("cls_label", "the per-image class labels are not used: the run segments (files are found in "
                                 "the class folders)")
    elif kind != "cls":
        dsec.ignore("cls_label", "only class-label datasets read it")
    for r, root in enumerate(roots):
        root = _abs(base, root)
        sfx = suffix_list[r] if r < len(suffix_list) else (suffixes if len(suffixes) > 1 else suffixes[0])
        lsfx = label_suffix_list[r] if r < len(label_suffix_list) else label_suffix
        image_suffix = sfx if isinstance(sfx, str) else list(sfx)
        first = image_suffix if isinstance(image_suffix, str) else image_suffix[0]
        split: Dict[str, Any] = {"images": os.path.join(root, str(data_dirs[0])) if data_dirs[0] else root,
                                 "image_suffix": image_suffix, "pairing": "flemme"}
        if kind == "seg":
            split["masks"] = os.path.join(root, str(_as_list(label_dir)[0]))
            split["mask_suffix"] = lsfx or first
        else:
            # images only (the generative / classification reader pairs nothing): files by stem suffix
            split["masks"] = None
            split["pairing"] = "stem"
            split["image_suffix"] = (_stem_suffix(image_suffix) if isinstance(image_suffix, str)
                                     else [_stem_suffix(x) for x in image_suffix])
        if kind == "cls" and isinstance(cls_label, dict):
            for cls_dir, label in cls_label.items():
                out.splits.append(dict(split, images=os.path.join(root, str(cls_dir), str(data_dirs[0])).rstrip(
                    os.sep)))
                out.split_labels.append(int(label))
        else:
            out.splits.append(split)
    if kind != "seg":
        dsec.ignore("label_dir", f"{name} has no labels")
        dsec.ignore("label_suffix", f"{name} has no labels")
    if kind == "recon":
        report.notes.append(f"{dsec.key('name')}='ImgReconDataset': the auto-encoder reconstructs its input; the "
                            f"target images ({target_dir!r}) are not read")
    dsec.ignore("target_dir", "the auto-encoder reconstructs its input (no separate target images)")
    dsec.ignore("target_suffix", "the auto-encoder reconstructs its input (no separate target images)")
    if isinstance(cls_label, dict):
        out.cls_labels = {str(k): int(v) for k, v in cls_label.items()}
    crop = dsec.get("crop_nonzero")
    if crop:
        csec = _Section(crop if isinstance(crop, dict) else {}, dsec.key("crop_nonzero"), ("margin", "crop_by"),
                        report)
        margin = csec.get("margin", 0)
        out.data["crop_nonzero"] = {"margin": [int(m) for m in margin] if isinstance(margin, (list, tuple))
                                    else int(margin)}
        if csec.get("crop_by", "raw") != "raw":
            report.notes.append(f"{csec.key('crop_by')}: cropped by the nonzero input, not the {csec.data['crop_by']}")
        csec.finish()
    slices = dsec.get("slice_builder")
    if slices or name.startswith(("Patch", "MultiModalityPatch")):
        ssec = _Section(slices or {}, dsec.key("slice_builder"), ("name", "patch_shape", "stride_shape", "threshold",
                                                                  "slack_acceptance"), report)
        shape = ssec.get("patch_shape")
        if shape is not None:
            out.data["patch_size"] = [int(s) for s in _as_list(shape)]
        for key in ("stride_shape", "threshold", "slack_acceptance", "name"):
            if key in ssec.data:
                ssec.used.add(key)
                report.ignored.append((ssec.key(key), _REASONS.get(f"slice_builder.{key}", _GENERIC)))
        ssec.finish()
    dsec.ignore("lazy_loading")
    dsec.ignore("label_combine")
    dsec.ignore("mode")
    dsec.finish()

    if sec.has("batch_size"):
        out.batch_size = int(sec.get("batch_size"))
    if sec.has("num_workers"):
        out.num_workers = int(sec.get("num_workers"))
    random_allowed = role == "train"
    _data_transforms(sec.get("data_transforms"), sec.key("data_transforms"), dim, out, report, source, random_allowed)
    if kind == "seg":
        _label_transforms(sec.get("label_transforms"), sec.key("label_transforms"), out, report)
    else:
        sec.ignore("label_transforms", f"{name} has no labels")
    if kind == "recon":
        target = _Loader(splits=[], kind=kind, dim=dim)
        _data_transforms(sec.get("target_transforms"), sec.key("target_transforms"), dim, target, report, source,
                         False)
    else:
        sec.ignore("target_transforms", f"{name} has no target images")
    if kind == "cls":
        for item in _as_list(sec.get("class_label_transforms")):
            entry = _named(item)
            if entry.get("name") == "ToOneHot" and entry.get("num_classes") is not None:
                out.one_hot_classes = int(entry["num_classes"])
    else:
        sec.ignore("class_label_transforms", f"{name} yields no class labels used here")
    for key in ("shuffle", "drop_last", "pin_memory", "mode"):
        sec.ignore(key)
    sec.finish()
    return out


# ------------------------------------------------------------------------------------------------ model


def _condition(csec: _Section, model: Dict[str, Any], report: TranslationReport, source: Optional[str],
               supervised: bool, dim: int) -> None:
    """``condition_embedding``: class labels (OneHot), an image (Identity: concatenated; any encoder: encoded)."""
    combine = csec.get("combine_condition", "cat")
    merge = csec.get("merge_timestep_and_condition", csec.get("merge_timestep_and_context"))
    injection = csec.get("condition_injection")
    if injection:
        model["time_injection"] = injection
    esec = csec.sub("encoder", N.CONDITION_ENCODER_KEYS + N.ENCODER_KEYS)
    kind = esec.get("name")
    if kind == "OneHot":
        model["num_classes"] = int(esec.get("num_classes", 10))
        model["class_embedding"] = "one_hot"
        esec.get("out_channel")
        esec.ignore("type")
        if combine == "cat" or merge is False:
            report.notes.append(f"{csec.key('combine_condition')}: the class embedding is added to the time "
                                "embedding (merged), as Flemme's combine 'add' with merge_timestep_and_condition")
        esec.finish()
    elif kind in ("Identity", None):
        channels = int(esec.get("out_channel", 1))
        model["_condition_channels" if supervised else "condition_channels"] = channels
        model["image_conditioning"] = "concat"
        if combine == "add":
            report.notes.append(f"{csec.key('combine_condition')}='add': the condition image is concatenated")
        esec.finish()
    elif kind in N.ENCODER_FAMILIES:
        enc = _encoder(esec, dim, source, role="condition")
        model["image_conditioning"] = "encoder"
        model["condition_encoder_name"] = enc.family
        model["_condition_channels" if supervised else "condition_channels"] = enc.in_channels
        report.notes.append(f"{csec.key('encoder')}: the condition image is encoded by a default '{enc.family}' "
                            "encoder, pooled to a vector")
    elif kind == "Time":
        raise _error([f"{esec.key('name')}: a 'Time' condition embedding (a scalar condition) is not supported; use "
                      "OneHot class labels or an image condition"], source)
    else:
        raise _error([f"{esec.key('name')}: unknown condition encoder {kind!r} (choices: Identity, OneHot, "
                      f"{', '.join(N.ENCODER_FAMILIES)})"], source)
    csec.ignore("decoder", "the condition enters the eps-model once (encoder side)")
    csec.ignore("condition_first")
    csec.finish()


def _diffusion(msec: _Section, name: str, report: TranslationReport, source: Optional[str], dim: int
               ) -> Tuple[Dict[str, Any], _Encoder, List[Dict[str, Any]]]:
    """DDPM/DDIM/SDPM/SDIM/LDPM/LDIM (flat, or nested under ``model.diffusion``) -> G's wrapper form."""
    dsec = msec
    if msec.has("diffusion"):
        dsec = msec.sub("diffusion", N.DIFFUSION_KEYS)
        inner = dsec.get("name", "DDPM")
        if inner == "EDM":
            raise _error([f"{dsec.key('name')}: EDM (Karras et al. 2022) is not supported by smp_like; use DDPM or "
                          "DDIM"], source)
        # the nested name picks the sampler of a plain / supervised / latent model
        if name in ("SDM", "SDPM", "SDIM"):
            name = "SDIM" if inner == "DDIM" else ("SDPM" if name == "SDM" else name)
        elif name in ("LDM", "LDPM", "LDIM"):
            name = "LDIM" if inner == "DDIM" else ("LDPM" if name == "LDM" else name)
        else:
            name = "DDIM" if inner == "DDIM" else "DDPM"
    arch = N.MODEL_NAMES[name]
    model: Dict[str, Any] = {"arch": arch}
    steps = dsec.get("num_steps", dsec.get("n_steps", 1000))
    model["num_train_timesteps"] = int(steps)
    schedule = str(dsec.get("beta_schedule", "linear"))
    # Flemme: anything but 'linear' is its cosine schedule (the docs spell it 'consine').
    model["beta_schedule"] = "linear" if schedule == "linear" else "cosine"
    if schedule not in ("linear", "cosine", "consine"):
        report.notes.append(f"{dsec.key('beta_schedule')}={schedule!r}: cosine, as Flemme reads any non-linear name")
    sample_steps = dsec.get("sample_num_steps", dsec.get("num_sample_steps"))
    if sample_steps is not None:
        model["num_inference_steps"] = min(int(sample_steps), int(steps))
    param = dsec.get("parameterization")
    if param is not None:
        model["prediction_type"] = N.PARAMETERIZATIONS.get(param, "epsilon")
    clipped = dsec.get("clipped")
    if clipped is not None:
        model["clip_sample"] = bool(clipped)
    clip_range = dsec.get("clip_range")
    if clip_range is not None:
        lo, hi = [float(v) for v in clip_range]
        if lo != -hi:
            report.notes.append(f"{dsec.key('clip_range')}={clip_range}: symmetric clip to +-{max(abs(lo), abs(hi))}")
        model["clip_range"] = max(abs(lo), abs(hi))
    cfg = dsec.get("classifier_free_guidance")
    if cfg:
        gsec = _Section(cfg, dsec.key("classifier_free_guidance"), ("condition_dropout", "guidance_weight"), report)
        model["condition_dropout"] = float(gsec.get("condition_dropout", 0.1))
        model["guidance_scale"] = float(gsec.get("guidance_weight", 1.0))
        gsec.finish()
    if arch in ("SDPM", "SDIM"):
        ens = dsec.get("num_ensemble", msec.get("num_ensemble"))
        if ens is not None:
            model["num_ensemble"] = int(ens)
    else:
        dsec.ignore("num_ensemble", "only supervised diffusion models (SDPM/SDIM) average samples")
    eps_loss = _losses(dsec, "eps_loss", report, source) if dsec.has("eps_loss") else [{"name": "MSELoss",
                                                                                        "weight": 1.0}]
    if eps_loss and eps_loss[0]["name"] != "MSELoss":
        report.notes.append(f"{dsec.key('eps_loss')}: {eps_loss[0]['name']} -> MSE (smp_like's diffusion models "
                            "train with the MSE to the scheduler's target)")
    if dsec.has("reconstruction_losses"):
        dsec.ignore("reconstruction_losses", "diffusion models train with the eps loss only")

    esec = dsec.sub("eps_model", N.EPS_MODEL_KEYS)
    eps_name = esec.get("name", "Base")
    if eps_name not in ("Base", "HBase"):
        raise _error([f"{esec.key('name')}: the eps-model is Base or HBase, got {eps_name!r}"], source)
    if eps_name == "HBase":
        report.notes.append(f"{esec.key('name')}='HBase': a plain eps-model (Flemme's docs advise against "
                            "hierarchical eps-models)")
    time_channel = esec.get("time_channel", msec.get("time_channel", 128))
    enc = _encoder(esec.sub("encoder", N.ENCODER_KEYS), dim, source, role="eps")
    eps_arch = "UnetPlusPlus" if enc.shape == "d" else "Unet"
    eps = _segmentation_model(enc, eps_arch)
    for key in ("arch", "encoder_name", "encoder_weights", "in_channels"):
        eps.pop(key, None)
    model["eps_model"] = {"arch": eps_arch, **eps}
    model["encoder_name"] = enc.family
    model["encoder_weights"] = None
    model["time_embedding_dim"] = int(time_channel)
    supervised = arch in ("SDPM", "SDIM")
    if esec.has("condition_embedding"):
        _condition(esec.sub("condition_embedding", N.CONDITION_KEYS), model, report, source, supervised, dim)
    esec.ignore("decoder", "the decoder mirrors the encoder")
    esec.ignore("loss_reduction")
    esec.ignore("inter_mode")
    esec.finish()
    if dsec is not msec:
        for key in ("num_steps", "beta_schedule", "sample_num_steps", "num_sample_steps", "eps_model", "eps_loss",
                    "classifier_free_guidance", "num_ensemble"):
            msec.ignore(key, "model.diffusion holds the diffusion settings")
        dsec.ignore("loss_reduction")
        dsec.finish()
    model["_encoder"] = enc  # removed by the caller
    return model, enc, [{"name": "MSELoss", "weight": 1.0}]


def _ae_path(path: str, base: Path, source: Optional[str]) -> str:
    """``ae_path`` -> a saved folder: a folder as it is; an smp_like ``ckp_*.pth`` is written beside as one."""
    target = (base / path).resolve()
    if target.is_dir():
        return str(target)
    if target.suffix == ".pth" and target.is_file():
        from smp_like.training.flemme.checkpoint import model_from_checkpoint

        folder = target.with_name(target.stem + "_pretrained")
        if not folder.is_dir() or folder.stat().st_mtime < target.stat().st_mtime:
            model = model_from_checkpoint(target)
            tmp = folder.with_name("." + folder.name + ".tmp")
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(str(tmp))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        return str(folder)
    raise _error([f"model.ae_path: {target} is neither a saved model folder nor an smp_like ckp_*.pth "
                  "(Flemme's own .pth files hold Flemme modules)"], source)


# ------------------------------------------------------------------------------------------------ main


def translate(values: Dict[str, Any], source: Optional[str] = None, base: Optional[Path] = None,
              mode: Optional[str] = None) -> Tuple[Dict[str, Any], TranslationReport]:
    """Translate a Flemme config (parsed YAML) to a native config dict.

    Args:
        values: the Flemme config.
        source: file name for messages.
        base: folder relative paths are relative to (the config file's folder; default: the working directory).
        mode: ``"train"`` or ``"test"``; default: the file's ``mode`` (Flemme's default ``train``).

    Returns:
        ``(native config dict, report)``.

    Raises:
        FlemmeConfigError: for what smp_like cannot do at all (EDM, point-cloud encoders, downloads), naming the
            key.
    """
    base = Path(base) if base is not None else Path.cwd()
    report = TranslationReport()
    top = _Section(copy.deepcopy(values), "", N.TOP_KEYS, report)
    mode = mode or top.get("mode", "train")
    if mode not in ("train", "test"):
        raise _error([f"mode: {mode!r} must be 'train' or 'test'"], source)
    msec = top.sub("model", N.MODEL_KEYS)
    name = msec.get("name")
    if name == "EDM" or (isinstance(msec.data.get("diffusion"), dict) and msec.data["diffusion"].get("name") == "EDM"):
        raise _error(["model.name: EDM (Karras et al. 2022) is not supported by smp_like; train a DDPM (or DDIM) "
                      "instead"], source)
    if name in ("Base", "HBase"):
        raise _error([f"model.name: {name} has no loss and cannot be trained (in Flemme either); use SeM, AE, DDPM, "
                      "..."], source)
    if msec.has("template_path"):
        raise _error(["model.template_path: give the model section itself (templates are not read)"], source)

    # ---- data first: the dimension and dataset kind decide parts of the model
    loaders: Dict[str, _Loader] = {}
    lsec = top.sub("loader", N.LOADER_KEYS) if top.has("loader") else None
    if lsec is not None:
        loaders["train" if mode == "train" else "test"] = _loader(lsec, "train" if mode == "train" else "test",
                                                                  source, base)
    if top.has("val_loader"):
        if mode == "train":
            loaders["val"] = _loader(top.sub("val_loader", N.LOADER_KEYS), "val", source, base)
        else:
            top.ignore("val_loader", "a test run reads `loader` (the test data)")
    if top.has("test_loader"):
        loaders["test"] = _loader(top.sub("test_loader", N.LOADER_KEYS), "test", source, base)
    if not loaders:
        raise _error([f"loader: a Flemme {mode} config needs a loader section"], source)
    main_loader = loaders.get("train") or loaders.get("test") or loaders["val"]
    dim = main_loader.dim
    for role, other in loaders.items():
        if other is main_loader:
            continue
        for key in sorted(set(other.data) | set(main_loader.data)):
            if key not in ("patch_size", "crop_nonzero") and other.data.get(key) != main_loader.data.get(key):
                report.ignored.append((f"{role}_loader ({key})", "every split is read with the training loader's "
                                                                  "preprocessing"))

    # ---- model
    arch_name = N.MODEL_NAMES.get(name, "")
    loss_terms: List[Dict[str, Any]] = []
    deep_supervision = False
    enc: Optional[_Encoder] = None
    run_kind = "segmentation"
    if name in N.DIFFUSION_MODELS or msec.has("diffusion"):
        if name in ("LDM", "LDPM", "LDIM"):
            model, enc, loss_terms = _latent(msec, name, report, source, dim, base)
        else:
            model, enc, loss_terms = _diffusion(msec, name, report, source, dim)
        model.pop("_encoder", None)
        run_kind = "segmentation" if model["arch"] in ("SDPM", "SDIM") else "generation"
        if model["arch"] in ("SDPM", "SDIM"):
            # Flemme: the eps-model's in/out channels are the mask's; the condition adds its own channels.
            model["in_channels"] = int(model.pop("_condition_channels", 0)) or main_loader.modalities
            model["classes"] = enc.out_channels
        elif model["arch"] not in ("LDPM", "LDIM"):
            model.setdefault("in_channels", enc.in_channels)
        msec.ignore("is_supervised")
        msec.ignore("is_supervising")
    else:
        enc = _encoder(msec.sub("encoder", N.ENCODER_KEYS), dim, source)
        if name in N.SEGMENTATION_MODELS:
            model = _segmentation_model(enc, "HSeM" if name == "HSeM" else None)
            if name == "HSeM":
                for key in ("decoder_block", "decoder_block_kwargs", "decoder_skip"):
                    model.pop(key, None)
                deep_supervision = True
            loss_terms = _losses(msec, "segmentation_losses", report, source) or [{"name": "Dice", "weight": 1.0}]
        elif name == "ClM":
            run_kind = "classification"
            model = {"arch": "ClM", "encoder_name": enc.family, "encoder_weights": None,
                     "in_channels": enc.in_channels, "encoder_depth": enc.depth}
            passed = {k: v for k, v in enc.encoder_kwargs.items() if _accepts("ClM", k)}
            dropped = sorted(set(enc.encoder_kwargs) - set(passed))
            if dropped:
                report.notes.append(f"model.encoder: smp_like's ClM takes no encoder options, so {dropped} keep the "
                                    f"'{enc.family}' encoder's defaults")
            model.update(passed)
            loss_terms = _losses(msec, "classification_losses", report, source) or [{"name": "CrossEntropy",
                                                                                   "weight": 1.0}]
            msec.ignore("decoder", "ClM's head is a pooled MLP")
        elif name in ("AE", "HAE", "VAE"):
            run_kind = "reconstruction"
            model = _autoencoder_model(arch_name, enc, report, "model.encoder")
            loss_terms = _losses(msec, "reconstruction_losses", report, source) or [{"name": "MSELoss",
                                                                                    "weight": 1.0}]
            if name == "VAE":
                dist = msec.get("distribution_loss") or {"name": "KL", "weight": 1.0}
                dsec = _Section(_named(dist), "model.distribution_loss", N.LOSS_KEYS, report)
                dname = dsec.get("name", "KL")
                if dname != "KL":
                    raise _error([f"model.distribution_loss.name: {dname!r} (smp_like's VAE uses KL)"], source)
                loss_terms.append({"name": "KLDivergenceLoss", "weight": float(dsec.get("weight", 1.0))})
                dsec.finish()
            else:
                msec.ignore("distribution_loss", f"{name} has no latent distribution (a VAE has)")
            msec.ignore("is_supervising")
            if name == "HAE":
                deep_supervision = False
        else:
            raise _error([f"model.name: unknown Flemme model {name!r} (choices: "
                          f"{', '.join(k for k in N.MODEL_NAMES if k not in ('Base', 'HBase'))})"
                          f"{_suggestion(str(name), N.MODEL_NAMES)}"], source)
        if enc.time_embedding_dim:
            report.ignored.append(("model.encoder.time_channel", "only eps-models take a time embedding"))
        msec.ignore("time_channel", "only eps-models take a time embedding")
        msec.ignore("condition_embedding", "only diffusion models take a condition here")
        msec.ignore("is_supervised")
    for key in ("segmentation_losses", "reconstruction_losses", "distribution_loss", "classification_losses",
                "eps_loss", "num_steps", "n_steps", "beta_schedule", "sample_num_steps", "num_sample_steps",
                "classifier_free_guidance", "num_ensemble", "eps_model", "freezed_ae", "ae_path", "ae_model",
                "parameterization", "clipped", "clip_range", "latent_scale"):
        msec.ignore(key, f"not a setting of {name}")
    msec.finish()

    # ---- native data section
    data: Dict[str, Any] = {"dim": dim} if dim == 3 else {}
    if mode == "train":
        data["train"] = main_loader.splits
        if "val" in loaders:
            data["val"] = loaders["val"].splits
        else:
            data["val_fraction"] = 0.0  # Flemme validates only with a val_loader
    else:
        data["train"] = main_loader.splits  # the schema needs one; `smp-like test` reads data.test
        data["val_fraction"] = 0.0
    if "test" in loaders:
        data["test"] = loaders["test"].splits
    data.update(main_loader.data)
    if main_loader.augment:
        data["augment"] = {"train": main_loader.augment}
    if main_loader.batch_size is not None:
        data["batch_size"] = main_loader.batch_size
    if "val" in loaders and loaders["val"].batch_size is not None:
        data["val_batch_size"] = loaders["val"].batch_size
    if main_loader.num_workers is not None:
        data["num_workers"] = main_loader.num_workers
    if enc is not None and enc.image_size and "resize" not in data and "patch_size" not in data:
        # image_size fixes nothing in smp_like's models, but Flemme's data must have that size: resize to it.
        data["resize"] = enc.image_size[:dim] if len(enc.image_size) >= dim else enc.image_size
    channels = 1 if data.get("grayscale") else (model.get("in_channels") or 1)
    if run_kind in ("reconstruction", "generation"):
        # smp_like's generative runs scale images to [0, 1] themselves (pixel diffusion then to [-1, 1]: the range
        # Flemme's usual Normalize(0.5, 0.5) gives).
        data.pop("normalization", None)
        if main_loader.normalize_path:
            report.ignored.append((main_loader.normalize_path, "reconstruction and generation runs scale images to "
                                   "[0, 1] themselves (diffusion models then to [-1, 1])"))
    elif "normalization" not in data:
        # Flemme's ToTensor scales 8-bit images to [0, 1] and leaves volumes as they are.
        data["normalization"] = ({"normalization": "none"} if dim == 3 else
                                 {"normalization": "mean_std", "mean": [0.0] * channels, "std": [1.0] * channels})
    elif data["normalization"].get("normalization") == "mean_std":
        norm = data["normalization"]
        for key in ("mean", "std"):
            if len(norm[key]) == 1 and channels > 1:
                norm[key] = norm[key] * channels
    if main_loader.modalities > 1 and model.get("arch") not in ("SDPM", "SDIM"):
        if model.get("in_channels") != main_loader.modalities:
            report.notes.append(f"model.encoder.in_channel: {main_loader.modalities} (one channel per modality)")
        model["in_channels"] = main_loader.modalities

    num_classes_top = top.data.get("num_classes")
    if run_kind == "segmentation":
        k = model.get("classes") if model.get("arch") in ("SDPM", "SDIM") else enc.out_channels
        k = int(k)
        if main_loader.one_hot_classes and main_loader.one_hot_classes != k:
            report.notes.append(f"loader.label_transforms ToOneHot num_classes={main_loader.one_hot_classes} but "
                                f"the model outputs {k} channels; {k} classes are used")
        if k == 1:
            data["task"] = "binary"
            data["classes"] = ["foreground"]
        else:
            data["task"] = "multiclass"
            data["classes"] = ["background"] + [f"class_{i}" for i in range(1, k)]
        if model.get("arch") in ("SDPM", "SDIM"):
            model["classes"] = k
    elif run_kind == "classification":
        k = int(num_classes_top or main_loader.one_hot_classes or (len(main_loader.cls_labels or {}) or 2))
        data["classes"] = [f"class_{i}" for i in range(k)]
        model["classes"] = k
        if main_loader.cls_labels:
            data["labels_csv"] = _labels_csv(main_loader, top, base, source)
        else:
            raise _error(["loader.dataset.cls_label: a ClM run needs {class folder: label} (ImgClsDataset)"], source)
    # ---- losses, metrics, optimizer, scheduler, trainer
    native: Dict[str, Any] = {"model": model, "data": data}
    if run_kind in ("generation",) or model.get("arch") in ("SDPM", "SDIM"):
        native["loss"] = {"terms": [{"name": "MSELoss"}]}
    else:
        native["loss"] = {"terms": [dict(t) for t in loss_terms]}
    if deep_supervision:
        native["loss"]["deep_supervision"] = True
    native["metrics"] = _metrics(top, run_kind, model.get("arch"), "val" in loaders, report, source)
    native["optimizer"] = _optimizer(top, report, source)
    sched = _scheduler(top, report, source)
    if sched:
        native["scheduler"] = sched
    trainer: Dict[str, Any] = {"max_epochs": int(top.get("max_epoch", 1000))}
    if top.has("max_steps"):
        trainer["max_steps"] = int(top.get("max_steps"))
    if top.get("determinstic", False):
        trainer["deterministic"] = True
    if top.has("clip_grad"):
        trainer["gradient_clip_val"] = float(top.get("clip_grad"))
    save_every = int(top.get("save_after_epochs", 1))
    trainer["check_val_every_n_epoch"] = save_every
    if top.has("write_after_iters"):
        trainer["log_every_n_steps"] = int(top.get("write_after_iters"))
    native["trainer"] = trainer
    ckp_dir = _abs(base, top.get("check_point_dir", "."))
    native["checkpoint"] = {"flemme_dir": ckp_dir, "every_n_epochs": save_every}
    native["output_dir"] = ckp_dir
    native["run_name"] = "run"
    if top.has("early_stop_patience"):
        native["early_stopping"] = {"patience": int(top.get("early_stop_patience"))}
    if top.has("rand_seed"):
        native["seed"] = int(top.get("rand_seed"))
    generation = _generation(top, model, report)
    if generation:
        native["generation"] = generation
    native["test"] = _test(top, report, mode, base)
    if mode == "train":
        top.ignore("model_path", "a train config writes checkpoints; test configs read model_path")
    for key in ("eval_batch_num", "last_epoch", "prediction", "pickle_results", "pickle_path", "load_pickle_results",
                "tsne_visualization", "split_files", "write_sample_num", "ema", "resume", "pretrained", "num_classes"):
        if key == "num_classes" and run_kind == "classification":
            top.get(key)
            continue
        if key == "num_classes":
            top.ignore(key, "the classes are the model's out_channel")
            continue
        top.ignore(key)
    top.ignore("mode")
    top.finish()
    return native, report


def _latent(msec: _Section, name: str, report: TranslationReport, source: Optional[str], dim: int, base: Path
            ) -> Tuple[Dict[str, Any], _Encoder, List[Dict[str, Any]]]:
    model, enc, terms = _diffusion(msec, name, report, source, dim)
    freeze = msec.get("freezed_ae", True)
    model["freeze_autoencoder"] = bool(freeze)
    if msec.has("latent_scale"):
        model["latent_scale"] = float(msec.get("latent_scale"))
    ae_path = msec.get("ae_path")
    ae_cfg = msec.get("ae_model")
    if ae_path:
        model["autoencoder"] = {"from_pretrained": _ae_path(str(ae_path), base, source)}
        if ae_cfg:
            msec.report.ignored.append(("model.ae_model", "the auto-encoder comes from model.ae_path"))
    elif isinstance(ae_cfg, dict):
        asec = _Section(ae_cfg, "model.ae_model", N.MODEL_KEYS, report)
        ae_name = asec.get("name", "AE")
        if ae_name not in ("AE", "VAE"):
            raise _error([f"model.ae_model.name: the auto-encoder of a latent diffusion model is AE or VAE, got "
                          f"{ae_name!r}"], source)
        ae_enc = _encoder(asec.sub("encoder", N.ENCODER_KEYS), dim, source)
        ae_model = _autoencoder_model(ae_name, ae_enc, report, "model.ae_model.encoder")
        for key in ("reconstruction_losses", "distribution_loss"):
            asec.ignore(key, "the auto-encoder of a latent diffusion model is not trained with it here")
        asec.finish()
        model["autoencoder"] = ae_model
        if freeze:
            report.notes.append("model.freezed_ae without model.ae_path: the auto-encoder is frozen at its random "
                                "initialisation (as in Flemme); give ae_path to use a trained one")
    else:
        raise _error(["model.ae_model: a latent diffusion model needs ae_model (its AE/VAE) or ae_path"], source)
    return model, enc, terms


def _labels_csv(loader: _Loader, top: _Section, base: Path, source: Optional[str]) -> str:
    """ImgClsDataset's ``cls_label`` {class folder: label} as the CSV smp_like reads (stem, label), written into
    the check-point folder (the folders themselves stay as they are)."""
    rows = []
    for split, label in zip(loader.splits, loader.split_labels):
        folder = Path(split["images"])
        folder = folder if folder.is_absolute() else base / folder
        suffix = split["image_suffix"] if isinstance(split["image_suffix"], str) else split["image_suffix"][0]
        for path in sorted(folder.iterdir()):
            name = path.name
            ext = next((e for e in _EXTENSIONS if name.lower().endswith(e)), None)
            if ext is None or name.startswith("."):
                continue
            stem = name[: -len(ext)]
            if suffix and not stem.endswith(suffix):
                continue
            rows.append((stem[: len(stem) - len(suffix)], label))
    out = Path(_abs(base, top.data.get("check_point_dir", "."))) / "flemme_class_labels.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    from smp_like.io.atomic import atomic_output

    with atomic_output(out) as tmp:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["stem", "label"])
            writer.writerows(rows)
    return str(out)


def _metrics(top: _Section, run_kind: str, arch: Optional[str], has_val: bool, report: TranslationReport,
             source: Optional[str]) -> Dict[str, Any]:
    esec = top.sub("evaluation_metrics", ("seg", "recon", "cls", "gen"))
    group = {"segmentation": "seg", "reconstruction": "recon", "generation": "recon", "classification": "cls"}[
        run_kind]
    names: List[str] = []
    hd = False
    for g in ("seg", "recon", "cls", "gen"):
        items = esec.get(g) if g == group else None
        if g != group:
            esec.ignore(g, f"this is a {run_kind} run")
            continue
        for i, item in enumerate(_as_list(items)):
            entry = _named(item)
            mname = entry.get("name")
            if mname == "HD":
                hd = True
                report.notes.append(f"evaluation_metrics.{g}.{i}: HD -> HD95 (metrics.hd95)")
                continue
            if mname not in N.METRICS:
                report.unknown.append((f"evaluation_metrics.{g}.{i}.name={mname!r}",
                                       _suggestion(str(mname), N.METRICS)))
                continue
            native = N.METRICS[mname]
            if native not in names:
                names.append(native)
    esec.finish()
    out: Dict[str, Any] = {}
    if names:
        out["names"] = names
    if hd:
        out["hd95"] = True
    score = top.get("score_metric")
    ssec = _Section(score if isinstance(score, dict) else {"name": score} if score else {}, "score_metric",
                    N.SCORE_KEYS, report)
    sname = ssec.get("name")
    if sname is not None:
        mapped = N.METRICS.get(sname)
        if mapped is None or mapped not in names:
            report.ignored.append(("score_metric.name", f"{sname!r} is not among the evaluation metrics; the best "
                                                        "checkpoint follows the loss"))
        else:
            out["monitor"] = f"val/{mapped}"
            out["mode"] = "max" if ssec.get("higher_is_better", True) else "min"
    ssec.finish()
    if "monitor" not in out:
        out["monitor"] = "val/loss"
        out["mode"] = "min"
    if run_kind == "segmentation" and arch in ("SDPM", "SDIM"):
        out["monitor"], out["mode"] = "val/loss", "min"
    return out


def _optimizer(top: _Section, report: TranslationReport, source: Optional[str]) -> Dict[str, Any]:
    import torch

    osec = top.sub("optimizer", ("name", "lr", "weight_decay", "momentum", "betas", "eps", "nesterov", "amsgrad",
                                 "dampening"))
    name = osec.get("name", "Adam")
    cls = getattr(torch.optim, str(name), None)
    if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
        raise _error([f"optimizer.name: unknown optimizer {name!r} (Flemme: SGD, Adam, AdamW; any torch.optim "
                      f"class works){_suggestion(str(name), N.OPTIMIZERS)}"], source)
    out: Dict[str, Any] = {"name": name, "lr": float(osec.get("lr", 1e-3))}
    params = inspect.signature(cls.__init__).parameters
    for key in list(osec.data):
        if key in ("name", "lr"):
            continue
        if key in params:
            value = osec.get(key)
            out[key] = [float(v) for v in value] if key == "betas" else value
    osec.finish()
    return out


def _scheduler(top: _Section, report: TranslationReport, source: Optional[str]) -> Dict[str, Any]:
    import torch

    out: Dict[str, Any] = {}
    if top.has("lr_scheduler"):
        raw = top.data["lr_scheduler"]
        name = raw.get("name") if isinstance(raw, dict) else None
        cls = getattr(torch.optim.lr_scheduler, str(name), None)
        if not inspect.isclass(cls):
            raise _error([f"lr_scheduler.name: unknown torch.optim.lr_scheduler {name!r}"], source)
        params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "optimizer")]
        ssec = top.sub("lr_scheduler", ["name"] + params)
        ssec.get("name")
        out["name"] = name
        max_epoch = int(top.data.get("max_epoch", 1000))
        warm = int(top.data.get("warmup_epochs", top.data.get("warmup_epoch", 0)) or 0)
        for key in list(ssec.data):
            if key == "name":
                continue
            if key in params:
                value = ssec.get(key)
                if name == "OneCycleLR" and key in ("total_steps", "max_lr"):
                    continue  # Flemme overwrites them; smp_like fills them from the run length and lr
                out[key] = value
        if name == "LinearLR" and "total_iters" not in out:
            out["total_iters"] = max(1, max_epoch - warm)  # Flemme sets it so
        ssec.finish()
    warm = top.get("warmup_epochs", top.get("warmup_epoch"))
    if warm:
        out["warmup"] = int(warm)
        scale = top.get("warmup_start_scale")
        if scale is not None:
            out["warmup_start_factor"] = float(scale)
    else:
        top.ignore("warmup_start_scale", "no warmup_epochs")
    return out


def _generation(top: _Section, model: Dict[str, Any], report: TranslationReport) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    generative = str(model.get("arch", "")).upper() in ("DDPM", "DDIM", "SDPM", "SDIM", "LDPM", "LDIM", "VAE")
    if top.has("sampler"):
        ssec = top.sub("sampler", N.SAMPLER_KEYS)
        if generative:
            steps = ssec.get("num_sample_steps")
            if steps is not None and int(steps) > 0:
                out["num_inference_steps"] = int(steps)
            if ssec.get("clipped", False):
                out["clip_range"] = [float(v) for v in ssec.get("clip_range", [-1.0, 1.0])]
            else:
                ssec.ignore("clip_range", "sampler.clipped is false")
            if ssec.has("rand_seed"):
                out["seed"] = int(ssec.get("rand_seed"))
            ssec.ignore("name")
        else:
            for key in list(ssec.data):
                ssec.ignore(key, f"{model.get('arch')} does not sample")
        ssec.finish()
    if top.has("eval_gen"):
        gsec = top.sub("eval_gen", N.EVAL_GEN_KEYS)
        if gsec.has("random_sample_num"):
            out["num_samples"] = max(1, min(64, int(gsec.get("random_sample_num"))))
        if gsec.has("interpolation"):
            out["interpolation"] = bool(gsec.get("interpolation"))
        gsec.get("gen_dir")  # read by _test
        gsec.ignore("interpolation_num")
        gsec.finish()
    if str(model.get("arch", "")).upper() in ("SDPM", "SDIM") and model.get("num_ensemble"):
        out["num_ensemble"] = int(model["num_ensemble"])
    return out


def _test(top: _Section, report: TranslationReport, mode: str, base: Path) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if top.has("model_path") and mode == "test":
        out["checkpoint"] = _abs(base, top.get("model_path"))
    gen_dir = top.data.get("eval_gen", {}).get("gen_dir") if isinstance(top.data.get("eval_gen"), dict) else None
    for key in ("seg_dir", "recon_dir", "cls_dir"):
        if top.has(key):
            value = top.get(key)
            if "output_dir" in out:
                report.notes.append(f"{key}: the test outputs go to one folder, {out['output_dir']}")
            else:
                out["output_dir"] = _abs(base, value)
    if gen_dir and "output_dir" not in out:
        out["output_dir"] = _abs(base, gen_dir)
    if top.has("save_input"):
        out["save_inputs"] = bool(top.get("save_input"))
    if top.has("save_target"):
        out["save_targets"] = bool(top.get("save_target"))
    if top.has("save_colorized"):
        out["colorize"] = bool(top.get("save_colorized"))
    return out
