"""Volume datasets: Flemme pairing, modalities, geometry checks, the nnU-Net layout, patches, normalisation,
label/intensity transforms and 3D augmentation, each checked against a plain numpy reference."""

import json

import numpy as np
import pytest
import torch

from smp_like.datasets.folder import DataError
from smp_like.datasets.labels import LabelTransform, binarize, invert_intensity, relabel, to_grayscale
from smp_like.datasets.nnunet import read_dataset_json, scan_nnunet
from smp_like.datasets.patches import PatchSampler, ct_statistics, nonzero_bbox, normalize_ct, zscore
from smp_like.datasets.transforms3d import RandomFlip3D, RandomRotate90_3D, build_volume_pipeline
from smp_like.datasets.volumes import VolumeDataset, check_cases, scan_volume_cases
from smp_like.io.volumes import write_volume

EYE = np.eye(4)


def _vol(path, data, affine=EYE):
    write_volume(path, np.asarray(data), affine)
    return path


def test_flemme_pairing_recursive_with_suffix_replaced(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("siteA", "siteB/x"):
        for case in ("c1", "c2"):
            _vol(tmp_path / "flair" / sub / f"{case}_flair.nii.gz", rng.normal(size=(4, 4, 4)))
            _vol(tmp_path / "t1" / sub / f"{case}_t1.nii.gz", rng.normal(size=(4, 4, 4)))
            _vol(tmp_path / "seg" / sub / f"{case}_seg.nii.gz", np.zeros((4, 4, 4), np.uint8))
    root = {"images": str(tmp_path / "flair"), "masks": str(tmp_path / "seg"), "image_suffix": "_flair.nii.gz",
            "mask_suffix": "_seg.nii.gz", "pairing": "flemme"}
    cases = scan_volume_cases([root])
    assert [c.stem for c in cases] == ["siteA_c1", "siteA_c2", "siteB_x_c1", "siteB_x_c2"]
    for c in cases:
        rel = c.images[0].relative_to(tmp_path / "flair")
        assert c.mask == tmp_path / "seg" / rel.parent / rel.name.replace("_flair", "_seg")
    # stem pairing is not recursive: the same folders give no files at the top level
    with pytest.raises(DataError, match="no volume files"):
        scan_volume_cases([dict(root, pairing="stem")])
    # a label without an image and an image without a label are both reported
    (tmp_path / "seg" / "siteA" / "c2_seg.nii.gz").rename(tmp_path / "seg" / "siteA" / "c9_seg.nii.gz")
    with pytest.raises(DataError) as err:
        scan_volume_cases([root])
    text = str(err.value)
    assert "c2_flair.nii.gz: image without a label" in text and "c9_seg.nii.gz: label without an image" in text


def test_modalities_are_stacked_as_channels_in_list_order(tmp_path):
    a, b = np.full((5, 4, 3), 1.0), np.full((5, 4, 3), 2.0)
    _vol(tmp_path / "img" / "p1_t2.nii.gz", a)
    _vol(tmp_path / "img" / "p1_adc.nii.gz", b)
    _vol(tmp_path / "lab" / "p1.nii.gz", np.ones((5, 4, 3), np.uint8))
    cases = scan_volume_cases([{"images": str(tmp_path / "img"), "masks": str(tmp_path / "lab"),
                                "image_suffix": ["_adc.nii.gz", "_t2.nii.gz"], "mask_suffix": ""}])
    item = VolumeDataset(cases)[0]
    assert item["image"].shape == (2, 5, 4, 3)
    assert item["image"][0].unique().tolist() == [2.0] and item["image"][1].unique().tolist() == [1.0]
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (5, 4, 3)


def test_geometry_mismatch_names_both_files(tmp_path):
    img = _vol(tmp_path / "img" / "a.nii.gz", np.zeros((6, 6, 6)))
    _vol(tmp_path / "lab" / "a.nii.gz", np.zeros((6, 6, 5), np.uint8))
    _vol(tmp_path / "img" / "b.nii.gz", np.zeros((6, 6, 6)))
    _vol(tmp_path / "lab" / "b.nii.gz", np.zeros((6, 6, 6), np.uint8), np.diag([2.0, 1, 1, 1]))
    cases = scan_volume_cases([{"images": str(tmp_path / "img"), "masks": str(tmp_path / "lab")}])
    problems = check_cases(cases, 2, None)
    assert len(problems) == 2
    assert str(tmp_path / "lab" / "a.nii.gz") in problems[0] and str(img) in problems[0]
    assert "shape 6x6x5 vs 6x6x6" in problems[0]
    assert str(tmp_path / "lab" / "b.nii.gz") in problems[1] and "affine" in problems[1]


def test_label_values_outside_classes_are_reported_after_relabel(tmp_path):
    _vol(tmp_path / "img" / "a.nii.gz", np.zeros((4, 4, 4)))
    _vol(tmp_path / "lab" / "a.nii.gz", np.full((4, 4, 4), 4, np.uint8))
    cases = scan_volume_cases([{"images": str(tmp_path / "img"), "masks": str(tmp_path / "lab")}])
    assert "label values [4] outside the classes 0..2" in check_cases(cases, 3, None)[0]
    assert check_cases(cases, 3, LabelTransform(label_map={4: 2})) == []


def _nnunet(tmp_path, n=3):
    root = tmp_path / "Dataset001_Toy"
    info = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "zone": 1, "lesion": 2},
            "numTraining": n, "file_ending": ".nii.gz"}
    (root).mkdir(parents=True)
    (root / "dataset.json").write_text(json.dumps(info))
    rng = np.random.default_rng(0)
    data = {}
    for i in range(n):
        t2, adc = rng.normal(size=(6, 5, 4)), rng.normal(size=(6, 5, 4)) + 10
        lab = rng.integers(0, 3, size=(6, 5, 4)).astype(np.uint8)
        _vol(root / "imagesTr" / f"toy_{i:03d}_0000.nii.gz", t2)
        _vol(root / "imagesTr" / f"toy_{i:03d}_0001.nii.gz", adc)
        _vol(root / "labelsTr" / f"toy_{i:03d}.nii.gz", lab)
        data[i] = (t2, adc, lab)
    _vol(root / "imagesTs" / "toy_100_0000.nii.gz", rng.normal(size=(6, 5, 4)))
    _vol(root / "imagesTs" / "toy_100_0001.nii.gz", rng.normal(size=(6, 5, 4)))
    return root, data


