"""`python -m training report` (the model card) and `python -m training compare`.

Inputs are small real files written here, with numbers chosen to be recognisable in the output;
the card must carry exactly those numbers, say "not measured" where an input is missing, and its
HTML must load nothing from outside (served under a CSP of data: images and inline style only).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from training.__main__ import main

REPO = Path(__file__).resolve().parents[1]


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_png(path: Path, colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 16), colour).save(path)
    return path


def metrics_row(n, acc, tp, fp, fn, tn, threshold=0.5, **extra) -> dict:
    row = {"group": "all", "n": n, "accuracy": acc, "f1": "", "precision": "", "recall": ""}
    row.update(roc_auc="", average_precision="", tp=tp, fp=fp, fn=fn, tn=tn)
    row.update(positive="fake", threshold=threshold)
    row.update(extra)
    return row


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    doc = {
        "format": 1,
        "name": "tiny-gray64",
        "version": "2026.01.02-0304",
        "file": "model.tflite",
        "input": {"size": 64, "color": "gray", "scale": 1 / 255, "offset": 0.0},
        "align_size": 256,
        "output": {"activation": "sigmoid", "positive_class": "fake", "temperature": 1.7345},
        "threshold": 0.6123,
        "trained_on": "tiny-set: 11 fake + 7 real",
        "architecture": "vgg10",
        "params": 4242,
        "training": {
            "balance": "weights",
            "best_epoch": 2,
            "checkpoint": "best",
            "classes": {
                "train": {"fake": 11, "real": 7},
                "valid": {"fake": 5, "real": 3},
                "class_weights": {"fake": 0.818, "real": 1.286},
            },
        },
        "metrics": {
            "valid": {
                "threshold_rule": "maximises balanced accuracy on this split",
                "calibration": {
                    "temperature": 1.7345,
                    "n": 8,
                    "nll_before": 0.5555,
                    "nll_after": 0.4444,
                    "ece_bins": 15,
                    "ece_before": 0.1212,
                    "ece_after": 0.0321,
                },
            }
        },
    }
    (d / "model.json").write_text(json.dumps(doc))
    write_csv(
        d / "eval" / "metrics.csv",
        [
            metrics_row(
                20,
                0.85,
                13,
                3,
                1,
                3,
                0.6123,
                f1=0.8666,
                precision=0.8125,
                recall=0.9286,
                roc_auc=0.9123,
                average_precision=0.9345,
                ece=0.0456,
            )
        ],
    )
    write_png(d / "eval" / "roc_pr.png", (200, 0, 0))
    write_png(d / "eval" / "reliability.png", (200, 200, 0))
    write_csv(
        d / "eval" / "robustness.csv",
        [
            {
                "variant": v,
                "applied_to": "source photo, then serving's detection and alignment",
                "images": 20,
                "scored": scored,
                "no_face": 20 - scored,
                "accuracy": acc,
                "clean_accuracy": clean,
                "accuracy_drop": clean - acc,
                "roc_auc": 0.8811,
                "clean_roc_auc": 0.9123,
                "ece": 0.0777,
                "clean_ece": 0.0456,
                "threshold": 0.6123,
            }
            for v, scored, acc, clean in (
                ("jpeg75", 20, 0.8, 0.85),
                ("half", 19, 0.7, 0.85),
                ("half+jpeg75", 18, 0.65, 0.8),
            )
        ],
    )
    # Per photo: FFHQ reals 2 of 2 kept clean, 1 of 2 after jpeg75; a photo with no face after
    # `half` is left out of the per-source table.
    cols = ["path", "true_label", "dataset", "p_clean", "jpeg75", "half", "half+jpeg75"]
    write_csv(
        d / "eval" / "robustness_predictions.csv",
        [
            dict(zip(cols, row, strict=True))
            for row in (
                ("a.jpg", "real", "140k", 0.1, 0.7, 0.2, 0.3),
                ("b.jpg", "real", "140k", 0.2, 0.3, 0.1, 0.2),
                ("c.jpg", "fake", "sdxl", 0.9, 0.95, "", 0.9),
                ("d.jpg", "fake", "sdxl", 0.8, 0.5, 0.9, 0.7),
            )
        ],
    )
    base = {"face": "0", "x": 1, "y": 1, "w": 9, "h": 9, "error": "", "split": "test"}
    preds = []
    for i, (truth, label) in enumerate([("real", "fake")] + [("real", "real")] * 3):
        preds.append({**base, "path": f"r{i}.jpg", "p_fake": 0.7 if label == "fake" else 0.2})
        preds[-1].update(label=label, true_label=truth, dataset="140k")
    for i, label in enumerate(["fake"] * 4 + ["real"]):
        preds.append({**base, "path": f"f{i}.jpg", "p_fake": 0.9 if label == "fake" else 0.3})
        preds[-1].update(label=label, true_label="fake", dataset="140k")
    preds.append(
        {**base, "path": "n.jpg", "face": "", "p_fake": "", "label": "", "error": "no_face"}
    )
    preds[-1].update(true_label="fake", dataset="140k")
    write_csv(d / "eval" / "predictions.csv", preds)
    write_csv(
        d / "training" / "history.csv",
        [{"epoch": 1, "loss": 0.7, "seconds": 10.5}, {"epoch": 2, "loss": 0.6, "seconds": 20.0}],
    )
    write_png(d / "training" / "accuracy.png", (0, 200, 0))
    write_png(d / "training" / "loss.png", (0, 0, 200))
    return d


@pytest.fixture
def fairness_dir(tmp_path: Path) -> Path:
    d = tmp_path / "audit"
    write_csv(
        d / "fairness.csv",
        [
            {
                "definition": "race: Black vs Non-Black",
                "column": "race",
                "privileged": "Non-Black",
                "unprivileged": "Black",
                "favourable": "real",
                "n_privileged": 4,
                "n_unprivileged": 1,
                "di": 0.913,
                "di_lo": 0.851,
                "di_hi": 0.977,
                "aod": "",
                "aod_lo": "",
                "aod_hi": "",
                "note": "AOD undefined: no fakes.",
            }
        ],
    )
    group = {"n_real": 0, "n_fake": 0, "fake_called_real": "", "fake_called_real_lo": ""}
    group["fake_called_real_hi"] = ""
    write_csv(
        d / "fairness_groups.csv",
        [
            {
                **group,
                "definition": "all",
                "side": "all",
                "group": "All",
                "rows": 6,
                "errors": 1,
                "n": 5,
                "real_called_fake": 0.2,
                "real_called_fake_lo": 0.0,
                "real_called_fake_hi": 0.6,
            },
            {
                **group,
                "definition": "race: Black vs Non-Black",
                "side": "unprivileged",
                "group": "Black",
                "rows": 2,
                "errors": 1,
                "n": 1,
                "real_called_fake": 0.0,
                "real_called_fake_lo": 0.0,
                "real_called_fake_hi": 0.0,
            },
            {
                **group,
                "definition": "race: Black vs Non-Black",
                "side": "privileged",
                "group": "Non-Black",
                "rows": 4,
                "errors": 0,
                "n": 4,
                "real_called_fake": 0.25,
                "real_called_fake_lo": 0.0,
                "real_called_fake_hi": 0.75,
            },
        ],
    )
    meta = {"predictions": ["ff.csv"], "favourable": "real", "resamples": 77}
    meta.update(counts={"scored": 5}, class_counts={"real": 5, "fake": 0})
    (d / "fairness.json").write_text(json.dumps(meta))
    write_png(d / "fairness.png", (9, 9, 9))
    return d


@pytest.fixture
def fairface_csv(tmp_path: Path) -> tuple[Path, Path]:
    """Six FairFace val photos: one with no face, one called fake, one with two faces."""
    root = "../shared/data/fairface/val"
    rows = []
    for i, label, p in [(1, "real", 0.1), (2, "fake", 0.8), (3, "real", 0.2), (5, "real", 0.3)]:
        rows.append({"path": f"{root}/{i}.jpg", "face": "0", "x": 1, "y": 1, "w": 5, "h": 5})
        rows[-1].update(p_fake=p, label=label, error="")
    rows.append({**rows[0], "face": "1", "p_fake": 0.95, "label": "fake"})  # second face of 1
    rows.append({"path": f"{root}/4.jpg", "face": "", "x": "", "y": "", "w": "", "h": ""})
    rows[-1].update(p_fake="", label="", error="no_face")
    rows.append({**rows[0], "path": f"{root}/6.jpg", "p_fake": 0.0, "label": "real"})
    preds = write_csv(tmp_path / "ff.csv", rows)
    labels = write_csv(
        tmp_path / "labels.csv",
        [
            {"file": f"val/{i}.jpg", "age": age, "gender": g, "race": race, "service_test": "x"}
            for i, age, g, race in [
                (1, "20-29", "Male", "White"),
                (2, "3-9", "Female", "White"),
                (3, "20-29", "Female", "East Asian"),
                (4, "20-29", "Male", "Black"),
                (5, "more than 70", "Male", "Black"),
                (6, "3-9", "Male", "White"),
            ]
        ],
    )
    return preds, labels


def make_run(root: Path, name: str, color: str, data: list[str], valid: dict, fair: dict) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = {
        "model": "vgg10",
        "size": 64,
        "color": color,
        "data": data,
        "balance": "weights",
        "augment": {"flip": True, "jpeg": 0.1},
        "epochs": 2,
        "version": name,  # differs per run but is not recipe
        "params": 1234 if color == "gray" else 1300,
    }
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "state.json").write_text(json.dumps({"epochs_done": 2, "best_epoch": 2}))
    write_csv(run / "history.csv", [{"epoch": 1, "seconds": 3.5}, {"epoch": 2, "seconds": 4.0}])
    if valid:
        write_csv(run / "eval-valid" / "metrics.csv", [metrics_row(**valid)])
    if fair:
        write_csv(run / "eval-fairface" / "metrics.csv", [metrics_row(**fair)])
    return run


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    runs = tmp_path / "runs"
    # paper: valid balanced accuracy (8/10 + 6/10)/2 = 0.70; FairFace 45 of 50 called real.
    paper = make_run(
        runs,
        "paper",
        "gray",
        ["/x/aligned-140k"],
        dict(n=20, acc=0.7, tp=8, fp=4, fn=2, tn=6, roc_auc=0.75),
        dict(n=50, acc=0.9, tp=0, fp=5, fn=0, tn=45),
    )
    # rgb: (9/10 + 7/10)/2 = 0.80; FairFace 40 of 50.
    rgb = make_run(
        runs,
        "rgb",
        "rgb",
        ["/x/aligned-140k", "/y/aligned-fairface-train"],
        dict(n=20, acc=0.8, tp=9, fp=3, fn=1, tn=7, roc_auc=0.85),
        dict(n=50, acc=0.8, tp=0, fp=10, fn=0, tn=40),
    )
    return [paper, rgb]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# --- compare -------------------------------------------------------------------------------


def test_compare_tabulates_two_runs(two_runs, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, two_runs), "--out", str(out)]) == 0
    paper, rgb = read_rows(out / "comparison.csv")
    assert paper["variant"] == "paper" and paper["differs"] == "reference"
    assert rgb["differs"] == "color rgb (was gray); data + aligned-fairface-train"
    assert float(paper["valid_balanced_accuracy"]) == pytest.approx(0.70)
    assert float(rgb["valid_balanced_accuracy"]) == pytest.approx(0.80)
    assert float(paper["fairface_called_real"]) == pytest.approx(0.90)
    assert float(rgb["fairface_called_real"]) == pytest.approx(0.80)
    assert (paper["params"], rgb["params"], rgb["best_epoch"]) == ("1234", "1300", "2")
    assert float(rgb["train_seconds"]) == pytest.approx(7.5)
    assert (paper["selected"], rgb["selected"]) == ("", "yes")
    md = (out / "comparison.md").read_text()
    assert "**rgb** (selected)" in md and "Selection rule:" in md and "0.8000" in md
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_selects_by_valid_roc_auc_not_accuracy_at_a_fixed_cut(tmp_path):
    runs = tmp_path / "runs"
    ranks_well = make_run(
        runs,
        "ranks",
        "gray",
        ["/x/a"],
        dict(n=20, acc=0.6, tp=9, fp=7, fn=1, tn=3, roc_auc=0.9),
        dict(n=10, acc=0.9, tp=0, fp=1, fn=0, tn=9),
    )
    cut_well = make_run(
        runs,
        "cut",
        "rgb",
        ["/x/a"],
        dict(n=20, acc=0.8, tp=8, fp=2, fn=2, tn=8, roc_auc=0.8),
        dict(n=10, acc=0.9, tp=0, fp=1, fn=0, tn=9),
    )
    out = tmp_path / "cmp"
    assert main(["compare", str(ranks_well), str(cut_well), "--out", str(out)]) == 0
    assert [r["selected"] for r in read_rows(out / "comparison.csv")] == ["yes", ""]


def test_compare_lists_a_run_without_evals_with_a_note(two_runs, tmp_path):
    bare = make_run(tmp_path / "runs", "bare", "gray", ["/x/aligned-140k"], {}, {})
    out = tmp_path / "cmp"
    assert main(["compare", str(two_runs[0]), str(bare), "--out", str(out)]) == 0
    rows = read_rows(out / "comparison.csv")
    assert rows[1]["valid_accuracy"] == "" and rows[1]["fairface_called_real"] == ""
    assert "eval-valid/metrics.csv missing" in rows[1]["note"]
    assert rows[0]["selected"] == "yes"  # the only run with both evaluations


def test_compare_bad_run_is_one_sentence(two_runs, tmp_path, capsys):
    (two_runs[1] / "config.json").unlink()
    assert main(["compare", *map(str, two_runs), "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(two_runs[1] / "config.json") in err


def make_screen(root: Path, name: str, caught: dict, loss: float, **recipe) -> Path:
    """A run as `make screen` leaves it: trained, exported at the operating point into model/,
    never evaluated (no eval folders)."""
    run = make_run(root, name, recipe.pop("color", "rgb"), ["/x/aligned-140k"], {}, {})
    state = {"epochs_done": 2, "best_epoch": 1, "best_val_loss": loss}
    (run / "state.json").write_text(json.dumps(state))
    sources = {
        "140k": {"real": 30, "called_fake": 0.06, "fake": 40, "caught": caught["140k"]},
        "fairface": {"real": 20, "called_fake": 0.0},
        "stable-diffusion": {"fake": 10, "caught": caught["stable-diffusion"]},
    }
    op = {"rule": "at most 2% ...", "false_alarm_target": 0.02, "split": "valid"}
    op.update(threshold=0.71, sources=sources)
    (run / "model").mkdir()
    (run / "model" / "model.json").write_text(json.dumps({"format": 1, "operating_point": op}))
    return run


def test_compare_operating_rule_tabulates_and_selects_by_mean_catch(tmp_path, capsys):
    runs = tmp_path / "runs"
    # base: mean catch (0.5 + 0.3)/2 = 0.40; photo: (0.4 + 0.5)/2 = 0.45, despite its higher loss.
    base = make_screen(runs, "base", {"140k": 0.5, "stable-diffusion": 0.3}, 0.30)
    photo = make_screen(runs, "photo", {"140k": 0.4, "stable-diffusion": 0.5}, 0.40)
    bare = make_run(runs, "bare", "rgb", ["/x/aligned-140k"], {}, {})  # not exported yet
    out = tmp_path / "cmp"
    argv = ["compare", str(base), str(photo), str(bare), "--rule", "operating", "--out", str(out)]
    assert main(argv) == 0
    rows = read_rows(out / "comparison.csv")
    for column in ("op_threshold", "op_mean_catch", "op_false_alarm", "best_val_loss"):
        assert column in rows[0]
    assert [c for c in rows[0] if c.startswith("caught_")] == [
        "caught_140k",
        "caught_stable-diffusion",
    ]
    b, p, x = rows
    assert float(b["op_mean_catch"]) == pytest.approx(0.40)
    assert float(p["op_mean_catch"]) == pytest.approx(0.45)
    assert float(p["caught_stable-diffusion"]) == pytest.approx(0.5)
    assert float(b["op_false_alarm"]) == pytest.approx(0.06)  # the worst real source, not a mean
    assert float(b["op_threshold"]) == pytest.approx(0.71)
    assert float(p["best_val_loss"]) == pytest.approx(0.40)
    assert [r["selected"] for r in rows] == ["", "yes", ""]
    assert x["op_mean_catch"] == "" and "model/model.json missing" in x["note"]
    assert "eval-valid" not in b["note"] + p["note"] + x["note"]  # not needed under this rule
    md = (out / "comparison.md").read_text()
    assert "**photo** (selected)" in md and "highest mean catch rate" in md
    assert "Caught stable-diffusion" in md and "- bare: model/model.json missing" in md
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**photo** (selected)" in capsys.readouterr().out


def test_compare_operating_rule_tie_goes_to_the_lower_validation_loss(tmp_path):
    runs = tmp_path / "runs"
    # Both catch 0.4: in floats (0.6 + 0.2)/2 = 0.4 but (0.7 + 0.1)/2 = 0.39999999999999997,
    # a rounding difference the rule treats as a tie, won by the lower validation loss.
    first = make_screen(runs, "first", {"140k": 0.6, "stable-diffusion": 0.2}, 0.35)
    second = make_screen(runs, "second", {"140k": 0.7, "stable-diffusion": 0.1}, 0.25)
    out = tmp_path / "cmp"
    argv = ["compare", str(first), str(second), "--rule", "operating", "--out", str(out)]
    assert main(argv) == 0
    assert [r["selected"] for r in read_rows(out / "comparison.csv")] == ["", "yes"]


def test_compare_default_rule_is_unchanged_by_the_operating_columns(two_runs, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, two_runs), "--out", str(out)]) == 0
    assert "op_mean_catch" not in read_rows(out / "comparison.csv")[0]


@pytest.mark.parametrize(
    "text",
    ["{not json", json.dumps({"format": 1}), json.dumps({"operating_point": {"threshold": 0.7}})],
)
def test_compare_operating_rule_malformed_model_json_is_one_sentence(tmp_path, capsys, text):
    run = make_screen(tmp_path / "runs", "base", {"140k": 0.5, "stable-diffusion": 0.3}, 0.3)
    (run / "model" / "model.json").write_text(text)
    argv = ["compare", str(run), "--rule", "operating", "--out", str(tmp_path / "c")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(run / "model" / "model.json") in err


# --- report --------------------------------------------------------------------------------


# Two leave-one-generator-out runs, as `make leave-source-out` writes them: every test split
# scored, with the new "<source> fakes vs every real" rows (recall left blank: the card must
# compute the catch rate from tp and fn, the false alarms from fp and tn).
LEAVE_OUT = {
    "su": (
        "stylegan2-unsplash",
        [
            metrics_row(643, 0.9113, 130, 9, 27, 477, 0.6123, roc_auc=0.9611, ece=0.0412),
            metrics_row(
                193,
                0.8612,
                90,
                3,
                17,
                83,
                0.6123,
                roc_auc=0.9412,
                ece=0.0612,
                group="dataset=stylegan2-unsplash",
            ),
            metrics_row(
                50,
                0.8000,
                40,
                0,
                10,
                0,
                0.6123,
                roc_auc="",
                ece=0.0733,
                group="dataset=stable-diffusion",
            ),
            metrics_row(
                593,
                0.9562,
                90,
                9,
                17,
                477,
                0.6123,
                roc_auc=0.9377,
                ece=0.0345,
                group="stylegan2-unsplash fakes vs every real",
            ),
        ],
    ),
    "sd": (
        "stable-diffusion",
        [
            metrics_row(643, 0.9277, 120, 6, 40, 477, 0.5871, roc_auc=0.9702, ece=0.0398),
            metrics_row(
                50,
                0.7400,
                37,
                0,
                13,
                0,
                0.5871,
                roc_auc="",
                ece=0.1811,
                group="dataset=stable-diffusion",
            ),
            metrics_row(
                533,
                0.9644,
                37,
                6,
                13,
                477,
                0.5871,
                roc_auc=0.9123,
                ece=0.0287,
                group="stable-diffusion fakes vs every real",
            ),
        ],
    ),
}


def leave_out_eval(root: Path, key: str = "su", old: bool = False) -> Path:
    """An `evaluate` output of the run that never trained on LEAVE_OUT[key]'s source, in
    root/key; `old`: an older evaluate's, scored on that source alone, no "vs every real" row."""
    held, rows = LEAVE_OUT[key]
    d = root / key
    if old:
        rows = [metrics_row(193, 0.8612, 90, 10, 17, 76, 0.6123, roc_auc=0.9377, ece=0.0612)]
    write_csv(d / "metrics.csv", rows)
    scored = [held] if old else ["140k", "fairface", "stable-diffusion", "stylegan2-unsplash"]
    (d / "evaluation.json").write_text(
        json.dumps(
            {
                "model": f"tiny-leave-{key}-out (LiteRT)",
                "split": "test",
                "sources_scored": scored,
                "trained_sources": sorted({"140k", "fairface", *scored} - {held}),
                "held_out_sources": [held],
                "threshold": float(rows[0]["threshold"]),
            }
        )
    )
    return d


