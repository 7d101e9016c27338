"""Turn any segmentation architecture into a time-conditioned network (a diffusion eps-model).

``smp.Unet(..., time_embedding_dim=128)`` — or any architecture whose decoder lists ``time_injection_points`` —
gets

* ``model.time_embedding``: :class:`~smp_like.base.embedding.TimeEmbedding` (sinusoidal → MLP);
* one :class:`~smp_like.base.embedding.EmbeddingInjection` after every decoder block named by the decoder's
  ``time_injection_points`` (patterns over ``decoder.named_modules()``, ``*`` = one name component), applied by a
  forward hook so the decoders' own code, keys and SMP-compatible outputs stay untouched — or, for a decoder whose
  blocks take the embedding themselves (``decoder.supports_time_embedding``, e.g. Unet with ``decoder_block``
  ``swin`` / ``vmamba`` / ``res_conv``), injections inside every block, the vector passed as
  ``decoder(features, time_emb)``;
* the embedding in every encoder block as well, for encoders with ``supports_time_embedding`` (the Flemme
  families); other encoders run unchanged.

The decoder blocks' output widths are found by one dry run at construction (no parameters are guessed from
layer types), at the smallest input the model accepts.

The time vector travels with the call: :func:`decoder_time_scope` puts it in a context variable for the duration of
one forward pass, and the hooks read it from there. A context variable is local to its thread (and to its asyncio
task), so two threads running the same model at different timesteps never see each other's vectors, and nothing
of a call outlives it.
"""
import contextlib
import contextvars
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from smp_like.base.embedding import EmbeddingInjection, TimeEmbedding, check_injection_mode
from smp_like.base.registry import classes_with

__all__ = ["DecoderTimeInjection", "attach_time_embedding", "decoder_time_scope", "injection_targets"]

# id(DecoderTimeInjection) -> the time vector of the forward pass running in this thread / task.
_CALL_TIME: "contextvars.ContextVar[Optional[Dict[int, torch.Tensor]]]" = contextvars.ContextVar(
    "smp_like_decoder_time", default=None
)


def _pattern(point: str) -> "re.Pattern[str]":
    return re.compile(re.escape(point).replace(r"\*", r"[^.]+"))


def injection_targets(decoder: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The decoder's sub-modules named by its ``time_injection_points``, in module order."""
    patterns = [_pattern(p) for p in getattr(decoder, "time_injection_points", ())]
    return [(n, m) for n, m in decoder.named_modules() if n and any(p.fullmatch(n) for p in patterns)]


class DecoderTimeInjection(nn.Module):
    """An :class:`EmbeddingInjection` applied to the output of one decoder module through a forward hook.

    The model runs its decoder inside :func:`decoder_time_scope`, so the hook needs no extra forward argument from
    the decoder and no state on the module: :attr:`embedding` is the vector of the call running in this thread.
    """

    def __init__(self, channels: int, embedding_dim: int, mode: str):
        super().__init__()
        self.injection = EmbeddingInjection(channels, embedding_dim, mode)

    @property
    def embedding(self) -> Optional[torch.Tensor]:
        """The time vector of the forward pass running in this thread (None outside one)."""
        current = _CALL_TIME.get()
        return None if current is None else current.get(id(self))

    def hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return self.injection(output, self.embedding)


def _probe_size(model: nn.Module) -> List[int]:
    stride = model.input_stride
    dims = model.spatial_dims
    strides = [stride] * dims if isinstance(stride, int) else list(stride)
    return [max(s, model.min_input_size, 1) for s in strides]


def attach_time_embedding(model: nn.Module, embedding_dim: int, mode: str = "gate_bias") -> None:
    """Add the time MLP and the decoder (and encoder) injections to a built SegmentationModel.

    Raises:
        ValueError: for a decoder without ``time_injection_points`` (naming the architectures that have them),
            a bad ``mode`` or ``embedding_dim``.
    """
    check_injection_mode(mode)
    targets = injection_targets(model.decoder)
    native = bool(getattr(model.decoder, "blocks_take_time_embedding", False))
    if not (targets or native) or not getattr(model, "accepts_time_embedding", False):
        capable = classes_with("accepts_time_embedding")
        raise ValueError(
            f"{type(model).__name__} cannot take a time embedding (`time_embedding_dim`): its decoder "
            f"{type(model.decoder).__name__} names no blocks to inject it into; architectures that can: {capable}"
        )
    model.time_embedding = TimeEmbedding(embedding_dim)
    model.time_injections = nn.ModuleList()
    if getattr(model.encoder, "supports_time_embedding", False):  # an encoder whose blocks take the vector
        model.encoder.enable_time_embedding(embedding_dim, mode)
    if native:
        # The decoder's blocks inject the vector inside their bodies (e.g. Unet with swin / vmamba / res_conv
        # blocks): it receives the vector as ``decoder(features, time_emb)``, and no hooks are needed.
        model.decoder.enable_time_embedding(embedding_dim, mode)
        return

    # One dry run records the output width of every injection point.
    widths: dict = {}
    probes = [
        module.register_forward_hook(lambda mod, inp, out, name=name: widths.setdefault(name, out))
        for name, module in targets
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            x = torch.zeros(1, model.encoder.in_channels, *_probe_size(model))
            model(x, torch.zeros(1, dtype=torch.long))
    finally:
        for probe in probes:
            probe.remove()
        model.train(was_training)
    injections = []
    for name, module in targets:
        out = widths.get(name)
        if not isinstance(out, torch.Tensor) or out.dim() != model.spatial_dims + 2:
            raise RuntimeError(
                f"{type(model.decoder).__name__}.time_injection_points names {name!r}, whose output is not a "
                f"channels-first feature map ({type(out).__name__}); fix the decoder's list"
            )
        injection = DecoderTimeInjection(out.shape[1], embedding_dim, mode)
        module.register_forward_hook(injection.hook)
        injections.append(injection)
    model.time_injections = nn.ModuleList(injections)


@contextlib.contextmanager
def decoder_time_scope(injections: Sequence[DecoderTimeInjection], embedding: torch.Tensor) -> Iterator[None]:
    """While the block runs (in this thread / task), every injection of ``injections`` reads ``embedding``."""
    current = _CALL_TIME.get() or {}
    token = _CALL_TIME.set({**current, **{id(injection): embedding for injection in injections}})
    try:
        yield
    finally:
        _CALL_TIME.reset(token)
