"""`training chain`: copies of a dataset's photos through t2i/'s figure-grid JPEG chain (or
re-shared: shrunk or not, saved once as JPEG), in a layout `prepare` reads with the source's own
splits and labels, named in the card and on the page by the collection they copy."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage import data

from training.data.chain import RESHARE_QUALITY, RESHARE_SHRINK, TILE, grid_chain, reshare
from training.data.datasets import read_source
from training.data.sources import collections, generator_names


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


def test_reshare_shrinks_half_the_copies_and_saves_each_once_as_jpeg():
    photo = Image.fromarray(data.astronaut())
    assert reshare(photo, "a.jpg") == reshare(photo, "a.jpg")  # the same copy every time
    sides, qualities = [], []
    for i in range(40):
        with Image.open(io.BytesIO(reshare(photo, f"{i}.jpg"))) as copy:
            assert copy.format == "JPEG" and copy.layer[0][1:3] == (2, 2)  # 4:2:0
            sides.append(copy.width / photo.width)
            qualities.append(copy.quantization[0][0])  # the luma table's DC step
            served = np.asarray(copy.convert("RGB").resize(photo.size), np.float32)
        assert np.abs(served - np.asarray(photo, np.float32)).mean() < 12  # the same picture
    shrunk = [s for s in sides if s < 1]
    assert 10 <= len(shrunk) <= 30 and sides.count(1.0) == 40 - len(shrunk)
    assert min(shrunk) >= RESHARE_SHRINK[0] - 0.01 and max(shrunk) <= RESHARE_SHRINK[1] + 0.01
    assert len(set(qualities)) > 5 and RESHARE_QUALITY[0] < 60  # qualities vary, low ones too


def test_chain_reshare_writes_copies_prepare_reads(tmp_path):
    from training.__main__ import main

    src = tmp_path / "collection"
    for label in ("real", "fake"):
        (src / "train" / label).mkdir(parents=True)
        (src / "train" / label / f"{label}.jpg").write_bytes(_jpeg(data.astronaut()))
    out = tmp_path / "collection-reshare"
    args = ["chain", str(src), str(out), "--steps", "reshare", "--real", "train", "--fake", "train"]
    assert main(args) == 0
    _, records = read_source(out)
    assert sorted(r.label for r in records) == ["fake", "real"]
    real = (out / "train" / "real" / "real.jpg").read_bytes()
    assert real == reshare(Image.open(src / "train" / "real" / "real.jpg"), "train/real/real.jpg")


def test_copies_are_named_by_the_collection_and_engine_they_copy():
    sources = ["140k", "140k-chain", "140k-reshare", "fairface", "sdxl", "sdxl-reshare"]
    text = collections(sources)
    assert text.count("the 140k set") == 1 and text.count("SDXL faces") == 1
    assert "; copies of 1 of them re-saved like the new engines' faces" in text
    assert "and of 2 of them shrunk and re-saved as JPEG" in text
    assert collections(["fairface"]) == "FairFace photos"
    assert generator_names(["sdxl-reshare", "140k", "sdxl", "140k-reshare"]) == [
        "StyleGAN (the 140k set: FFHQ photos vs StyleGAN faces)",
        "SDXL (Stability AI)",
    ]


def test_leaving_a_source_out_leaves_its_copies_out():
    from training.data.sources import left_out
    from training.views.bank import Bank
    from training.views.curve import without
    from training.views.fit import Faces

    assert left_out("sdxl-reshare", {"sdxl"}) and left_out("140k-chain", {"140k"})
    assert not left_out("sdxl-reshare", {"140k"}) and not left_out("sdxl", {"sdxl-reshare"})
    sources = ["140k", "140k-reshare", "140k-chain", "fairface"]
    rows = [{"dataset": s, "label": "real"} for s in sources]
    faces = Faces(rows, np.zeros(4), {"layers": np.eye(4, dtype=np.float32)}, np.zeros(4))
    bank = Bank("layers", faces, faces)
    less = without(bank, "140k")
    assert less.train_reals.sources == ["fairface"] and less.valid.sources == ["fairface"]
    # a copy left out by its own name goes, and its original stays
    copy = without(bank, "140k-chain")
    assert copy.train_reals.sources == ["140k", "140k-reshare", "fairface"]