def test_nnunet_layout_two_channels_three_labels(tmp_path):
    root, data = _nnunet(tmp_path)
    info = read_dataset_json(root)
    assert info.channel_names == ["T2", "ADC"] and info.classes == ["background", "zone", "lesion"]
    cases = scan_nnunet(root, "train")
    assert [c.stem for c in cases] == ["toy_000", "toy_001", "toy_002"]
    assert [p.name for p in cases[1].images] == ["toy_001_0000.nii.gz", "toy_001_0001.nii.gz"]
    ds = VolumeDataset(cases)
    for i, (t2, adc, lab) in data.items():
        item = ds[i]
        np.testing.assert_allclose(item["image"][0].numpy(), t2, rtol=1e-6)
        np.testing.assert_allclose(item["image"][1].numpy(), adc, rtol=1e-6)
        np.testing.assert_array_equal(item["mask"].numpy(), lab)
    test = scan_nnunet(root, "test")
    assert [c.stem for c in test] == ["toy_100"] and test[0].mask is None
    assert "mask" not in VolumeDataset(test)[0]
    # a missing channel file is reported with the case and the expected name
    (root / "imagesTr" / "toy_002_0001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"case 'toy_002' lacks channel file\(s\) \['toy_002_0001.nii.gz'\]"):
        scan_nnunet(root, "train")


def test_nnunet_dataset_json_errors(tmp_path):
    root, _ = _nnunet(tmp_path, 1)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"bg": 0, "a": 2}}))
    with pytest.raises(ValueError, match=r"dataset.json: 'labels' values must be 0..1"):
        read_dataset_json(root)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"bg": 0, "r": [1, 2]}}))
    with pytest.raises(ValueError, match="region-based labels"):
        read_dataset_json(root)


