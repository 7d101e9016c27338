"""Export a saved model to ONNX, TorchScript or a ``torch.export`` ExportedProgram, and check the file.

:func:`export_model` writes the file (atomically), loads it back, runs it on a random input of another size than
the tracing example (another batch and spatial size when the export is dynamic; TorchScript always is), and compares
with eager outputs: the largest absolute difference is returned, and above ``atol`` :class:`ExportMismatch` is
raised. Models pad odd sizes inside the graph (``smp_like.base.exportable`` makes the padding and pyramid pooling
traceable with symbolic sizes), so dynamic exports accept any size from the model's minimum up.

Known gaps (the table in ``docs/inference.md``; :data:`UNSUPPORTED` holds the reasons shown to users):

* TorchScript: UnetPlusPlus (its decoder keeps nested nodes in a dict TorchScript cannot compile; SMP's does not
  script either) and DPT (timm's ViT does not script);
* ONNX opset below 18: DPT (timm resamples position embeddings with antialiased bicubic, which needs Resize-18);
  other models that pad inside the graph are exported with ``input_padding=None`` (ONNX has no converter for
  Pad-18), so sizes must be multiples of the output stride.
"""

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import torch

__all__ = ["ExportMismatch", "ExportResult", "export_model", "FORMATS", "UNSUPPORTED"]

FORMATS: Tuple[str, ...] = ("onnx", "torchscript", "exported-program")
DEFAULT_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "exported-program": "model.pt2"}

#: (model class, format) -> why that export is not available. ``"onnx<18"`` stands for ONNX opsets below 18.
UNSUPPORTED: Dict[Tuple[str, str], str] = {
    ("UnetPlusPlus", "torchscript"): "UnetPlusPlus keeps its nested decoder nodes in a dict of modules that "
    "TorchScript cannot compile (SMP's UnetPlusPlus does not script either); use onnx or exported-program",
    ("DPT", "torchscript"): "DPT's timm ViT encoder does not compile with TorchScript (deprecated by PyTorch); use "
    "onnx or exported-program",
    ("DPT", "onnx<18"): "DPT resamples its position embeddings with antialiased bicubic interpolation, which needs "
    "ONNX Resize-18; export with --opset 18",
}


class ExportMismatch(RuntimeError):
    """The exported model could not be produced or run, or disagrees with eager outputs beyond the tolerance."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured.

    Attributes:
        path: the file written.
        format: ``"onnx"``, ``"torchscript"`` or ``"exported-program"``.
        example_shape: input shape of the tracing example.
        check_shape: input shape of the check (differs from the example where the export is dynamic).
        max_abs_diff: largest ``|exported - eager|`` over all outputs on the check input.
        notes: remarks (e.g. strict sizes at opset 17).
    """

    path: Path
    format: str
    example_shape: Tuple[int, ...]
    check_shape: Tuple[int, ...]
    max_abs_diff: float
    notes: List[str] = field(default_factory=list)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _strides(model: torch.nn.Module, spatial_dims: int) -> Tuple[int, ...]:
    stride = getattr(model, "input_stride", getattr(model, "output_stride", 1))
    return tuple(stride) if isinstance(stride, (tuple, list)) else (int(stride),) * spatial_dims


def _outputs(value: Any) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [torch.as_tensor(v) for v in value.values()]
    return [torch.as_tensor(v) for v in value]


