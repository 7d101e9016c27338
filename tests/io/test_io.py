"""Readers and writers of smp_like.io: every format read back as written, geometry kept, bad files named."""

import numpy as np
import pytest
from PIL import Image

from smp_like.io import (
    ImageReadError,
    default_palette,
    overlay_mask,
    read_image,
    read_mask,
    read_volume,
    write_index_png,
    write_rgb_png,
    write_volume,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_rgb_uint8_round_trip(tmp_path, rng, suffix):
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = tmp_path / f"x{suffix}"
    if suffix == ".tif":
        import tifffile

        tifffile.imwrite(path, pixels)
    else:
        Image.fromarray(pixels).save(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, pixels)


def test_grey_16bit_png_and_npy_and_planar_tiff(tmp_path, rng):
    import tifffile

    grey = rng.integers(0, 65536, size=(6, 4), dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (6, 4, 1) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 0], grey)

    multi = rng.standard_normal((6, 4, 5)).astype(np.float32)
    np.save(tmp_path / "m.npy", multi)
    np.testing.assert_array_equal(read_image(tmp_path / "m.npy"), multi)

    planar = rng.integers(0, 1000, size=(5, 6, 4), dtype=np.uint16)  # (C, H, W)
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="minisblack", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "p.tif"), np.moveaxis(planar, 0, -1))


def test_opaque_alpha_dropped_real_alpha_kept(tmp_path, rng):
    rgba = rng.integers(0, 256, size=(3, 3, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "opaque.png")
    assert read_image(tmp_path / "opaque.png").shape == (3, 3, 3)
    rgba[0, 0, 3] = 10
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    assert read_image(tmp_path / "alpha.png").shape == (3, 3, 4)


def test_masks_palette_indices_binary_and_colour(tmp_path, rng):
    mask = rng.integers(0, 4, size=(8, 9))
    write_index_png(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[:6] == [0, 0, 0, *default_palette(4)[1][:3]]
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask)

    binary = (mask > 1).astype(np.uint8) * 255
    Image.fromarray(binary).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), binary)

    colour = np.zeros((8, 9, 3), np.uint8)
    colour[mask == 2] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), colour)

    np.save(tmp_path / "f.npy", mask.astype(np.float32) + 0.5)
    with pytest.raises(ImageReadError, match="f.npy.*fractions"):
        read_mask(tmp_path / "f.npy")


def test_bad_files_are_named(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(ImageReadError, match="missing.png.*no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageReadError, match="unsupported file type"):
        read_image(tmp_path / "x.gif")
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(ImageReadError, match="v.npy.*shape"):
        read_image(tmp_path / "v.npy")


def test_write_index_png_refuses_out_of_range(tmp_path):
    with pytest.raises(ValueError, match="0..255"):
        write_index_png(tmp_path / "x.png", np.full((2, 2), 300))
    with pytest.raises(ValueError, match="palette"):
        write_index_png(tmp_path / "x.png", np.full((2, 2), 3), palette=[(0, 0, 0)])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_overlay_blends_foreground_only():
    image = np.full((2, 2), 100, np.uint8)
    mask = np.array([[0, 1], [0, 0]])
    out = overlay_mask(image, mask, palette=[(0, 0, 0), (200, 0, 50)], alpha=0.5)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 1], [150, 50, 75])


def test_write_rgb_png(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    write_rgb_png(tmp_path / "o.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), rgb)
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o644


def test_nifti_round_trip_keeps_affine_and_header(tmp_path, rng):
    import nibabel as nib

    data = rng.standard_normal((5, 6, 7)).astype(np.float32)
    affine = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 20], [0, 0, 2.5, 5], [0, 0, 0, 1]])
    source = nib.Nifti1Image(data, affine)
    source.header["descrip"] = b"test volume"
    source.header.set_xyzt_units("mm")
    nib.save(source, tmp_path / "in.nii.gz")

    volume = read_volume(tmp_path / "in.nii.gz")
    assert volume.data.shape == (1, 5, 6, 7)
    np.testing.assert_array_equal(volume.data[0], data)
    np.testing.assert_allclose(volume.affine, affine)
    assert volume.spacing == pytest.approx((0.8, 0.8, 2.5))

    mask = (volume.data[0] > 0).astype(np.uint8)
    write_volume(tmp_path / "out.nii.gz", mask, volume.affine, volume.header)
    back = nib.load(tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), mask)
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_allclose(back.affine, affine)
    assert back.header["descrip"].tobytes().rstrip(b"\0") == b"test volume"
    assert back.header.get_xyzt_units()[0] == "mm"

    probs = rng.random((2, 5, 6, 7)).astype(np.float16)
    write_volume(tmp_path / "p.nii", probs, volume.affine)
    back = read_volume(tmp_path / "p.nii")
    assert back.data.dtype == np.float32  # NIfTI-1 has no float16
    np.testing.assert_array_equal(back.data, probs.astype(np.float32))


def test_bad_volume_named(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="bad.nii.gz"):
        read_volume(tmp_path / "bad.nii.gz")
    with pytest.raises(ValueError, match="not a NIfTI"):
        read_volume(tmp_path / "x.png")
