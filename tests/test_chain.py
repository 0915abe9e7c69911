"""`training chain`: copies of a dataset's photos through t2i/'s figure-grid JPEG chain, in a
layout `prepare` reads with the source's own splits and labels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage import data

from training.data.chain import TILE, grid_chain
from training.data.datasets import read_source


def _jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_the_chain_makes_a_tile_of_t2is_size_re_saved_twice():
    photo = Image.fromarray(data.astronaut())  # 512², a larger photo as DATA.md describes
    out = grid_chain(photo, "a.jpg")
    assert out == grid_chain(photo, "a.jpg")  # the same copy every time
    with Image.open(io.BytesIO(out)) as tile:
        assert tile.format == "JPEG" and tile.width == tile.height
        assert TILE[0] <= tile.width <= TILE[1]
        # 4:2:0 and quality 90: the layout and tables a second save at 90 would write
        assert tile.layer[0][1:3] == (2, 2) and tile.layer[1][1:3] == (1, 1)
        served = np.asarray(tile.convert("RGB"), np.float32)
    # Lanczos and two JPEGs change pixels, not the picture
    ref = np.asarray(photo.resize((tile.width, tile.width), Image.Resampling.LANCZOS), np.float32)
    assert 0.5 < np.abs(served - ref).mean() < 8
    sizes = {Image.open(io.BytesIO(grid_chain(photo, f"{i}.jpg"))).width for i in range(12)}
    assert len(sizes) > 1  # the tile side varies as the grid's did


def test_chain_copies_the_asked_labels_and_splits_for_prepare(tmp_path):
    from training.__main__ import main

    src = tmp_path / "collection"
    face = _jpeg(data.astronaut())
    for split, label, n in [("train", "real", 3), ("test", "real", 2), ("test", "fake", 2)]:
        folder = src / split / label
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{label}{i}.jpg").write_bytes(face)
    (src / "train" / "real" / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "collection-chain"
    assert main(["chain", str(src), str(out), "--real", "train,test", "--fake", "test"]) == 0
    _, records = read_source(out)
    got = sorted((r.split, r.label) for r in records)
    assert got == [("test", "fake")] * 2 + [("test", "real")] * 2 + [("train", "real")] * 3
    assert {r.source for r in records} == {"collection-chain"}

    limited = tmp_path / "limited"
    assert main(["chain", str(src), str(limited), "--real", "test", "--limit", "1"]) == 0
    _, records = read_source(limited)
    assert sorted((r.split, r.label) for r in records) == [("test", "fake"), ("test", "real")]
    assert main(["chain", str(src), str(tmp_path / "x"), "--real", "dev"]) == 2
    assert main(["chain", str(src), str(src / "inside")]) == 2
