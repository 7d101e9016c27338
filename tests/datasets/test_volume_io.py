"""NIfTI round trip (affine and header kept), and the SimpleITK formats' optional extra."""

import sys

import nibabel as nib
import numpy as np
import pytest

from smp_like.io.volumes import read_volume, volume_suffix, write_volume


def _source(tmp_path):
    affine = np.array([[0.0, -1.2, 0, 30.0], [0.8, 0.0, 0, -12.5], [0, 0, 2.5, 7.0], [0, 0, 0, 1]])
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = b"smp_like round trip"
    image = nib.Nifti1Image(np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4), affine, header=header)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    path = tmp_path / "scan.nii.gz"
    nib.save(image, str(path))
    return path, affine


def test_nifti_round_trip_keeps_affine_and_header(tmp_path):
    path, affine = _source(tmp_path)
    vol = read_volume(path)
    assert vol.data.shape == (1, 6, 5, 4)
    np.testing.assert_allclose(vol.affine, affine)
    assert vol.spacing == pytest.approx((0.8, 1.2, 2.5))
    # a predicted mask written with the source's geometry
    mask = (vol.data[0] % 3).astype(np.uint8)
    out = write_volume(tmp_path / "pred" / "scan.nii.gz", mask, vol.affine, vol.header)
    back = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(back.dataobj), mask)
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_allclose(back.get_qform(), affine, atol=1e-5)
    np.testing.assert_allclose(back.get_sform(), affine)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 2
    assert back.header["descrip"].item() == b"smp_like round trip"
    assert back.header.get_xyzt_units() == ("mm", "sec")
    assert back.header.get_zooms() == pytest.approx((0.8, 1.2, 2.5))
    # and a second read of the written file gives the same voxels and geometry
    again = read_volume(out)
    np.testing.assert_array_equal(again.data[0], mask)
    np.testing.assert_allclose(again.affine, affine)


def test_multichannel_round_trip(tmp_path):
    data = np.random.default_rng(0).normal(size=(2, 4, 5, 6)).astype(np.float32)
    path = write_volume(tmp_path / "two.nii", data, np.diag([2.0, 2.0, 3.0, 1.0]))
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, np.diag([2.0, 2.0, 3.0, 1.0]))


def test_sitk_formats_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)  # as if not installed
    path = tmp_path / "scan.mha"
    path.write_bytes(b"ObjectType = Image\n")
    with pytest.raises(ImportError, match=r"smp_like\[sitk\]"):
        read_volume(path)
    with pytest.raises(ImportError, match=r"smp_like\[sitk\]"):
        write_volume(tmp_path / "out.nrrd", np.zeros((2, 2, 2), np.uint8))
    assert volume_suffix("a/b.NII.GZ") == ".nii.gz" and volume_suffix("x.nrrd") == ".nrrd"


def test_unsupported_ending_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"scan\.png: not a NIfTI"):
        read_volume(tmp_path / "scan.png")
