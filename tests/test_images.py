"""Decoding: formats, EXIF orientation, caps, draft-mode decoding of large JPEGs."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shared.errors import BadRequest, NotAnImage, TooLarge
from shared.images import Source, fit_within, load_image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size; its pixel data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_accepted_formats_decode_to_rgb(photo, fmt):
    img = load_image(encode(photo, fmt))
    assert img.mode == "RGB" and img.size == (80, 60)


def test_gif_gives_its_first_frame(photo):
    frames = [Image.new("RGB", (20, 10), c) for c in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert load_image(data).getpixel((5, 5))[0] > 200


def test_tiff_is_refused(photo):
    with pytest.raises(NotAnImage, match="TIFF"):
        Source(encode(photo, "TIFF"), 10**8, 10**8)


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    src = Source(encode(photo, "JPEG", exif=exif), 10**8, 10**8)
    assert src.size == (60, 80)
    assert src.decode().size == (60, 80)


def test_empty_random_and_truncated_bytes():
    with pytest.raises(BadRequest):
        Source(b"", 100, 100)
    with pytest.raises(NotAnImage):
        Source(np.random.default_rng(0).bytes(5000), 10**8, 10**8)
    jpeg = encode(Image.new("RGB", (400, 300), "gray"), "JPEG")
    with pytest.raises(NotAnImage, match="truncated"):
        Source(jpeg[: len(jpeg) // 2], 10**8, 10**8).decode()


def test_caps_refuse_before_decoding():
    with pytest.raises(TooLarge, match="MP"):
        Source(png_declaring(30000, 30000), 10**8, 50_000_000)
    with pytest.raises(TooLarge, match="limit"):
        Source(b"x" * 2000, 1000, 10**8)


def test_large_jpeg_decodes_in_draft_mode():
    src = Source(encode(Image.new("RGB", (4000, 3000), "white"), "JPEG"), 10**8, 10**8)
    # The smallest JPEG scale (1/2 here) whose longer side still reaches 1024: the 4000-wide
    # image is never materialised. PNG has no such scales and decodes whole.
    assert src.decode(min_side=1024).size == (2000, 1500)
    assert src.decode(min_side=600).size == (1000, 750)
    assert src.decode().size == (4000, 3000)


def test_fit_within():
    img = Image.new("RGB", (2000, 1500))
    assert fit_within(img, 1024).size == (1024, 768)
    assert fit_within(img, 4000) is img