def test_patch_sampler_foreground_ratio():
    # one foreground voxel in a 40^3 volume: a uniform 8^3 patch holds it with probability (8/40)^3 < 1%
    image = np.zeros((1, 40, 40, 40), np.float32)
    mask = np.zeros((40, 40, 40), np.int64)
    mask[3, 30, 17] = 2
    n = 600
    for ratio in (0.0, 0.33, 1.0):
        sampler = PatchSampler((8, 8, 8), ratio)
        rng = np.random.default_rng(1)
        forced = holding = 0
        for _ in range(n):
            _, patch, was_forced = sampler(image, mask, rng)
            assert patch.shape == (8, 8, 8)
            forced += was_forced
            holding += bool((patch == 2).any())
            if was_forced:
                assert (patch == 2).any()
        # binomial(600, ratio): 4 standard deviations
        assert abs(forced - ratio * n) <= 4 * np.sqrt(n * ratio * (1 - ratio)) + 1e-9
        assert forced <= holding <= forced + 0.02 * n


def test_patch_sampler_pads_small_volumes():
    image = np.ones((2, 5, 6, 7), np.float32)
    mask = np.ones((5, 6, 7), np.int64)
    patch, pmask, _ = PatchSampler((8, 8, 8), 0.5, mask_pad=255)(image, mask, np.random.default_rng(0))
    assert patch.shape == (2, 8, 8, 8) and pmask.shape == (8, 8, 8)
    assert (patch == 0).sum() == 2 * (512 - 5 * 6 * 7) and (pmask == 255).sum() == 512 - 5 * 6 * 7


def test_ct_normalisation_closed_form():
    rng = np.random.default_rng(0)
    images = [rng.normal(40, 300, size=(1, 6, 7, 8)), rng.normal(-100, 500, size=(1, 5, 5, 5))]
    masks = [rng.integers(0, 3, size=(6, 7, 8)), np.zeros((5, 5, 5), np.int64)]  # second: no foreground
    (lo, hi, mean, std), = ct_statistics(images, masks, (1.0, 99.0))
    # closed form: foreground voxels of the first, all voxels of the second
    values = np.concatenate([images[0][0][masks[0] > 0], images[1][0].ravel()])
    v_sorted = np.sort(values)
    n = len(v_sorted)

    def pct(q):  # linear interpolation between closest ranks (numpy's default definition, written out)
        pos = q / 100 * (n - 1)
        i = int(np.floor(pos))
        return v_sorted[i] + (pos - i) * (v_sorted[min(i + 1, n - 1)] - v_sorted[i])

    assert lo == pytest.approx(pct(1.0)) and hi == pytest.approx(pct(99.0))
    clipped = [min(max(v, lo), hi) for v in values]
    ref_mean = sum(clipped) / n
    ref_std = (sum((c - ref_mean) ** 2 for c in clipped) / n) ** 0.5
    assert mean == pytest.approx(ref_mean) and std == pytest.approx(ref_std)
    out = normalize_ct(images[0], [(lo, hi, mean, std)])
    x = images[0][0, 2, 3, 4]
    assert out[0, 2, 3, 4] == pytest.approx((min(max(x, lo), hi) - ref_mean) / ref_std, rel=1e-5)


