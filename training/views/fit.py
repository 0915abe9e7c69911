"""Fitting the CLIP view's head and the two views' fusion, and measuring views side by side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from shared import clip

from ..data.datasets import source_of
from ..data.pipeline import cell_weights
from ..evaluation.calibration import false_alarm_threshold

# The heads tried, each fused with the CNN; the validation split picks one: a linear head at
# these inverse regularisation strengths, and one hidden layer of MLP_HIDDEN ReLUs at these L2s.
HEAD_CS = (0.003, 0.01, 0.03, 0.1)
MLP_ALPHAS = (0.1, 1.0)
MLP_HIDDEN = 256
MLP_SEEDS = (0, 1, 2)


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


def _standardised(train: Faces, feature: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = train.features[feature].astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    return (x - mean) / scale, mean, scale


def fit_linear(train: Faces, feature: str, c: float) -> clip.LinearHead:
    """A logistic regression on standardised features, every (source, class) cell of the
    training split weighing the same (the CNN's `--balance source`); the standardisation is
    folded into the weights, so serving computes one dot product."""
    z, mean, scale = _standardised(train, feature)
    fitted = _fit_logistic(z, train.y, cell_weights(train.rows, train.y), c)
    coef = fitted.coef_[0] / scale
    return clip.LinearHead(feature, coef, float(fitted.intercept_[0] - coef @ mean))


def fit_mlp(
    train: Faces, feature: str, alpha: float, seeds: tuple[int, ...] | None = None
) -> clip.MlpHead:
    """A bag of one-hidden-layer MLPs (scikit-learn, Adam), one per seed, the cells weighing the
    same: single fits moved the validation catch by several points with nothing but their
    initial weights changed, and their average does not."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    _, mean, scale = _standardised(train, feature)
    # Every array as float32 values (the MLPs fit in float32): the head file stores float32, and
    # what is served must be exactly what was measured here.
    mean, scale = (a.astype(np.float32).astype(np.float64) for a in (mean, scale))
    z = (train.features[feature].astype(np.float64) - mean) / scale
    weights = cell_weights(train.rows, train.y)
    parts = []
    for seed in seeds or MLP_SEEDS:
        mlp = MLPClassifier((MLP_HIDDEN,), alpha=alpha, max_iter=300, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(z.astype(np.float32), train.y, sample_weight=weights)
        parts.append(mlp)
    return clip.MlpHead(
        feature,
        mean,
        scale,
        np.stack([m.coefs_[0] for m in parts]).astype(np.float64),
        np.stack([m.intercepts_[0] for m in parts]).astype(np.float64),
        np.stack([m.coefs_[1][:, 0] for m in parts]).astype(np.float64),
        np.array([m.intercepts_[1][0] for m in parts], np.float64),
    )


def head_names() -> list[str]:
    return [f"linear C={c}" for c in HEAD_CS] + [
        f"{len(MLP_SEEDS)} MLPs {MLP_HIDDEN} alpha={a}" for a in MLP_ALPHAS
    ]


def candidate_heads(train: Faces, feature: str, only: str | None = None, quiet: bool = True):
    """Every head of the search, or only the one named `only` (a refit that keeps a choice),
    fitted one at a time as they are asked for (minutes each on many faces: a progress bar)."""
    fits = [lambda c=c: fit_linear(train, feature, c) for c in HEAD_CS]
    fits += [lambda a=a: fit_mlp(train, feature, a) for a in MLP_ALPHAS]
    chosen = [(n, fit) for n, fit in zip(head_names(), fits, strict=True) if only in (None, n)]
    for name, fit in tqdm(chosen, desc="CLIP heads", unit="head", disable=quiet):
        yield name, fit()


def mean_catch(faces: Faces, p: np.ndarray, rate: float) -> tuple[float, float]:
    """(mean catch over the fake sources, cut) at the lowest cut keeping every real source's
    false alarms at or under `rate`."""
    cut, _, _ = false_alarm_threshold(faces.y, p, faces.sources, rate)
    src = np.array(faces.sources)
    fakes = sorted({s for s, y in zip(faces.sources, faces.y, strict=True) if y == 1})
    p32 = np.asarray(p, np.float32)
    catches = [np.mean(p32[(src == s) & (faces.y == 1)] >= np.float32(cut)) for s in fakes]
    return float(np.mean(catches)), cut


def fit_views(
    train: Faces,
    valid: Faces,
    feature: str,
    rate: float,
    only: str | None = None,
    quiet: bool = True,
) -> tuple[object, clip.Fusion, list[dict]]:
    """(head, fusion, what was tried): the head whose fusion with the CNN catches the most
    validation fakes at the operating point (a person's need: catches at a false-alarm rate they
    can live with), ties to the lower log loss. What ships is the fusion, so it is what is
    judged."""
    from sklearn.metrics import log_loss

    tried = []
    for name, head in candidate_heads(train, feature, only, quiet):
        logit = head.logit(valid.features)
        fusion = fit_fusion(valid, logit)
        p = clip.sigmoid(fusion.logit(clip.logit(valid.p_cnn), logit))
        catch, cut = mean_catch(valid, p, rate)
        alone, _ = mean_catch(valid, clip.sigmoid(logit), rate)
        loss = log_loss(valid.y, np.clip(p, 1e-7, 1 - 1e-7))
        tried.append(
            {
                "head": name,
                "fused_mean_catch": catch,
                "clip_alone_mean_catch": alone,
                "threshold": cut,
                "fused_log_loss": loss,
                "fitted": (head, fusion),
            }
        )
    best = max(tried, key=lambda t: (round(t["fused_mean_catch"], 9), -t["fused_log_loss"]))
    best["chosen"] = True
    head, fusion = best["fitted"]
    return head, fusion, [{k: v for k, v in t.items() if k != "fitted"} for t in tried]


def fit_fusion(valid: Faces, clip_logit: np.ndarray) -> clip.Fusion:
    """Stacking: a logistic regression on the two views' logits over the validation split as it
    is (no reweighting), so the fused P(fake) is calibrated there as a temperature would be.
    Two slopes and an intercept: too few to overfit 1,200 faces."""
    x = np.column_stack([clip.logit(valid.p_cnn), clip_logit])
    fitted = _fit_logistic(x, valid.y, None, 1e4)
    a, b = fitted.coef_[0]
    return clip.Fusion(float(a), float(b), float(fitted.intercept_[0]))
