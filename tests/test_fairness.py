"""`python -m training fairness` end to end: joining, counting, reports, clear errors."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from training.fairness import audit as fairness

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAIRFACE = DATA / "fairface"
HEADER = ["path", "face", "x", "y", "w", "h", "p_fake", "label", "error"]


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    fairness.register(parser.add_subparsers())
    args = parser.parse_args(["fairness", "--quiet", "--resamples", "200", *map(str, argv)])
    return args.func(args)


def write_predictions(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def pred(path, p_fake: float, face: int = 0) -> list:
    return [str(path), face, 1, 2, 30, 30, f"{p_fake:.4f}", "fake" if p_fake >= 0.5 else "real", ""]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def fairface_labels():
    csv_path = FAIRFACE / "fairface_label_val.csv"
    if not csv_path.is_file():
        pytest.skip("FairFace labels not found at ../shared/data/fairface (read-only data)")
    return read_csv(csv_path)


def test_fairface_audit_counts_every_row_and_is_reproducible_from_joined_csv(
    tmp_path, fairface_labels
):
    rng = np.random.default_rng(0)
    chosen = fairface_labels[:400]
    rows = []
    for i, lab in enumerate(chosen):
        # Three spellings of the same join: relative to the cwd, absolute, relative to the root.
        path = [FAIRFACE / lab["file"], (FAIRFACE / lab["file"]).resolve(), lab["file"]][i % 3]
        if i % 50 == 7:
            rows.append([str(path), "", "", "", "", "", "", "", "no_face"])
            continue
        bias = 0.25 if lab["race"] == "Black" else 0.0
        rows.append(pred(path, rng.beta(2, 5) + bias))
        if i % 40 == 3:
            rows.append(pred(path, 0.99, face=1))  # a second face in the photo: not audited
    rows.append(pred("somewhere/else.jpg", 0.1))
    rows.append(pred(FAIRFACE / chosen[0]["file"], 0.1))  # duplicate of a joined file
    preds = write_predictions(tmp_path / "preds.csv", rows)
    out = tmp_path / "audit"
    assert cli("--predictions", preds, "--labels", FAIRFACE, "--out", out) == 0

    meta = json.loads((out / "fairness.json").read_text())
    counts = meta["counts"]
    assert counts["rows"] == len(rows)
    assert counts["joined"] == 400 and counts["error"] == 8 and counts["scored"] == 392
    assert counts["extra_face"] == 10 and counts["no_label"] == 1 and counts["duplicate"] == 1
    assert read_csv(out / "unjoined.csv") == [
        {"predictions": str(preds), "path": "somewhere/else.jpg", "reason": "no_label"}
    ]
    md = (out / "fairness.md").read_text()
    assert "no fake images" in md and "FPR (rate judged real among truly fake) is undefined" in md

    # Recompute the Black-vs-others DI from joined.csv alone: the audit must agree.
    joined = [r for r in read_csv(out / "joined.csv") if not r["error"]]
    sel = {
        black: np.mean([r["judged"] == "real" for r in joined if (r["race"] == "Black") == black])
        for black in (True, False)
    }
    summary = {r["privileged"] + "|" + r["unprivileged"]: r for r in read_csv(out / "fairness.csv")}
    black = summary["Non-Black|Black"]
    assert float(black["di"]) == pytest.approx(sel[True] / sel[False], abs=1e-6)
    assert float(black["di_lo"]) < float(black["di"]) < float(black["di_hi"])
    assert float(black["di"]) < 0.95  # the bias put in above shows
    assert black["aod"] == "" and "neither group has truly fake images" in black["note"]
    assert set(summary) == {
        "Male|Female", "White|Non-White", "Non-Black|Black", "Non-Child|Age 0-2",
        "Non-Child|Age 3-9", "Non-Senior|Age 70+",
    }  # fmt: skip
    n_black = sum(r["race"] == "Black" for r in joined)
    assert int(black["n_unprivileged"]) == n_black
    groups = read_csv(out / "fairness_groups.csv")
    everyone = groups[0]
    assert (everyone["definition"], everyone["group"]) == ("all", "All")
    assert int(everyone["n"]) == 392 and int(everyone["errors"]) == 8
    assert float(everyone["error_rate"]) == pytest.approx(8 / 400)
    g = next(r for r in groups if r["group"] == "Black")
    assert int(g["n"]) == n_black == int(g["tp"]) + int(g["fn"])
    assert float(g["real_called_fake"]) == pytest.approx(1 - sel[True], abs=1e-6)
    assert g["fpr"] == "" and g["fake_called_real"] == ""
    tex = (out / "fairness.tex").read_text()
    assert "Non-Black & Black &" in tex and "\\begin{tabular}" in tex
    assert (out / "fairness.png").stat().st_size > 10_000


def test_same_seed_same_intervals_and_extra_group(tmp_path, fairface_labels):
    rng = np.random.default_rng(1)
    rows = [pred(FAIRFACE / lab["file"], rng.random()) for lab in fairface_labels[:200]]
    preds = write_predictions(tmp_path / "p.csv", rows)
    labels = FAIRFACE / "fairface_label_val.csv"
    cli("--predictions", preds, "--labels", labels, "--out", tmp_path / "a")
    cli("--predictions", preds, "--labels", labels, "--out", tmp_path / "b",
        "--group", "race=Indian|Middle Eastern", "--privileged-group", "age=20-29")  # fmt: skip
    a, b = read_csv(tmp_path / "a" / "fairness.csv"), read_csv(tmp_path / "b" / "fairness.csv")
    assert a == b[: len(a)]  # adding definitions leaves the others' intervals alone
    extra = {r["privileged"]: r for r in b[len(a) :]}
    assert extra["Non-Indian/Middle Eastern"]["unprivileged"] == "Indian/Middle Eastern"
    n_ind = sum(lab["race"] in ("Indian", "Middle Eastern") for lab in fairface_labels[:200])
    assert int(extra["Non-Indian/Middle Eastern"]["n_unprivileged"]) == n_ind
    assert extra["20-29"]["unprivileged"] == "Non-20-29"


def test_labelled_fakes_give_tpr_and_aod(tmp_path):
    """A falsify pairs.csv + manifest labels reals and fakes; a UTKFace folder labels by name."""
    real_root, fake_root = tmp_path / "real", tmp_path / "fakes"
    (real_root / "val").mkdir(parents=True)
    (fake_root / "val").mkdir(parents=True)
    rng = np.random.default_rng(3)
    pairs, rows = [], []
    for i in range(300):
        gender = "Female" if i % 3 == 0 else "Male"
        race = ["White", "Black", "Indian"][(i // 3) % 3]
        pairs.append([f"val/{i}.jpg", f"val/{i}.jpg", "20-29", gender, race,
                      "ok" if i % 25 else "no_face"])  # fmt: skip
        catch = 0.6 if gender == "Female" else 0.9  # fakes of women slip through more
        rows.append(pred(real_root / f"val/{i}.jpg", rng.random() * 0.6))
        if i % 25:
            rows.append(pred(fake_root / f"val/{i}.jpg", 0.9 if rng.random() < catch else 0.2))
    with (fake_root / "pairs.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["real_path", "fake_path", "age", "gender", "race", "status"])
        w.writerows(pairs)
    (fake_root / "falsify.json").write_text(json.dumps({"real_root": str(real_root)}))
    preds = write_predictions(tmp_path / "p.csv", rows)
    out = tmp_path / "out"
    assert cli("--predictions", preds, "--labels", fake_root, "--out", out) == 0
    meta = json.loads((out / "fairness.json").read_text())
    assert meta["class_counts"] == {"real": 300, "fake": 288}
    male = next(r for r in read_csv(out / "fairness.csv") if r["privileged"] == "Male")
    assert male["aod"] != "" and float(male["aod_lo"]) <= float(male["aod"]) <= float(
        male["aod_hi"]
    )
    # Favourable = real: FPR is "fake judged real", higher for women -> AOD > 0 here.
    assert float(male["aod"]) > 0.05
    groups = {r["group"]: r for r in read_csv(out / "fairness_groups.csv")
              if r["definition"].startswith("gender")}  # fmt: skip
    for g in groups.values():
        aod_terms = float(g["fpr"]), float(g["tpr"])
        assert all(math.isfinite(x) for x in aod_terms)
    fem, mal = groups["Female"], groups["Male"]
    want = 0.5 * ((float(fem["fpr"]) - float(mal["fpr"])) + (float(fem["tpr"]) - float(mal["tpr"])))
    assert float(male["aod"]) == pytest.approx(want, abs=1e-5)
    assert float(fem["fake_called_real"]) == pytest.approx(float(fem["fpr"]))


def test_utkface_names_are_labels(tmp_path):
    utk = tmp_path / "UTKFace"
    utk.mkdir()
    names = ["1_0_1_2017.jpg", "35_1_0_2017.jpg", "80_0_0_2017.jpg", "bad_name.jpg"]
    for n in names:
        (utk / n).write_bytes(b"")
    preds = write_predictions(tmp_path / "p.csv", [pred(utk / n, 0.2) for n in names])
    out = tmp_path / "out"
    assert cli("--predictions", preds, "--labels", utk, "--out", out) == 0
    joined = {Path(r["path"]).name: r for r in read_csv(out / "joined.csv")}
    assert joined["1_0_1_2017.jpg"]["age"] == "0-2"
    assert joined["1_0_1_2017.jpg"]["race"] == "Black"
    assert joined["35_1_0_2017.jpg"]["gender"] == "Female"
    assert joined["80_0_0_2017.jpg"]["age"] == "more than 70"
    assert [r["reason"] for r in read_csv(out / "unjoined.csv")] == ["no_label"]


def test_bad_input_is_one_clear_sentence(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,age,gender,race\nval/1.jpg,3-9,Male,White\n")
    assert cli("--predictions", bad, "--labels", labels, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a predictions CSV" in err and "Traceback" not in err

    ok = write_predictions(tmp_path / "p.csv", [pred(tmp_path / "val/1.jpg", 0.1)])
    assert cli("--predictions", ok, "--labels", labels, "--out", tmp_path / "o",
               "--group", "skin=dark") == 2  # fmt: skip
    assert "needs a 'skin' label column" in capsys.readouterr().err
    assert cli("--predictions", ok, "--labels", tmp_path / "nope", "--out", tmp_path / "o") == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert cli("--predictions", ok, "--labels", labels, "--out", tmp_path / "o",
               "--group", "race") == 2  # fmt: skip
    assert "column=value" in capsys.readouterr().err


def test_entry_point_help_explains():
    """The command is registered in `python -m training` and its --help says what it writes."""
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "training", "fairness", "--help"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for word in ("disparate impact", "--predictions", "--labels", "--resamples", "fairness.tex"):
        assert word in res.stdout
