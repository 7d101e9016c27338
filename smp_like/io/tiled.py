"""TIFF images larger than memory: read rows without loading the image, write a tiled TIFF tile row by tile row.

:class:`TiffRowReader` decodes only the tiles or strips that cover the requested rows (tifffile's per-segment
decoder, so any compression tifffile reads works), and :class:`TiledTiffWriter` feeds tifffile's tile writer from a
bounded queue, so a producer can hand it one tile row at a time. Together they keep memory at a band of rows.
"""

import contextlib
import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from smp_like.io.images import ImageReadError

PathLike = Union[str, Path]


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - tifffile is in the train extra
        raise ImportError("reading and writing large TIFF files needs tifffile: pip install smp_like[train]") from err
    return tifffile


def tiff_shape(path: PathLike) -> Tuple[int, int, int]:
    """``(H, W, C)`` of a TIFF's first page, read from its header only.

    Raises:
        ImageReadError: for an unreadable file.
    """
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = page.shape
            planar = page.planarconfig == 2 and page.samplesperpixel > 1
    except Exception as err:  # tifffile raises many types for corrupt files
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from None
    if planar:
        return int(shape[1]), int(shape[2]), int(shape[0])
    return int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1


class TiffRowReader:
    """Rows of a TIFF's first page, decoded segment by segment (tiled or striped, chunky samples).

    Args:
        path: the TIFF file.

    Attributes:
        shape: ``(H, W, C)``.
        dtype: the stored dtype.

    Raises:
        ImageReadError: for an unreadable file or a layout it cannot stream (planar channels, volumes).
    """

    def __init__(self, path: PathLike):
        tifffile = _tifffile()
        self.path = Path(path)
        try:
            self._tif = tifffile.TiffFile(self.path)
            page = self._tif.pages[0]
        except Exception as err:
            raise ImageReadError(self.path, f"{type(err).__name__}: {err}") from None
        if page.planarconfig == 2 and page.samplesperpixel > 1:
            self.close()
            raise ImageReadError(self.path, "planar (channel-separate) TIFFs cannot be streamed; save it chunky")
        if len(page.shape) not in (2, 3) or getattr(page, "imagedepth", 1) > 1:
            self.close()
            raise ImageReadError(self.path, f"expected a 2D image, got a page of shape {page.shape}")
        self._page = page
        height, width = int(page.shape[0]), int(page.shape[1])
        self.shape = (height, width, int(page.shape[2]) if len(page.shape) == 3 else 1)
        self.dtype = np.dtype(page.dtype)
        if page.is_tiled:
            self._seg_h, self._seg_w = int(page.tilelength), int(page.tilewidth)
        else:
            self._seg_h, self._seg_w = int(page.rowsperstrip or height), width
            self._seg_h = min(self._seg_h, height)
        self._cols = -(-width // self._seg_w)
        self._decode = page.decode

    def _segment(self, index: int) -> np.ndarray:
        handle = self._tif.filehandle
        offset, count = self._page.dataoffsets[index], self._page.databytecounts[index]
        if count == 0:  # a sparse (never written) segment reads as zeros
            return np.zeros((self._seg_h, self._seg_w, self.shape[2]), self.dtype)
        handle.seek(offset)
        data = handle.read(count)
        segment, _, _ = self._decode(data, index, jpegtables=self._page.jpegtables)
        return np.asarray(segment).reshape(segment.shape[-3:])

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as ``(stop - start, W, C)``.

        Raises:
            ValueError: for rows outside the image.
            ImageReadError: for a corrupt segment.
        """
        height, width, channels = self.shape
        if not 0 <= start < stop <= height:
            raise ValueError(f"rows [{start}, {stop}) are outside the image's {height} rows")
        band = np.empty((stop - start, width, channels), self.dtype)
        for seg_row in range(start // self._seg_h, (stop - 1) // self._seg_h + 1):
            top = seg_row * self._seg_h
            lo, hi = max(start, top), min(stop, top + self._seg_h)
            for col in range(self._cols):
                try:
                    segment = self._segment(seg_row * self._cols + col)
                except Exception as err:
                    raise ImageReadError(self.path, f"segment {seg_row * self._cols + col}: {err}") from None
                left = col * self._seg_w
                right = min(left + self._seg_w, width)
                band[lo - start : hi - start, left:right] = segment[lo - top : hi - top, : right - left]
        return band

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> "TiffRowReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_DONE = object()


class TiledTiffWriter:
    """Write an ``(H, W)`` or ``(H, W, C)`` tiled TIFF from successive bands of ``tile[0]`` rows (atomically).

    tifffile pulls tiles from an iterator; here that iterator runs in a writer thread and reads from a queue of at
    most two bands, so the caller pushes bands as it produces them and memory stays at a couple of bands. The file
    is written under a temporary name and renamed by :meth:`close`.

    Args:
        path: the ``.tif`` to write.
        shape: ``(H, W)`` or ``(H, W, C)``.
        dtype: the pixel dtype.
        tile: ``(tile_h, tile_w)``, multiples of 16.
        colormap: optional ``(3, 256)`` uint16 palette (a palette TIFF for class masks).
        compression: tifffile compression name (default ``"zlib"``, at level 1: masks still shrink ~50x, and the
            writer keeps up with prediction).

    Raises:
        ValueError: for tile sizes that are not multiples of 16.
    """

    def __init__(
        self,
        path: PathLike,
        shape: Sequence[int],
        dtype: Any,
        tile: Tuple[int, int] = (256, 256),
        colormap: Optional[np.ndarray] = None,
        compression: Optional[str] = "zlib",
    ):
        tifffile = _tifffile()
        if tile[0] % 16 or tile[1] % 16:
            raise ValueError(f"`tile` sizes must be multiples of 16, got {tile}")
        self.path = Path(path)
        self.shape, self.dtype, self.tile = tuple(int(s) for s in shape), np.dtype(dtype), tuple(tile)
        self._rows_written = 0
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=2)
        self._error: Optional[BaseException] = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tif")
        os.close(fd)
        self._tmp = Path(tmp)
        kwargs: Dict[str, Any] = dict(shape=self.shape, dtype=self.dtype, tile=self.tile, compression=compression)
        if compression == "zlib":
            kwargs["compressionargs"] = {"level": 1}
        # tifffile compresses up to hundreds of MB per pass by default (and in several threads): one band of tiles
        # per pass keeps the writer's memory at a band.
        band_bytes = self.tile[0] * self.shape[1] * int(np.prod(self.shape[2:], dtype=np.int64)) * self.dtype.itemsize
        kwargs.update(maxworkers=1, buffersize=max(int(band_bytes), 1 << 16))
        if colormap is not None:
            kwargs.update(photometric="palette", colormap=colormap)
        elif len(self.shape) == 3 and self.shape[2] == 3 and self.dtype == np.uint8:
            kwargs.update(photometric="rgb")
        else:
            kwargs.update(photometric="minisblack")
        if len(self.shape) == 3:
            kwargs.update(planarconfig="contig")  # channels are samples of one pixel, not separate planes

        def run() -> None:
            try:
                with tifffile.TiffWriter(self._tmp, bigtiff=True) as writer:
                    writer.write(self._tiles(), **kwargs)
            except BaseException as err:  # reported by close()
                self._error = err

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def _tiles(self) -> Iterator[np.ndarray]:
        th, tw = self.tile
        while True:
            band = self._queue.get()
            if band is _DONE:
                return
            rows = band.shape[0]
            for left in range(0, self.shape[1], tw):
                tile = np.zeros((th, tw) + self.shape[2:], self.dtype)
                piece = band[:, left : left + tw]
                tile[:rows, : piece.shape[1]] = piece
                yield tile

    def _put(self, item: Any) -> None:
        # A writer thread that failed stops reading: give up instead of blocking on a full queue.
        while self._error is None and self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def write_rows(self, band: np.ndarray) -> None:
        """Append the next ``tile[0]`` rows (fewer only for the last band).

        Raises:
            ValueError: for a band of the wrong shape.
        """
        band = np.asarray(band, dtype=self.dtype)
        expected_rows = min(self.tile[0], self.shape[0] - self._rows_written)
        if band.shape != (expected_rows,) + self.shape[1:]:
            raise ValueError(f"expected a band of shape {(expected_rows,) + self.shape[1:]}, got {band.shape}")
        self._put(band)
        self._rows_written += expected_rows

    def close(self) -> Path:
        """Finish the file and rename it into place.

        Returns:
            The path written.

        Raises:
            ValueError: if fewer rows than the image height were written.
            Exception: whatever the writer thread met.
        """
        self._put(_DONE)
        self._thread.join()
        if self._error is None and self._rows_written != self.shape[0]:
            self._error = ValueError(f"wrote {self._rows_written} of {self.shape[0]} rows")
        if self._error is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._tmp)
            raise self._error
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file."""
        if self._error is None:
            self._error = RuntimeError("aborted")
        self._queue.put(_DONE)  # the thread may be waiting for a band; a full queue means it is still reading
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._tmp)
