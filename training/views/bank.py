"""What `adapt` refits on, kept in the model folder so that a model can be taught a new engine
without the data it was trained on: the CLIP features of the real training photos (an engine's
head is fitted against them), and the validation split's features and CNN answers (the engine is
calibrated and the operating point chosen again there). Features only, never a pixel; half
precision, which moves a head's logit by less than 0.01 (tests/test_adapt.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import clip
from shared.errors import ModelUnavailable

from .fit import Faces

BANK_FILE = "adapt_bank.npz"


@dataclass
class Bank:
    """The real training photos' features (with each one's source) and the validation split."""

    feature: str
    train_reals: Faces
    valid: Faces


def _faces(x: np.ndarray, y: np.ndarray, sources: np.ndarray, feature: str, p_cnn=None) -> Faces:
    rows = [
        {"dataset": str(s), "label": "fake" if v else "real"}
        for s, v in zip(sources, y, strict=True)
    ]
    return Faces(rows, np.asarray(y, np.float64), {feature: np.asarray(x, np.float32)}, p_cnn)


def write_bank(out: Path, train: Faces, valid: Faces, feature: str) -> dict:
    """OUT/adapt_bank.npz from the fitted splits; model.json's `views.clip.bank` entry."""
    real = train.y == 0
    np.savez_compressed(
        out / BANK_FILE,
        train_x=train.features[feature][real].astype(np.float16),
        train_source=np.array([s for s, r in zip(train.sources, real, strict=True) if r]),
        valid_x=valid.features[feature].astype(np.float16),
        valid_y=valid.y.astype(np.int8),
        valid_source=np.array(valid.sources),
        valid_p_cnn=np.asarray(valid.p_cnn, np.float32),
    )
    return {
        "file": BANK_FILE,
        "sha256": clip.sha256_of(out / BANK_FILE),
        "feature": feature,
        "train_reals": int(real.sum()),
        "valid": len(valid),
    }


def read_bank(model_dir: Path, doc: dict | None) -> Bank:
    """The bank model.json names, refused when missing or not the file written with it."""
    if not doc:
        raise ModelUnavailable(
            f"{model_dir} has no adaptation bank (model.json names none): models fused before "
            "`adapt` existed need `training fuse` again."
        )
    path = Path(model_dir) / doc["file"]
    if not path.is_file() or clip.sha256_of(path) != doc["sha256"]:
        raise ModelUnavailable(f"{path} is missing or not the bank this model was fitted with.")
    f = doc["feature"]
    with np.load(path) as z:
        train = _faces(z["train_x"], np.zeros(len(z["train_x"])), z["train_source"], f)
        valid = _faces(z["valid_x"], z["valid_y"], z["valid_source"], f, z["valid_p_cnn"])
    return Bank(f, train, valid)


def extended(bank: Bank, out: Path, reals: Faces | None) -> dict:
    """Write OUT's bank: `bank` plus the user's own real photos among the training reals, so a
    later adaptation is fitted against them too; model.json's new `views.clip.bank` entry."""
    train = bank.train_reals
    if reals is not None and len(reals):
        train = Faces(
            train.rows + reals.rows,
            np.concatenate([train.y, reals.y]),
            {
                bank.feature: np.concatenate(
                    [train.features[bank.feature], reals.features[bank.feature]]
                )
            },
        )
    return write_bank(out, train, bank.valid, bank.feature)
