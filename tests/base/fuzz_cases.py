"""Argument fuzzing shared by tests/base/test_fuzz_arguments.py and benchmarks/fuzz_arguments.py (issue 17).

For every saveable architecture and wrapper (``smp_like.base.registry.BUILTIN_MODELS``), a tiny valid
configuration and, for each of its constructor arguments, invalid values derived from the argument's default:
wrong types, negatives, NaN/Inf, huge ints, wrong-length sequences, unknown names. :func:`classify` builds a model
(on the meta device: nothing is allocated, so huge sizes cost nothing) and sorts the outcome into ``clear`` (a
``ValueError``/``TypeError`` naming the argument), ``internal`` (any other exception, or one that does not name
the argument) or ``accepted`` (built: the nonsense was silently accepted).
"""
import inspect
import math
import signal
from typing import Any, Callable, Dict, List, Tuple

import timm  # noqa: F401 - imported up front, so no case's time limit pays for it
import torch

R18 = dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=3)
TU = dict(encoder_name="tu-test_resnet", encoder_weights=None, encoder_depth=3)
DIFF = dict(**TU, decoder_channels=(8, 8, 8), in_channels=1, time_embedding_dim=16, num_train_timesteps=20)
AE_SMALL = dict(encoder_name="tu-test_resnet", encoder_depth=2, in_channels=1, decoder_channels=(8, 4),
                latent_channels=4)

# A tiny valid configuration per class, and the input shape it runs on.
BASE: Dict[str, Tuple[Dict[str, Any], Tuple[int, ...]]] = {
    "Unet": (dict(**R18, decoder_channels=(8, 8, 8)), (1, 3, 32, 32)),
    "UnetPlusPlus": (dict(**R18, decoder_channels=(8, 8, 8)), (1, 3, 32, 32)),
    "MAnet": (dict(**R18, decoder_channels=(8, 8, 8), decoder_pab_channels=8), (1, 3, 32, 32)),
    "Linknet": (dict(**R18), (1, 3, 32, 32)),
    "FPN": (dict(**R18, decoder_pyramid_channels=16, decoder_segmentation_channels=32), (1, 3, 32, 32)),
    "PSPNet": (dict(**R18, psp_out_channels=16), (1, 3, 64, 64)),
    "DeepLabV3": (dict(**R18, decoder_channels=16), (1, 3, 32, 32)),
    "DeepLabV3Plus": (dict(encoder_name="resnet18", encoder_weights=None, encoder_depth=4, decoder_channels=16),
                      (1, 3, 32, 32)),
    "PAN": (dict(encoder_name="resnet18", encoder_weights=None, decoder_channels=16), (2, 3, 64, 64)),
    "UPerNet": (dict(**R18, decoder_channels=16), (1, 3, 32, 32)),
    "Segformer": (dict(**R18, decoder_segmentation_channels=16), (1, 3, 32, 32)),
    "DPT": (dict(encoder_name="tu-test_vit", encoder_weights=None, encoder_depth=4, decoder_readout="cat",
                 decoder_intermediate_channels=(8, 8, 8, 8), decoder_fusion_channels=8), (1, 3, 32, 32)),
    "HSeM": (dict(**R18, decoder_channels=(8, 8, 8)), (1, 3, 32, 32)),
    "ClM": (dict(encoder_name="tu-test_resnet", encoder_depth=2, classes=3, hidden_channels=(8,)), (1, 3, 32, 32)),
    "StackedHourglass": (dict(), (1, 3, 64, 64)),
    "MeshNet": (dict(in_channels=1, classes=2, channels=4, dilations=(1, 2, 1)), (1, 1, 16, 16)),
    "ATrousNet": (dict(in_channels=1, classes=2), (1, 1, 16, 16)),
    "AE": (dict(AE_SMALL), (1, 1, 32, 32)),
    "VAE": (dict(AE_SMALL), (1, 1, 32, 32)),
    "HAE": (dict(AE_SMALL), (1, 1, 32, 32)),
    "DDPM": (dict(DIFF), (1, 1, 32, 32)),
    "DDIM": (dict(DIFF, num_inference_steps=5), (1, 1, 32, 32)),
    "SDPM": (dict(DIFF, classes=1, num_ensemble=2), (1, 1, 32, 32)),
    "SDIM": (dict(DIFF, classes=1, num_ensemble=2, num_inference_steps=5), (1, 1, 32, 32)),
    "LDPM": (dict(autoencoder=dict(AE_SMALL, _model_class="AE"), encoder_name="tu-test_resnet", encoder_depth=2,
                  decoder_channels=(8, 4), time_embedding_dim=16, num_train_timesteps=20), (1, 1, 32, 32)),
    "LDIM": (dict(autoencoder=dict(AE_SMALL, _model_class="AE"), encoder_name="tu-test_resnet", encoder_depth=2,
                  decoder_channels=(8, 4), time_embedding_dim=16, num_train_timesteps=20, num_inference_steps=5),
             (1, 1, 32, 32)),
}

