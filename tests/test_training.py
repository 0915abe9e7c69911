"""The training module, run for real on a few dozen images of ../shared/data:
prepare -> train -> evaluate -> export -> `python -m shared predict`, plus bad inputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
KAGGLE = DATA / "real-vs-fake"
FAIRFACE = DATA / "fairface"
UNSPLASH = DATA / "stylegan2-unsplash"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data set beside the repository)")
    return path


def cli(*args: str, module: str = "training", check: bool = True):
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args[0]} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """40 images of the 140k layout, spread over splits and classes, aligned by the CLI."""
    out = tmp_path_factory.mktemp("prepared") / "p140k"
    cli("prepare", need(KAGGLE), out, "--limit", "40", "--workers", "2")
    return out


# ---- readers -----------------------------------------------------------------------------


def data_md_tables() -> dict[str, dict[tuple[str, str], int]]:
    """DATA.md's count tables, per section: {(split, class): n}. The data grows; its own
    documentation is what the readers must agree with, not numbers copied into this test."""
    text = need(DATA / "DATA.md").read_text()
    tables: dict[str, dict[tuple[str, str], int]] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].split()[0].rstrip("/")
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ("train", "valid", "test"):
            real, fake = (int(c.replace(",", "")) for c in cells[1:3])
            tables.setdefault(section, {})[(cells[0], "real")] = real
            tables[section][(cells[0], "fake")] = fake
    return tables


def data_md_fairface() -> tuple[int, int]:
    """(train, val) image counts as DATA.md's FairFace section states them."""
    import re

    text = need(DATA / "DATA.md").read_text()
    found = re.search(r"([\d,]+) train \(a random subset\) and ([\d,]+) val", text)
    assert found, "DATA.md no longer states FairFace's train and val counts"
    return tuple(int(g.replace(",", "")) for g in found.groups())


def data_md_one_class() -> dict[str, tuple[str, dict[str, int]]]:
    """The one-class sources DATA.md describes as "(all fake; 380 / 60 / 60 ...)": per section,
    (class, {split: n})."""
    import re

    text = need(DATA / "DATA.md").read_text()
    found = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        m = re.search(r"\(all (fake|real); ([\d,]+) / ([\d,]+) / ([\d,]+)", section)
        if m:
            counts = (int(g.replace(",", "")) for g in m.groups()[1:])
            found[section.split()[0].rstrip("/")] = (
                m.group(1),
                dict(zip(("train", "valid", "test"), counts, strict=True)),
            )
    return found


def split_class_counts(recs) -> dict[tuple[str, str], int]:
    return {
        (s, c): sum(r.split == s and r.label == c for r in recs)
        for s in ("train", "valid", "test")
        for c in ("real", "fake")
    }


def test_readers_count_the_shared_data():
    from training.data.datasets import read_source

    tables = data_md_tables()
    kind, recs = read_source(need(KAGGLE))
    assert kind == "140k"
    # DATA.md's table; label 1 = real in the Kaggle CSVs.
    assert split_class_counts(recs) == tables["real-vs-fake"]
    assert {r.source for r in recs} == {"140k"}
    assert all((KAGGLE / r.rel).is_file() for r in recs[:50])

    # The real/-fake/ layout with its own train/valid/test folders: those splits are kept,
    # not re-carved, and the source is named by its folder.
    kind, recs = read_source(need(UNSPLASH))
    assert kind == "realfake"
    assert split_class_counts(recs) == tables["stylegan2-unsplash"]
    assert {r.source for r in recs} == {"stylegan2-unsplash"}

    # The one-class sources (Stable Diffusion fakes, studio-like real portraits): each split
    # holds exactly DATA.md's count of its one class.
    one_class = data_md_one_class()
    assert {"stable-diffusion", "real-portraits"} <= set(one_class)
    for name, (label, counts) in one_class.items():
        kind, recs = read_source(need(DATA / name))
        assert kind == "realfake" and {r.label for r in recs} == {label}, name
        assert {s: sum(r.split == s for r in recs) for s in counts} == counts, name

    train, val = data_md_fairface()
    kind, recs = read_source(need(FAIRFACE))
    assert kind == "fairface" and len(recs) == train + val
    assert {r.label for r in recs} == {"real"}
    assert sum(r.split == "test" for r in recs) == val  # FairFace val = the audit's, never trained
    valid = sum(r.split == "valid" for r in recs)
    assert 0.07 * train < valid < 0.13 * train  # ~10% of FairFace train, fixed by file name
    assert sum(r.split == "train" for r in recs) == train - valid
    assert {"age", "gender", "race"} <= set(recs[0].attrs)


