"""Train/serve parity of the tf.data pipeline, its augmentations, and the model zoo's shapes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from shared.model import ModelSpec, to_input  # noqa: E402
from tests.conftest import write_manifest  # noqa: E402
from training.data.datasets import read_prepared  # noqa: E402
from training.data.pipeline import NO_AUGMENT, Augment, load_split, make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A prepared folder of 12 textured 256² faces-to-be (PNG, as prepare writes them)."""
    root = tmp_path_factory.mktemp("prep")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):
        label = ("fake", "real")[i % 2]
        img = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        img[::7] //= 3  # structure, so a resize does something non-trivial
        rel = f"{label}/{i}.png"
        (root / label).mkdir(exist_ok=True)
        Image.fromarray(img).save(root / rel)
        rows.append(
            {
                "source": rel,
                "output": rel,
                "split": "train",
                "label": label,
                "dataset": "t",
                "faces": "1",
                "status": "ok",
            }
        )
    write_manifest(root, rows)
    return root


@pytest.mark.parametrize(
    ("size", "color", "scale", "offset"),
    [(128, "gray", 1 / 255, 0.0), (96, "rgb", 1 / 127.5, -1.0)],
)
def test_unaugmented_batches_equal_serving_inputs(folder, size, color, scale, offset):
    spec = ModelSpec(name="t", version="0", size=size, color=color, scale=scale, offset=offset)
    prepared = read_prepared(folder)
    split = load_split([prepared], "train", size, color, workers=1, quiet=True)
    ds = make_dataset(split.images, split.labels, spec, batch_size=5)
    got = np.concatenate([x.numpy() for x, _ in ds])
    want = np.stack([to_input(Image.open(folder / r["output"]), spec) for r in split.rows])
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # bit for bit, not merely close
    labels = np.concatenate([y.numpy()[:, 0] for _, y in ds])
    assert labels.tolist() == [1.0 if r["label"] == "fake" else 0.0 for r in split.rows]
    # The cache is reused: a second load reads the same file.
    again = load_split([prepared], "train", size, color, workers=1, quiet=True)
    assert getattr(again.images, "filename", None) == getattr(split.images, "filename", 1)


def test_augmentations_change_pixels_deterministically(folder):
    spec = ModelSpec(name="t", version="0", size=64, color="gray")
    split = load_split([read_prepared(folder)], "train", 64, "gray", workers=1, quiet=True)
    plain = next(iter(make_dataset(split.images, split.labels, spec, 12, shuffle_seed=3)))[0]

    def batch(aug, epoch=0):
        ds = make_dataset(
            split.images, split.labels, spec, 12, shuffle_seed=3, epoch=epoch, augment=aug
        )
        return next(iter(ds))[0].numpy()

    for aug in (
        Augment(True, 0, 0, 0, 0),
        Augment(False, 20, 0, 0, 0),
        Augment(False, 0, 20, 0, 0),
        Augment(False, 0, 0, 1.0, 0),
        Augment(False, 0, 0, 0, 1.0),
        Augment(False, 0, 0, 0, 0, tone=1.0),
        Augment(False, 0, 0, 0, 0, noise=1.0),
        Augment(False, 0, 0, 0, 0, border=1.0),
    ):
        out = batch(aug)
        assert out.shape == plain.shape and np.isfinite(out).all()
        assert out.min() >= -0.05 and out.max() <= 1.05, aug
        assert not np.allclose(out, plain.numpy()), f"{aug} changed nothing"
        np.testing.assert_array_equal(out, batch(aug))  # same seed, same epoch: same batch
    full = Augment()
    assert not np.array_equal(batch(full, 0), batch(full, 1))  # a new epoch, new draws
    np.testing.assert_array_equal(batch(NO_AUGMENT), plain.numpy())


def test_shuffle_is_a_permutation_fixed_by_seed_and_epoch(folder):
    spec = ModelSpec(name="t", version="0", size=32, color="gray")
    split = load_split([read_prepared(folder)], "train", 32, "gray", workers=1, quiet=True)
    ids = np.arange(12, dtype=np.float32)  # labels double as row ids

    def order(seed, epoch):
        ds = make_dataset(split.images, ids, spec, 5, shuffle_seed=seed, epoch=epoch)
        return np.concatenate([y.numpy()[:, 0] for _, y in ds]).tolist()

    assert sorted(order(1, 0)) == ids.tolist()
    assert order(1, 0) == order(1, 0) and order(1, 0) != order(1, 1)


@pytest.mark.parametrize("name", ["baseline", "vgg10", "vgg16", "resnet50", "densenet121"])
def test_model_zoo_builds_for_any_size_and_colour(name):
    from training.models import build

    size = 32 if name in ("baseline", "vgg10", "vgg16") else 64
    model = build(name, size, 1)
    x = np.zeros((2, size, size, 1), np.float32)
    p = model(x, training=False).numpy()
    assert p.shape == (2, 1) and ((p >= 0) & (p <= 1)).all()


def test_cli_offers_exactly_the_zoo():
    from training.models import MODELS
    from training.train import MODEL_NAMES

    assert tuple(MODELS) == MODEL_NAMES


