"""Fitting the CLIP view's head and the two views' fusion, and measuring views side by side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared import clip

from ..data.datasets import source_of
from ..data.pipeline import cell_weights
from ..evaluation.calibration import false_alarm_threshold

# Inverse regularisation strengths tried for the head; the validation split picks one.
HEAD_CS = (0.003, 0.01, 0.03, 0.1)


@dataclass
class Faces:
    """One split of every prepared folder: labels (1 = fake), sources, CLIP features and the
    CNN's P(fake) (None where not computed, as for the training split)."""

    rows: list[dict[str, str]]
    y: np.ndarray
    features: dict[str, np.ndarray]
    p_cnn: np.ndarray | None = None

    @property
    def sources(self) -> list[str]:
        return [source_of(r) for r in self.rows]

    def __len__(self) -> int:
        return len(self.y)


def _fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray | None, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(x, y, sample_weight=w)


def fit_head_c(train: Faces, feature: str, c: float) -> clip.LinearHead:
    """A logistic regression on standardised features, every (source, class) cell of the
    training split weighing the same (the CNN's `--balance source`); the standardisation is
    folded into the weights, so serving computes one dot product."""
    x = train.features[feature].astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    fitted = _fit_logistic((x - mean) / scale, train.y, cell_weights(train.rows, train.y), c)
    coef = fitted.coef_[0] / scale
    return clip.LinearHead(feature, coef, float(fitted.intercept_[0] - coef @ mean))


def mean_catch(faces: Faces, p: np.ndarray, rate: float) -> tuple[float, float]:
    """(mean catch over the fake sources, cut) at the lowest cut keeping every real source's
    false alarms at or under `rate`."""
    cut, _, _ = false_alarm_threshold(faces.y, p, faces.sources, rate)
    src = np.array(faces.sources)
    fakes = sorted({s for s, y in zip(faces.sources, faces.y, strict=True) if y == 1})
    p32 = np.asarray(p, np.float32)
    catches = [np.mean(p32[(src == s) & (faces.y == 1)] >= np.float32(cut)) for s in fakes]
    return float(np.mean(catches)), cut


def fit_head(
    train: Faces, valid: Faces, feature: str, rate: float
) -> tuple[clip.LinearHead, list[dict]]:
    """The head whose C catches the most validation fakes at the operating point (a person's
    need: catches at a false-alarm rate they can live with), ties to the lower log loss."""
    from sklearn.metrics import log_loss

    tried = []
    for c in HEAD_CS:
        head = fit_head_c(train, feature, c)
        p = clip.sigmoid(head.logit(valid.features))
        catch, cut = mean_catch(valid, p, rate)
        loss = log_loss(valid.y, np.clip(p, 1e-7, 1 - 1e-7))
        tried.append(
            {"C": c, "mean_catch": catch, "threshold": cut, "log_loss": loss, "head": head}
        )
    best = max(tried, key=lambda t: (round(t["mean_catch"], 9), -t["log_loss"]))
    return best["head"], [{k: v for k, v in t.items() if k != "head"} for t in tried]


def fit_fusion(valid: Faces, clip_logit: np.ndarray) -> clip.Fusion:
    """Stacking: a logistic regression on the two views' logits over the validation split as it
    is (no reweighting), so the fused P(fake) is calibrated there as a temperature would be.
    Two slopes and an intercept: too few to overfit 1,200 faces."""
    x = np.column_stack([clip.logit(valid.p_cnn), clip_logit])
    fitted = _fit_logistic(x, valid.y, None, 1e4)
    a, b = fitted.coef_[0]
    return clip.Fusion(float(a), float(b), float(fitted.intercept_[0]))
