"""Folder datasets: every image/mask format, colour maps, multilabel folders, and all data errors reported at once."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from smp_like.datasets.folder import DataError, FolderDataset, scan_pairs, split_pairs
from smp_like.io.images import write_index_png, write_rgb_png


def _identity(x):
    return x


def _roots(tmp_path, **kw):
    return [{"images": str(tmp_path / "images"), "masks": str(tmp_path / "masks"), **kw}]


def _dataset(tmp_path, task="multiclass", classes=("bg", "a", "b"), **kw):
    roots = _roots(tmp_path, **{k: kw.pop(k) for k in ("image_suffix", "mask_suffix") if k in kw})
    pairs = scan_pairs(roots, task, classes, **kw)
    return FolderDataset(pairs, task, classes, _identity, None, kw.get("mask_format", "index"), kw.get("colour_map"),
                         kw.get("ignore_index"))


def test_image_formats_are_read_as_stored(tmp_path):
    rng = np.random.default_rng(0)
    rgb8 = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    multi = rng.normal(size=(6, 7, 5)).astype(np.float32)
    (tmp_path / "images").mkdir()
    Image.fromarray(rgb8).save(tmp_path / "images" / "a.png")
    Image.fromarray(rgb8).save(tmp_path / "images" / "b.bmp")
    Image.fromarray(grey16).save(tmp_path / "images" / "c.png")
    tifffile.imwrite(tmp_path / "images" / "d.tif", grey16)
    np.save(tmp_path / "images" / "e.npy", multi)
    smooth = np.stack([*np.meshgrid(np.arange(7) * 30, np.arange(6) * 40), np.full((6, 7), 128)], -1).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "images" / "f.jpg", quality=95)
    mask = rng.integers(0, 3, (6, 7)).astype(np.uint8)
    for stem in "abcdef":
        write_index_png(tmp_path / "masks" / f"{stem}.png", mask)
    ds = _dataset(tmp_path)
    items = {it["meta"]["stem"]: it for it in (ds[i] for i in range(len(ds)))}
    assert sorted(items) == list("abcdef")
    assert torch.equal(items["a"]["image"], torch.from_numpy(rgb8.transpose(2, 0, 1).astype(np.float32)))
    assert torch.equal(items["b"]["image"], items["a"]["image"])
    for stem in "cd":  # 16-bit grey, PNG and TIFF: one channel, values as stored
        assert torch.equal(items[stem]["image"], torch.from_numpy(grey16[None].astype(np.float32)))
    assert torch.equal(items["e"]["image"], torch.from_numpy(multi.transpose(2, 0, 1)))
    assert items["f"]["image"].shape == (3, 6, 7)
    jpeg_error = (items["f"]["image"] - torch.from_numpy(smooth.transpose(2, 0, 1).astype(np.float32))).abs().mean()
    assert jpeg_error < 8  # lossy, but close to the original
    for it in items.values():
        assert it["mask"].dtype == torch.int64 and torch.equal(it["mask"], torch.from_numpy(mask.astype(np.int64)))


def test_mask_kinds_binary_colour_multilabel_and_suffixes(tmp_path):
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, (5, 4))
    (tmp_path / "images").mkdir()
    write_rgb_png(tmp_path / "images" / "x_img.png", rng.integers(0, 256, (5, 4, 3), dtype=np.uint8))
    colours = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    write_rgb_png(tmp_path / "masks" / "x_mask.png", np.asarray(colours, dtype=np.uint8)[truth])
    ds = _dataset(tmp_path, image_suffix="_img", mask_suffix="_mask", mask_format="colour", colour_map=colours)
    assert torch.equal(ds[0]["mask"], torch.from_numpy(truth))

    binary = tmp_path / "bin"
    (binary / "images").mkdir(parents=True)
    write_rgb_png(binary / "images" / "y.png", np.zeros((5, 4, 3), np.uint8))
    (binary / "masks").mkdir()
    Image.fromarray(((truth == 1) * 255).astype(np.uint8)).save(binary / "masks" / "y.png")
    ds = _dataset(binary, task="binary", classes=("fg",))
    assert ds[0]["mask"].shape == (1, 5, 4) and ds[0]["mask"].dtype == torch.float32
    assert torch.equal(ds[0]["mask"][0], torch.from_numpy((truth == 1).astype(np.float32)))

    ml = tmp_path / "ml"
    (ml / "images").mkdir(parents=True)
    write_rgb_png(ml / "images" / "z.png", np.zeros((5, 4, 3), np.uint8))
    for c, name in enumerate(["cat", "dog"]):
        (ml / "masks" / name).mkdir(parents=True)
        Image.fromarray(((truth == c + 1) * 255).astype(np.uint8)).save(ml / "masks" / name / "z.png")
    pairs = scan_pairs(_roots(ml), "multilabel", ["cat", "dog"])
    ds = FolderDataset(pairs, "multilabel", ["cat", "dog"], _identity, aux="mask")
    item = ds[0]
    expected = np.stack([truth == 1, truth == 2]).astype(np.float32)
    assert torch.equal(item["mask"], torch.from_numpy(expected))
    assert item["label"].tolist() == [float((truth == 1).any()), float((truth == 2).any())]


def test_several_roots_and_seeded_split(tmp_path):
    for r in ("r1", "r2"):
        for i in range(5):
            write_rgb_png(tmp_path / r / "images" / f"{r}_{i}.png", np.zeros((4, 4, 3), np.uint8))
            write_index_png(tmp_path / r / "masks" / f"{r}_{i}.png", np.zeros((4, 4), np.uint8))
    roots = [{"images": str(tmp_path / r / "images"), "masks": str(tmp_path / r / "masks")} for r in ("r1", "r2")]
    pairs = scan_pairs(roots, "multiclass", ["bg", "fg"])
    assert len(pairs) == 10
    train, val = split_pairs(pairs, 0.3, seed=4)
    assert len(val) == 3 and len(train) == 7 and not {p.stem for p in val} & {p.stem for p in train}
    assert [p.stem for p in split_pairs(pairs, 0.3, seed=4)[1]] == [p.stem for p in val]
    assert [p.stem for p in split_pairs(pairs, 0.3, seed=5)[1]] != [p.stem for p in val]


def test_every_data_error_is_reported_with_all_files(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    ok = np.zeros((6, 6), np.uint8)
    for stem in ("good", "nomask1", "nomask2", "badvalues1", "badvalues2", "size1", "size2", "corrupt"):
        write_rgb_png(images / f"{stem}.png", np.zeros((6, 6, 3), np.uint8))
    write_index_png(masks / "good.png", ok)
    for stem in ("noimage1", "noimage2"):
        write_index_png(masks / f"{stem}.png", ok)
    for stem, value in (("badvalues1", 5), ("badvalues2", 7)):
        write_index_png(masks / f"{stem}.png", np.full((6, 6), value, np.uint8))
    for stem in ("size1", "size2"):
        write_index_png(masks / f"{stem}.png", np.zeros((5, 6), np.uint8))
    (masks / "corrupt.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as info:
        scan_pairs(_roots(tmp_path), "multiclass", ["bg", "a", "b"])
    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 9, text
    for stem in ("nomask1", "nomask2"):
        assert f"{images / stem}.png: image without a mask" in text
    for stem in ("noimage1", "noimage2"):
        assert f"{masks / stem}.png: mask without an image" in text
    assert f"{masks}/badvalues1.png: values [5] outside the classes 0..2" in text
    assert f"{masks}/badvalues2.png: values [7] outside the classes 0..2" in text
    for stem in ("size1", "size2"):
        assert f"{masks / stem}.png: mask size 5x6 differs from image {stem}.png 6x6" in text
    assert f"cannot read {masks / 'corrupt.png'}" in text

    colours = [(0, 0, 0), (255, 0, 0)]
    write_rgb_png(tmp_path / "c" / "images" / "p.png", np.zeros((3, 3, 3), np.uint8))
    write_rgb_png(tmp_path / "c" / "masks" / "p.png", np.full((3, 3, 3), 9, np.uint8))
    with pytest.raises(DataError, match=r"p.png: colours not in colour_map: \[\(9, 9, 9\)\]"):
        scan_pairs(_roots(tmp_path / "c"), "multiclass", ["bg", "r"], mask_format="colour", colour_map=colours)
    with pytest.raises(DataError, match="nowhere: no such folder"):
        scan_pairs([{"images": str(tmp_path / "nowhere"), "masks": str(masks)}], "multiclass", ["bg", "a"])


def test_ignore_index_values_are_kept(tmp_path):
    mask = np.array([[0, 1], [255, 2]], np.uint8)
    write_rgb_png(tmp_path / "images" / "a.png", np.zeros((2, 2, 3), np.uint8))
    write_index_png(tmp_path / "masks" / "a.png", mask)
    ds = _dataset(tmp_path, ignore_index=255)
    assert ds[0]["mask"].tolist() == [[0, 1], [255, 2]]


def test_augmentation_is_a_function_of_seed_epoch_and_index(tmp_path):
    from smp_like.datasets.augment import build_pipeline

    rng = np.random.default_rng(2)
    for i in range(3):
        write_rgb_png(tmp_path / "images" / f"{i}.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
        write_index_png(tmp_path / "masks" / f"{i}.png", rng.integers(0, 2, (12, 10)).astype(np.uint8))
    pairs = scan_pairs(_roots(tmp_path), "multiclass", ["bg", "fg"])
    tf = build_pipeline([{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomRotate90"}], crop_size=(8, 8))

    def draw(epoch):
        ds = FolderDataset(pairs, "multiclass", ["bg", "fg"], _identity, tf, seed=3)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(3)]

    a, b, c = draw(0), draw(0), draw(1)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["mask"], y["mask"])
    assert any(not torch.equal(x["image"], y["image"]) for x, y in zip(a, c))
    for item in a:  # image and mask moved together: the crop/rotation of the mask matches the image's
        assert item["image"].shape[1:] == item["mask"].shape == (8, 8)
    raw_img, raw_mask = FolderDataset(pairs, "multiclass", ["bg", "fg"], _identity).read(0)
    item = a[0]
    img = item["image"].numpy().transpose(1, 2, 0)
    found = False
    for k in range(4):  # find where the crop came from: the same transform applied to image and mask
        for flip in (False, True):
            ri, rm = np.rot90(raw_img, k), np.rot90(raw_mask, k)
            if flip:
                ri, rm = ri[:, ::-1], rm[:, ::-1]
            for y in range(ri.shape[0] - 7):
                for x in range(ri.shape[1] - 7):
                    if np.array_equal(ri[y:y + 8, x:x + 8], img):
                        found = found or np.array_equal(rm[y:y + 8, x:x + 8], item["mask"].numpy())
    assert found