def test_vgg10_is_the_papers_layout():
    from training.models import build

    model = build("vgg10", 128, 1)
    convs = [lay.filters for lay in model.layers if lay.__class__.__name__ == "Conv2D"]
    dense = [lay.units for lay in model.layers if lay.__class__.__name__ == "Dense"]
    kinds = [lay.__class__.__name__ for lay in model.layers]
    assert convs == [32, 32, 64, 64, 128, 128, 128, 128]
    assert dense == [128, 1] and model.layers[-1].activation.__name__ == "sigmoid"
    assert kinds.count("BatchNormalization") == 8 and kinds.count("MaxPooling2D") == 3
    assert "Dropout" in kinds and "Flatten" in kinds


def test_several_prepared_folders_combine(folder, tmp_path):
    """140k + FairFace style: two folders pooled into one split, labels kept per row."""
    other = tmp_path / "reals"
    (other / "real").mkdir(parents=True)
    rows = []
    for i in range(3):
        Image.fromarray(np.full((256, 256, 3), 40 * i, np.uint8)).save(other / f"real/{i}.png")
        rows.append(
            {
                "source": f"real/{i}.jpg",
                "output": f"real/{i}.png",
                "split": "train",
                "label": "real",
                "dataset": "fairface",
                "faces": "1",
                "status": "ok",
            }
        )
    rows.append(
        {
            "source": "real/x.jpg",
            "output": "",
            "split": "train",
            "label": "real",
            "dataset": "fairface",
            "faces": "0",
            "status": "no_face",
        }
    )
    write_manifest(other, rows)
    both = load_split(
        [read_prepared(folder), read_prepared(other)], "train", 32, "gray", workers=1, quiet=True
    )
    assert both.counts() == {"fake": 6, "real": 9}  # the no-face row is left out
    assert len(both.images) == 15 and both.images.shape[1:] == (32, 32, 1)
    assert [r["dataset"] for r in both.rows[-3:]] == ["fairface"] * 3
    assert both.images[-1].min() == both.images[-1].max() == 80  # the grey square, unchanged
    from training.data.pipeline import class_weights

    w = class_weights(both.labels)
    assert w["fake"] * 6 == pytest.approx(w["real"] * 9)  # each class carries half the loss


def test_vgg10_heads_differ_only_after_the_last_block():
    from training.models import HEADS, build

    models = {head: build("vgg10", 128, 1, head=head) for head in HEADS}
    params = {head: m.count_params() for head, m in models.items()}
    assert params["gap"] < params["bottleneck"] < params["flatten"] == 4_778_273
    kinds = {h: [lay.__class__.__name__ for lay in m.layers] for h, m in models.items()}
    assert "GlobalAveragePooling2D" in kinds["gap"] and "Flatten" not in kinds["gap"]
    assert kinds["bottleneck"].count("Conv2D") == 9 and "Flatten" in kinds["bottleneck"]
    with pytest.raises(ValueError, match="vgg10 only"):
        build("baseline", 64, 1, head="gap")


def _split(cells: dict[tuple[str, str], int]):
    """A Split of empty pixels whose rows come from the given (source, class) counts."""
    from training.data.pipeline import Split

    rows = [
        {"dataset": source, "label": label, "root": f"/p/{source}"}
        for (source, label), n in cells.items()
        for _ in range(n)
    ]
    labels = np.array([1.0 if r["label"] == "fake" else 0.0 for r in rows], np.float32)
    return Split(np.zeros((len(rows), 1, 1, 1), np.uint8), labels, rows)


def _cell_sums(split, weights) -> dict[tuple[str, str], float]:
    sums: dict[tuple[str, str], float] = {}
    for r, w in zip(split.rows, weights, strict=True):
        key = (r["dataset"], r["label"])
        sums[key] = sums.get(key, 0.0) + float(w)
    return sums


def test_source_balance_gives_every_source_class_cell_the_same_weight():
    """140k-like (more fakes), a second generator (more fakes), FairFace-like (reals only):
    under `source` each cell carries 1/5 of the loss, so within a source its reals and fakes
    weigh the same and no source's look predicts the label better than chance."""
    from training.data.pipeline import sample_weights

    train = _split(
        {
            ("140k", "real"): 30,
            ("140k", "fake"): 90,
            ("sg2", "real"): 8,
            ("sg2", "fake"): 12,
            ("fairface", "real"): 60,
        }
    )
    val = _split({("140k", "real"): 4, ("140k", "fake"): 8, ("fairface", "real"): 3})
    train_w, val_w, info = sample_weights(train, val, "source")
    sums = _cell_sums(train, train_w)
    assert len(sums) == 5
    for s in sums.values():
        assert s == pytest.approx(len(train_w) / 5, rel=1e-6)
    assert train_w.mean() == pytest.approx(1.0, rel=1e-6)  # the loss keeps its scale
    for source in ("140k", "sg2"):
        # the weighted share of fakes within the source: 0.5, the look says nothing
        assert sums[(source, "fake")] / (sums[(source, "fake")] + sums[(source, "real")]) == (
            pytest.approx(0.5)
        )
    assert info["class_share"] == {"fake": pytest.approx(0.4), "real": pytest.approx(0.6)}
    assert {(c["source"], c["class"]): c["n"] for c in info["cells"]} == {
        ("140k", "fake"): 90,
        ("140k", "real"): 30,
        ("fairface", "real"): 60,
        ("sg2", "fake"): 12,
        ("sg2", "real"): 8,
    }
    assert all(c["share"] == pytest.approx(0.2) for c in info["cells"])
    assert info["sources"] == ["140k", "fairface", "sg2"]
    # Validation is weighed by its own cells (3 here), not by training's.
    for s in _cell_sums(val, val_w).values():
        assert s == pytest.approx(len(val_w) / 3, rel=1e-6)


