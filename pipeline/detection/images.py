"""Decode an image file to 8-bit RGB for a detector.

Unusual inputs never turn into a silently wrong feature row: each is either converted by a fixed,
documented rule (and counted, so the stage can report it) or refused with an error naming the file.

Conversions (`image_modes: convert`, the default):
  grayscale  1-bit / 8-bit grey -> the grey value on all three channels
  16bit      16-bit grey -> divided by 257 (65535 -> 255), then on all three channels
             (Pillow itself reads 16-bit-per-channel RGB PNGs as 8-bit RGB by their high bytes)
  cmyk       CMYK -> RGB by Pillow's naive conversion (no ICC profile)
  palette    palette image without transparency -> its RGB colours
  alpha      any mode with an alpha channel or palette transparency -> composited over white
With `image_modes: strict` only 8-bit RGB is accepted; every other mode is an error.
Always errors: a missing, empty, unreadable, corrupt or truncated file, a zero-sized image, a mode
with no defined conversion (e.g. 32-bit float), and a decoded size that differs from the table's.
EXIF orientation is ignored on purpose: annotation boxes refer to the stored pixel grid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.project_paths import project_path

CONVERSIONS = ("grayscale", "16bit", "cmyk", "palette", "alpha")
IMAGE_MODES = ("convert", "strict")
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_GREY_MODES = {"1", "L"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageError(ValueError):
    """An image cannot be used as it is; the message names the file and the problem."""


class ImageMissingError(ImageError, FileNotFoundError):
    """The image file does not exist."""


def _open(path: Path) -> Image.Image:
    path = project_path(path)
    if not path.is_file():
        raise ImageMissingError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty image file (0 bytes)")
    try:
        img = Image.open(path)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image data ({exc})") from exc
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{path}: zero-sized image ({img.width}x{img.height})")
    return img


def _to_rgb(img: Image.Image, path: Path) -> tuple[np.ndarray, str | None]:
    """Apply the documented conversion for `img.mode`; returns (HxWx3 uint8, conversion or None)."""
    mode = img.mode
    if mode == "RGB":
        return np.array(img, dtype=np.uint8), None  # a writable copy (torch.from_numpy needs one)
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8), "alpha"
    if mode in _GREY_MODES:
        grey = np.asarray(img.convert("L"), dtype=np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), "grayscale"
    if mode in _SIXTEEN_BIT_MODES:
        raw = np.asarray(img).astype(np.int64)
        if raw.min() < 0 or raw.max() > 65535:
            raise ImageError(f"{path}: integer image mode {mode} with values outside 0..65535; "
                             "no defined conversion to 8-bit RGB")
        grey = np.rint(raw / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), "16bit"
    if mode == "CMYK":
        return np.asarray(img.convert("RGB"), dtype=np.uint8), "cmyk"
    if mode == "P":
        return np.asarray(img.convert("RGB"), dtype=np.uint8), "palette"
    if mode == "YCbCr":
        return np.asarray(img.convert("RGB"), dtype=np.uint8), None
    raise ImageError(f"{path}: image mode {mode} has no defined conversion to 8-bit RGB")


def decode_image(path: str | Path, *, modes: str = "convert",
                 expected_size: tuple[int, int] | None = None) -> tuple[np.ndarray, str | None]:
    """Decode `path` to a contiguous HxWx3 uint8 RGB array; returns it and the conversion applied.

    `expected_size` is the (width, height) the prepared table records for the file.
    """
    if modes not in IMAGE_MODES:
        raise ValueError(f"image_modes must be one of {IMAGE_MODES}, got {modes!r}")
    path = Path(path)
    img = _open(path)
    if expected_size is not None and (img.width, img.height) != tuple(expected_size):
        raise ImageError(f"{path}: decoded size {img.width}x{img.height} differs from the table's "
                         f"{expected_size[0]}x{expected_size[1]}")
    if modes == "strict" and img.mode != "RGB":
        raise ImageError(f"{path}: image mode {img.mode} is not 8-bit RGB (extract.image_modes is 'strict'; "
                         "'convert' applies the documented conversions)")
    arr, conversion = _to_rgb(img, path)
    return np.ascontiguousarray(arr), conversion