def beside_eval(root: Path, name: str, model: str, threshold: float, rows: list[dict]) -> Path:
    """An `evaluate` output of an earlier model on the same test splits, in root/name."""
    d = root / name
    write_csv(d / "metrics.csv", rows)
    (d / "evaluation.json").write_text(json.dumps({"model": model, "threshold": threshold}))
    return d


def source_row(source: str, tp, fp, fn, tn, auc="") -> dict:
    n = tp + fp + fn + tn
    row = metrics_row(n, (tp + tn) / n, tp, fp, fn, tn, roc_auc=auc)
    return {**row, "group": f"dataset={source}"}


def render_full(model_dir, fairness_dir, fairface_csv, two_runs, tmp_path, out=None):
    cmp = tmp_path / "cmp"
    assert main(["compare", *map(str, two_runs), "--out", str(cmp)]) == 0
    preds, labels = fairface_csv
    args = ["report", str(model_dir), "--fairness", str(fairness_dir)]
    args += ["--fairface-predictions", str(preds), "--labels", str(labels)]
    args += ["--comparison", str(cmp)]
    for key in ("su", "sd"):  # given out of order: the card sorts them by name
        args += ["--leave-source-out", str(leave_out_eval(tmp_path / "lso", key))]
    before = [source_row("140k", 5, 2, 3, 10, 0.8123)]
    args += ["--beside", str(beside_eval(tmp_path / "b", "before", "tiny 2025", 0.5, before))]
    if out:
        args += ["--out", str(out)]
    assert main(args) == 0
    card = out or model_dir
    return (card / "MODEL_CARD.md").read_text(), (card / "MODEL_CARD.html").read_text()