def test_bad_csv_and_missing_folder_are_one_clear_sentence(tmp_path):
    bad = tmp_path / "k"
    (bad / "real_vs_fake" / "real-vs-fake").mkdir(parents=True)
    (bad / "train.csv").write_text(",original_path,id,lbl,label_str,path\n0,a,b,1,real,x.jpg\n")
    proc = cli("prepare", bad, tmp_path / "out", check=False)
    assert proc.returncode == 2
    assert "train.csv: missing column(s) label" in proc.stderr and "Traceback" not in proc.stderr

    (bad / "train.csv").write_text(
        ",original_path,id,label,label_str,path\n0,a,b,1,real,x.jpg\n1,a,c,7,real,y.jpg\n"
    )
    proc = cli("prepare", bad, tmp_path / "out", check=False)
    assert "1 row(s) have a label other than 0 (fake) or 1 (real), first at line 3" in proc.stderr

    proc = cli("prepare", tmp_path / "nope", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "nope: no such folder" in proc.stderr

    proc = cli(
        "train", "--data", need(KAGGLE), "--model", "vgg10", "--out", tmp_path / "r", check=False
    )
    assert proc.returncode == 2 and "not a prepared dataset" in proc.stderr
    assert "python -m training prepare" in proc.stderr


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    src = tmp_path / "mine"
    real_src = sorted((need(KAGGLE) / "real_vs_fake/real-vs-fake/valid/real").glob("*.jpg"))
    (src / "real").mkdir(parents=True)
    (src / "fake").mkdir()
    for p in real_src[:2]:
        shutil.copy(p, src / "real" / p.name)
    (src / "fake" / "text.jpg").write_text("not an image at all")
    (src / "fake" / "cut.jpg").write_bytes(real_src[2].read_bytes()[:3000])
    out = tmp_path / "out"
    proc = cli("prepare", src, out, "--workers", "1")
    rows = {r["source"]: r for r in read_csv(out / "manifest.csv")}
    assert len(rows) == 4
    assert rows["fake/text.jpg"]["status"] == "not_an_image"
    assert rows["fake/cut.jpg"]["status"] in ("not_an_image", "no_face")
    assert {rows[f"real/{p.name}"]["status"] for p in real_src[:2]} == {"ok"}
    assert "2 of 4 images aligned" in proc.stdout and "not_an_image" in proc.stdout
    # realfake layout without split folders: the validation share is carved by file name.
    assert {r["split"] for r in rows.values()} <= {"train", "valid"}

    # A photo deleted from the source since (a feedback photo deleted at its owner's request)
    # leaves the manifest and the aligned folder on the next run; the rest is kept as it was.
    deleted = f"real/{real_src[0].name}"
    aligned = out / rows[deleted]["output"]
    assert aligned.is_file()
    (src / deleted).unlink()
    again = cli("prepare", src, out, "--workers", "1")
    after = {r["source"]: r for r in read_csv(out / "manifest.csv")}
    assert set(after) == set(rows) - {deleted} and not aligned.exists()
    assert after[f"real/{real_src[1].name}"] == rows[f"real/{real_src[1].name}"]
    assert "1 removed (source deleted)" in again.stdout


def test_prepare_mirrors_the_tree_and_resumes(prepared):
    rows = read_csv(prepared / "manifest.csv")
    assert len(rows) == 40
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    assert {r["label"] for r in rows} == {"fake", "real"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 35
    from PIL import Image

    for r in ok[:5]:
        assert r["output"] == r["source"][: -len(".jpg")] + ".png"
        with Image.open(prepared / r["output"]) as img:
            assert img.size == (256, 256) and img.mode == "RGB"
    summary = json.loads((prepared / "prepare.json").read_text())
    assert summary["images_per_second"] > 0 and summary["detector"] == "serving"
    # Re-running finds nothing left to do and keeps every row.
    again = cli("prepare", KAGGLE, prepared, "--limit", "40")
    assert "nothing left to do" in again.stdout
    assert read_csv(prepared / "manifest.csv") == rows


def test_shards_split_the_work(tmp_path):
    out = tmp_path / "sharded"
    for k in ("1/2", "2/2"):
        cli("prepare", need(KAGGLE), out, "--limit", "6", "--shard", k, "--workers", "1")
    from training.data.datasets import prepare_info, read_prepared

    a, b = (read_csv(out / f"manifest-{k}-of-2.csv") for k in (1, 2))
    assert a and b and not {r["source"] for r in a} & {r["source"] for r in b}
    assert len(read_prepared(out).rows) == len(a) + len(b)
    # A sharded folder has no prepare.json; what was recorded is read from a shard's file, so
    # `evaluate --robustness` finds the source photos and training the align size.
    assert not (out / "prepare.json").exists()
    info = prepare_info(out)
    assert info["source"] == str(need(KAGGLE)) and info["align_size"] == 256


# ---- the whole chain ---------------------------------------------------------------------


@pytest.mark.slow
def test_prepare_train_evaluate_export_predict(prepared, tmp_path):
    run = tmp_path / "run"
    cli(
        "train",
        "--data",
        prepared,
        "--model",
        "vgg10",
        "--size",
        "32",
        "--color",
        "gray",
        "--epochs",
        "2",
        "--out",
        run,
        "--batch-size",
        "8",
        "--quiet",
    )
    for name in (
        "config.json",
        "history.csv",
        "accuracy.png",
        "loss.png",
        "best.keras",
        "last.keras",
        "state.json",
    ):
        assert (run / name).is_file(), name
    history = read_csv(run / "history.csv")
    assert [h["epoch"] for h in history] == ["1", "2"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["classes"]["positive"] == "fake" and cfg["classes"]["train"]["fake"] > 0

    # --resume continues to a later epoch without losing the first two; the last epoch
    # (--anneal-epochs 1) trains at a tenth of the learning rate.
    cli("train", "--out", run, "--resume", "--epochs", "3", "--anneal-epochs", "1", "--quiet")
    resumed = read_csv(run / "history.csv")
    assert [h["epoch"] for h in resumed] == ["1", "2", "3"]
    assert history == resumed[:2]
    assert [float(h["lr"]) for h in resumed] == pytest.approx([3e-4, 3e-4, 3e-5])

    keras_eval = tmp_path / "eval-keras"
    cli(
        "evaluate",
        "--model",
        run,
        "--data",
        prepared,
        "--split",
        "test",
        "--out",
        keras_eval,
        "--by",
        "dataset",
    )
    for name in ("metrics.csv", "metrics.md", "metrics.tex", "predictions.csv", "roc_pr.png"):
        assert (keras_eval / name).is_file(), name
    preds = read_csv(keras_eval / "predictions.csv")
    assert list(preds[0])[:9] == ["path", "face", "x", "y", "w", "h", "p_fake", "label", "error"]
    scored = [p for p in preds if p["p_fake"]]
    y = np.array([p["true_label"] == "fake" for p in scored], int)
    p = np.array([float(p["p_fake"]) for p in scored])
    from sklearn import metrics as m

    table = read_csv(keras_eval / "metrics.csv")
    overall = table[0]
    assert overall["group"] == "all" and overall["positive"] == "fake"
    assert int(overall["n"]) == len(scored)
    pred = (p >= 0.5).astype(int)
    assert float(overall["accuracy"]) == pytest.approx(m.accuracy_score(y, pred), abs=1e-9)
    assert float(overall["roc_auc"]) == pytest.approx(m.roc_auc_score(y, p), abs=1e-4)
    assert int(overall["tp"]) == int(((pred == 1) & (y == 1)).sum())
    for name in ("f1", "precision", "recall"):
        want = getattr(m, f"{name}_score")(y, pred, zero_division=np.nan)
        got = float(overall[name])
        assert (np.isnan(want) and np.isnan(got)) or got == pytest.approx(want, abs=1e-9)
    assert "Positive class: **fake**" in (keras_eval / "metrics.md").read_text()
    assert r"\begin{tabular}" in (keras_eval / "metrics.tex").read_text()

    model_dir = tmp_path / "model"
    proc = cli("export", run, "--out", model_dir, "--name", "test-vgg10", "--threshold", "valid")
    assert "LiteRT equals Keras within 1e-5" in proc.stdout
    spec = json.loads((model_dir / "model.json").read_text())
    assert spec["input"] == {"size": 32, "color": "gray", "scale": 1 / 255, "offset": 0.0}
    assert spec["output"]["positive_class"] == "fake" and spec["name"] == "test-vgg10"
    assert spec["architecture"] == "vgg10" and "fake" in spec["trained_on"]
    assert spec["explain"]["signature"] == "explain" and "Grad-CAM" in proc.stdout

    # An export that fails a check leaves the model that was there alone.
    before = {f.name: f.read_bytes() for f in model_dir.iterdir() if f.is_file()}
    failed = cli("export", run, "--out", model_dir, "--max-mb", "0.01", check=False)
    said = failed.stderr.strip().splitlines()[-1]  # after TensorFlow's own start-up lines
    assert failed.returncode == 2 and said.startswith("export: ") and said.endswith("0.01 MB.")
    assert "--no-explain" in said
    assert {f.name: f.read_bytes() for f in model_dir.iterdir() if f.is_file()} == before

    # --threshold reals: the lowest cut that calls at most 2 % of every real source's validation
    # photos fake; model.json says so, with each source's rates at it.
    reals_dir = tmp_path / "model-reals"
    # (This tiny run scores some validation reals 1.0, so its budget is a generous 50 %.)
    cli(
        "export", run, "--out", reals_dir, "--threshold", "reals", "--false-alarm", "0.5",
        "--no-explain",
    )  # fmt: skip
    op = json.loads((reals_dir / "model.json").read_text())
    point = op["operating_point"]
    assert point["threshold"] == op["threshold"] and point["false_alarm_target"] == 0.5
    assert point["rule"].startswith("at most 50% of the validation real photos of every real")
    alarms = [s["called_fake"] for s in point["sources"].values() if "called_fake" in s]
    assert alarms and max(alarms) <= 0.5
    assert op["generators"]["learned"] and "not_learned" in op["generators"]
    bad = cli("export", run, "--out", reals_dir, "--threshold", "often", check=False)
    assert bad.returncode == 2 and "invalid threshold value: 'often'" in bad.stderr

    # The exported model scores the same images as the Keras checkpoint did.
    lite_eval = tmp_path / "eval-lite"
    cli("evaluate", "--model", model_dir, "--data", prepared, "--split", "test", "--out", lite_eval)
    lite = {r["path"]: r for r in read_csv(lite_eval / "predictions.csv")}
    cut = spec["threshold"]
    assert 0 < cut < 1 and spec["metrics"]["valid"]["threshold"] == cut
    assert all(
        r["label"] == ("fake" if float(r["p_fake"]) >= cut else "real")
        for r in lite.values()
        if r["p_fake"]
    )
    assert float(read_csv(lite_eval / "metrics.csv")[0]["threshold"]) == cut
    # Export fitted a temperature on valid; serving applies it to what the Keras run said.
    from shared.model import calibrate

    temperature = spec["output"]["temperature"]
    fitted = spec["metrics"]["valid"]["calibration"]
    # model.json keeps the temperature to 6 decimals: they agree to half a unit in the last one
    assert temperature > 0 and fitted["temperature"] == pytest.approx(temperature, abs=5.1e-7)
    assert fitted["nll_after"] <= fitted["nll_before"] + 1e-9  # T = 1 was a candidate
    # near 0.5, sigmoid(logit / T) scales a difference by up to 1/T
    tolerance = 2e-5 * max(1.0, 1.0 / temperature)
    for r in scored:
        want = calibrate(np.array([float(r["p_fake"])], np.float32), temperature)[0]
        assert abs(float(lite[r["path"]]["p_fake"]) - want) <= tolerance

    # Serving's own CLI, from the original JPEGs: same faces, same boxes, same probabilities.
    sources = [r["path"] for r in scored[:6]]
    served_csv = tmp_path / "served.csv"
    cli("predict", *sources, "--model", model_dir, "--csv", served_csv, module="shared")
    served = {r["path"]: r for r in read_csv(served_csv) if r["face"] == "0"}
    assert len(served) == len(sources)
    for path in sources:
        want = lite[path]
        got = served[path]
        assert abs(float(got["p_fake"]) - float(want["p_fake"])) <= 2e-5, path
        assert [got[k] for k in "xywh"] == [want[k] for k in "xywh"]


@pytest.mark.slow
def test_training_learns_a_learnable_fake(tmp_path):
    """Fakes carry a dark band at the top, reals at the bottom (plus noise): a model that
    learns at all separates them; chance is 50%."""
    from PIL import Image

    from tests.conftest import write_manifest

    root = tmp_path / "synthetic"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        label = "fake" if i % 2 else "real"
        img = rng.normal(128, 30, (256, 256, 3))
        band = slice(20, 80) if label == "fake" else slice(176, 236)
        img[band] -= 60
        rel = f"{label}/{i}.png"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / rel)
        split = "valid" if i % 5 == 0 else "train"
        rows.append(
            {
                "source": rel,
                "output": rel,
                "split": split,
                "label": label,
                "dataset": "synthetic",
                "faces": "1",
                "status": "ok",
            }
        )
    write_manifest(root, rows)
    run = tmp_path / "run"
    cli(
        "train",
        "--data",
        root,
        "--model",
        "baseline",
        "--size",
        "32",
        "--epochs",
        "4",
        "--lr",
        "1e-3",
        "--batch-size",
        "16",
        "--out",
        run,
        "--quiet",
        "--no-augment",
    )
    state = json.loads((run / "state.json").read_text())
    assert state["best_val_accuracy"] >= 0.85, state


@pytest.mark.slow
def test_source_balance_is_recorded_in_the_run(tmp_path):
    """Two sources with opposite class mixes, trained with `--balance source`: config.json
    records every (source, class) cell with an equal share of the loss."""
    from PIL import Image

    from tests.conftest import write_manifest

    root = tmp_path / "two-sources"
    rng = np.random.default_rng(1)
    rows = []
    # training split: source "a" 24 fakes + 8 reals, source "b" 8 fakes + 24 reals
    for source, mix in (("a", ["fake"] * 3 + ["real"]), ("b", ["fake"] + ["real"] * 3)):
        for i in range(40):
            label = mix[i % 4]
            rel = f"{source}/{label}/{i}.png"
            (root / source / label).mkdir(parents=True, exist_ok=True)
            img = rng.normal(128 + (30 if label == "fake" else -30), 20, (64, 64, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / rel)
            split = "valid" if i % 5 == 0 else "train"
            rows.append(
                {
                    "source": rel,
                    "output": rel,
                    "split": split,
                    "label": label,
                    "dataset": source,
                    "faces": "1",
                    "status": "ok",
                }
            )
    write_manifest(root, rows)
    run = tmp_path / "run"
    cli(
        "train",
        "--data",
        root,
        "--model",
        "baseline",
        "--size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--balance",
        "source",
        "--out",
        run,
        "--quiet",
        "--no-augment",
    )
    balance = json.loads((run / "config.json").read_text())["classes"]["balance"]
    assert balance["mode"] == "source" and balance["sources"] == ["a", "b"]
    cells = {(c["source"], c["class"]): c for c in balance["cells"]}
    assert {k: c["n"] for k, c in cells.items()} == {
        ("a", "fake"): 24,
        ("a", "real"): 8,
        ("b", "fake"): 8,
        ("b", "real"): 24,
    }
    assert all(c["share"] == pytest.approx(0.25) for c in cells.values())
    assert cells[("a", "real")]["weight"] == pytest.approx(3 * cells[("a", "fake")]["weight"])


def test_alignment_drift_is_caught(prepared, tmp_path):
    """Crops prepared by other alignment code than serving's are detected (export refuses)."""
    from PIL import Image

    from training.data.prepare import alignment_drift

    worst, compared = alignment_drift(prepared, count=3)
    assert worst == 0 and compared == 3  # prepare used serving's code: identical pixels
    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    for r in read_csv(copy / "manifest.csv"):
        if r["status"] == "ok":
            path = copy / r["output"]
            img = np.asarray(Image.open(path)).astype(np.int16)
            Image.fromarray(np.clip(img + 3, 0, 255).astype(np.uint8)).save(path)
    worst, _ = alignment_drift(copy, count=3)
    assert worst >= 3
