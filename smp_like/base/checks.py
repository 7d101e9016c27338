"""Argument checks shared by constructors: one wording for the same mistake everywhere."""
import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

__all__ = [
    "MAX_ARGUMENT_INT",
    "MAX_CHANNELS",
    "argument_named",
    "check_argument_values",
    "check_choice",
    "check_image_batch",
    "check_per_axis",
    "check_per_stage",
    "check_positive_int",
    "check_probability",
    "check_real",
]


# A sanity bound on channel counts: far above any real network, far below sizes that overflow an allocation.
MAX_CHANNELS = 1 << 16

# No constructor argument of any model is a count or size this large; beyond it torch overflows (2**63) or loops
# for ever (2**40 stacks), so such a value is refused before the constructor runs.
MAX_ARGUMENT_INT = (1 << 31) - 1


@contextlib.contextmanager
def argument_named(argument: str, inner: str) -> Iterator[None]:
    """Within this block, a ValueError/TypeError about `inner` (the name a shared builder uses) is re-raised
    about `argument` (the name the user passed), e.g. MeshNet's ``layer_activation`` checked as ``activation``.

    Raises:
        ValueError, TypeError: the same error, naming ``argument``.
    """
    try:
        yield
    except (ValueError, TypeError) as err:
        message = str(err)
        if f"`{inner}`" not in message or f"`{argument}`" in message:
            raise
        renamed = message.replace(f"`{inner}`", f"`{argument}`", 1)
        try:
            replacement = type(err)(renamed)
        except Exception:  # an error class with another constructor: keep the base type
            replacement = (ValueError if isinstance(err, ValueError) else TypeError)(renamed)
        raise replacement from err


def check_argument_values(arguments: Dict[str, Any], owner: str = "") -> None:
    """Refuse values that are nonsense for any constructor argument, at any depth of lists and dicts:
    NaN, +-infinity and integers beyond :data:`MAX_ARGUMENT_INT` in absolute value.

    Run by every saveable class before its constructor (``smp_like.base.hub``), so each constructor only checks
    what is specific to it.

    Args:
        arguments: argument name -> value.
        owner: the class name, for the message.

    Raises:
        ValueError: naming the argument (with its path inside lists/dicts), the value and the valid range.
    """
    where = f"{owner}: " if owner else ""

    def visit(name: str, value: Any, depth: int) -> None:
        if isinstance(value, bool) or depth > 8:
            return
        if isinstance(value, int):
            if abs(value) > MAX_ARGUMENT_INT:
                raise ValueError(
                    f"{where}`{name}`={value!r} is out of range: no argument may exceed {MAX_ARGUMENT_INT} in "
                    "absolute value"
                )
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{where}`{name}` must be a finite number, got {value!r}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(f"{name}[{i}]", item, depth + 1)
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{name}.{key}", item, depth + 1)

    for name, value in arguments.items():
        visit(name, value, 0)


def check_positive_int(name: str, value: Any, allow_none: bool = False, maximum: Optional[int] = None) -> Any:
    """Return ``value`` if it is a positive int (or None when ``allow_none``), at most ``maximum`` if given.

    Raises:
        ValueError: naming the argument, the value and the valid range otherwise (bools are not ints here).
    """
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int{' or None' if allow_none else ''}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must lie in [1, {maximum}], got {value!r}")
    return value


def check_real(
    name: str,
    value: Any,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real number (not a bool or string) within the bounds.

    Args:
        name: the argument's name, for the message.
        value: the value to check (int, float or a numpy scalar).
        low, high: bounds, or None for none.
        low_open, high_open: whether a bound itself is excluded.

    Raises:
        TypeError: for a non-number (a string such as ``"0.1"`` included), naming argument and value.
        ValueError: for NaN, infinity or a value outside the range, naming argument, value and range.
    """
    try:
        import numbers

        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    except Exception:  # pragma: no cover - numbers is stdlib
        is_number = False
    if not is_number:
        raise TypeError(f"`{name}` must be a real number, got {value!r} ({type(value).__name__})")
    number = float(value)
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    valid = f"{'(' if low is None or low_open else '['}{lo}, {hi}{')' if high is None or high_open else ']'}"
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"`{name}` must be a finite number in {valid}, got {value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise ValueError(f"`{name}` must lie in {valid}, got {value!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ValueError(f"`{name}` must lie in {valid}, got {value!r}")
    return number


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: ``\\`name\\` must be one of (...), got value`` otherwise.
    """
    if value not in tuple(choices):
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}")
    return value


def check_probability(name: str, value: Any) -> float:
    """Return ``value`` as a float if it lies in [0, 1) (a dropout or drop-path rate).

    Raises:
        ValueError: naming the argument and the value otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1), got {value!r}")
    return float(value)


def check_per_axis(name: str, value: Any, spatial_dims: int) -> Tuple[int, ...]:
    """One positive int per spatial axis: an int is repeated, a sequence must have ``spatial_dims`` entries.

    Raises:
        ValueError: naming the argument and the value otherwise.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * spatial_dims
    if not isinstance(value, (tuple, list)) or len(value) != spatial_dims:
        raise ValueError(f"`{name}` must be a positive int or {spatial_dims} positive ints, got {value!r}")
    for v in value:
        check_positive_int(name, v)
    return tuple(int(v) for v in value)


def check_per_stage(name: str, value: Any, count: int, check: Callable[[str, Any], Any]) -> List[Any]:
    """One checked value per stage: a scalar is repeated, a sequence gives its first ``count`` entries.

    Raises:
        ValueError: for a sequence shorter than ``count``, or whatever ``check`` raises for an entry.
    """
    if isinstance(value, (list, tuple)):
        if len(value) < count:
            raise ValueError(
                f"`{name}` needs at least {count} entries (one per stage) for this depth, got {value!r}"
            )
        return [check(name, v) for v in value[:count]]
    return [check(name, value)] * count


def check_image_batch(
    x: Any,
    spatial_dims: int,
    in_channels: int,
    name: str = "input",
    floating: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> None:
    """Validate a channels-first batch: a tensor of rank ``spatial_dims + 2`` with ``in_channels`` channels
    and (with ``floating``) a floating dtype.

    Shared by every model's input check, so the messages are the same everywhere.

    Args:
        x: the batch.
        spatial_dims: 2 or 3.
        in_channels: the channel count the model takes.
        name: what the messages call ``x``.
        floating: require a floating dtype (float16/bfloat16/float32/float64): an int, bool or uint8 image
            otherwise fails deep inside the first convolution with torch's "expected scalar type".
        dtype: the dtype of the model's weights, when the input must match it (outside autocast).

    Raises:
        TypeError: if ``x`` is not a tensor, or (with ``floating``) has a non-floating dtype or one other than
            ``dtype``, naming it.
        ValueError: naming the expected rank (and layout) or channel count.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must have a floating dtype (e.g. torch.float32), got {x.dtype}; convert it first, e.g. "
            "x.float() (and scale uint8 images to [0, 1])"
        )
    if floating and dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the model's weights are {dtype}; convert one of them (x.to({dtype}) "
            "or model.to(...)), or run under torch.autocast"
        )
    layout = "(N, C, H, W)" if spatial_dims == 2 else "(N, C, D, H, W)"
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{name} must have {spatial_dims + 2} dims {layout} for a model with spatial_dims={spatial_dims}, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name} must have {in_channels} channels (in_channels={in_channels}), got shape {tuple(x.shape)}"
        )