def test_card_carries_the_numbers_of_its_files(
    model_dir, fairness_dir, fairface_csv, two_runs, tmp_path
):
    md, html = render_full(model_dir, fairness_dir, fairface_csv, two_runs, tmp_path)
    assert "<td>0.913 [0.851, 0.977]</td>" in html
    for text in (md, re.sub(r"<[^>]+>", " ", html)):  # the HTML as a reader sees its text
        assert "tiny-gray64 2026.01.02-0304" in text and "0.6123" in text
        # test split: metrics and confusion counts from eval/metrics.csv
        assert "0.8500" in text and "0.9123" in text and "0.9345" in text
        assert re.search(r"13\W+3\W+1\W+3", text)
        # data: counts per split and class from model.json
        assert re.search(r"train\W+11\W+7\W+18", text)
        # FairFace: 6 images, 5 with a face, 4 called real of 5, one extra face not scored
        assert "4 (0.8000)" in text and "1 (0.2000)" in text and "n/a: no fakes" in text
        assert "5 (83.3 %)" in text and "1 (16.7 %)" in text
        # per source: 1 of 4 reals and 4 of 5 fakes called fake; FairFace 1 of 5
        assert re.search(r"real FFHQ \(140k test\)\W+4\W+1\W+0\.2500", text)
        assert re.search(r"fake StyleGAN \(140k test\)\W+5\W+4\W+0\.8000\W+1", text)
        # fairness: DI with its interval, AOD undefined
        assert "0.913 [0.851, 0.977]" in text and "undefined (no fakes)" in text
        # no face per group: Black 1 of 2 photos
        assert re.search(r"race\W+Black\W+2\W+1\W+50\.0 %", text)
        # comparison: the selected run and its rule
        assert "rgb" in text and "(selected)" in text and "Selection rule" in text
        assert "make model" in text
        # calibration: the temperature, valid NLL/ECE before and after, the test ECE
        assert "T = 1.7345" in text and re.search(r"after\W+0\.4444\W+0\.0321", text)
        assert re.search(r"before\W+0\.5555\W+0\.1212", text) and "0.0456" in text
        # robustness: accuracy and drop in points per variant
        assert re.search(r"half\W+19\W+1\W+0\.7000\W+0\.8500\W+15\.0", text)
        assert re.search(r"jpeg75\W+20\W+0\W+0\.8000\W+0\.8500\W+5\.0", text)
        # robustness per source: FFHQ reals 100 % kept clean, 50 % after jpeg75 (threshold 0.6123)
        assert re.search(r"140k\W+reals kept\W+2\W+100\.0 %\W+50\.0 %\W+100\.0 %\W+100\.0 %", text)
        assert re.search(r"sdxl\W+fakes caught\W+1\W+100\.0 %\W+0\.0 %\W+100\.0 %\W+100\.0 %", text)
        # leave-source-out: one subsection per run (test_leave_source_out_* for the numbers)
        assert "Leave-source-out: stable-diffusion never trained on" in text
        assert "Leave-source-out: stylegan2-unsplash never trained on" in text
        assert "Not measured" not in text  # the boxes; Grad-CAM says "not measured" inline
        assert "FFHQ (CC BY-NC-SA 4.0)" in text and "FairFace (CC BY 4.0)" in text
    assert "a face was found in 50.0 % of 2 Black" in md


