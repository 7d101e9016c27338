"""SMP's Oxford-IIIT Pet datasets on a tiny local copy, against SMP's classes (which only read, here)."""

import numpy as np
import pytest

from smp_like.datasets import OxfordPetDataset, SimpleOxfordPetDataset

smp_datasets = pytest.importorskip("segmentation_models_pytorch.datasets")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def pet_root(tmp_path):
    """23 images in the Oxford-IIIT Pet layout: 20 in trainval.txt, 3 in test.txt, trimaps with values 1..3."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    names = [f"Abyssinian_{i}" for i in range(23)]
    (tmp_path / "annotations" / "trainval.txt").write_text("".join(f"{n} 1 1 1\n" for n in names[:20]))
    (tmp_path / "annotations" / "test.txt").write_text("".join(f"{n} 1 1 1\n" for n in names[20:]))
    for name in names:
        Image.fromarray(rng.integers(0, 255, (12, 17, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{name}.jpg")
        trimap = rng.integers(1, 4, (12, 17), dtype=np.uint8)
        Image.fromarray(trimap).save(tmp_path / "annotations" / "trimaps" / f"{name}.png")
    return tmp_path


@pytest.mark.conformance
@pytest.mark.parametrize("name", ["OxfordPetDataset", "SimpleOxfordPetDataset"])
@pytest.mark.parametrize("mode", ["train", "valid", "test"])
def test_items_match_smp(pet_root, name, mode):
    ours = {"OxfordPetDataset": OxfordPetDataset, "SimpleOxfordPetDataset": SimpleOxfordPetDataset}[name](
        str(pet_root), mode
    )
    theirs = getattr(smp_datasets, name)(str(pet_root), mode)
    assert ours.filenames == theirs.filenames
    assert len(ours) == {"train": 18, "valid": 2, "test": 3}[mode]
    for i in range(len(ours)):
        a, b = ours[i], theirs[i]
        assert a.keys() == b.keys() == {"image", "mask", "trimap"}
        for key in a:
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key


def test_mask_is_pet_or_border_and_transform_sees_every_array(pet_root):
    seen = {}

    def transform(**arrays):
        seen.update(arrays)
        return {k: v[:4] for k, v in arrays.items()}

    item = OxfordPetDataset(str(pet_root), "test", transform=transform)[0]
    assert set(seen) == {"image", "mask", "trimap"}
    np.testing.assert_array_equal(seen["mask"], np.isin(seen["trimap"], (1, 3)).astype(np.float32))
    assert item["image"].shape == (4, 17, 3)


def test_refuses_bad_mode_missing_files_and_download(pet_root):
    with pytest.raises(ValueError, match=r"`mode` must be one of \('train', 'valid', 'test'\), got 'val'"):
        OxfordPetDataset(str(pet_root), "val")
    (pet_root / "images" / "Abyssinian_21.jpg").unlink()
    (pet_root / "annotations" / "trimaps" / "Abyssinian_22.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"2 file\(s\).*Abyssinian_21\.jpg.*Abyssinian_22\.png"):
        OxfordPetDataset(str(pet_root), "test")
    with pytest.raises(FileNotFoundError, match="does not download.*images.tar.gz"):
        OxfordPetDataset(str(pet_root / "nowhere"))
    with pytest.raises(RuntimeError, match="does not download.*annotations.tar.gz"):
        OxfordPetDataset.download(str(pet_root))
