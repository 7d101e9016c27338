"""``tu-<name>``: any timm model that supports ``features_only``, as an smp_like encoder.

timm models come in four down-sampling patterns, told apart by ``feature_info.reduction()``:

* (2, 4, 8, 16, 32) — most CNNs: features are ``[x, f/2, ..., f/32]``;
* (4, 8, 16, 32)    — transformer-style stems: a 0-channel placeholder stands in for stride 2, as SMP does;
* (1, 2, ..., 32)   — VGG-style: the model's own stride-1 feature replaces ``x``;
* (16, 16, ..., 16) — plain ViTs (every feature at the patch stride): served by
  :class:`~smp_like.encoders.timm_vit.TimmViTPyramidEncoder`, a subclass that builds a ViTDet simple feature
  pyramid (``TimmUniversalEncoder(...)`` returns an instance of it for such models).

Anything else cannot feed the decoders' stride-matched skips and is refused with the pattern found. Features
that timm returns channels-last (NHWC) are permuted to channels-first.
"""

import functools
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from smp_like.encoders._base import EncoderMixin
from smp_like.encoders.deprecated import has_legacy_keys, remap_legacy_timm_keys

DEFAULT_WEIGHTS = "imagenet"  # means "timm's default pretrained tag for this model"


def _timm():
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a hard dependency
        raise ImportError("tu- encoders need timm: pip install timm") from err
    return timm


def split_tag(name: str) -> Tuple[str, Optional[str]]:
    base, _, tag = name.partition(".")
    return base, (tag or None)


def available_tags(base: str) -> List[str]:
    """timm's pretrained tags for ``base`` (e.g. ``["a1_in1k", "tv_in1k", ...]``)."""
    return sorted({n.partition(".")[2] for n in _timm().list_pretrained(f"{base}.*")} - {""})


def resolve_timm_name(name: str, weights: Optional[str]) -> str:
    """The timm model name (with tag, if any) that ``name`` and ``encoder_weights`` ask for.

    ``encoder_weights`` may be None or False (random), True or ``"imagenet"`` (timm's default tag, or the tag
    given in the name; True is SMP 0.6's spelling) or a timm tag; a tag given both ways must agree.

    Raises:
        ValueError: for an unknown model, an unknown tag, or conflicting tags.
    """
    timm = _timm()
    weights = normalize_timm_weights(weights)
    base, tag = split_tag(name)
    if not timm.is_model(base):
        raise ValueError(f"Unknown timm model {base!r} in encoder name 'tu-{name}'; see timm.list_models()")
    if weights is None or weights == DEFAULT_WEIGHTS or weights == tag:
        chosen = tag
    elif not isinstance(weights, str):
        raise TypeError(f"`encoder_weights` must be a string or None, got {weights!r}")
    elif tag is not None:
        raise ValueError(
            f"encoder 'tu-{name}' already names the pretrained tag {tag!r}; `encoder_weights`={weights!r} conflicts "
            f"with it (use {DEFAULT_WEIGHTS!r} or {tag!r})"
        )
    else:
        chosen = weights
    if chosen is not None and weights is not None and chosen not in available_tags(base):
        raise ValueError(
            f"Unknown `encoder_weights` tag {chosen!r} for timm model {base!r}; available tags: "
            f"{[DEFAULT_WEIGHTS] + available_tags(base)}"
        )
    return base if chosen is None else f"{base}.{chosen}"


def normalize_timm_weights(weights: Any) -> Optional[str]:
    """Map SMP 0.6's boolean ``encoder_weights`` for ``tu-`` encoders onto ours: True -> timm's default tag
    (``"imagenet"``), False -> None (random initialisation); strings and None pass unchanged."""
    if weights is True:
        return DEFAULT_WEIGHTS
    if weights is False:
        return None
    return weights


def warn_tag_for_timm_encoder(name: str, weights: Any) -> None:
    """SMP's UserWarning for a string ``encoder_weights`` on a ``tu-`` encoder, saying that smp_like honours it.

    SMP 0.6 expects True/None for ``tu-`` encoders (the tag goes in the name) and warns otherwise; SMP users rely
    on seeing that warning, so it is kept, but here the string is used: ``"imagenet"`` means timm's default tag
    (or the one in the name), any other string is a timm pretrained tag.
    """
    if weights is None or isinstance(weights, bool):
        return
    import warnings

    meaning = (
        "timm's default pretrained tag" if weights == DEFAULT_WEIGHTS else f"the timm pretrained tag {weights!r}"
    )
    warnings.warn(
        f"For 'tu-' (timm universal) encoders SMP expects `encoder_weights`=True (timm's default pretrained tag) or "
        f"None, with any tag in the name ('tu-<model_name>.<pretrained_tag>'). Got encoder_weights={weights!r} for "
        f"{name!r}: smp_like honoured it as {meaning}.",
        UserWarning,
        stacklevel=3,
    )