def test_html_is_self_contained(model_dir, fairness_dir, fairface_csv, two_runs, tmp_path):
    _, html = render_full(model_dir, fairness_dir, fairface_csv, two_runs, tmp_path)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert html.count("<style>") == 1
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html, re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, re.I)
    assert "url(" not in html  # no CSS load either
    assert len(refs) == 6  # roc_pr, reliability, accuracy, loss, fairness, comparison


def test_inputs_are_copied_and_the_card_re_renders_from_the_folder_alone(
    model_dir, fairness_dir, fairface_csv, two_runs, tmp_path
):
    md, _ = render_full(model_dir, fairness_dir, fairface_csv, two_runs, tmp_path)
    for rel in (
        "fairness/fairness.csv",
        "fairness/fairness_groups.csv",
        "fairness/fairness.png",
        "comparison/comparison.csv",
        "comparison/comparison.png",
        "fairface-val/metrics.csv",
        "fairface-val/no_face_by_group.csv",
        "leave-source-out/sd/metrics.csv",
        "leave-source-out/sd/evaluation.json",
        "leave-source-out/su/metrics.csv",
        "leave-source-out/su/evaluation.json",
        "beside/before/metrics.csv",
        "beside/before/evaluation.json",
    ):
        assert (model_dir / rel).is_file(), rel
    assert "](eval/roc_pr.png)" in md  # Markdown images relative to the card
    (model_dir / "MODEL_CARD.md").unlink()
    assert main(["report", str(model_dir)]) == 0
    again = (model_dir / "MODEL_CARD.md").read_text()
    assert again.split("## Reproduce")[0] == md.split("## Reproduce")[0]


