import numpy as np
import pytest
import tifffile
from PIL import Image

from donet.errors import DonetError
from donet.io.images import open_image, read_image, read_mask, write_image
from donet.io.names import output_name


def test_16_bit_png_and_tiff_keep_their_depth(tmp_path):
    pixels = (np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)
    write_image(tmp_path / "a.png", pixels)
    tifffile.imwrite(tmp_path / "a.tif", pixels)
    for name in ("a.png", "a.tif"):
        read = read_image(tmp_path / name)
        assert read.dtype == np.uint16 and np.array_equal(read, pixels)


def test_bigtiff_is_written_read_and_named_as_a_tiff(tmp_path):
    pixels = (np.arange(48 * 64) % 251).astype(np.uint8).reshape(48, 64)
    write_image(tmp_path / "a.ome.btf", pixels)
    with tifffile.TiffFile(tmp_path / "a.ome.btf") as tif:
        assert tif.is_bigtiff
    assert np.array_equal(read_image(tmp_path / "a.ome.btf"), pixels)
    assert np.array_equal(open_image(tmp_path / "a.ome.btf"), pixels)
    assert output_name(tmp_path / "a.ome.btf") == "a"


def test_multichannel_tiff_channel_first_becomes_channel_last(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (3, 16, 24), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", pixels, photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "c.tif"), np.moveaxis(pixels, 0, -1))


def test_rgba_drops_alpha_and_jpeg_reads(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    rgba[..., 3] = 128  # half transparent: the colours are kept as stored, not blended
    Image.fromarray(rgba).save(tmp_path / "x.png")
    assert np.array_equal(read_image(tmp_path / "x.png"), rgba[..., :3])
    ramp = np.broadcast_to(np.linspace(0, 255, 9, dtype=np.uint8)[None, :, None], (8, 9, 3)).copy()
    Image.fromarray(ramp).save(tmp_path / "x.jpg", quality=95)
    read = read_image(tmp_path / "x.jpg")
    assert read.shape == (8, 9, 3) and np.abs(read.astype(int) - ramp).mean() < 4


@pytest.mark.parametrize("content, problem", [
    (None, "no such image file"),
    (b"this is not an image", "not a readable image"),
])
def test_missing_and_non_image_files(tmp_path, content, problem):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DonetError, match=problem) as caught:
        read_image(path)
    assert caught.value.path == path


def test_truncated_png_is_refused(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DonetError, match="not a readable image"):
        read_image(tmp_path / "cut.png")


def test_mask_size_is_checked(tmp_path):
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(DonetError, match="differs from its image"):
        read_mask(tmp_path / "m.png", shape=(8, 10))
