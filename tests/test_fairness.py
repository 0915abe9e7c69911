"""`python -m training fairness` end to end: joining, counting, reports, clear errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FAIRFACE = DATA / "fairface"
HEADER = ["path", "face", "x", "y", "w", "h", "p_fake", "label", "error"]


def cli(*argv: str) -> int:
    return main(["fairness", "--quiet", "--resamples", "200", *map(str, argv)])


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
    for word in ("disparate impact", "--predictions", "--labels", "--resamples", "fairness.tex",
                 "--fakes-labels", "--fake-splits", "sd_race.md", "Wilson"):  # fmt: skip
        assert word in res.stdout


# --- labelled fakes: Stable Diffusion with their prompted race --------------------------------

SD = DATA / "stable-diffusion"
SD_HEADER = ["path", "race", "who", "prompt"]
# Per race: (SD fakes, of them caught, real photos, of them called fake). Black vs the rest by
# hand (favourable = judged real): TPR_u = 10/16, TPR_p = 27/32, FPR_u = 4/8, FPR_p = 1/16,
# AOD = ½[(4/8 − 1/16) + (10/16 − 27/32)] = 0.109375.
PLAN = {"White": (10, 9, 20, 2), "Black": (8, 4, 16, 6), "Indian": (6, 6, 12, 3)}
BLACK_AOD = 0.5 * ((4 / 8 - 1 / 16) + (10 / 16 - 27 / 32))


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def sd_world(tmp_path: Path, blends: bool = True) -> tuple[Path, Path, Path]:
    """FairFace-style reals and SDFD-style fakes (labels only: the join needs no pixels).

    Returns (predictions CSV, FairFace folder, SD folder); prediction paths are relative to
    tmp_path, as `make fairness` writes them relative to the repository.
    """
    ff, sd = tmp_path / "fairface", tmp_path / "stable-diffusion"
    labels, sd_labels, preds = [], [], []
    n = 0
    for race, (fakes, caught, reals, alarms) in PLAN.items():
        for i in range(reals):
            n += 1
            labels.append([f"val/{n}.jpg", "20-29", "Female" if i % 2 else "Male", race, "True"])
            preds.append(pred(f"fairface/val/{n}.jpg", 0.9 if i < alarms else 0.1))
        for i in range(fakes):
            key = f"{'valid' if i % 2 else 'test'}/fake/{race[:2]}-{i},{i}.jpg"  # a comma
            sd_labels.append([key, race, "woman", f"{race}, woman, 8K"])
            preds.append(pred(f"stable-diffusion/{key}", 0.9 if i < caught else 0.2))
    # Trained-on fakes: labelled, predicted, left out by the default --fake-splits.
    for i in range(4):
        sd_labels.append([f"train/fake/tr-{i}.jpg", "White", "man", "White, man"])
        preds.append(pred(f"stable-diffusion/train/fake/tr-{i}.jpg", 0.1))
    # A fake with no face found: counted, not scored.
    sd_labels.append(["valid/fake/noface.jpg", "Black", "boy", "Black, boy"])
    preds.append(["stable-diffusion/valid/fake/noface.jpg", "", "", "", "", "", "", "", "no_face"])
    # Fakes with no FairFace race, all missed: if they counted anywhere they would move it.
    for i in range(12):
        race = "Pacific Islander" if i < 5 else "Blend: Black + White"
        sd_labels.append([f"test/fake/x-{i}.jpg", race, "man", race])
        if blends:
            preds.append(pred(f"stable-diffusion/test/fake/x-{i}.jpg", 0.1))
    write_csv(ff / "fairface_label_val.csv", ["file", "age", "gender", "race", "service_test"],
              labels)  # fmt: skip
    write_csv(sd / "sdfd_labels.csv", SD_HEADER, sd_labels)
    return write_predictions(tmp_path / "p.csv", preds), ff, sd


def sd_cli(tmp_path: Path, preds: Path, ff: Path, sd: Path, out: str, *extra) -> int:
    return cli("--predictions", preds, "--labels", ff, "--fakes-labels", sd, "--out",
               tmp_path / out, "--base", tmp_path, *extra)  # fmt: skip


def test_sd_fakes_join_by_path_and_the_race_table_matches_hand_counts(tmp_path):
    from training.fairness.metrics import wilson

    preds, ff, sd = sd_world(tmp_path)
    assert sd_cli(tmp_path, preds, ff, sd, "out") == 0
    out = tmp_path / "out"
    meta = json.loads((out / "fairness.json").read_text())
    assert meta["fake_splits"] == ["valid", "test"]
    assert meta["counts"]["fake_split_excluded"] == 4 and "no_label" not in meta["counts"]
    assert meta["counts"]["error"] == 1
    assert meta["class_counts"] == {"real": 48, "fake": 24 + 12}
    unjoined = read_csv(out / "unjoined.csv")
    assert [r["reason"] for r in unjoined] == ["fake_split_excluded"] * 4
    joined = {r["path"]: r for r in read_csv(out / "joined.csv")}
    comma = joined["stable-diffusion/valid/fake/Wh-1,1.jpg"]
    assert (comma["true_class"], comma["race"], comma["sd_race"]) == ("fake", "White", "White")
    blend = joined["stable-diffusion/test/fake/x-6.jpg"]
    assert (blend["race"], blend["sd_race"]) == ("", "Blend: Black + White")

    rows = {r["race"]: r for r in read_csv(out / "sd_race.csv")}
    for race, (fakes, caught, reals, alarms) in PLAN.items():
        r = rows[race]
        assert (int(r["n_fakes"]), int(r["caught"])) == (fakes, caught)
        assert (int(r["n_reals"]), int(r["false_alarms"])) == (reals, alarms)
        assert float(r["catch_rate"]) == pytest.approx(caught / fakes, abs=1e-6)
        lo, hi = wilson(caught, fakes)
        assert (float(r["catch_lo"]), float(r["catch_hi"])) == pytest.approx((lo, hi), abs=1e-6)
        lo, hi = wilson(alarms, reals)
        assert float(r["false_alarm_lo"]) == pytest.approx(lo, abs=1e-6)
        assert float(r["false_alarm_hi"]) == pytest.approx(hi, abs=1e-6)
    black = rows["Black"]
    assert int(black["fake_errors"]) == 1
    assert float(black["aod"]) == pytest.approx(BLACK_AOD, abs=1e-6)
    assert float(black["aod_lo"]) < BLACK_AOD < float(black["aod_hi"])
    assert black["aod_goal"] == "not met (CI crosses ±0.02)"
    assert "judged all one way (all 6 fakes caught)" in rows["Indian"]["note"]
    assert rows["East Asian"]["aod"] == "" and rows["East Asian"]["aod_goal"] == "undefined"
    assert "group 'East Asian' has no rows" in rows["East Asian"]["note"]
    # The gap: Indian 6/6 caught vs Black 4/8, over the races that have fakes.
    pooled = rows["All seven"]
    assert float(pooled["catch_gap_points"]) == pytest.approx(50.0)
    assert float(pooled["catch_gap_lo"]) <= 50.0 <= float(pooled["catch_gap_hi"])
    assert int(pooled["n_fakes"]) == 24 and pooled["compared"] == "pooled"
    md = (out / "sd_race.md").read_text()
    assert "each FairFace race as the unprivileged group against the other six" in md
    assert "**valid, test**" in md and "The intervals are wide" in md
    assert "Largest catch-rate gap across the seven races: 50.0 points" in md
    assert "Stable Diffusion fakes by race" in (out / "fairness.md").read_text()
    assert (out / "sd_race.png").stat().st_size > 10_000


def test_sd_race_aod_matches_aif360(tmp_path):
    """Each race against the other six, from joined.csv alone, through AIF360."""
    from tests.test_fairness_metrics import _aif360_metric
    from training.fairness.metrics import PRIV, UNPRIV

    preds, ff, sd = sd_world(tmp_path)
    assert sd_cli(tmp_path, preds, ff, sd, "out") == 0
    rows = [r for r in read_csv(tmp_path / "out" / "joined.csv") if not r["error"] and r["race"]]
    truth = np.array([r["true_class"] == "real" for r in rows])  # 1 = favourable
    judged = np.array([r["judged"] == "real" for r in rows])
    table = {r["race"]: r for r in read_csv(tmp_path / "out" / "sd_race.csv")}
    for race in PLAN:
        side = np.array([UNPRIV if r["race"] == race else PRIV for r in rows])
        ref = _aif360_metric(side, truth, judged).average_odds_difference()
        assert float(table[race]["aod"]) == pytest.approx(ref, abs=1e-6)


def test_blend_and_pacific_islander_fakes_are_counted_but_compared_with_nothing(tmp_path):
    preds, ff, sd = sd_world(tmp_path / "with")
    bare, ff2, sd2 = sd_world(tmp_path / "without", blends=False)
    assert sd_cli(tmp_path / "with", preds, ff, sd, "out") == 0
    assert sd_cli(tmp_path / "without", bare, ff2, sd2, "out") == 0
    a = read_csv(tmp_path / "with" / "out" / "sd_race.csv")
    b = read_csv(tmp_path / "without" / "out" / "sd_race.csv")
    by_a = {r["race"]: r for r in a}
    assert (by_a["Pacific Islander"]["n_fakes"], by_a["Blend"]["n_fakes"]) == ("5", "7")
    assert by_a["Blend"]["caught"] == "0" and by_a["Blend"]["aod"] == ""
    assert by_a["Blend"]["compared"] == "no"
    # Twelve missed fakes more, yet every compared row (AOD, its interval, the gap) is unchanged.
    drop = ("Pacific Islander", "Blend")
    assert [r for r in a if r["race"] not in drop] == [r for r in b if r["race"] not in drop]
    # Nor do they enter the race definitions of the main table.
    table = {r["unprivileged"]: r for r in read_csv(tmp_path / "with" / "out" / "fairness.csv")}
    # Scored rows: Black 16 reals + 8 fakes, Indian 12 + 6 (the no-face fake is not scored).
    assert int(table["Non-White"]["n_unprivileged"]) == 16 + 8 + 12 + 6
    assert int(table["Black"]["n_unprivileged"]) == 16 + 8


def test_fake_splits_picks_the_audited_fakes(tmp_path):
    preds, ff, sd = sd_world(tmp_path)
    assert sd_cli(tmp_path, preds, ff, sd, "train", "--fake-splits", "train") == 0
    meta = json.loads((tmp_path / "train" / "fairness.json").read_text())
    assert meta["fake_splits"] == ["train"] and meta["class_counts"]["fake"] == 4
    white = next(r for r in read_csv(tmp_path / "train" / "sd_race.csv") if r["race"] == "White")
    assert (white["n_fakes"], white["caught"]) == ("4", "0")
    assert meta["counts"]["fake_split_excluded"] == 24 + 1 + 12


def test_bad_fakes_labels_is_one_clear_sentence(tmp_path, capsys):
    preds, ff, sd = sd_world(tmp_path)

    def error(*extra) -> str:
        assert cli("--predictions", preds, "--labels", ff, "--out", tmp_path / "o", *extra) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1, err
        return err

    empty = tmp_path / "empty"
    empty.mkdir()
    assert f"{empty / 'sdfd_labels.csv'}: not found" in error("--fakes-labels", empty)
    assert "no such file or folder" in error("--fakes-labels", tmp_path / "nope")
    no_race = write_csv(tmp_path / "bad" / "sdfd_labels.csv", ["path", "who"], [["a.jpg", "man"]])
    assert f"{no_race}: not an SD labels CSV, missing column(s) race" in error(
        "--fakes-labels", no_race.parent
    )
    odd = write_csv(tmp_path / "odd.csv", SD_HEADER, [["test/fake/a.jpg", "Martian", "man", ""]])
    assert f"{odd} line 2: race 'Martian'" in error("--fakes-labels", odd)
    msg = error("--fakes-labels", sd, "--fake-splits", "valid,holdout")
    assert f"{sd / 'sdfd_labels.csv'}: --fake-splits holdout names no split" in msg


@pytest.fixture
def sd_labels():
    csv_path = SD / "sdfd_labels.csv"
    if not csv_path.is_file():
        pytest.skip("SD labels not found at ../shared/data/stable-diffusion (read-only data)")
    return read_csv(csv_path)


def test_real_sd_fakes_join_fairface_reals(tmp_path, fairface_labels, sd_labels):
    """Every shipped SD image joins its label; train is left out; races counted per split."""
    from collections import Counter

    from training.fairness.labels import race_group

    rng = np.random.default_rng(5)
    rows = [pred(FAIRFACE / lab["file"], rng.random() * 0.7) for lab in fairface_labels[:600]]
    rows += [pred(f, rng.random()) for f in sorted(SD.rglob("*.jpg"))]
    preds = write_predictions(tmp_path / "p.csv", rows)
    out = tmp_path / "out"
    assert cli("--predictions", preds, "--labels", FAIRFACE, "--fakes-labels", SD,
               "--out", out) == 0  # fmt: skip
    meta = json.loads((out / "fairness.json").read_text())
    unseen = [r for r in sd_labels if r["path"].split("/")[0] in ("valid", "test")]
    assert "no_label" not in meta["counts"]
    assert meta["counts"]["fake_split_excluded"] == len(sd_labels) - len(unseen) > 0
    assert meta["class_counts"] == {"real": 600, "fake": len(unseen)}
    want = Counter(race_group(r["race"]) for r in unseen)
    got = {r["race"]: int(r["n_fakes"]) for r in read_csv(out / "sd_race.csv")}
    assert {k: got[k] for k in want} == dict(want)
    reals = Counter(lab["race"] for lab in fairface_labels[:600])
    got = {r["race"]: int(r["n_reals"]) for r in read_csv(out / "sd_race.csv")}
    assert {k: got[k] for k in reals} == dict(reals)
