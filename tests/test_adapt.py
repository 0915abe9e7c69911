"""`training adapt`: a two-view model taught a new engine from a folder of its photos.

Small data, real parts: the two-view model of test_views (a tiny real CNN, the real INT8 CLIP
encoder), photos of scikit-image's astronaut that `adapt` detects and aligns as serving does,
the real local host over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import LocalHost, astronaut_photos, run_adapt, warm_cast


def test_adapt_teaches_an_engine_and_leaves_the_model_it_started_from(
    two_view, adapted, tint_photos
):
    from shared.model import Model

    before, after = Model(two_view), Model(adapted)
    doc = json.loads((adapted / "model.json").read_text())
    taught = doc["views"]["clip"]["adapted"]
    assert [(e["name"], e["faces"]) for e in taught] == [("Tint 1", 14)]
    assert doc["generators"]["learned"][-1].startswith("Tint 1 (taught later with 14 faces")
    # The model it started from is as it was: no engine, its own threshold.
    assert before.clip.engines == () and "adapted" not in json.dumps(before.spec.extra)
    report = taught[0]["report"]
    assert report["engine_caught_out_of_fold"]["after"] >= 0.8
    # Every real validation source keeps the operating point; known engines lose <= 2 points.
    for s, r in report["valid"]["after"].items():
        if "called_fake" in r:
            assert r["called_fake"] <= 0.02, s
        if "caught" in r:
            assert report["valid"]["before"][s]["caught"] - r["caught"] <= 0.02 + 1e-9, s
    assert doc["threshold"] == report["threshold"]["after"] == doc["operating_point"]["threshold"]
    # Served, the engine's photos score higher than before, and no face scores lower.
    from shared.faces import detect_and_align
    from shared.images import load_image

    faces = [
        detect_and_align(load_image(p), size=256)[0].aligned
        for p in sorted(tint_photos.glob("*.jpg"))[:4]
    ]
    got, was = after.score(faces), before.score(faces)
    assert (got.p_fake >= was.p_fake - 1e-6).all() and (got.p_fake > was.p_fake).any()
    card = (adapted / "MODEL_CARD.md").read_text()
    assert "## Adapted" in card and "Tint 1" in card
    assert "alpha fakes caught, n=6" in card and "beta reals called fake, n=6" in card


def test_an_adapted_model_serves_and_names_its_engine(adapted, images, tmp_path):
    host = LocalHost(adapted, tmp_path / "host.log")
    try:
        model = requests.get(host.url + "/api/health", timeout=10).json()["model"]
        assert model["adapted"][0]["name"] == "Tint 1" and model["adapted"][0]["faces"] == 14
        assert any(g.startswith("Tint 1") for g in model["generators"]["learned"])
        r = requests.post(
            host.url + "/api/predict",
            files={"image": ("a.jpg", images["astronaut"], "image/jpeg")},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["faces"][0]["views"]) == {"cnn", "clip"}
    finally:
        host.stop()


def test_too_few_faces_are_refused_and_nothing_is_written(two_view, tmp_path, capsys):
    few = astronaut_photos(tmp_path / "few", 6, warm_cast, 2)
    (few / "notes.txt").write_text("not a photo")
    astronaut_photos(
        tmp_path / "few" / "no-face", 2, lambda img: img.resize((40, 40)).resize((512, 512)), 3
    )
    assert run_adapt(two_view, few, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "at least 10" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_reals_that_look_like_the_engine_are_refused(two_view, tint_photos, tmp_path, capsys):
    reals = astronaut_photos(tmp_path / "reals", 12, warm_cast, 4)
    assert run_adapt(two_view, tint_photos, tmp_path / "out", "--reals", str(reals)) == 2
    err = capsys.readouterr().err
    assert "of your real photos fake" in err and "nothing was written" in err
    assert not (tmp_path / "out").exists()


def test_a_pulled_feedback_folder_is_split_into_fakes_and_reals(two_view, tmp_path, capsys):
    astronaut_photos(tmp_path / "pulled" / "fake", 3, warm_cast, 6)
    astronaut_photos(tmp_path / "pulled" / "real", 3, lambda img: img, 7)
    assert run_adapt(two_view, tmp_path / "pulled", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"--fakes {tmp_path / 'pulled' / 'fake'}" in err and "--reals" in err
    assert not (tmp_path / "out").exists()


def test_an_existing_folder_is_never_overwritten(two_view, tint_photos, capsys):
    spec = (two_view / "model.json").read_bytes()
    assert run_adapt(two_view, tint_photos, two_view) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (two_view / "model.json").read_bytes() == spec


def test_the_bank_keeps_a_heads_logits_within_a_hundredth(two_view, prepared):
    """The bank holds features at half precision: a head's logits move by less than 0.01."""
    from shared.model import Model
    from training.data.datasets import read_prepared, usable
    from training.views.bank import read_bank

    model = Model(two_view)
    bank = read_bank(two_view, model.spec.extra["views"]["clip"]["bank"])
    faces = [
        np.asarray(Image.open(root / r["output"]).convert("RGB"), np.uint8)
        for root in prepared
        for r in usable(read_prepared(root).rows, "valid")
    ]
    exact = model.clip.encoder.features(np.stack(faces))
    stored = bank.valid.features[bank.feature]
    assert stored.shape == exact[bank.feature].shape
    head = model.clip.head
    delta = np.abs(head.logit({bank.feature: stored}) - head.logit(exact))
    assert np.sort(delta)[0] < 0.01 and delta.max() < 0.01