def test_class_and_no_balance_are_unchanged_and_source_reduces_to_class_on_one_source():
    from training.data.pipeline import class_weights, sample_weights

    one = _split({("140k", "real"): 30, ("140k", "fake"): 90})
    cw = class_weights(one.labels)
    by_class, val_w, info = sample_weights(one, one, "weights")
    assert info["class_weights"] == cw
    np.testing.assert_array_equal(
        by_class, np.where(one.labels == 1.0, cw["fake"], cw["real"]).astype(np.float32)
    )
    np.testing.assert_array_equal(val_w, by_class)
    by_source, _, _ = sample_weights(one, one, "source")
    np.testing.assert_allclose(by_source, by_class, rtol=1e-6)
    plain, _, info = sample_weights(one, one, "none")
    assert np.all(plain == 1.0) and info["class_share"]["fake"] == pytest.approx(0.75)
    # Class weighting alone leaves a source's look predictive when sources differ in mix.
    two = _split({("a", "real"): 10, ("a", "fake"): 90, ("b", "real"): 90, ("b", "fake"): 10})
    w, _, _ = sample_weights(two, two, "weights")
    sums = _cell_sums(two, w)
    assert sums[("a", "fake")] / (sums[("a", "fake")] + sums[("a", "real")]) == pytest.approx(0.9)
    w, _, _ = sample_weights(two, two, "source")
    sums = _cell_sums(two, w)
    assert sums[("a", "fake")] / (sums[("a", "fake")] + sums[("a", "real")]) == pytest.approx(0.5)


def test_sqrt_balance_gives_each_cell_a_share_by_the_root_of_its_size():
    """Under `sqrt` a cell of 400 images carries twice the loss of a cell of 100 (not four
    times, as with no balance, nor the same, as with `source`); the weights still average 1 and
    validation is weighed by its own cells."""
    from training.data.pipeline import sample_weights

    train = _split({("140k", "fake"): 400, ("140k", "real"): 100, ("sd", "fake"): 100})
    val = _split({("140k", "fake"): 16, ("140k", "real"): 4})
    train_w, val_w, info = sample_weights(train, val, "sqrt")
    sums = _cell_sums(train, train_w)
    assert sums[("140k", "fake")] == pytest.approx(2 * sums[("140k", "real")], rel=1e-6)
    assert sums[("sd", "fake")] == pytest.approx(sums[("140k", "real")], rel=1e-6)
    assert train_w.mean() == pytest.approx(1.0, rel=1e-6)
    assert {(c["source"], c["class"]): c["share"] for c in info["cells"]} == {
        ("140k", "fake"): pytest.approx(0.5),
        ("140k", "real"): pytest.approx(0.25),
        ("sd", "fake"): pytest.approx(0.25),
    }
    val_sums = _cell_sums(val, val_w)
    assert val_sums[("140k", "fake")] == pytest.approx(2 * val_sums[("140k", "real")], rel=1e-6)
    assert "square root" in info["rule"]


def test_one_class_training_data_and_unknown_modes_are_refused():
    from training.data.datasets import DataError
    from training.data.pipeline import sample_weights

    reals = _split({("fairface", "real"): 5})
    for mode in ("weights", "source", "sqrt"):
        with pytest.raises(DataError, match="only one class"):
            sample_weights(reals, reals, mode)
    with pytest.raises(DataError, match="--balance"):
        sample_weights(reals, reals, "sources")


def test_a_train_fraction_is_a_fixed_nested_subset_with_its_own_pixels(folder):
    """The learning curve's subsets: the same photos every time, 0.25 inside 0.5 inside all, and
    each kept row still carries its own image."""
    prepared = [read_prepared(folder)]

    def load(fraction):
        return load_split(prepared, "train", 32, "gray", workers=1, quiet=True, fraction=fraction)

    full, half, quarter = load(1.0), load(0.5), load(0.25)
    names = {f: [r["source"] for r in s.rows] for f, s in ((1, full), (0.5, half), (0.25, quarter))}
    assert 0 < len(names[0.25]) < len(names[0.5]) < len(names[1]) == 12
    assert set(names[0.25]) <= set(names[0.5]) <= set(names[1])
    assert names[0.5] == [r["source"] for r in load(0.5).rows]
    for i, source in enumerate(names[0.5]):
        j = names[1].index(source)
        assert np.array_equal(half.images[i], full.images[j])
        assert half.labels[i] == full.labels[j]
