"""Bytes -> a checked, EXIF-oriented RGB image, decoded no larger than the caller needs."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadRequest, NotAnImage, TooLarge

FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"}
# EXIF orientations 5-8 swap width and height.
_TRANSPOSED = {5, 6, 7, 8}


class Source:
    """An image opened lazily: size and format are known, no pixel is decoded yet."""

    def __init__(self, data: bytes, max_bytes: int, max_pixels: int):
        if not data:
            raise BadRequest("The request carried no image: the body is empty.")
        if len(data) > max_bytes:
            raise TooLarge(
                f"The image is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB."
            )
        self.data = data
        self.max_pixels = max_pixels
        head = self._open()
        self.format = head.format
        if self.format not in FORMATS:
            raise NotAnImage(
                f"{self.format} images are not accepted; send JPEG, PNG, WebP, GIF or BMP."
            )
        w, h = head.size
        if w * h > max_pixels:
            raise TooLarge(
                f"The image is {w}×{h} = {w * h / 1e6:.0f} MP; the limit is "
                f"{max_pixels / 1e6:.0f} MP."
            )
        self.stored_size = (w, h)
        self.transposed = head.getexif().get(0x0112, 1) in _TRANSPOSED
        self.size = (h, w) if self.transposed else (w, h)

    def _open(self) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                return Image.open(io.BytesIO(self.data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            limit = f"{self.max_pixels / 1e6:.0f} MP"
            raise TooLarge(f"The image declares far more pixels than the {limit} limit.") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise NotAnImage(
                "The data is not an image this service can read (JPEG, PNG, WebP, GIF or BMP)."
            ) from exc

    def decode(self, min_side: int | None = None) -> Image.Image:
        """RGB, oriented. With `min_side`, a JPEG decodes at the smallest of its 1, 1/2, 1/4,
        1/8 scales whose longer side is still at least `min_side` (Pillow's draft mode)."""
        img = self._open()
        if min_side and self.format in ("JPEG", "MPO") and max(self.stored_size) > min_side:
            ratio = min_side / max(self.stored_size)
            w, h = self.stored_size
            img.draft("RGB", (math.ceil(w * ratio), math.ceil(h * ratio)))
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
        except (OSError, ValueError, SyntaxError) as exc:
            raise NotAnImage("The image is truncated or corrupt and cannot be decoded.") from exc


def fit_within(img: Image.Image, max_side: int) -> Image.Image:
    """`img` itself if it fits, else a copy whose longer side is `max_side`."""
    if max(img.size) <= max_side:
        return img
    ratio = max_side / max(img.size)
    size = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as a browser shows them, not black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(
    source: bytes | str | Path, max_bytes: int = 2**31, max_pixels: int = 10**9
) -> Image.Image:
    """A whole image from bytes or a file path, RGB and oriented (training and the CLI use this)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return Source(data, max_bytes, max_pixels).decode()
