"""The extra test outputs of Flemme test configs: ``save_input``, ``save_target``, ``save_colorized``
(native ``test.save_inputs``, ``test.save_targets``, ``test.colorize``).

``inputs/`` and ``targets/`` receive copies of the split's input and target files (NIfTI files keep their
geometry, as copies); ``colorized/`` receives, for 2D predictions, the input image with the predicted classes
blended over it in the class palette. Files are written atomically.
"""

import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["split_files", "write_test_extras"]


def split_files(cfg: Any, split: str) -> List[Tuple[str, List[Path], Optional[Path]]]:
    """``(stem, input files, target file or None)`` of every case of ``split``, in the order the test scores them."""
    d = cfg.data
    roots = [r.model_dump() for r in getattr(d, split, [])]
    if not roots:
        return []
    if d.dim == 3:
        from smp_like.datasets.volumes import scan_volume_cases

        return [(c.stem, list(c.images), c.mask) for c in scan_volume_cases(roots)]
    if all(r.get("masks") for r in roots):
        from smp_like.datasets.folder import scan_pairs

        pairs = scan_pairs(roots, d.task, d.classes, d.mask_format, d.colour_map, d.ignore_index, False)
        return [(p.stem, [Path(p.image)], Path(p.masks[0]) if len(p.masks) == 1 else None) for p in pairs]
    from smp_like.training.generative_data import scan_images

    items, _ = scan_images(roots, d.dim)
    return [(i.stem, [Path(i.path)], None) for i in items]


def _copy(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / src.name
    tmp = folder / f".{src.name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    return target


def _colorize(image_path: Path, mask_path: Path, target: Path, alpha: float = 0.5) -> Optional[Path]:
    from PIL import Image

    from smp_like.io.images import default_palette

    with Image.open(mask_path) as m:
        mask = np.asarray(m)
    if mask.ndim != 2:
        return None
    with Image.open(image_path) as im:
        image = im.convert("RGB")
        if image.size != (mask.shape[1], mask.shape[0]):
            image = image.resize((mask.shape[1], mask.shape[0]), Image.BILINEAR)
        rgb = np.asarray(image).astype(np.float32)
    palette = np.asarray(default_palette(int(mask.max()) + 2), np.float32)
    colour = palette[mask.astype(np.int64)]
    blended = np.where((mask > 0)[..., None], (1 - alpha) * rgb + alpha * colour, rgb)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp.png")
    Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), "RGB").save(tmp)
    os.replace(tmp, target)
    return target


def write_test_extras(cfg: Any, split: str, out_dir: Path) -> Dict[str, str]:
    """Write what ``cfg.test`` asks for beside the test outputs in ``out_dir``.

    Returns:
        ``{"inputs" | "targets" | "colorized": folder}`` for what was written.
    """
    t = cfg.test
    if not (t.save_inputs or t.save_targets or t.colorize):
        return {}
    out_dir = Path(out_dir)
    written: Dict[str, str] = {}
    for stem, images, target in split_files(cfg, split):
        if t.save_inputs:
            for image in images:
                _copy(image, out_dir / "inputs")
            written["inputs"] = str(out_dir / "inputs")
        if t.save_targets and target is not None:
            _copy(target, out_dir / "targets")
            written["targets"] = str(out_dir / "targets")
        if t.colorize and cfg.data.dim == 2:
            predicted = out_dir / "masks" / f"{stem}.png"
            if predicted.is_file() and _colorize(images[0], predicted, out_dir / "colorized" / f"{stem}.png"):
                written["colorized"] = str(out_dir / "colorized")
    return written
