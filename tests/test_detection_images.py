"""Image decoding: every unusual input is converted by its documented rule or refused by name."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.detection.images import ImageError, ImageMissingError, decode_image


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_rgb_is_returned_unchanged(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out, conv = decode_image(save(Image.fromarray(arr), tmp_path / "a.png"), expected_size=(7, 5))
    assert conv is None and out.dtype == np.uint8 and np.array_equal(out, arr)


def test_grayscale_is_replicated_or_refused_in_strict_mode(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = save(Image.fromarray(grey, mode="L"), tmp_path / "g.png")
    out, conv = decode_image(path)
    assert conv == "grayscale" and out.shape == (3, 4, 3)
    assert all(np.array_equal(out[..., c], grey) for c in range(3))
    with pytest.raises(ImageError, match=r"g\.png.*mode L.*strict"):
        decode_image(path, modes="strict")


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    out, conv = decode_image(path)
    assert conv == "16bit" and out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(Image.new("CMYK", (6, 4), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=95)
    out, conv = decode_image(path)
    assert conv == "cmyk" and out.shape == (4, 6, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60  # cyan 0, magenta+yellow full -> red


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 200, 0)  # fully transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    out, conv = decode_image(save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "t.png"))
    assert conv == "alpha"
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 1 for v in out[0, 2].tolist())


def test_palette_images(tmp_path):
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    out, conv = decode_image(save(pal, tmp_path / "p.png"))
    assert conv == "palette" and out[0, 0].tolist() == [10, 20, 30]
    out, conv = decode_image(save(pal, tmp_path / "pt.png", transparency=1))
    assert conv == "alpha" and out[0, 0].tolist() == [255, 255, 255]


def test_corrupt_truncated_empty_missing_and_resized_files_are_named(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(ImageError, match=r"junk\.jpg: not a readable image"):
        decode_image(tmp_path / "junk.jpg")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: corrupt or truncated"):
        decode_image(tmp_path / "cut.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: empty image file"):
        decode_image(tmp_path / "empty.png")
    with pytest.raises(ImageMissingError, match=r"gone\.png: image file not found") as info:
        decode_image(tmp_path / "gone.png")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    path = save(Image.new("RGB", (8, 6)), tmp_path / "small.png")
    with pytest.raises(ImageError, match=r"small\.png: decoded size 8x6 differs from the table's 9x6"):
        decode_image(path, expected_size=(9, 6))


def test_modes_without_a_conversion_are_refused(tmp_path):
    path = save(Image.fromarray(np.ones((3, 3), dtype=np.float32)), tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"f\.tif: image mode F has no defined conversion"):
        decode_image(path)