def test_zscore_per_channel_and_nonzero_crop():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(5, 2, size=(4, 4, 4)), rng.normal(-3, 7, size=(4, 4, 4))])
    z = zscore(x)
    for c in range(2):
        assert z[c].mean() == pytest.approx(0, abs=1e-5) and z[c].std() == pytest.approx(1, abs=1e-4)
        np.testing.assert_allclose(z[c], (x[c] - x[c].mean()) / x[c].std(), rtol=1e-4, atol=1e-5)
    vol = np.zeros((2, 10, 10, 10))
    vol[0, 2, 3, 4] = 1
    vol[1, 6, 5, 4] = -1
    assert nonzero_bbox(vol) == ((2, 7), (3, 6), (4, 5))
    assert nonzero_bbox(vol, 3) == ((0, 10), (0, 9), (1, 8))


def test_crop_nonzero_and_resize_are_undone_for_outputs(tmp_path):
    data = np.zeros((12, 10, 8), np.float32)
    data[3:9, 2:7, 1:5] = 5.0
    _vol(tmp_path / "img" / "a.nii.gz", data)
    _vol(tmp_path / "lab" / "a.nii.gz", (data > 0).astype(np.uint8))
    cases = scan_volume_cases([{"images": str(tmp_path / "img"), "masks": str(tmp_path / "lab")}])
    ds = VolumeDataset(cases, task="binary", crop_margin=1, resize=(16, 16, 16))
    item = ds[0]
    assert item["meta"]["crop"] == ((2, 10), (1, 8), (0, 6)) and item["image"].shape == (1, 16, 16, 16)
    assert item["mask"].shape == (1, 16, 16, 16)
    restored = ds.restore(item["mask"][0].numpy().astype(np.uint8), item["meta"])
    np.testing.assert_array_equal(restored, (data > 0).astype(np.uint8))


def test_flemme_label_and_intensity_transforms():
    m = np.array([[0, 3, 7], [7, 3, 9]])
    np.testing.assert_array_equal(relabel(m, {3: 1, 7: 2, 1: 5}), [[0, 1, 2], [2, 1, 9]])  # from original values
    np.testing.assert_array_equal(relabel(m, offset=-1), m - 1)
    np.testing.assert_array_equal(relabel(m, consecutive=True), [[0, 1, 2], [2, 1, 3]])
    np.testing.assert_array_equal(binarize(np.array([0, 0.4, 0.6, 200]), 0.5), [0, 0, 1, 1])
    np.testing.assert_allclose(invert_intensity(np.array([2.0, 4.0, 6.0])), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(invert_intensity(np.array([0, 55], np.uint8), 255.0), [255, 200])
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [10, 20, 30]]], np.uint8)
    gray = to_grayscale(rgb)
    assert gray.shape == (1, 3, 1)
    np.testing.assert_array_equal(gray[0, :, 0], [76, 150, round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)])


def test_3d_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 6, 6, 6)).astype(np.float32)
    mask = (image[0] > 0).astype(np.int64)
    for transform in (RandomFlip3D(p=1.0), RandomRotate90_3D(p=1.0)):
        out, out_mask = transform(image, mask, np.random.default_rng(3))
        assert out.shape == image.shape and not np.array_equal(out, image)
        np.testing.assert_array_equal(out_mask, (out[0] > 0).astype(np.int64))
    flipped, _ = RandomFlip3D(axes=(1,), p=1.0)(image, mask, rng)
    np.testing.assert_array_equal(flipped, image[:, :, ::-1])
    rotated, _ = RandomRotate90_3D(p=1.0)(image, mask, np.random.default_rng(0))
    assert any(np.array_equal(rotated, np.rot90(image, k, axes=(2, 3))) for k in (1, 2, 3))
    # albumentations' own volume transform by name, and an unknown name
    pipeline = build_volume_pipeline([{"name": "CubicSymmetry", "p": 1.0}, {"name": "RandomIntensity", "p": 1.0}])
    out, out_mask = pipeline(image, mask, np.random.default_rng(5))
    assert out.shape == (2, 6, 6, 6) and out_mask.shape == (6, 6, 6) and out_mask.sum() == mask.sum()
    with pytest.raises(ValueError, match="transform 0 \\(Nope\\): unknown transform 'Nope'"):
        build_volume_pipeline([{"name": "Nope"}])
