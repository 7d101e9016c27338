"""3D volumes in NIfTI (``.nii``, ``.nii.gz``) through nibabel, with their geometry (affine and header) kept.

MetaImage and NRRD (``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``) are read and written through SimpleITK, an optional
extra (``pip install smp_like[sitk]``); their geometry (spacing, origin, direction, in ITK's LPS world) is turned into
the same RAS affine nibabel uses, and the voxel order is nibabel's (x, y, z).

Arrays follow nibabel's voxel order (no reorientation), channels first: a 3D file reads as ``(1, X, Y, Z)``, a 4D
file ``(X, Y, Z, C)`` as ``(C, X, Y, Z)``. Writing does the reverse and reuses the source's affine and header, so a
predicted mask overlays its image in any viewer.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np

from smp_like.io.atomic import atomic_output

PathLike = Union[str, Path]

#: File endings read by :func:`read_volume` (lower case).
VOLUME_SUFFIXES: Tuple[str, ...] = (".nii", ".nii.gz")
#: File endings read and written through SimpleITK (``pip install smp_like[sitk]``).
SITK_SUFFIXES: Tuple[str, ...] = (".mha", ".mhd", ".nrrd", ".nhdr")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def is_volume_path(path: PathLike) -> bool:
    """Whether ``path`` names a NIfTI file (by its ending)."""
    name = Path(path).name.lower()
    return any(name.endswith(suffix) for suffix in VOLUME_SUFFIXES)


def is_sitk_path(path: PathLike) -> bool:
    """Whether ``path`` names a MetaImage/NRRD file (read through SimpleITK)."""
    return Path(path).name.lower().endswith(SITK_SUFFIXES)


def volume_suffix(path: PathLike) -> str:
    """The volume ending of ``path`` (``".nii.gz"``, ``".mha"``, ...), or ``""``."""
    name = Path(path).name.lower()
    return next((s for s in sorted(VOLUME_SUFFIXES + SITK_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def _sitk() -> Any:
    try:
        import SimpleITK
    except ImportError as err:
        raise ImportError("reading and writing .mha/.nrrd volumes needs SimpleITK: pip install smp_like[sitk]") from err
    return SimpleITK


def _read_sitk(path: Path) -> "Volume":
    sitk = _sitk()
    try:
        image = sitk.ReadImage(str(path))
    except Exception as err:  # noqa: BLE001 - SimpleITK raises RuntimeError with its own text
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    data = sitk.GetArrayFromImage(image)  # (z, y, x[, c])
    if image.GetDimension() != 3:
        raise ValueError(f"cannot read {path}: expected a 3D volume, got {image.GetDimension()}D")
    channels = image.GetNumberOfComponentsPerPixel()
    data = np.moveaxis(data, -1, 0) if channels > 1 else data[None]
    data = np.ascontiguousarray(np.transpose(data, (0, 3, 2, 1)))  # (C, x, y, z) like nibabel
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = _LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=np.float64)
    return Volume(data=data, affine=affine, header=None, path=path)


def _write_sitk(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    sitk = _sitk()
    if data.ndim == 4:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (3, 2, 1, 0))), isVector=True)
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    lps = _LPS_TO_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps / spacing).ravel()])
    image.SetOrigin([float(v) for v in _LPS_TO_RAS @ affine[:3, 3]])
    with atomic_output(path) as tmp:
        sitk.WriteImage(image, str(tmp))
    return path


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError as err:  # pragma: no cover - nibabel is in the train extra
        raise ImportError("reading and writing NIfTI volumes needs nibabel: pip install smp_like[train]") from err
    return nibabel


@dataclass
class Volume:
    """A volume read from disk.

    Attributes:
        data: ``(C, X, Y, Z)`` voxels in the file's dtype.
        affine: ``(4, 4)`` voxel -> world (RAS, millimetres) matrix.
        header: the nibabel header (voxel sizes, units, intent, description, ...), reused when writing outputs.
        path: where it was read from.
    """

    data: np.ndarray
    affine: np.ndarray
    header: Any
    path: Optional[Path] = None

    @property
    def spatial_shape(self) -> Tuple[int, ...]:
        return tuple(self.data.shape[1:])

    @property
    def spacing(self) -> Tuple[float, ...]:
        """Voxel sizes (mm) of the three spatial axes (from the affine when the file had no NIfTI header)."""
        if self.header is None:  # .mha/.nrrd: the affine's column norms are the spacing
            return tuple(float(s) for s in np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0))
        return tuple(float(s) for s in self.header.get_zooms()[:3])


def read_volume(path: PathLike) -> Volume:
    """Read a NIfTI file.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.

    Returns:
        A :class:`Volume` with channels-first data.

    Raises:
        ValueError: for a missing, unsupported or corrupt file or a volume that is not 3D/4D (naming the file).
    """
    path = Path(path)
    if not is_volume_path(path) and not is_sitk_path(path):
        raise ValueError(f"cannot read {path}: not a NIfTI (or .mha/.nrrd) volume file (expected one of "
                         f"{list(VOLUME_SUFFIXES + SITK_SUFFIXES)})")
    if not path.is_file():
        raise ValueError(f"cannot read {path}: no such file")
    if is_sitk_path(path):
        return _read_sitk(path)
    nib = _nibabel()
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as err:  # nibabel raises several types (ImageFileError, EOFError, zlib errors) for bad files
        raise ValueError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    if data.ndim == 3:
        data = data[None]
    elif data.ndim == 4:
        data = np.moveaxis(data, -1, 0)
    else:
        raise ValueError(f"cannot read {path}: expected a 3D or 4D volume, got shape {data.shape}")
    return Volume(data=np.ascontiguousarray(data), affine=np.asarray(image.affine, dtype=np.float64),
                  header=image.header, path=path)


def write_volume(
    path: PathLike,
    data: np.ndarray,
    affine: Optional[np.ndarray] = None,
    header: Any = None,
) -> Path:
    """Write a NIfTI file atomically, in ``data``'s dtype, with the given geometry.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file (the ending chooses the compression).
        data: ``(X, Y, Z)`` (e.g. a mask) or ``(C, X, Y, Z)`` (stored as a 4D ``(X, Y, Z, C)`` file).
        affine: ``(4, 4)`` matrix (default: the header's, else identity).
        header: a nibabel header to copy (voxel sizes, units, description); its data type is set from ``data``.

    Returns:
        The path written.

    Raises:
        ValueError: for another rank, a bad affine or a path that is not NIfTI.

    NIfTI-1 has no 16-bit float or 64-bit integer type widely read: float16 is written as float32, int64 as int32.
    """
    if not is_volume_path(path) and not is_sitk_path(path):
        raise ValueError(f"cannot write {path}: not a NIfTI (or .mha/.nrrd) volume path (expected one of "
                         f"{list(VOLUME_SUFFIXES + SITK_SUFFIXES)})")
    data = np.asarray(data)
    if is_sitk_path(path):
        if data.dtype == bool:
            data = data.astype(np.uint8)
        if data.ndim not in (3, 4):
            raise ValueError(f"`data` must be (X, Y, Z) or (C, X, Y, Z), got shape {data.shape}")
        geometry = np.asarray(affine if affine is not None else
                              (header.get_best_affine() if header is not None else np.eye(4)), dtype=np.float64)
        if geometry.shape != (4, 4):
            raise ValueError(f"`affine` must be 4x4, got shape {geometry.shape}")
        if Path(path).name.lower().endswith((".mhd", ".nhdr")):
            raise ValueError(f"cannot write {path}: write single-file .mha or .nrrd (a .mhd/.nhdr header names a "
                             "second data file, which cannot be replaced atomically)")
        return _write_sitk(Path(path), data, geometry)
    nib = _nibabel()
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype == np.int64:
        data = data.astype(np.int32)  # many NIfTI readers cannot open 64-bit integer files
    if data.dtype == np.float16:
        data = data.astype(np.float32)  # NIfTI-1 has no half-precision type
    if data.ndim == 4:
        data = np.moveaxis(data, 0, -1)
    elif data.ndim != 3:
        raise ValueError(f"`data` must be (X, Y, Z) or (C, X, Y, Z), got shape {data.shape}")
    if affine is None:
        affine = header.get_best_affine() if header is not None else np.eye(4)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"`affine` must be 4x4, got shape {affine.shape}")
    new_header = header.copy() if header is not None else None
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine, header=new_header)
    image.set_data_dtype(data.dtype)
    # Keep the scanner/world codes of the source; without a source header mark the affine as valid for both.
    if header is None:
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
    with atomic_output(path) as tmp:
        nib.save(image, str(tmp))
    return Path(path)
