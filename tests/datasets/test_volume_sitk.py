"""MetaImage / NRRD volumes through SimpleITK keep the voxels and the geometry of the NIfTI they came from.

The reference is SimpleITK itself reading the NIfTI file: the ``.mha``/``.nrrd`` written by smp_like must carry the
same spacing, origin and direction (ITK's LPS world) that SimpleITK derives from the NIfTI's affine on its own.
"""

import numpy as np
import pytest
import SimpleITK as sitk

from smp_like.io.volumes import read_volume, write_volume


def _affine():
    # spacing (0.8, 1.0, 2.5) mm, a rotation about z and a flipped x axis, a non-zero origin
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.0, 1.0, 1.0]) @ np.diag([0.8, 1.0, 2.5])
    affine[:3, 3] = [12.5, -40.0, 7.25]
    return affine


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_sitk_round_trip_matches_simpleitk_reading_the_nifti(tmp_path, suffix):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(7, 9, 5)).astype(np.float32)
    nifti = write_volume(tmp_path / "case.nii.gz", data, _affine())
    other = write_volume(tmp_path / f"case{suffix}", data, _affine())

    reference = sitk.ReadImage(str(nifti))  # SimpleITK's own NIfTI -> LPS geometry
    written = sitk.ReadImage(str(other))
    np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(reference))

    back = read_volume(other)
    assert back.data.shape == (1, 7, 9, 5)
    np.testing.assert_array_equal(back.data[0], data)
    np.testing.assert_allclose(back.affine, _affine(), atol=1e-5)
    np.testing.assert_allclose(back.spacing, (0.8, 1.0, 2.5), atol=1e-6)


def test_sitk_multichannel_and_mask(tmp_path):
    data = np.arange(2 * 4 * 5 * 3, dtype=np.int16).reshape(2, 4, 5, 3)
    back = read_volume(write_volume(tmp_path / "two.mha", data, _affine()))
    np.testing.assert_array_equal(back.data, data)
    mask = np.zeros((4, 5, 3), dtype=bool)
    mask[1:3, 2, 1] = True
    back = read_volume(write_volume(tmp_path / "mask.nrrd", mask, _affine()))
    assert back.data.dtype == np.uint8 and back.data[0].sum() == 2


def test_sitk_header_pair_is_refused_and_corrupt_file_named(tmp_path):
    with pytest.raises(ValueError, match="single-file"):
        write_volume(tmp_path / "x.mhd", np.zeros((2, 2, 2), np.float32))
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"not a metaimage")
    with pytest.raises(ValueError, match="bad.mha"):
        read_volume(bad)
