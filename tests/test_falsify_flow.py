"""The paper's flow end to end on a handful of FairFace faces: falsify -> predict -> fairness.

Real dlib, the real `python -m shared predict` CLI with the small exported test model, and a
stand-in encoder in place of pSp (its weights cannot be downloaded here).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from training.__main__ import main
from training.falsify.encoder import Encoder

ROOT = Path(__file__).resolve().parents[1]
FAIRFACE = ROOT.parent / "shared" / "data" / "fairface"
FILES = ["val/1.jpg", "val/2.jpg", "val/3.jpg", "val/4.jpg", "val/1023.jpg", "val/6.jpg"]


class SoftEncoder(Encoder):
    """Mirror and soften: still a face dlib finds, visibly not the original pixels."""

    name = "soft"

    def encode(self, face: np.ndarray) -> np.ndarray:
        img = Image.fromarray(face[:, ::-1].copy()).filter(ImageFilter.GaussianBlur(1.5))
        return np.asarray(img)


def run(*argv) -> int:
    return main([*map(str, argv)])


@pytest.mark.slow
def test_falsified_pairs_give_per_group_tpr_and_aod(tmp_path, tiny_model_dir):
    labels_csv = FAIRFACE / "fairface_label_val.csv"
    if not labels_csv.is_file():
        pytest.skip("needs ../shared/data/fairface (the shared data set beside the repository)")
    root = tmp_path / "fairface"
    (root / "val").mkdir(parents=True)
    with labels_csv.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["file"] in FILES]
    for rel in FILES:
        shutil.copy(FAIRFACE / rel, root / rel)
    with (root / "fairface_label_val.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    fakes = tmp_path / "fakes"
    enc = f"{__name__}:SoftEncoder"
    assert run("falsify", "--quiet", "--data", root, "--out", fakes, "--encoder", enc) == 0
    pairs = {r["real_path"]: r for r in csv.DictReader((fakes / "pairs.csv").open())}
    assert pairs["val/1023.jpg"]["status"] == "no_face"  # no face is found in this FairFace crop
    made = [k for k, r in pairs.items() if r["status"] == "ok"]
    assert len(made) == 5

    preds = tmp_path / "preds.csv"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared",
            "predict",
            str(root / "val"),
            str(fakes / "val"),
            "--model",
            str(tiny_model_dir),
            "--csv",
            str(preds),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr

    out = tmp_path / "audit"
    code = run(
        "fairness",
        "--quiet",
        "--resamples",
        "200",
        "--predictions",
        preds,
        "--labels",
        fakes,
        "--out",
        out,
    )
    assert code == 0
    meta = json.loads((out / "fairness.json").read_text())
    with (out / "joined.csv").open(newline="") as fh:
        joined = list(csv.DictReader(fh))
    # Reals come from the manifest's root, fakes from the pairs; the failed real is still joined
    # (with its no_face error) because pairs.csv lists it.
    assert meta["counts"]["joined"] == 6 + 5
    by_class = {c: [r for r in joined if r["true_class"] == c] for c in ("real", "fake")}
    assert len(by_class["real"]) == 6 and len(by_class["fake"]) == 5
    assert {r["key"] for r in by_class["fake"]} == set(made)
    assert [r["error"] for r in joined if r["key"] == "val/1023.jpg"] == ["no_face"]
    with (out / "fairness.csv").open(newline="") as fh:
        male = next(r for r in csv.DictReader(fh) if r["privileged"] == "Male")
    # With fakes in both gender groups the TPR and FPR terms exist, so AOD is a number
    # unless a side lacks one class; either way the reason is written, never a crash.
    assert male["aod"] != "" or "AOD undefined" in male["note"]
    assert "no fake images" not in (out / "fairness.md").read_text()
