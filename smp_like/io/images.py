"""2D images and masks: PNG, JPEG, BMP (Pillow), TIFF (tifffile) and ``.npy`` (numpy), read as stored.

Conventions:

* :func:`read_image` returns ``(H, W, C)`` (grey images get ``C = 1``) in the file's own dtype (uint8, uint16,
  float32, ...): normalisation is the pipeline's job, not the reader's. A fully opaque alpha channel is dropped
  (screenshots and many exporters add one); a real alpha channel is kept as a channel.
* :func:`read_mask` returns ``(H, W)`` class indices (palette PNGs give their indices, not their colours), or
  ``(H, W, 3)`` for an RGB colour mask, which a colour -> class map turns into indices.
* ``.npy`` files hold ``(H, W)`` or ``(H, W, C)``: channels last, like every image format.
* Every failure names the file: :class:`ImageReadError`.
"""

from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from smp_like.io.atomic import atomic_output

PathLike = Union[str, Path]

#: File endings read by :func:`read_image` / :func:`read_mask` (lower case).
IMAGE_SUFFIXES: Tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")

_PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")

# Distinct colours for the first classes (class 0, the background, is black); further ones are generated.
_BASE_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 0, 0), (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
    (204, 121, 167), (255, 255, 255), (128, 128, 128), (166, 86, 40), (152, 78, 163), (77, 175, 74),
    (228, 26, 28), (55, 126, 184), (255, 127, 0),
)


class ImageReadError(ValueError):
    """An image or mask file that cannot be read; ``path`` names it."""

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        super().__init__(f"cannot read {self.path}: {reason}")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _check_readable(path: PathLike) -> Path:
    path = Path(path)
    if _suffix(path) not in IMAGE_SUFFIXES:
        raise ImageReadError(path, f"unsupported file type {path.suffix!r}; supported: {list(IMAGE_SUFFIXES)}")
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    return path


def _drop_opaque_alpha(array: np.ndarray, alpha_max: float) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] in (2, 4) and np.all(array[..., -1] == alpha_max):
        return array[..., :-1]
    return array


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "P":
                # A palette image: as an image, its colours (with alpha when the palette has transparency).
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif mode == "1":
                image = image.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            array = np.array(image)
    except (OSError, SyntaxError, ValueError) as err:  # Pillow reports truncated/corrupt files this way
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from None
    if array.dtype == np.int32 and array.size and array.min() >= 0 and array.max() <= 65535:
        array = array.astype(np.uint16)  # 16-bit PNGs open as mode "I" in some Pillow versions
    return array


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - tifffile is in the train extra
        raise ImportError("reading TIFF files needs tifffile: pip install smp_like[train]") from err
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            array = series.asarray()
    except Exception as err:  # tifffile raises many types for corrupt files; all mean "unreadable"
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from None
    # Planar multi-channel TIFFs store channels first ("CYX", "SYX"): bring them last like every other format.
    if array.ndim == 3 and axes[-2:] == "YX" and axes[0] in "CSIQ":
        array = np.moveaxis(array, 0, -1)
    return array


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from None