def test_out_elsewhere_leaves_the_model_folder_alone(
    model_dir, fairness_dir, fairface_csv, two_runs, tmp_path
):
    before = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*"))
    render_full(model_dir, fairness_dir, fairface_csv, two_runs, tmp_path, out=tmp_path / "card")
    assert sorted(p.relative_to(model_dir) for p in model_dir.rglob("*")) == before
    assert (tmp_path / "card" / "fairface-val" / "metrics.csv").is_file()


def test_missing_inputs_say_not_measured(tmp_path):
    d = tmp_path / "bare"
    d.mkdir()
    (d / "model.json").write_text(json.dumps({"name": "bare", "version": "1", "threshold": 0.5}))
    assert main(["report", str(d)]) == 0
    md = (d / "MODEL_CARD.md").read_text()
    html = (d / "MODEL_CARD.html").read_text()
    sections = md.split("\n## ")
    for title in ("Data", "Learning curves", "Fairness", "Training recipes compared"):
        body = next(s for s in sections if s.startswith(title))
        assert "**Not measured**" in body, title
    for sub in (
        "### Test split",
        "### FairFace val",
        "### No face found",
        "### Calibration",
        "### Robustness",
        "### Leave-source-out",
    ):
        assert "**Not measured**" in md.split(sub)[1].split("###")[0], sub
    assert "Not measured</strong>" in html
    assert not re.search(r"\b0\.\d{4}\b", md.split("## Metrics")[1])  # no figure was invented


