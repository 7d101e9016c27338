"""``SegmentationDataModule``: folder datasets from the ``data`` section, checked up front, in resumable loaders.

Loaders are torchdata ``StatefulDataLoader`` s, whose position Lightning stores in checkpoints, so a run resumed
mid-epoch continues with the next batch. Shuffling is a pure function of ``(seed, epoch)`` and augmentation of
``(seed, epoch, index)``, so the resumed run sees exactly the batches an unbroken run would.

Distributed runs shard the data here (rank ``r`` of ``w`` takes items ``r, r + w, ...``), without the padding of
``DistributedSampler``, so validation counts summed over processes equal those of one process: Lightning's own
sampler replacement is turned off (``use_distributed_sampler=False``).
"""

import functools
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Sampler

try:
    import lightning.pytorch as pl
    from torchdata.stateful_dataloader import StatefulDataLoader
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("the data module needs lightning and torchdata; `pip install smp_like[train]`") from err

from smp_like.datasets.augment import build_pipeline
from smp_like.datasets.folder import DataError, FolderDataset, Pair, read_aux_csv, scan_pairs, split_pairs
from smp_like.datasets.labels import LabelTransform
from smp_like.io.preprocessing import Preprocessing, from_encoder

__all__ = ["SegmentationDataModule", "EpochShuffle", "collate", "preprocessing_for"]


class EpochShuffle(Sampler):
    """A permutation drawn from ``(seed, epoch)``, sharded over ``world`` processes (no padding).

    It yields ``(epoch, index)`` pairs, which :class:`~smp_like.datasets.folder.FolderDataset` reads as "item
    ``index`` with the augmentation of ``epoch``": the epoch travels with each index, into loader workers too. The
    epoch is read when iteration starts, from ``epoch_source`` (the trainer's current epoch, right also when a run
    resumes mid-epoch) or else from :meth:`set_epoch`, which Lightning calls at each epoch start.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1,
                 epoch_source: Optional[Callable[[], int]] = None):
        self.n, self.seed, self.shuffle, self.rank, self.world = n, int(seed), shuffle, rank, world
        self.epoch = 0
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = int(self.epoch_source()) if self.epoch_source is not None else self.epoch
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return iter([(epoch, i) for i in order[self.rank :: self.world]])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))




def collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack items of one size; items of different sizes (whole validation images) need ``val_batch_size: 1``.

    Raises:
        ValueError: naming the files whose sizes differ.
    """
    shapes = {tuple(it["image"].shape) for it in items}
    if len(shapes) > 1:
        names = ", ".join(f"{it['meta']['path']} {tuple(it['image'].shape[1:])}" for it in items)
        raise ValueError(f"images of different sizes in one batch ({names}); set data.val_batch_size: 1 or add a "
                         "crop/resize to data.augment")
    batch: Dict[str, Any] = {"image": torch.stack([it["image"] for it in items]),
                             "meta": [it["meta"] for it in items]}
    if "mask" in items[0]:  # images-only data (masks: null) has none
        batch["mask"] = torch.stack([it["mask"] for it in items])
    if "label" in items[0]:
        batch["label"] = torch.stack([it["label"] for it in items])
    return batch


def preprocessing_for(cfg: Any) -> Preprocessing:
    """The input normalisation of a config: ``data.normalization`` or the encoder's statistics, plus the task,
    class names and palette (written beside the best model as ``preprocessing.json``)."""
    data = cfg.data
    palette = [list(c) for c in data.colour_map] if data.colour_map else None
    fields = dict(task=data.task, class_names=list(data.classes), palette=palette)
    if data.normalization is not None and data.normalization.normalization == "ct":
        # The CT statistics come from the training volumes: the data module fills them in when it scans the data.
        return Preprocessing(normalization="none", **fields)
    if data.normalization is not None:
        n = data.normalization
        return Preprocessing(normalization=n.normalization, mean=n.mean, std=n.std, max_pixel_value=n.max_pixel_value,
                             clip=list(n.clip) if n.clip else None, **fields)
    if cfg.model.from_pretrained:
        saved = Preprocessing.load(cfg.model.from_pretrained)
        if saved is not None:
            values = saved.to_dict()
            values.update(fields)
            return Preprocessing.from_dict(values)
    if getattr(data, "dim", 2) == 3:
        return Preprocessing(normalization="zscore", **fields)  # volumes: per channel, per volume (nnU-Net's default)
    return from_encoder(cfg.model.encoder_name or "resnet34", cfg.model.encoder_weights, cfg.model.in_channels,
                        **fields)


