"""The nnU-Net raw dataset layout (nnU-Net v2): ``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``.

``dataset.json`` names the input channels (``channel_names``: ``{"0": "T2", "1": "ADC"}``), the labels
(``labels``: ``{"background": 0, "tumour": 1, ...}``, consecutive from 0) and the ``file_ending`` (``.nii.gz``).
Case ``c`` has one image file per channel, ``imagesTr/c_0000.nii.gz``, ``imagesTr/c_0001.nii.gz``, ..., and the
label ``labelsTr/c.nii.gz``; ``imagesTs/`` holds test cases without labels (``labelsTs/`` is read when present).
Region-based labels (a label given as a list of values) are not supported.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Union

from smp_like.datasets.folder import DataError
from smp_like.datasets.volumes import VolumeCase

__all__ = ["NnUNetInfo", "read_dataset_json", "scan_nnunet"]


@dataclass
class NnUNetInfo:
    """What ``dataset.json`` declares: channel names (in channel order), class names (by label value), ending."""

    channel_names: List[str]
    classes: List[str]
    file_ending: str


def read_dataset_json(root: Union[str, Path]) -> NnUNetInfo:
    """Read and check ``root/dataset.json``.

    Raises:
        ValueError: for a missing or invalid file (naming it and the key).
    """
    path = Path(root) / "dataset.json"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the nnU-Net layout needs dataset.json)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON: {err}") from None
    channels = info.get("channel_names", info.get("modality"))  # nnU-Net v1 called it "modality"
    if not isinstance(channels, dict) or not channels:
        raise ValueError(f"{path}: 'channel_names' must map channel numbers to names, e.g. {{\"0\": \"CT\"}}")
    try:
        order = sorted((int(k), str(v)) for k, v in channels.items())
    except ValueError:
        raise ValueError(f"{path}: 'channel_names' keys must be channel numbers, got {list(channels)}") from None
    if [k for k, _ in order] != list(range(len(order))):
        raise ValueError(f"{path}: 'channel_names' must number channels 0..{len(order) - 1}, got {list(channels)}")
    labels = info.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: 'labels' must map class names to values, e.g. {{\"background\": 0, \"organ\": 1}}")
    if any(not isinstance(v, int) for v in labels.values()):
        raise ValueError(f"{path}: region-based labels (lists of values) are not supported: {labels}")
    by_value = sorted((v, k) for k, v in labels.items())
    if [v for v, _ in by_value] != list(range(len(by_value))):
        raise ValueError(f"{path}: 'labels' values must be 0..{len(by_value) - 1} (background 0), got "
                         f"{sorted(labels.values())}")
    ending = info.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise ValueError(f"{path}: 'file_ending' must be like '.nii.gz', got {ending!r}")
    return NnUNetInfo([n for _, n in order], [k for _, k in by_value], ending)


def scan_nnunet(root: Union[str, Path], split: str = "train") -> List[VolumeCase]:
    """The cases of ``imagesTr`` + ``labelsTr`` (``split="train"``) or ``imagesTs`` (+ ``labelsTs``, ``"test"``).

    Raises:
        DataError: listing every case with a missing channel file, image without label, label without image, and
            files that do not follow the ``<case>_<XXXX><ending>`` naming.
        ValueError: for a bad ``dataset.json``.
    """
    root = Path(root)
    info = read_dataset_json(root)
    images_dir = root / ("imagesTr" if split == "train" else "imagesTs")
    labels_dir = root / ("labelsTr" if split == "train" else "labelsTs")
    if not images_dir.is_dir():
        raise DataError([f"{images_dir}: no such folder (nnU-Net layout)"])
    ending = info.file_ending
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending) + "$")
    problems: List[str] = []
    found: Dict[str, Dict[int, Path]] = {}
    for path in sorted(images_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        match = pattern.match(path.name)
        if match is None:
            if path.name.endswith(ending):
                problems.append(f"{path}: not named <case>_<channel as 4 digits>{ending}")
            continue
        found.setdefault(match["case"], {})[int(match["channel"])] = path
    n = len(info.channel_names)
    has_labels = labels_dir.is_dir() and (split == "train" or any(labels_dir.iterdir()))
    if split == "train" and not labels_dir.is_dir():
        problems.append(f"{labels_dir}: no such folder (nnU-Net layout)")
    cases: List[VolumeCase] = []
    for case, channels in sorted(found.items()):
        missing = [c for c in range(n) if c not in channels]
        extra = sorted(c for c in channels if c >= n)
        if missing:
            problems.append(f"{images_dir}: case {case!r} lacks channel file(s) "
                            f"{[f'{case}_{c:04d}{ending}' for c in missing]} (dataset.json has {n} channels: "
                            f"{info.channel_names})")
            continue
        if extra:
            problems.append(f"{channels[extra[0]]}: channel {extra[0]} beyond dataset.json's {n} channels")
            continue
        label = labels_dir / f"{case}{ending}" if has_labels else None
        if label is not None and not label.is_file():
            problems.append(f"{channels[0]}: image without a label (no {label})")
            continue
        cases.append(VolumeCase(images=[channels[c] for c in range(n)], mask=label, stem=case))
    if has_labels:
        for path in sorted(labels_dir.iterdir()):
            if path.name.endswith(ending) and path.name[: -len(ending)] not in found:
                problems.append(f"{path}: label without an image (no {path.name[: -len(ending)]}_0000{ending} in "
                                f"{images_dir})")
    if not cases and not problems:
        problems.append(f"{images_dir}: no cases ({'<case>_0000' + ending})")
    if problems:
        raise DataError(problems)
    return cases