def test_audit_and_predictions_of_different_models_are_flagged(
    model_dir, fairness_dir, fairface_csv, tmp_path
):
    preds, labels = fairface_csv
    rows = read_rows(preds)
    for r in rows:
        if r["label"] == "fake" and r["face"] == "0":
            r["label"] = "real"  # now 0 of 5 called fake; the audit says 0.2
    write_csv(preds, rows)
    args = ["report", str(model_dir), "--fairness", str(fairness_dir)]
    assert main([*args, "--fairface-predictions", str(preds), "--labels", str(labels)]) == 0
    assert "**Warning**: The fairness audit" in (model_dir / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize(
    "change, named",
    [
        ("no_model", "model.json"),
        ("fairness_empty", "fairness.csv"),
        ("bad_predictions", "ff.csv"),
        ("missing_labels", "nolabels.csv"),
    ],
)
def test_bad_arguments_are_one_sentence_naming_the_file(
    change, named, model_dir, fairness_dir, fairface_csv, tmp_path, capsys
):
    preds, labels = fairface_csv
    args = ["report", str(model_dir)]
    if change == "no_model":
        (model_dir / "model.json").unlink()
    elif change == "fairness_empty":
        (fairness_dir / "fairness.csv").unlink()
        args += ["--fairness", str(fairness_dir)]
    elif change == "bad_predictions":
        preds.write_text("path,score\na.jpg,0.5\n")
        args += ["--fairface-predictions", str(preds)]
    else:
        args += ["--fairface-predictions", str(preds), "--labels", str(tmp_path / "nolabels.csv")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("report: ") and "\n" not in err and named in err
    assert not (model_dir / "MODEL_CARD.md").exists()


def test_cli_exit_code_and_help():
    bad = subprocess.run(
        [sys.executable, "-m", "training", "report", "no/such/model"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "report: no/such/model: no model.json there; is it a model folder of `export`?"
    ]
    for command in ("report", "compare"):
        ok = subprocess.run(
            [sys.executable, "-m", "training", command, "--help"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ok.returncode == 0 and "usage:" in ok.stdout


@pytest.mark.slow
def test_card_of_the_shipped_model(tmp_path):
    """The real model folder: LiteRT loads it, and the card carries its test metrics."""
    model = REPO / "models" / "default"
    if not (model / "model.json").is_file() or not (model / "eval" / "metrics.csv").is_file():
        pytest.skip("models/default has no model.json or eval/metrics.csv; run `make model`")
    out = tmp_path / "card"
    assert main(["report", str(model), "--out", str(out)]) == 0
    md = (out / "MODEL_CARD.md").read_text()
    row = read_rows(model / "eval" / "metrics.csv")[0]
    for key in ("accuracy", "f1", "roc_auc"):
        assert f"{float(row[key]):.4f}" in md, key
    assert "could not be loaded" not in md  # the Grad-CAM line asked LiteRT


def test_card_sets_earlier_models_beside_this_one(model_dir, tmp_path):
    """Per source of this model's test metrics: fakes caught, reals kept and the ROC-AUC, beside
    each earlier model's own figures; a source an earlier model was not scored on reads "—"."""
    mine = [
        metrics_row(30, 0.9, 14, 1, 2, 13, 0.6123, roc_auc=0.95),
        source_row("140k", 9, 1, 1, 9, 0.9512),
        source_row("stable-diffusion", 5, 0, 0, 0),
        source_row("real-portraits", 0, 0, 0, 5),
    ]
    write_csv(model_dir / "eval" / "metrics.csv", mine)
    old = [source_row("140k", 6, 3, 4, 7, 0.7011), source_row("real-portraits", 0, 1, 0, 4)]
    vgg = beside_eval(tmp_path, "2026-11-26", "vgg10-gray128 2026.11.26 (LiteRT)", 0.7055, old)
    newer = beside_eval(tmp_path, "2026-12-02", "effnet 2026.12.02", 0.8, old[:1])
    assert main(["report", str(model_dir), "--beside", str(vgg), "--beside", str(newer)]) == 0
    md = (model_dir / "MODEL_CARD.md").read_text()
    part = md.split("### Beside earlier models")[1].split("###")[0]
    cells = {
        line.split(" | ")[0][2:]: line.strip("| ").split(" | ")[1:]
        for line in part.splitlines()
        if line.startswith("| ") and "---" not in line
    }
    head = " | ".join(cells["Test split"])  # this model, then the newest earlier one first
    assert re.search(r"tiny-gray64 .*\| effnet 2026\.12\.02 \| vgg10-gray128 2026\.11\.26", head)
    assert cells["140k fakes caught"] == [
        "90.0 % (9 of 10)",
        "60.0 % (6 of 10)",
        "60.0 % (6 of 10)",
    ]
    assert cells["140k reals kept"] == ["90.0 % (9 of 10)", "70.0 % (7 of 10)", "70.0 % (7 of 10)"]
    assert cells["140k ROC-AUC"] == ["0.9512", "0.7011", "0.7011"]
    assert cells["stable-diffusion fakes caught"] == ["100.0 % (5 of 5)", "—", "—"]
    assert cells["real-portraits reals kept"] == ["100.0 % (5 of 5)", "—", "80.0 % (4 of 5)"]
    assert "stable-diffusion ROC-AUC" not in cells  # no reals in that source
    assert cells["threshold on P(fake)"] == ["0.6123", "0.8000", "0.7055"]
    # kept in the folder: re-rendered alone, the table stays
    assert main(["report", str(model_dir)]) == 0
    assert "60.0 % (6 of 10)" in (model_dir / "MODEL_CARD.md").read_text()
    assert main(["report", str(model_dir), "--beside", str(tmp_path / "none")]) == 2


def test_card_shows_the_per_source_loss_weights(model_dir):
    doc = json.loads((model_dir / "model.json").read_text())
    doc["training"]["balance"] = "source"
    doc["training"]["classes"]["balance"] = {
        "mode": "source",
        "rule": "source x class: every (source, class) cell present carries the same share",
        "cells": [
            {"source": "140k", "class": "fake", "n": 2630, "weight": 0.6631, "share": 0.2},
            {"source": "fairface", "class": "real", "n": 2712, "weight": 0.6431, "share": 0.2},
        ],
        "sources": ["140k", "fairface"],
    }
    (model_dir / "model.json").write_text(json.dumps(doc))
    assert main(["report", str(model_dir)]) == 0
    md = (model_dir / "MODEL_CARD.md").read_text()
    data = md.split("## Data")[1].split("## Preprocessing")[0]
    assert "every (source, class) cell present carries the same share" in data
    assert re.search(r"fairface\W+real\W+2712\W+0\.643\W+20\.0 %", data)
    assert "(mean per class)" in data


def test_card_shows_generators_and_operating_point(model_dir):
    """From model.json's `generators` and `operating_point` (written by `export`): what was
    learned and not, the threshold's rule, and per source the false-alarm and catch rates."""
    doc = json.loads((model_dir / "model.json").read_text())
    doc["generators"] = {
        "learned": ["StyleGAN2 (thispersondoesnotexist.com)", "Stable Diffusion 2.1 (SDFD)"],
        "not_learned": "Midjourney and Flux: tested only by leaving one generator out",
    }
    doc["operating_point"] = {
        "rule": "at most 2 % of validation real photos called fake, each real source weighing "
        "the same",
        "false_alarm_target": 0.02,
        "split": "valid",
        "threshold": 0.6123,
        "sources": {
            "fairface": {"real": 120, "called_fake": 0.0083},
            "stable-diffusion": {"fake": 60, "caught": 0.95},
            "140k": {"real": 40, "called_fake": 0.025, "fake": 50, "caught": 0.9},
        },
    }
    (model_dir / "model.json").write_text(json.dumps(doc))
    assert main(["report", str(model_dir)]) == 0
    md = (model_dir / "MODEL_CARD.md").read_text()
    html = (model_dir / "MODEL_CARD.html").read_text()
    gen = md.split("## Generators")[1].split("\n## ")[0]
    assert "Stable Diffusion 2.1 (SDFD)" in gen and "StyleGAN2 (thispersondoesnotexist.com)" in gen
    assert "**Not learned**: Midjourney and Flux: tested only by leaving one generator out" in gen
    op = md.split("## Operating point")[1].split("\n## ")[0]
    assert "0.6123 on P(fake)" in op and "valid split by this rule: at most 2 % of" in op
    assert "model.json was changed" not in op  # its threshold is the served one
    assert re.search(r"fairface\W+120\W+0\.8 %\W+—\W+—", op)
    assert re.search(r"stable-diffusion\W+—\W+—\W+60\W+95\.0 %", op)
    assert re.search(r"140k\W+40\W+2\.5 %\W+50\W+90\.0 %", op)
    assert '<h2 id="generators">' in html and '<h2 id="operating-point">' in html
    assert 'faces from any other generator (see "Not learned" there)' in html
    assert "(threshold set on the valid split: see Operating point)" in md


def test_card_without_generators_or_operating_point_leaves_them_out(model_dir):
    assert main(["report", str(model_dir)]) == 0
    md = (model_dir / "MODEL_CARD.md").read_text()
    assert "## Generators" not in md and "## Operating point" not in md
    assert "the only fakes trained and tested on are StyleGAN and StyleGAN2" in md
    # The card no longer says the model is about GAN faces only.
    assert "made by a GAN." not in md and "GAN-face detection" not in md
    assert "(a GAN or a diffusion model)" in md


def test_no_face_intervals_are_wilson_and_do_not_collapse_at_zero():
    from training.fairness.metrics import wilson

    lo, hi = wilson(0, 89)  # a group with no miss still has an upper bound
    assert lo == 0.0 and hi == pytest.approx(0.0414, abs=5e-4)
    lo, hi = wilson(6, 726)  # Black FairFace val photos with no face, 27 November 2026
    assert lo == pytest.approx(0.00379, abs=5e-5) and hi == pytest.approx(0.01791, abs=5e-5)


def leave_out_sections(md: str) -> dict[str, str]:
    """The card's leave-source-out subsections, by what they held out."""
    parts = md.split("### Leave-source-out: ")[1:]
    return {p.split(" never trained on")[0]: p.split("\n## ")[0] for p in parts}


def test_leave_source_out_runs_given_by_flags(model_dir, tmp_path):
    lso = model_dir / "leave-source-out"
    # a stale run and old-layout files from an older input
    write_csv(lso / "old-run" / "metrics.csv", [metrics_row(9, 0.2222, 1, 1, 1, 6)])
    write_csv(lso / "metrics.csv", [metrics_row(9, 0.1111, 1, 1, 1, 6)])
    in_place = leave_out_eval(lso, "sd")  # already where it is kept: left as it is
    (in_place / "predictions.csv").write_text("path,p_fake\n")
    su = leave_out_eval(tmp_path / "elsewhere", "su")
    args = ["report", str(model_dir), "--leave-source-out", str(su)]
    assert main([*args, "--leave-source-out", str(in_place)]) == 0
    md = (model_dir / "MODEL_CARD.md").read_text()
    runs = leave_out_sections(md)
    assert list(runs) == ["stable-diffusion", "stylegan2-unsplash"]  # sorted by run name
    sd, su_text = runs["stable-diffusion"], runs["stylegan2-unsplash"]
    assert "honest measure of what happens with the next generator" in sd
    assert "never on **stable-diffusion**" in sd and "threshold 0.5871" in sd
    assert "tiny-leave-sd-out (LiteRT)" in sd and "`leave-source-out/sd/metrics.csv`" in sd
    # held-out source: AUC vs every real, caught 37 of 37+13, false alarms 6 of 6+477, and
    # no reals of its own
    assert re.search(
        r"\| stable-diffusion \| 0\.9123 \| 0\.7400 \(37 of 50\) \| 0\.0124 \(6 of 483\) "
        r"\| n/a: no reals \| n/a: no reals \|",
        sd,
    )
    # the full table: Group, n, Accuracy, ROC-AUC, Recall (catch), False alarms, ECE
    assert "| all | 643 | 0.9277 | 0.9702 | 0.7500 | 0.0124 | 0.0398 |" in sd
    assert "| dataset=stable-diffusion | 50 | 0.7400 | — | 0.7400 | — | 0.1811 |" in sd
    # stylegan2-unsplash has reals too: its own accuracy and ROC-AUC follow
    assert re.search(
        r"\| stylegan2-unsplash \| 0\.9377 \| 0\.8411 \(90 of 107\) \| 0\.0185 \(9 of 486\) "
        r"\| 0\.8612 \| 0\.9412 \|",
        su_text,
    )
    assert (
        "threshold 0.6123" in su_text and "trained on 140k, fairface, stable-diffusion" in su_text
    )
    html = re.sub(r"<[^>]+>", " ", (model_dir / "MODEL_CARD.html").read_text())
    assert re.search(r"stable-diffusion\W+0\.9123\W+0\.7400 \(37 of 50\)", html)
    # kept: exactly the given runs; the stale run and the old-layout files are gone
    assert sorted(p.name for p in lso.iterdir()) == ["sd", "su"]
    assert (lso / "sd" / "predictions.csv").is_file() and (lso / "su" / "metrics.csv").is_file()
    assert f"--leave-source-out {su} --leave-source-out {in_place}" in md
    # and re-rendered from the model folder alone, the same two runs
    assert main(["report", str(model_dir)]) == 0
    again = (model_dir / "MODEL_CARD.md").read_text()
    assert again.split("## Reproduce")[0] == md.split("## Reproduce")[0]


def test_leave_source_out_old_single_folder_layout_still_renders(model_dir, tmp_path):
    old = leave_out_eval(tmp_path, "su", old=True)
    for f in old.iterdir():  # the old layout: the files directly in leave-source-out/
        (model_dir / "leave-source-out").mkdir(exist_ok=True)
        f.rename(model_dir / "leave-source-out" / f.name)
    out = tmp_path / "card"
    assert main(["report", str(model_dir), "--out", str(out)]) == 0
    md = (out / "MODEL_CARD.md").read_text()
    runs = leave_out_sections(md)
    assert list(runs) == ["stylegan2-unsplash"]
    text = runs["stylegan2-unsplash"]
    assert "no `<source> fakes vs every real` row" in text  # no compact table: every row
    assert "| all | 193 | 0.8612 | 0.9377 | 0.8411 | 0.1163 | 0.0612 |" in text
    assert "trained on 140k, fairface only" in text
    assert (out / "leave-source-out" / "metrics.csv").is_file()  # copied as it was kept


def test_leave_source_out_folder_without_metrics_is_one_sentence(model_dir, tmp_path, capsys):
    good = leave_out_eval(tmp_path / "lso", "su")
    empty = tmp_path / "lso" / "sd"
    empty.mkdir()
    args = ["report", str(model_dir), "--leave-source-out", str(good)]
    assert main([*args, "--leave-source-out", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"report: --leave-source-out {empty}: no metrics.csv there."
    assert not (model_dir / "MODEL_CARD.md").exists()
    assert not (model_dir / "leave-source-out").exists()  # nothing staged


def test_card_shows_sd_fakes_by_race_and_checks_only_the_reals(tmp_path):
    """An audit with labelled Stable Diffusion fakes: the card tables catch rate, false alarms
    and AOD per race, and its cross-check with the FairFace summary counts the reals only."""
    from training.evaluation.report.fairness import cross_check, section_sd_race

    head = (
        "race,compared,n_fakes,fake_errors,caught,catch_rate,catch_lo,catch_hi,n_reals,"
        "real_errors,false_alarms,false_alarm_rate,false_alarm_lo,false_alarm_hi,aod,aod_lo,"
        "aod_hi,aod_goal,catch_gap_points,catch_gap_lo,catch_gap_hi,catch_gap_goal,note"
    )
    (tmp_path / "sd_race.csv").write_text(
        head + "\nLatino_Hispanic,yes,13,0,12,0.923077,0.666,0.986,714,1,2,0.0028,0.001,0.01,"
        "0.038,-0.002,0.116,not met,,,,,\n"
        "All seven,pooled,80,0,79,0.9875,0.93,0.99,4974,25,7,0.0014,0.0007,0.0029,,,,,"
        "7.692308,0.0,23.08,not met (CI crosses ±5),\n"
    )
    section = section_sd_race(tmp_path, tmp_path)
    text = str(section["table"])
    assert "92.3 % [66.6 %, 98.6 %]" in text and "0.038 [-0.002, 0.116]" in text
    assert section["gap"].startswith("7.7 points [0.0, 23.1]")
    assert (
        section_sd_race(tmp_path / "none", tmp_path) is None
        if (tmp_path / "none").mkdir() is None
        else False
    )

    summary = {"scored": 4974, "fpr": 0.0014, "source": "ff.csv"}
    audit = {"predictions": "a.csv", "group_rows": [
        {"definition": "all", "n": "5094", "n_real": "4974", "real_called_fake": "0.0014"}
    ]}  # fmt: skip
    assert cross_check(summary, audit) == []
    audit["group_rows"][0]["n_real"] = "4000"
    assert "disagree" in cross_check(summary, audit)[0]


def test_the_card_names_re_shared_copies_only_when_the_model_was_fitted_on_them():
    from training.evaluation.report.cli import _reshared

    assert _reshared({"operating_point": {"sources": {"140k": {}, "140k-reshare": {}}}})
    assert _reshared({"views": {"operating_point": {"sources": {"sdxl-reshare": {}}}}})
    assert not _reshared({"operating_point": {"sources": {"140k": {}, "140k-chain": {}}}})
    assert not _reshared({})