def test_the_shipped_model_refuses_real_photos_passed_off_as_an_engine(tmp_path, capsys):
    """Real FFHQ photos passed off as an engine's faces: on the shipped model no setting catches
    10 points more of them while keeping every real validation source and every known engine."""
    import shutil

    from tests.conftest import ROOT, need_data

    reals = need_data() / "real-vs-fake" / "real_vs_fake" / "real-vs-fake" / "test" / "real"
    fakes = tmp_path / "ffhq"
    fakes.mkdir()
    for p in sorted(reals.glob("*.jpg"))[:20]:
        shutil.copy(p, fakes)
    assert run_adapt(ROOT / "models" / "default", fakes, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "engines it already knows" in err or "engines the model already knows" in err
    assert "nothing was written" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_refusal_names_the_sources_it_would_break_and_the_engines_it_would_lose():
    from training.views.adapt import _Setting, _why_not

    def setting(lost, broken, reals=None):
        return _Setting(0.0, 0.9, lost, 0.5, reals, 0.0, broken)

    said = _why_not("X", setting({"140k": 0.091, "sd": 0.0}, {"ffhq": 0.05}), 0.02, 0.2)
    assert "call 5% of ffhq's real validation photos fake" in said
    assert "140k by 9.1 points" in said and "sd" not in said
    said = _why_not("X", setting({"140k": 0.01}, {"ffhq": 0.05}), 0.02, 0.2)
    assert said.startswith("teaching X would break the operating point") and "ffhq" in said
    said = _why_not("X", setting({}, {}, reals=0.25), 0.02, 0.2)
    assert "25% of your real photos fake" in said
    assert "already catches 95%" in _why_not("X", setting({}, {}), 0.02, 0.95)


@pytest.fixture(scope="session")
def gamma(aligned_astronaut, tmp_path_factory) -> Path:
    """A third prepared folder whose fakes are warm-cast faces: an engine to leave out."""
    from tests.conftest import _jitter, prepared_folder

    def face(rng, label):
        jittered = _jitter(aligned_astronaut, rng)
        return warm_cast(jittered) if label == "fake" else jittered

    counts = {
        (s, lab): n
        for s, n in (("train", 12), ("valid", 4), ("test", 6))
        for lab in ("real", "fake")
    }
    return prepared_folder(tmp_path_factory.mktemp("aligned-gamma"), "gamma", counts, face, 9)


def test_the_curve_adapts_a_model_fitted_without_an_engine(
    tiny_model_dir, prepared, gamma, tmp_path
):
    from tests.conftest import clip_encoder
    from training.__main__ import main

    data = [a for f in (*prepared, gamma) for a in ("--data", str(f))]
    start = tmp_path / "without-gamma"
    args = ["fuse", "--cnn", str(tiny_model_dir), "--out", str(start), "--leave-out", "gamma"]
    assert main([*args, "--encoder", str(clip_encoder()), "--quiet", *data]) == 0
    out = tmp_path / "curve"
    args = ["adapt-curve", "--run", f"gamma={start}", "--k", "10", "12", "--draws", "2"]
    assert main([*args, "--guard", "--out", str(out), "--quiet", *data]) == 0
    run = json.loads((out / "curve.json").read_text())["runs"][0]
    # The guard measured as used: each real source left out of the bank in turn, then its test
    # reals scored at the adapted threshold (gamma has 12 training faces: all of them taught).
    assert run["guard_k"] == 12 and [g["left_out"] for g in run["guard"]] == ["alpha", "beta"]
    for g in run["guard"]:
        assert "refused" in g or (0 <= g["called_fake"] <= 1 and g["reals"] > 0), g
        assert "refused" in g or 0 <= g["called_fake_untaught"] <= 1, g
    assert "left out of the bank" in (out / "curve.md").read_text()
    import shutil

    from training.evaluation.report.adapted import section_adapt_curve

    shutil.copytree(out, start / "adapt-curve")
    card = section_adapt_curve(start, tmp_path)[0]
    assert card["guard_k"] == 12 and [r[0] for r in card["guard"]["rows"]] == ["alpha", "beta"]
    from training.views.bank import read_bank
    from training.views.curve import without

    bank = read_bank(start, json.loads((start / "model.json").read_text())["views"]["clip"]["bank"])
    less = without(bank, "beta")
    assert "beta" not in set(less.train_reals.sources) | set(less.valid.sources)
    assert len(less.valid) < len(bank.valid) and "alpha" in set(less.train_reals.sources)
    assert [(p["k"], p["draw"]) for p in run["points"]] == [
        (0, 0),
        (10, 0),
        (10, 1),
        (12, 0),
        (12, 1),
    ]
    base, taught = run["points"][0], [p for p in run["points"] if p["k"] and "refused" not in p]
    assert taught, run["points"]
    # Taught, the left-out engine's test fakes are caught more and rank higher than before.
    assert max(p["caught"] for p in taught) > base["caught"]
    assert min(p["auc"] for p in taught) >= base["auc"] - 1e-9
    assert "| 10 |" in (out / "curve.md").read_text() and (out / "curve.png").stat().st_size
    assert [r["k"] for r in run["summary"]] == [0, 10, 12] and run["summary"][1]["draws"] == 2
    # The card's leave-source-out section shows the views of the model that never saw gamma.
    from training.evaluation.report.leave_out import _views_table

    views = _views_table(start / "views" / "views.json", ["gamma"])
    assert views["head"][1:] == ["CNN", "CLIP view", "both"]
    assert views["rows"][0][0] == "gamma" and views["rows"][-1][0] == "worst real source kept"
    # A start that was fitted with the engine is refused.
    again = ["adapt-curve", "--run", f"gamma={start}", "--run", "alpha=" + str(start)]
    assert main([*again, "--out", str(tmp_path / "x"), "--quiet", *data]) == 2
