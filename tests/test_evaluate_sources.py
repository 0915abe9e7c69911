"""`evaluate` across sources: `--source` (leave-source-out), the calibration outputs, and
`--robustness` (JPEG 75, half size and back, both) on crops and on source photos."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.model import ModelSpec
from tests.conftest import write_manifest
from training.__main__ import main
from training.data.datasets import read_prepared
from training.evaluation.robustness import degrade

ROOT = Path(__file__).resolve().parents[1]
UNSPLASH = ROOT.parent / "shared" / "data" / "stylegan2-unsplash"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def stripes(period: int, seed: int) -> np.ndarray:
    """256² RGB: vertical stripes `period` px wide (0 = none) over a smooth gradient."""
    rng = np.random.default_rng(seed)
    img = np.tile(np.linspace(60, 190, 256), (256, 1)) + rng.normal(0, 2, (256, 256))
    if period:
        img += np.where((np.arange(256) // period) % 2, 40, -40)[None, :]
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.fixture
def synthetic(tmp_path) -> Path:
    """A prepared folder, two sources: `a` and `b`, each with 1-px-striped "fakes" and smooth
    "reals" in its test split."""
    root = tmp_path / "prep"
    rows = []
    for i in range(16):
        source, label = ("a", "b")[i % 2], ("fake", "real")[(i // 2) % 2]
        rel = f"{source}/{label}/{i}.png"
        (root / source / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(stripes(1 if label == "fake" else 0, i)).save(root / rel)
        rows.append(
            {
                "source": rel,
                "output": rel,
                "split": "test",
                "label": label,
                "dataset": source,
                "faces": "1",
                "status": "ok",
            }
        )
    write_manifest(root, rows)
    return root


def test_degradations_do_what_they_say():
    fine = Image.fromarray(stripes(1, 0))
    half = np.asarray(degrade(fine, "half"), np.int16)
    # 1-px stripes cannot survive half the resolution; the smooth gradient does.
    assert np.abs(np.diff(half[..., 0], axis=1)).mean() < 10
    assert np.abs(np.diff(np.asarray(fine, np.int16)[..., 0], axis=1)).mean() > 70
    assert degrade(fine, "half").size == fine.size
    smooth = Image.fromarray(stripes(0, 1))
    jpeg = np.asarray(degrade(smooth, "jpeg75"), np.int16)
    diff = np.abs(jpeg - np.asarray(smooth, np.int16))
    assert 0 < diff.mean() < 4  # changed, as lossy compression does, but still the photo
    both = np.asarray(degrade(fine, "half+jpeg75"), np.int16)
    assert np.abs(both - half).mean() > 0 and np.abs(np.diff(both[..., 0], axis=1)).mean() < 12
    with pytest.raises(ValueError, match="unknown robustness variant"):
        degrade(fine, "blur")


def test_robustness_table_measures_the_drop_of_a_detector_that_needs_fine_detail(
    synthetic, tmp_path
):
    """A 'detector' that calls fake whatever has fine stripes is perfect on clean crops and
    blind at half resolution: the table must show that drop, like for like."""
    from training.data.pipeline import load_split
    from training.evaluation.evaluate import robustness_table

    spec = ModelSpec(name="hf", version="0", size=256, color="gray")

    def predict(x: np.ndarray) -> np.ndarray:
        energy = np.abs(np.diff(x[..., 0], axis=2)).mean(axis=(1, 2)) * 255
        return 1 / (1 + np.exp(-(energy - 20) / 3))

    chosen = load_split([read_prepared(synthetic)], "test", 256, "gray", workers=1, quiet=True)
    x = np.asarray(chosen.images, np.float32) * np.float32(spec.scale)
    p_clean = predict(x)
    assert (((p_clean >= 0.5) == (chosen.labels == 1)).mean()) == 1.0
    out = tmp_path / "rob"
    out.mkdir()
    roots = {str(synthetic): synthetic}
    variants = ["jpeg75", "half", "half+jpeg75"]
    table = robustness_table(
        chosen, p_clean, roots, variants, "crop", spec, predict, 0.5, out, "t", workers=1
    )
    by = {r["variant"]: r for r in table}
    assert by["half"]["clean_accuracy"] == 1.0 and by["half"]["accuracy"] == 0.5
    assert by["half"]["accuracy_drop"] == pytest.approx(0.5)
    assert by["half+jpeg75"]["accuracy"] == 0.5
    assert all(r["scored"] == 16 and r["no_face"] == 0 for r in table)
    assert all(r["applied_to"] == "aligned crop" for r in table)
    saved = read_csv(out / "robustness.csv")
    assert [r["variant"] for r in saved] == variants
    assert float(saved[1]["accuracy_drop"]) == pytest.approx(0.5)
    assert "| half | 16 | 0 | 0.5000 | 1.0000 | 50.0 |" in (out / "robustness.md").read_text()
    scores = read_csv(out / "robustness_predictions.csv")
    assert len(scores) == 16 and all(float(r["half"]) < 0.5 for r in scores)


def test_source_filter_names_held_out_sources_and_writes_calibration(
    synthetic, tiny_model_dir, tmp_path
):
    """`evaluate --source b` on a model trained on `a` only: scores b alone, says it was held
    out, and writes the ECE (matching its predictions) and the reliability diagram."""
    from training.evaluation.calibration import ece

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    doc = json.loads((model / "model.json").read_text())
    doc["training"] = {"classes": {"balance": {"mode": "source", "sources": ["a"]}}}
    (model / "model.json").write_text(json.dumps(doc))
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(model), "--data", str(synthetic), "--split", "test"]
    assert main([*args, "--out", str(out), "--source", "b", "--quiet"]) == 0
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["sources_scored"] == ["b"] and summary["held_out_sources"] == ["b"]
    assert summary["trained_sources"] == ["a"]
    preds = read_csv(out / "predictions.csv")
    assert len(preds) == 8 and {r["dataset"] for r in preds} == {"b"}
    y = np.array([r["true_label"] == "fake" for r in preds], int)
    p = np.array([float(r["p_fake"]) for r in preds])
    overall = read_csv(out / "metrics.csv")[0]
    assert int(overall["n"]) == 8
    assert float(overall["ece"]) == pytest.approx(ece(y, p), abs=1e-5)
    assert "**held out** (never trained on): b" in (out / "metrics.md").read_text()
    assert (out / "reliability.png").is_file()
    bins = [r for r in read_csv(out / "reliability.csv") if r["group"] == "all"]
    assert sum(int(b["n"]) for b in bins) == 8

    # On its own training source nothing is held out.
    assert main([*args, "--out", str(tmp_path / "seen"), "--source", "a", "--quiet"]) == 0
    assert json.loads((tmp_path / "seen" / "evaluation.json").read_text())["held_out_sources"] == []


def test_unknown_source_is_one_sentence(synthetic, tiny_model_dir, tmp_path, capsys):
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(synthetic)]
    assert main([*args, "--out", str(tmp_path / "e"), "--source", "stylegan2"]) == 2
    err = capsys.readouterr().err
    assert "--source stylegan2: not in the data; its sources are a, b." in err


@pytest.mark.slow
def test_photo_robustness_realigns_the_degraded_source_photo(tiny_model_dir, tmp_path):
    """`--robustness-on photo`: each source photo is degraded, then found and aligned by
    serving's code; the crop is the same face (close to the clean crop) but not the same pixels."""
    if not UNSPLASH.exists():
        pytest.skip(f"needs {UNSPLASH} (the shared data set beside the repository)")
    from shared.faces import detect_and_align
    from shared.images import load_image
    from training.evaluation.robustness import variant_pixels

    root = tmp_path / "prep"
    rows = []
    for label in ("real", "fake"):
        for path in sorted((UNSPLASH / "test" / label).glob("*.jpg"))[:3]:
            rel = path.relative_to(UNSPLASH).as_posix()
            out = Path(rel).with_suffix(".png").as_posix()
            faces = detect_and_align(load_image(path), size=256)
            assert faces, path
            (root / out).parent.mkdir(parents=True, exist_ok=True)
            faces[0].aligned.save(root / out)
            rows.append(
                {
                    "source": rel,
                    "output": out,
                    "split": "test",
                    "label": label,
                    "dataset": UNSPLASH.name,
                    "faces": str(len(faces)),
                    "status": "ok",
                }
            )
    write_manifest(root, rows)
    (root / "prepare.json").write_text(
        json.dumps({"source": str(UNSPLASH), "detector": "dlib", "align_size": 256})
    )
    first = rows[0]
    clean = np.asarray(Image.open(root / first["output"]).convert("L").resize((64, 64)), float)
    job = (str(UNSPLASH / first["source"]), "jpeg75", "photo", 256, 64, "gray")
    again = variant_pixels(job)[..., 0].astype(float)
    assert 0 < np.abs(again - clean).mean() < 12

    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(root), "--out", str(out)]
    assert main([*args, "--robustness", "--workers", "1", "--quiet"]) == 0
    table = read_csv(out / "robustness.csv")
    assert [r["variant"] for r in table] == ["jpeg75", "half", "half+jpeg75"]
    assert all(int(r["scored"]) + int(r["no_face"]) == 6 for r in table)
    assert all(r["applied_to"].startswith("source photo") for r in table)
    preds = {r["path"]: float(r["p_fake"]) for r in read_csv(out / "predictions.csv")}
    scores = read_csv(out / "robustness_predictions.csv")
    assert all(float(r["p_clean"]) == pytest.approx(preds[r["path"]], abs=1e-6) for r in scores)
    assert any(r["jpeg75"] and r["jpeg75"] != r["p_clean"] for r in scores)
    summary = json.loads((out / "evaluation.json").read_text())
    assert [r["variant"] for r in summary["robustness"]] == [r["variant"] for r in table]


def test_by_dataset_scores_each_generator_against_every_real(synthetic, tiny_model_dir, tmp_path):
    """`--by dataset` adds "<source> fakes vs every real": a's fakes against the reals of a and
    b together, so an all-fake source (Stable Diffusion) gets a ROC-AUC against real photos."""
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(synthetic)]
    assert main([*args, "--split", "test", "--by", "dataset", "--out", str(out), "--quiet"]) == 0
    table = {r["group"]: r for r in read_csv(out / "metrics.csv")}
    assert {"a fakes vs every real", "b fakes vs every real"} <= set(table)
    preds = [r for r in read_csv(out / "predictions.csv") if r["p_fake"]]
    chosen = [r for r in preds if r["true_label"] == "real" or r["dataset"] == "a"]
    y = [r["true_label"] == "fake" for r in chosen]
    want = roc_auc_score(y, [float(r["p_fake"]) for r in chosen])
    row = table["a fakes vs every real"]
    assert int(row["n"]) == len(chosen) == 12  # 4 fakes of a, 8 reals of a and b
    assert float(row["roc_auc"]) == pytest.approx(want, abs=1e-4)