# Arguments whose value is a free-form object or label rather than a checkable setting.
SKIP = {"activation", "output_activation", "autoencoder", "encoder_weights"}
# Sequences of any length are valid for these (one entry per layer or branch).
ANY_LENGTH = {"hidden_channels", "decoder_atrous_rates", "dilations", "dilation_groups"}
# Documented valid values of an unexpected type: ATrousNet/MeshNet norm=<int> is GroupNorm with that many groups.
VALID = {("norm", 3)}
# Documented to take any real number (>= 1), not only ints.
REAL_VALUED = {"upsampling"}


class _Timeout(Exception):
    pass


def model_class(name: str) -> type:
    from smp_like.base.registry import get_model_class

    return get_model_class(name)


def arguments(name: str) -> List[Tuple[str, Any]]:
    """(argument, default) for every named constructor argument of the class and of those it forwards to."""
    cls = model_class(name)
    seen: Dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object or klass.__module__.startswith("torch"):
            continue
        for pname, p in list(inspect.signature(init).parameters.items())[1:]:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or pname in seen or pname in SKIP:
                continue
            seen[pname] = p.default
    base = BASE[name][0]
    return [(n, base.get(n, d)) for n, d in seen.items() if d is not inspect.Parameter.empty or n in base]


def bad_values(default: Any) -> List[Tuple[str, Any]]:
    """(category, value) pairs that are nonsense for an argument with this default."""
    values: List[Tuple[str, Any]] = [("wrong type", object()), ("wrong type", {"no": "dict"})]
    if isinstance(default, bool):
        values += [("wrong type", "yes"), ("wrong type", 2), ("wrong type", [True])]
    elif isinstance(default, int):
        values += [("wrong type", str(default)), ("wrong type", default + 0.5), ("negative", -1),
                   ("huge", 2**63), ("wrong type", [default]), ("NaN", float("nan")), ("Inf", float("inf"))]
    elif isinstance(default, float):
        values += [("wrong type", str(default)), ("NaN", float("nan")), ("Inf", float("inf")),
                   ("Inf", float("-inf")), ("wrong type", [default]), ("huge", 2**63)]
    elif isinstance(default, str):
        values += [("unknown name", "no_such_thing"), ("wrong type", 3), ("wrong type", [default])]
    elif isinstance(default, (tuple, list)):
        values += [("wrong-length tuple", tuple(default)[:1] if len(default) > 1 else ()),
                   ("wrong type", "abc"), ("negative", tuple(-1 for _ in default)),
                   ("NaN", tuple(float("nan") for _ in default))]
        if default and all(isinstance(v, int) and not isinstance(v, bool) for v in default):
            values += [("huge", tuple(2**63 for _ in default)), ("wrong type", tuple(str(v) for v in default))]
    elif default is None:
        values += [("unknown name", "no_such_thing"), ("negative", -1), ("NaN", float("nan")),
                   ("wrong type", [object()])]
    return values


def cases(name: str) -> List[Tuple[str, str, Any]]:
    """Every (argument, category, value) invalid case of class ``name``."""
    found = []
    for arg, default in arguments(name):
        for category, value in bad_values(default):
            if arg in ANY_LENGTH and category == "wrong-length tuple":
                continue
            if type(value) is int and (arg, value) in VALID:
                continue
            if arg in REAL_VALUED and isinstance(value, float) and value == value and abs(value) != float("inf"):
                continue
            found.append((arg, category, value))
    return found


def _names_argument(message: str, argument: str) -> bool:
    short = argument.split("_", 1)[1] if argument.startswith(("encoder_", "decoder_")) else argument
    return argument in message or f"`{short}`" in message or f"'{short}'" in message


def classify(name: str, argument: str, value: Any, seconds: int = 60) -> Tuple[str, str]:
    """Build class ``name`` with ``argument=value`` on the meta device; return (outcome, detail)."""
    config = dict(BASE[name][0])
    config[argument] = value

    def alarm(signum, frame):
        raise _Timeout(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        with torch.device("meta"):
            model_class(name)(**config)
    except (ValueError, TypeError) as err:
        message = str(err)
        if _names_argument(message, argument):
            return "clear", f"{type(err).__name__}: {message[:160]}"
        return "internal", f"{type(err).__name__} not naming {argument!r}: {message[:160]}"
    except _Timeout as err:
        return "internal", f"hang: {err}"
    except Exception as err:  # the fuzz's point: anything else is an internal error
        return "internal", f"{type(err).__name__}: {str(err)[:160]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return "accepted", "built without error"


def build_and_run(name: str, overrides: Dict[str, Any]) -> torch.Tensor:
    """Build class ``name`` for real with ``overrides`` on its tiny config and run one forward pass."""
    config = dict(BASE[name][0], **overrides)
    model = model_class(name)(**config).eval()
    shape = list(BASE[name][1])
    if "in_channels" in overrides:
        shape[1] = overrides["in_channels"]
    x = torch.randn(*shape)
    with torch.no_grad():
        if name in ("DDPM", "DDIM", "LDPM", "LDIM"):
            if name.startswith("L"):  # the eps-model works on latents
                x = model.encode_latent(x)
            out = model(x, torch.tensor([3]))
        else:
            out = model(x)
    return out if isinstance(out, torch.Tensor) else out[0]