def export_model(
    model: Union[str, Path, torch.nn.Module],
    format: str,
    output: Union[str, Path, None] = None,
    opset: int = 18,
    dynamic: bool = False,
    input_size: Union[int, Sequence[int], None] = None,
    batch_size: int = 1,
    atol: float = 1e-3,
) -> ExportResult:
    """Export ``model`` to ``format``, reload the file, run it and compare with eager mode.

    Args:
        model: a saved model folder / Hub repository, or a loaded model.
        format: ``"onnx"`` (checked with onnxruntime), ``"torchscript"`` (``torch.jit.script``) or
            ``"exported-program"`` (``torch.export``, saved as ``.pt2``).
        output: file to write (default: ``model.onnx`` / ``model.torchscript.pt`` / ``model.pt2`` in the model
            folder, or the current folder for a Hub repository or a module).
        opset: ONNX opset (18 by default; 17 exports with strict sizes, see the module docstring).
        dynamic: dynamic batch and spatial sizes (ONNX / exported-program).
        input_size: spatial size of the tracing example (default: twice the output stride, at least 64 for 2D and
            the model's minimum input size).
        batch_size: batch of the tracing example (at least 2 when ``dynamic``).
        atol: tolerance on ``max |exported - eager|``.

    Returns:
        An :class:`ExportResult`.

    Raises:
        ValueError: for an unknown format or an export the architecture does not support (with the reason).
        ExportMismatch: when exporting or running the file fails, or the difference exceeds ``atol``.
        ImportError: for ONNX without ``onnx``/``onnxruntime`` installed.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}, got {format!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}")
    source = None
    if not isinstance(model, torch.nn.Module):
        import smp_like

        source = Path(str(model))
        model = smp_like.from_pretrained(str(model))
    model = model.cpu().eval()
    name = type(model).__name__
    key = "onnx<18" if format == "onnx" and opset < 18 else format
    if (name, key) in UNSUPPORTED:
        raise ValueError(f"cannot export {name} to {format}{f' opset {opset}' if format == 'onnx' else ''}: "
                         f"{UNSUPPORTED[(name, key)]}")
    if format == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise ImportError("ONNX export needs onnx, onnxscript, onnxruntime: pip install smp_like[export]") from err

    notes: List[str] = []
    spatial_dims = int(getattr(model, "spatial_dims", 2))
    strides = _strides(model, spatial_dims)
    strict = format == "onnx" and opset < 18 and bool(getattr(model, "pads_input", False))
    if strict:
        model.set_input_padding(None)
        notes.append(f"opset {opset} has no Pad-18: exported without internal padding, so inputs must be multiples "
                     f"of {strides} per axis (opset 18 takes any size)")
    min_size = max(int(getattr(model, "min_input_size", 1)), 1)
    if input_size is None:
        floor = 64 if spatial_dims == 2 else 16
        example_size = tuple(_round_up(max(2 * s, floor, min_size), s) for s in strides)
    else:
        example_size = tuple(int(s) for s in ((input_size,) * spatial_dims if isinstance(input_size, int)
                                              else input_size))
        if len(example_size) != spatial_dims:
            raise ValueError(f"`input_size` needs {spatial_dims} values for this model, got {input_size!r}")
    in_channels = int(getattr(getattr(model, "encoder", None), "in_channels", 3))
    if dynamic and format != "torchscript" and batch_size == 1:
        batch_size = 2  # torch.export specialises dimensions of size 1, so a batch of 1 could not stay dynamic
    example = torch.randn((batch_size, in_channels) + example_size, generator=torch.Generator().manual_seed(0))
    varies = dynamic or format == "torchscript"
    if varies:
        # Another batch and another size: multiples of the stride plus an odd remainder, unless sizes are strict.
        check_size = tuple(e + s + (0 if strict else 3) for e, s in zip(example_size, strides))
        check = torch.randn((batch_size + 1, in_channels) + check_size, generator=torch.Generator().manual_seed(1))
    else:
        check = torch.randn(example.shape, generator=torch.Generator().manual_seed(1))
        notes.append("static export: checked on new values at the traced size (pass --dynamic for other sizes)")

    dynamic_shapes = None
    if dynamic and format != "torchscript":
        dims: Dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=1024)}
        low_sizes = [max(min_size, 2 * s) for s in strides]
        for axis, (stride, low) in enumerate(zip(strides, low_sizes)):
            if strict:
                dims[2 + axis] = stride * torch.export.Dim(f"blocks{axis}", min=-(-low // stride), max=8192 // stride)
            else:
                dims[2 + axis] = torch.export.Dim(f"size{axis}", min=low, max=8192)
        dynamic_shapes = ({k: v for k, v in dims.items()},)
        notes.append(f"dynamic batch and spatial sizes from {low_sizes} up")

    if output is None:
        folder = source if source is not None and source.is_dir() else Path.cwd()
        output = folder / DEFAULT_NAMES[format]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=output.suffix or ".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad():
            expected = _outputs(model(check))
            actual = _export_and_run(model, format, example, check, tmp, opset, dynamic_shapes)
    except (ValueError, ImportError):
        tmp.unlink(missing_ok=True)
        raise
    except Exception as err:  # exporters raise many types; all mean "this export failed"
        tmp.unlink(missing_ok=True)
        raise ExportMismatch(f"exporting {name} to {format} failed: {type(err).__name__}: {err}") from err
    os.chmod(tmp, 0o644)
    os.replace(tmp, output)
    if len(actual) != len(expected):
        raise ExportMismatch(f"{output}: the export returns {len(actual)} outputs, eager mode {len(expected)}")
    diff = 0.0
    for a, e in zip(actual, expected):
        if tuple(a.shape) != tuple(e.shape):
            raise ExportMismatch(f"{output}: output shape {tuple(a.shape)} differs from eager {tuple(e.shape)}")
        diff = max(diff, float((a.float() - e.float()).abs().max()))
    result = ExportResult(output, format, tuple(example.shape), tuple(check.shape), diff, notes)
    if not diff <= atol:
        raise ExportMismatch(f"{output}: max |{format} - eager| = {diff:.3g} exceeds the tolerance {atol:g} at input "
                             f"shape {tuple(check.shape)}")
    return result


def _export_and_run(
    model: torch.nn.Module, format: str, example: torch.Tensor, check: torch.Tensor, path: Path, opset: int,
    dynamic_shapes: Any,
) -> List[torch.Tensor]:
    if format == "torchscript":
        scripted = torch.jit.script(model)
        scripted.save(str(path))
        return _outputs(torch.jit.load(str(path))(check))
    if format == "exported-program":
        program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
        torch.export.save(program, str(path))
        return _outputs(torch.export.load(str(path)).module()(check))
    import onnxruntime

    has_label = getattr(model, "classification_head", None) is not None
    torch.onnx.export(model, (example,), str(path), opset_version=opset, dynamo=True, dynamic_shapes=dynamic_shapes,
                      input_names=["images"], output_names=["masks", "labels"] if has_label else ["masks"],
                      verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"images": check.numpy()})]
