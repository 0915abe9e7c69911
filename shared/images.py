"""Bytes -> a checked, EXIF-oriented RGB image, decoded no larger than the caller needs and
within a memory budget.

Memory is the thing an attacker aims at here: a 190 KB PNG can declare 7000×7000 RGBA pixels
(196 MB once decoded) and still be under the pixel cap. So besides the pixel cap every image
has a decode budget in bytes, checked from the header before any pixel is decoded, and the
decode path makes no full-size copy it can avoid: large images are reduced first and only
then oriented and converted to RGB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import struct
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import BadRequest, NotAnImage, TooLarge
from .settings import DECODE_BUDGET

FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"}
# EXIF orientation -> the transpose that shows the image upright; 5-8 swap width and height.
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_TRANSPOSED = {5, 6, 7, 8}
_ALPHA_MODES = {"RGBA", "LA", "PA", "La", "RGBa"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# Pillow's decoders and its EXIF parser raise a long tail of exception types on hostile bytes
# (struct.error on a short EXIF IFD, IndexError/KeyError on bad tables, EOFError, ...).
# Every one of them means "this is not an image we can read", never a bug in this service.
_PILLOW_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel: 1 for 8-bit single band, 2 for 16-bit, else 4
    (Pillow keeps RGB in 4 bytes too)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decode_cost(mode: str, size: tuple[int, int], reduced: bool) -> int:
    """Peak bytes of full-size pixels held while decoding an image of `mode` and `size`.
    `reduced`: the image is shrunk by an integer factor before conversion, so only the decode
    (and, for alpha modes, Pillow's premultiplied copy made by `reduce`) is full size;
    otherwise the full-size RGB result (4 bytes a pixel) and any intermediate count too."""
    px = size[0] * size[1]
    cost = _bytes_per_pixel(mode) * px
    if mode in _ALPHA_MODES:
        cost += 4 * px  # premultiplied copy (reduce) or the white background (composite)
    if not reduced:
        if mode != "RGB":
            cost += 4 * px  # the RGB result
        if mode in _SIXTEEN_BIT:
            cost += _bytes_per_pixel(mode) * px  # rescaled to 8-bit range before conversion
    return cost


class Source:
    """An image opened lazily: size and format are known, no pixel is decoded yet."""

    def __init__(
        self,
        data: bytes,
        max_bytes: int,
        max_pixels: int,
        max_decode_bytes: int = DECODE_BUDGET,
    ):
        if not data:
            raise BadRequest("The request carried no image: the body is empty.")
        if len(data) > max_bytes:
            raise TooLarge(
                f"The image is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB."
            )
        self.data = data
        self.max_pixels = max_pixels
        self.max_decode_bytes = max_decode_bytes
        head = self._open()
        self.format = head.format
        if self.format not in FORMATS:
            raise NotAnImage(
                f"{self.format} images are not accepted; send JPEG, PNG, WebP, GIF or BMP."
            )
        w, h = head.size
        if w < 1 or h < 1:
            raise NotAnImage("The image declares no pixels.")
        if w * h > max_pixels:
            raise TooLarge(
                f"The image is {w}×{h} = {w * h / 1e6:.0f} MP; the limit is "
                f"{max_pixels / 1e6:.0f} MP."
            )
        self.stored_size = (w, h)
        self.mode = "L" if _as_eight_bit_gray(head) else head.mode
        # The cheapest decode this image allows: a JPEG at 1/8 scale, anything else whole.
        cheapest = self._jpeg_size(8) if self._is_jpeg else self.stored_size
        need = decode_cost(self.mode, cheapest, reduced=True)
        if need > max_decode_bytes:
            raise TooLarge(
                f"Decoding this {w}×{h} {self.mode} image would take {need / 2**20:.0f} MB of "
                f"memory; the limit is {max_decode_bytes / 2**20:.0f} MB. Send a smaller image."
            )
        self.orientation = _orientation(head)
        self.transposed = self.orientation in _TRANSPOSED
        self.size = (h, w) if self.transposed else (w, h)

    @property
    def _is_jpeg(self) -> bool:
        return self.format in ("JPEG", "MPO")

    def _jpeg_size(self, denominator: int) -> tuple[int, int]:
        w, h = self.stored_size
        return math.ceil(w / denominator), math.ceil(h / denominator)

    def _open(self) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                return Image.open(io.BytesIO(self.data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            limit = f"{self.max_pixels / 1e6:.0f} MP"
            raise TooLarge(f"The image declares far more pixels than the {limit} limit.") from exc
        except _PILLOW_ERRORS as exc:
            raise NotAnImage(
                "The data is not an image this service can read (JPEG, PNG, WebP, GIF or BMP)."
            ) from exc

    def decode(self, min_side: int | None = None) -> Image.Image:
        """RGB, oriented. With `min_side`, the image comes back no larger than needed for its
        longer side to stay at least `min_side`: a JPEG decodes at the smallest of its 1, 1/2,
        1/4, 1/8 scales that does (Pillow's draft mode), anything else is decoded and reduced
        by an integer factor before it is converted. An image whose full-size conversion would
        exceed the decode budget is reduced by at least 2."""
        img = self._open()
        try:
            if self._is_jpeg:
                denominator = self._draft_denominator(min_side)
                if denominator > 1:
                    # Pillow picks the largest scale whose result is at least the size asked
                    # for, so ask for the floor of the wanted size.
                    w, h = self.stored_size
                    img.draft("RGB", (max(1, w // denominator), max(1, h // denominator)))
            _as_eight_bit_gray(img)
            img.load()
            longest = max(img.size)
            factor = longest // min_side if min_side and longest > min_side else 1
            factor = max(factor, self._fitting_factor(img.mode, img.size, factor))
            img = _reduce(img, factor)
            if self.orientation in _ORIENT:
                img = img.transpose(_ORIENT[self.orientation])
            return _to_rgb(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise TooLarge("The image holds far more pixels than it declares.") from exc
        except _PILLOW_ERRORS as exc:
            raise NotAnImage("The image is truncated or corrupt and cannot be decoded.") from exc

    def _draft_denominator(self, min_side: int | None) -> int:
        """The JPEG scale (1/n) to decode at: the smallest whose longer side reaches
        `min_side`, then smaller still while its decode would exceed the budget."""
        denominator = 1
        if min_side:
            while denominator < 8 and max(self._jpeg_size(denominator * 2)) >= min_side:
                denominator *= 2
        while denominator < 8 and self._over_budget(self._jpeg_size(denominator), min_side):
            denominator *= 2
        return denominator

    def _over_budget(self, size: tuple[int, int], min_side: int | None) -> bool:
        reduced = bool(min_side) and max(size) >= 2 * min_side
        return decode_cost(self.mode, size, reduced) > self.max_decode_bytes

    def _fitting_factor(self, mode: str, size: tuple[int, int], factor: int) -> int:
        if factor < 2 and decode_cost(mode, size, reduced=False) > self.max_decode_bytes:
            return 2
        return factor


def _as_eight_bit_gray(img: Image.Image) -> bool:
    """Have a 16-bit gray PNG decode straight to 8-bit gray (each pixel's high byte, which
    Pillow's unpacker supports), instead of to a 16-bit image twice the size that must then be
    rescaled and converted (converting clips: 89 % of a real 16-bit photo came out white).
    Rewrites the unloaded image's decoder setup in place; False when that does not apply."""
    tile = getattr(img, "tile", None)
    if img.format != "PNG" or img.mode != "I;16" or not tile or len(tile) != 1:
        return False
    if tile[0].args != "I;16B":
        return False
    img._mode = "L"  # Pillow's plugins set the mode the same way
    img.tile = [tile[0]._replace(args="L;16B")]
    return True


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """`img` shrunk `factor` times (box filter), converted as little as possible first."""
    if factor < 2:
        return img
    size = (max(1, math.ceil(img.width / factor)), max(1, math.ceil(img.height / factor)))
    if img.mode in ("P", "1"):
        # Palette indices cannot be averaged; Pillow itself resizes these by nearest neighbour.
        return img.resize(size, Image.Resampling.NEAREST)
    if img.mode in _SIXTEEN_BIT:
        return img.resize(size, Image.Resampling.BOX)  # Image.reduce has no 16-bit mode
    return img.reduce(factor)


def fit_within(img: Image.Image, max_side: int) -> Image.Image:
    """`img` itself if it fits, else a copy whose longer side is `max_side`."""
    if max(img.size) <= max_side:
        return img
    ratio = max_side / max(img.size)
    size = (max(1, round(img.width * ratio)), max(1, round(img.height * ratio)))
    return img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img  # convert() would copy it
    if img.mode in _SIXTEEN_BIT:
        # convert("L") clips 16-bit values to 255 (a 16-bit photo turns white); scale instead.
        return img.point(lambda v: v / 257).convert("L").convert("RGB")
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as a browser shows them, not black.
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)
        return background
    return img.convert("RGB")


def _orientation(head: Image.Image) -> int:
    """The EXIF orientation, 1 when absent or unreadable. Never decodes pixels: Pillow's PNG
    getexif() decodes the whole image to look for an eXIf chunk after the pixel data, which the
    PNG spec does not allow anyway, so a PNG's EXIF counts only when it precedes them."""
    if head.format == "PNG" and "exif" not in head.info:
        return 1
    try:
        value = head.getexif().get(0x0112, 1)
    except _PILLOW_ERRORS:
        return 1  # corrupt EXIF: show the image as stored, as browsers do
    return value if isinstance(value, int) else 1


def load_image(
    source: bytes | str | Path, max_bytes: int = 2**31, max_pixels: int = 10**9
) -> Image.Image:
    """A whole image from bytes or a file path, RGB and oriented (training and the CLI use this)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return Source(data, max_bytes, max_pixels, max_decode_bytes=2**40).decode()


def return_freed_memory() -> None:
    """Make freed image memory go back to the system instead of staying in the process.

    Pillow allocates pixels in 16 MB blocks. glibc raises its mmap threshold to the size of the
    largest block freed so far, so after the first image those blocks come from per-thread
    heaps, and each serving thread keeps its own heap at its high-water mark: 3.7 GB after
    five 7000² PNGs, measured. A fixed threshold keeps large blocks mmapped (freed at once)
    and two arenas bound the heaps. The environment variable MALLOC_ARENA_MAX does the arena
    part for a whole process from its start (set it as an Azure app setting too); this does it
    from here on, for hosts that cannot set the environment. No-op off glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold, m_arena_max = -3, -8  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 1024 * 1024)
    mallopt(m_arena_max, 2)