@functools.lru_cache(maxsize=None)
def feature_reductions(base: str) -> Tuple[int, ...]:
    """``feature_info.reduction()`` of timm model ``base`` (no tag) with ``features_only=True``.

    Built on the meta device (no memory, no weights) and cached per name.

    Raises:
        ValueError: if timm cannot build the model with ``features_only``.
    """
    try:
        with torch.device("meta"):
            probe = _timm().create_model(base, features_only=True)
    except Exception as err:
        raise ValueError(f"timm model {base!r} cannot be used as an encoder (features_only failed): {err}") from err
    return tuple(int(r) for r in probe.feature_info.reduction())


def is_plain_vit(name: str) -> bool:
    """Whether timm model ``name`` (tag allowed) is non-hierarchical: all its features share one stride."""
    base = split_tag(name)[0]
    try:
        if not _timm().is_model(base):
            return False
        reductions = feature_reductions(base)
    except ValueError:
        return False
    return len(reductions) > 0 and len(set(reductions)) == 1


class TimmUniversalEncoder(nn.Module, EncoderMixin):
    """Wraps ``timm.create_model(name, features_only=True)`` into the smp_like encoder contract.

    Args:
        name: timm model name, optionally with a pretrained tag (``"resnet18.a1_in1k"``).
        pretrained: None (or False) for random weights, True or ``"imagenet"`` for timm's default tag, or a timm
            tag.
        in_channels: input channels (timm adapts pretrained stems itself).
        depth: number of down-sampling stages (1..5; 2..5 for transformer-style models).
        output_stride: 32, or 16 / 8 if the timm model supports dilation.
        spatial_dims: must be 2 (timm models are 2D).
        **kwargs: extra arguments for ``timm.create_model``.

    Plain ViTs (all features at one stride) are served by the subclass
    :class:`~smp_like.encoders.timm_vit.TimmViTPyramidEncoder`: constructing this class for one returns an
    instance of that subclass.

    Raises:
        ValueError: for 3D, a depth outside the range, a reduction pattern that cannot be served, or an unknown
            model or tag.
    """

    # Subclasses that serve some timm names better (the plain-ViT pyramid): each defines a static
    # ``handles_timm_name(name) -> bool`` and is found here when it is defined, so this module never imports them.
    _name_subclasses: List[type] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "handles_timm_name" in cls.__dict__:
            TimmUniversalEncoder._name_subclasses.append(cls)

    def __new__(cls, *args: Any, **kwargs: Any) -> "TimmUniversalEncoder":
        # Dispatch only on direct construction with a model name; copies and unpickling call __new__ bare.
        name = args[0] if args else kwargs.get("name")
        if cls is TimmUniversalEncoder and isinstance(name, str):
            for subclass in TimmUniversalEncoder._name_subclasses:
                if subclass.handles_timm_name(name):  # type: ignore[attr-defined]
                    cls = subclass
                    break
        return super().__new__(cls)

    def __init__(
        self,
        name: str,
        pretrained: Optional[str] = None,
        in_channels: int = 3,
        depth: int = 5,
        output_stride: int = 32,
        spatial_dims: int = 2,
        **kwargs: Any,
    ):
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(
                f"timm encoders ('tu-{name}') are 2D only, got spatial_dims={spatial_dims!r}; for volumes use a "
                "native encoder that supports spatial_dims=3 (see smp_like.encoders.encoders entries)"
            )
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(f"`depth` (encoder_depth) of a timm encoder must be an int in 1..5, got {depth!r}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f"`output_stride` must be one of (8, 16, 32), got {output_stride!r}")
        timm = _timm()
        pretrained = normalize_timm_weights(pretrained)
        resolved = resolve_timm_name(name, pretrained)

        # Inspect the feature hierarchy on the meta device: no memory, no weights.
        reductions = list(feature_reductions(split_tag(resolved)[0]))
        style, indices = self._select_levels(name, reductions, depth)

        create_kwargs: Dict[str, Any] = dict(
            features_only=True, pretrained=pretrained is not None, in_chans=in_channels, out_indices=indices
        )
        if output_stride != 32:
            create_kwargs["output_stride"] = output_stride
        if pretrained is not None:
            # Fetched through smp_like's one fetch path (fails fast, names repository and remedies); timm then
            # reads the local file instead of downloading (with its own retries) itself.
            create_kwargs["pretrained_cfg_overlay"] = dict(file=str(fetch_timm_weights(resolved, f"tu-{name}")),
                                                           source=None)
        duplicated = sorted(set(create_kwargs) & set(kwargs))
        if duplicated:
            raise ValueError(f"arguments {duplicated} are set by smp_like; pass them through get_encoder's arguments")
        self.model = timm.create_model(resolved, **create_kwargs, **kwargs)
        if has_legacy_keys(resolved):
            # Old native timm-* encoders of SMP stored keys without `model.`: renamed on load (deprecated.py).
            self.register_load_state_dict_pre_hook(remap_legacy_timm_keys)

        channels = list(self.model.feature_info.channels())
        chosen = [reductions[i] for i in indices]
        if style == "vgg":
            self._out_channels = tuple(channels)
            level_reductions = chosen
        elif style == "transformer":
            self._out_channels = (in_channels, 0, *channels)
            level_reductions = [1, 2] + chosen
        else:
            self._out_channels = (in_channels, *channels)
            level_reductions = [1] + chosen
        self._reductions = tuple(min(r, output_stride) for r in level_reductions)
        self._style = style
        self._channels_last = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")
        self._name = name
        self._depth = depth
        self._in_channels = in_channels
        self._output_stride = output_stride

    @staticmethod
    def _select_levels(name: str, reductions: List[int], depth: int) -> Tuple[str, Tuple[int, ...]]:
        patterns = {1: "vgg", 2: "traditional", 4: "transformer"}
        first = reductions[0] if reductions else None
        if first not in patterns or reductions != [first * 2**i for i in range(len(reductions))]:
            raise ValueError(
                f"timm model {name!r} has feature reductions {reductions}; smp_like serves (2, 4, ..., 32), "
                "(4, 8, ..., 32) or (1, 2, ..., 32)"
            )
        style = patterns[first]
        # Levels whose strides are 2**k for the stages the decoder needs.
        lowest = {"vgg": 0, "traditional": 1, "transformer": 2}[style]
        wanted = [2**k for k in range(lowest, depth + 1)]
        if not wanted:
            raise ValueError(f"timm model {name!r} starts at stride {first}; it needs encoder_depth >= 2, got {depth}")
        missing = [r for r in wanted if r not in reductions]
        if missing:
            deepest = reductions[-1].bit_length() - 1
            raise ValueError(
                f"timm model {name!r} has no features at strides {missing} (reductions {reductions}); "
                f"use encoder_depth <= {deepest}"
            )
        return style, tuple(reductions.index(r) for r in wanted)

    def make_dilated(self, output_stride: int) -> None:
        raise ValueError("timm encoders are dilated at construction: pass output_stride to get_encoder")

    def set_in_channels(self, in_channels: int, pretrained: bool = True) -> None:
        if in_channels != self._in_channels:
            raise ValueError("timm encoders adapt in_channels at construction: pass in_channels to get_encoder")

    def forward(self, x: torch.Tensor, time_emb: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        self._check_time_embedding(time_emb)
        features = self.model(x)
        if self._channels_last:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        if self._style == "vgg":
            return features
        if self._style == "transformer":
            half = [s // 2 for s in x.shape[2:]]
            placeholder = x.new_empty((x.shape[0], 0, *half))
            return [x, placeholder] + features
        return [x] + features


def timm_preprocessing_params(name: str) -> Dict[str, Any]:
    """Normalisation of timm's pretrained config for ``name`` (with or without tag)."""
    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained config for {name!r}")
    return {"input_space": "RGB", "input_range": [0, 1], "mean": list(cfg.mean), "std": list(cfg.std)}


def fetch_timm_weights(resolved: str, encoder_name: str) -> Path:
    """A local file with timm's pretrained weights for ``resolved`` (``name.tag``), fetched if needed.

    Hub-hosted weights go through :func:`smp_like.base.hub.fetch_file` (``model.safetensors``, else timm's legacy
    ``pytorch_model.bin``, or the file the config names), URL-hosted ones through the encoder weights' URL path.

    Raises:
        ValueError: when timm has no pretrained weights for ``resolved``.
        WeightsDownloadError: when they cannot be fetched (repository, revision and remedies named).
    """
    from smp_like.base.hub import fetch_file
    from smp_like.encoders._weights import WeightsDownloadError, fetch_weights_file, weights_remedies

    cfg = _timm().models.get_pretrained_cfg(resolved)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ValueError(f"timm has no pretrained weights for {resolved!r}")
    tag = split_tag(resolved)[1] or DEFAULT_WEIGHTS
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        what = f"timm weights '{resolved}' of encoder '{encoder_name}'"
        remedy = weights_remedies(encoder_name, tag)
        try:
            if cfg.hf_hub_filename:
                path = fetch_file(repo_id, cfg.hf_hub_filename, revision=revision or None, what=what, remedies=remedy)
            else:
                path = fetch_file(repo_id, "model.safetensors", revision=revision or None, what=what,
                                  remedies=remedy, optional=True) or fetch_file(
                    repo_id, "pytorch_model.bin", revision=revision or None, what=what, remedies=remedy)
        except OSError as err:
            raise WeightsDownloadError(str(err)) from err
        assert path is not None
        return path
    return fetch_weights_file(encoder_name, tag, {"url": cfg.url})


def download_timm_weights(name: str, weights: str = DEFAULT_WEIGHTS) -> str:
    """Fill the cache with timm's pretrained weights for ``name`` and return the local file.

    Raises:
        ValueError: for an unknown model or tag, or a model without pretrained weights.
        WeightsDownloadError: when the weights cannot be fetched.
    """
    return str(fetch_timm_weights(resolve_timm_name(name, weights), f"tu-{name}"))