class SegmentationDataModule(pl.LightningDataModule):
    """Train / val / test folder datasets of a :class:`~smp_like.training.config.TrainConfig`.

    Args:
        cfg: the validated config.
        check_contents: read every file once in :meth:`prepare` to report all data problems before training.

    Raises:
        DataError: from :meth:`prepare`, listing every problem.
    """

    def __init__(self, cfg: Any, check_contents: bool = True):
        super().__init__()
        self.cfg = cfg
        self.check_contents = check_contents
        self.preprocessing = preprocessing_for(cfg)
        self.pairs: Dict[str, List[Pair]] = {}
        self.datasets: Dict[str, FolderDataset] = {}
        self._prepared = False

    def _scan(self, roots: Sequence[Any]) -> List[Pair]:
        d = self.cfg.data
        transform = LabelTransform.from_config(d)
        return scan_pairs([r.model_dump() for r in roots], d.task, d.classes, d.mask_format, d.colour_map,
                          d.ignore_index, self.check_contents, transform if transform.active else None)

    def prepare(self) -> "SegmentationDataModule":
        """Scan and check every split (all problems of all splits in one error) and build the datasets."""
        if self._prepared:
            return self
        d = self.cfg.data
        if d.dim == 3:
            return self._prepare_volumes()
        problems: List[str] = []
        for split in ("train", "val", "test"):
            roots = getattr(d, split)
            if not roots:
                continue
            try:
                self.pairs[split] = self._scan(roots)
            except DataError as err:
                problems += err.problems
        aux = None
        if d.aux_labels == "mask":
            aux = "mask"
        elif d.aux_labels:
            try:
                aux = read_aux_csv(d.aux_labels, d.classes)
            except DataError as err:
                problems += err.problems
            else:
                problems += [f"{p.image}: no row {p.stem!r} in {d.aux_labels}" for split in self.pairs.values()
                             for p in split if p.stem not in aux]
        if problems:
            raise DataError(problems)
        if "val" not in self.pairs and d.val_fraction > 0:
            self.pairs["train"], self.pairs["val"] = split_pairs(self.pairs["train"], d.val_fraction,
                                                                 self.cfg.seed or 0)
        seed = self.cfg.seed or 0
        mask_pad = d.ignore_index if d.ignore_index is not None else 0
        resize = tuple(d.resize) if d.resize else None
        train_tf = build_pipeline([t.model_dump() for t in d.augment.train], d.crop_size, mask_pad, seed, resize)
        eval_tf = build_pipeline([t.model_dump() for t in d.augment.eval], None, mask_pad, seed, resize)
        label_tf = LabelTransform.from_config(d)
        for split, pairs in self.pairs.items():
            self.datasets[split] = FolderDataset(
                pairs, d.task, d.classes, self.preprocessing.normalize, train_tf if split == "train" else eval_tf,
                d.mask_format, d.colour_map, d.ignore_index, aux, seed, label_tf if label_tf.active else None,
                d.grayscale, d.invert_intensity,
            )
        self._prepared = True
        return self

    def _prepare_volumes(self) -> "SegmentationDataModule":
        """``data.dim: 3``: scan folders or the nnU-Net layout, check geometry and labels, compute the CT
        statistics on the training volumes, and build :class:`~smp_like.datasets.volumes.VolumeDataset` s."""
        from smp_like.datasets.nnunet import scan_nnunet
        from smp_like.datasets.patches import ct_statistics, normalize_ct
        from smp_like.datasets.transforms3d import build_volume_pipeline
        from smp_like.datasets.volumes import VolumeDataset, check_cases, scan_volume_cases

        d = self.cfg.data
        seed = self.cfg.seed or 0
        label_tf = LabelTransform.from_config(d)
        label_tf = label_tf if label_tf.active else None
        num_classes = len(d.classes) if d.task == "multiclass" else 2
        problems: List[str] = []
        cases: Dict[str, List[Any]] = {}
        for split in ("train", "val", "test"):
            roots = getattr(d, split)
            try:
                if roots:
                    cases[split] = scan_volume_cases([r.model_dump() for r in roots])
                elif d.layout == "nnunet" and split in ("train", "test"):
                    if split == "test" and not (Path(d.root) / "imagesTs").is_dir():
                        continue
                    cases[split] = scan_nnunet(d.root, split)
            except DataError as err:
                problems += err.problems
            except ValueError as err:
                problems.append(str(err))
        if self.check_contents:
            for split_cases in cases.values():
                problems += check_cases(split_cases, num_classes, label_tf, d.ignore_index)
        if problems:
            raise DataError(problems)
        if "val" not in cases and d.val_fraction > 0 and "train" in cases:
            cases["train"], cases["val"] = split_pairs(cases["train"], d.val_fraction, seed)
        self.pairs = cases
        margin = d.crop_nonzero.margin if d.crop_nonzero is not None else None
        common = dict(task=d.task, label_transform=label_tf, crop_margin=margin, invert=d.invert_intensity,
                      resize=d.resize, ignore_index=d.ignore_index, seed=seed)
        norm = d.normalization.normalization if d.normalization is not None else "zscore"
        normalize = self.preprocessing.normalize
        if norm == "ct":
            if "train" not in cases:
                raise DataError(["normalization 'ct' computes its statistics on the training volumes: add data.train"])
            raw = VolumeDataset(cases["train"], cache=False, **common)
            loaded = [raw.load_raw(i)[:2] for i in range(len(raw.cases))]
            stats = ct_statistics([im for im, _ in loaded], [m for _, m in loaded],
                                  tuple(d.normalization.percentiles))
            del loaded
            self.ct_stats = stats
            if len(stats) == 1:  # one channel: Preprocessing (saved beside the model) expresses it exactly
                lo, hi, mean, std = stats[0]
                self.preprocessing = Preprocessing.from_dict(dict(self.preprocessing.to_dict(),
                                                                  normalization="mean_std", mean=[mean], std=[std],
                                                                  max_pixel_value=1.0, clip=[lo, hi]))
            normalize = functools.partial(normalize_ct, stats=stats)
        train_tf = build_volume_pipeline([t.model_dump() for t in d.augment.train])
        eval_tf = build_volume_pipeline([t.model_dump() for t in d.augment.eval])
        for split, split_cases in cases.items():
            train = split == "train"
            self.datasets[split] = VolumeDataset(
                split_cases, normalize=normalize, patch_size=d.patch_size if train else None,
                patches_per_volume=d.patches_per_volume, foreground_oversampling=d.foreground_oversampling,
                transform=train_tf if train else eval_tf, **common,
            )
        self._prepared = True
        return self

    def setup(self, stage: Optional[str] = None) -> None:
        self.prepare()

    def set_epoch(self, epoch: int) -> None:
        for dataset in self.datasets.values():
            dataset.set_epoch(epoch)

    def _world(self):
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> StatefulDataLoader:
        if split not in self.datasets:
            raise ValueError(f"no {split!r} data: add data.{split} folders to the config")
        rank, world = self._world()
        dataset = self.datasets[split]
        trainer = getattr(self, "trainer", None)
        source = (lambda: trainer.current_epoch) if trainer is not None else None
        sampler = EpochShuffle(len(dataset), self.cfg.seed or 0, shuffle, rank, world, source)
        workers = self.cfg.data.num_workers
        # Volume datasets keep loaded cases in memory: workers that live across epochs read each case once.
        persistent = workers > 0 and getattr(self.cfg.data, "dim", 2) == 3
        return StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                  collate_fn=collate, drop_last=False, persistent_workers=persistent)

    def train_dataloader(self) -> StatefulDataLoader:
        return self._loader("train", True, self.cfg.data.batch_size)

    def _eval_batch_size(self) -> int:
        d = self.cfg.data
        # whole volumes differ in size: one per batch unless the config says otherwise
        return d.val_batch_size or (1 if d.dim == 3 else d.batch_size)

    def val_dataloader(self) -> Any:
        if "val" not in self.datasets:  # val_fraction 0 and no data.val: no validation (Lightning skips an empty list)
            return []
        return self._loader("val", False, self._eval_batch_size())

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader("test", False, self._eval_batch_size())