def _read_raw(path: PathLike) -> Tuple[Path, np.ndarray]:
    path = _check_readable(path)
    suffix = _suffix(path)
    if suffix in _PIL_SUFFIXES:
        return path, _read_pil(path)
    if suffix in _TIFF_SUFFIXES:
        return path, _read_tiff(path)
    return path, _read_npy(path)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as ``(H, W, C)`` in its stored dtype.

    Args:
        path: a PNG, JPEG, BMP, TIFF or ``.npy`` file.

    Returns:
        The pixels, channels last; ``C = 1`` for grey images.

    Raises:
        ImageReadError: for a missing, unsupported, corrupt or wrongly shaped file (the message names it).
    """
    path, array = _read_raw(path)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or min(array.shape[:2]) == 0:
        raise ImageReadError(path, f"expected a 2D image (H, W) or (H, W, C), got an array of shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    alpha_max = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
    return _drop_opaque_alpha(array, alpha_max)


def read_mask(path: PathLike) -> np.ndarray:
    """Read a mask: ``(H, W)`` class values, or ``(H, W, 3)`` for an RGB colour mask.

    Palette PNGs give their indices. Boolean masks become 0/1; binary 0/255 images are returned as stored (the
    dataset decides what 255 means).

    Args:
        path: a PNG, BMP, TIFF or ``.npy`` file (JPEG works but its compression changes class values).

    Returns:
        An integer array.

    Raises:
        ImageReadError: for an unreadable file, a float mask with non-integer values, or a wrong shape.
    """
    path = _check_readable(path)
    if _suffix(path) == ".png" or _suffix(path) == ".bmp":
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.load()
                if image.mode == "P":
                    array = np.array(image)  # the indices, not the colours
                else:
                    array = _read_pil(path)
        except OSError as err:
            raise ImageReadError(path, f"{type(err).__name__}: {err}") from None
    else:
        array = _read_raw(path)[1]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.ndim == 3:
        alpha_max = np.iinfo(array.dtype).max if np.issubdtype(array.dtype, np.integer) else 1.0
        array = _drop_opaque_alpha(array, alpha_max)
        if array.shape[2] == 1:
            array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ImageReadError(path, f"a mask must be (H, W) or an RGB colour mask (H, W, 3), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ImageReadError(path, "a mask must hold integer class values; this float mask has fractions")
        array = array.astype(np.int64)
    return array


def default_palette(num_classes: int) -> List[Tuple[int, int, int]]:
    """``num_classes`` distinct RGB colours; class 0 (background) is black.

    Raises:
        ValueError: if ``num_classes`` is not in [1, 256].
    """
    if not isinstance(num_classes, int) or not 1 <= num_classes <= 256:
        raise ValueError(f"`num_classes` must be an int in [1, 256], got {num_classes!r}")
    colours = list(_BASE_PALETTE[:num_classes])
    rng = np.random.default_rng(0)  # fixed: the same classes get the same colours in every run
    while len(colours) < num_classes:
        colour = tuple(int(v) for v in rng.integers(40, 256, size=3))
        if colour not in colours:
            colours.append(colour)
    return colours


def _palette_bytes(palette: Sequence[Sequence[int]]) -> List[int]:
    flat: List[int] = []
    for colour in palette:
        if len(colour) != 3 or any(not 0 <= int(c) <= 255 for c in colour):
            raise ValueError(f"palette entries must be (r, g, b) in [0, 255], got {tuple(colour)!r}")
        flat.extend(int(c) for c in colour)
    return flat + [0] * (768 - len(flat))


def write_index_png(path: PathLike, mask: np.ndarray, palette: Optional[Sequence[Sequence[int]]] = None) -> Path:
    """Write class indices as a palette PNG: the file holds the indices, viewers show the colours.

    Args:
        path: the ``.png`` file to write (atomically).
        mask: ``(H, W)`` integer class indices in [0, 255].
        palette: one RGB colour per class (default: :func:`default_palette`).

    Returns:
        The path written.

    Raises:
        ValueError: for a mask that is not 2D, has negative values or values above 255, or too short a palette.
    """
    from PIL import Image

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"`mask` must be (H, W) class indices, got shape {mask.shape}")
    top = int(mask.max()) if mask.size else 0
    if mask.size and (int(mask.min()) < 0 or top > 255):
        raise ValueError(
            f"a palette PNG holds class indices 0..255, got values in [{int(mask.min())}, {top}]; save as .npy instead"
        )
    if palette is None:
        palette = default_palette(max(top + 1, 2))
    if len(palette) <= top:
        raise ValueError(f"`palette` has {len(palette)} colours but the mask has class {top}")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(_palette_bytes(palette))
    with atomic_output(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def write_rgb_png(path: PathLike, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 array as an RGB PNG (atomically).

    Raises:
        ValueError: for another shape or dtype.
    """
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got shape {rgb.shape} and dtype {rgb.dtype}")
    with atomic_output(path) as tmp:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG")
    return Path(path)


def _to_display_rgb(image: np.ndarray) -> np.ndarray:
    """Any (H, W, C) image as uint8 RGB for display: min-max scaled unless already uint8, grey repeated."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] >= 3:
        image = image[..., :3]
    else:
        image = np.repeat(image[..., :1], 3, axis=2)
    if image.dtype != np.uint8:
        image = image.astype(np.float64)
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low) * 255.0 if high > low else np.zeros_like(image)
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    palette: Optional[Sequence[Sequence[int]]] = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend class colours over an image; the background (class 0) stays untinted.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, any dtype (scaled to 0..255 for display unless uint8).
        mask: ``(H, W)`` class indices of the same size.
        palette: one RGB colour per class (default: :func:`default_palette`).
        alpha: weight of the class colour, in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ValueError: for mismatched sizes, ``alpha`` outside [0, 1] or a palette without enough colours.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha!r}")
    rgb = _to_display_rgb(image)
    mask = np.asarray(mask)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image size {rgb.shape[:2]}")
    top = int(mask.max()) if mask.size else 0
    palette = default_palette(max(top + 1, 2)) if palette is None else palette
    if len(palette) <= top:
        raise ValueError(f"`palette` has {len(palette)} colours but the mask has class {top}")
    colours = np.asarray(palette, dtype=np.float64)[mask]
    blended = rgb.astype(np.float64)
    tinted = mask > 0
    blended[tinted] = (1 - alpha) * blended[tinted] + alpha * colours[tinted]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
