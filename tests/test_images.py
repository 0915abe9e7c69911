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


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def huge_png(side: int, mode: str, face: bool = True) -> bytes:
    """A side×side PNG (RGBA, L or I;16) built row by row, never whole in memory, compressed to
    a few MB at most: the astronaut's portrait over half its width on a flat background."""
    color_type, depth, bands = {"RGBA": (6, 8, 4), "L": (0, 8, 1), "I;16": (0, 16, 1)}[mode]
    dtype = ">u2" if depth == 16 else np.uint8
    bg = np.full((side, bands), 200 * (257 if depth == 16 else 1), dtype=dtype)
    if mode == "RGBA":
        bg[:, 3] = 255  # opaque
    portrait = np.zeros((0, 0, bands), dtype=dtype)
    if face:
        from skimage import data

        img = Image.fromarray(data.astronaut()).resize((side // 2, side // 2))
        arr = np.asarray(img.convert("RGBA" if mode == "RGBA" else "L"))
        portrait = (arr if arr.ndim == 3 else arr[..., None]).astype(dtype)
        portrait *= 257 if depth == 16 else 1
    comp = zlib.compressobj(6)
    parts = []
    for y in range(side):
        row = bg
        if y < len(portrait):
            row = bg.copy()
            row[: portrait.shape[1]] = portrait[y]
        parts.append(comp.compress(b"\0" + row.tobytes()))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def with_chunk_before(png: bytes, kind: bytes, body: bytes, before: bytes = b"IDAT") -> bytes:
    """`png` with a chunk inserted before the first chunk of type `before`."""
    at = png.index(before) - 4
    return png[:at] + chunk(kind, body) + png[at:]


def test_truncated_png_is_not_an_image_not_a_crash(photo):
    """Regression: getexif() decoded the PNG outside the error mapping, so a truncated PNG
    raised OSError (a 500) instead of NotAnImage."""
    png = encode(photo, "PNG")
    for cut in (len(png) // 2, len(png) * 3 // 4, 60):
        with pytest.raises(NotAnImage):
            Source(png[:cut], 10**8, 10**8).decode()


def test_png_with_a_huge_text_chunk_after_the_pixels(photo):
    """Regression: a zTXt over Pillow's 1 MB text limit after IDAT raised ValueError from
    getexif() (a 500)."""
    png = encode(photo, "PNG")
    ztxt = b"comment\0\0" + zlib.compress(b"x" * (2 * 2**20))
    hostile = with_chunk_before(png, b"zTXt", ztxt, before=b"IEND")
    src = Source(hostile, 10**8, 10**8)  # the header alone is fine
    try:
        img = src.decode()
    except NotAnImage:
        return
    assert img.size == (80, 60)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_corrupt_exif_shows_the_image_as_stored(photo, fmt):
    """Regression: corrupt EXIF raised from getexif() (a 500); browsers ignore it, so do we."""
    # Not a TIFF header (byte order "XX"): Pillow's getexif() raises SyntaxError on it.
    garbage = b"Exif\0\0XX\0*\0\0\0\x08\0\x01\x01\x12\0\x03" + bytes(range(256))
    if fmt == "PNG":
        data = with_chunk_before(encode(photo, "PNG"), b"eXIf", garbage[6:])
    else:
        data = encode(photo, fmt, exif=garbage)
    src = Source(data, 10**8, 10**8)
    assert src.orientation == 1 and src.decode().size == (80, 60)


def test_sixteen_bit_gray_png_keeps_its_tones():
    """Regression: I;16 went through convert("L"), which clips: 89 % of pixels came out
    white and no face was found."""
    rng = np.random.default_rng(3)
    tones = rng.integers(0, 65536, (60, 80), dtype=np.uint16)
    data = encode(Image.fromarray(tones), "PNG")
    got = np.asarray(Source(data, 10**8, 10**8).decode())[..., 0].astype(int)
    assert np.abs(got - (tones >> 8)).max() <= 1
    assert (got == 255).mean() < 0.01


def test_decode_budget_refuses_from_the_header():
    """A 190 KB PNG can declare 196 MB of RGBA pixels: refused before decoding; the same size
    in 8-bit gray (49 MB) is within the budget."""
    rgba = huge_png(7000, "RGBA", face=False)
    assert len(rgba) < 2**20
    with pytest.raises(TooLarge, match="memory"):
        Source(rgba, 10**8, 50_000_000, max_decode_bytes=100 * 2**20)
    Source(huge_png(2000, "L", face=False), 10**8, 50_000_000, max_decode_bytes=5 * 2**20)
    with pytest.raises(TooLarge):
        Source(huge_png(2000, "L", face=False), 10**8, 50_000_000, max_decode_bytes=3 * 2**20)


def test_large_png_is_reduced_before_conversion():
    src = Source(huge_png(3000, "RGBA", face=False), 10**8, 10**8, max_decode_bytes=80 * 2**20)
    small = src.decode(min_side=1024)
    assert small.mode == "RGB" and 1024 <= small.width < 2048
    assert small.getpixel((10, 10)) == (200, 200, 200)  # opaque gray stays gray


def test_full_decode_over_the_budget_is_halved():
    # 3000² RGBA: 36 MB decoded, 36 more premultiplied or composited, 36 more as RGB: within
    # a 90 MB budget only reduced.
    src = Source(huge_png(3000, "RGBA", face=False), 10**8, 10**8, max_decode_bytes=90 * 2**20)
    assert src.decode().size == (1500, 1500)


def test_jpeg_over_the_budget_decodes_at_a_smaller_scale():
    data = encode(Image.new("RGB", (4000, 3000), "white"), "JPEG")
    assert Source(data, 10**8, 10**8, max_decode_bytes=10 * 2**20).decode().size == (1000, 750)


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (40, 30), (255, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(encode(img, "PNG"))
    assert out.getpixel((5, 5)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_orientation_survives_reduction(orientation):
    img = Image.new("RGB", (3000, 1000), "white")
    img.paste((255, 0, 0), (0, 0, 300, 300))  # a red square in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(img, "PNG", exif=exif)
    upright = load_image(data)
    reduced = Source(data, 10**8, 10**8).decode(min_side=500)
    assert reduced.size[0] / reduced.size[1] == pytest.approx(
        upright.width / upright.height, rel=0.01
    )
    # the red corner lands where the full decode puts it
    ux, uy = np.argwhere(np.asarray(upright)[..., 1] == 0).mean(axis=0)[::-1] / upright.size
    rx, ry = np.argwhere(np.asarray(reduced)[..., 1] < 50).mean(axis=0)[::-1] / reduced.size
    assert abs(ux - rx) < 0.05 and abs(uy - ry) < 0.05
