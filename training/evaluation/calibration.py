"""Calibration of P(fake): a temperature fitted on validation data, and how to measure it.

The page shows P(fake) as a number, so it should mean what it says: of the faces scored 0.8,
about 80 % should be fake. Temperature scaling (Guo et al. 2017) divides the logit by one
number T fitted by maximum likelihood on the validation split; T > 1 softens an over-confident
model, T < 1 sharpens a timid one. It never reorders scores, so ROC-AUC is unchanged; the
threshold is then chosen on the calibrated scale. Serving applies it (`shared.model.calibrate`).

Expected calibration error (ECE) here is of P(fake) itself, the number the page shows: equal-width
bins of P(fake), each bin's |share of fakes - mean P(fake)| weighted by its share of images.

The operating point is chosen here too (`false_alarm_threshold`), and the per-source rates at a
cut are counted here once (`source_counts`): export's operating point, the views' tables, adapt
and evaluate all read them from this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.model import calibrate

# 10 bins, not 15: on the 711-image 140k test a perfectly calibrated model still measures
# ECE ~0.032 with 10 bins (95th percentile 0.046) but ~0.038 with 15 (0.052), simulated with
# confident scores; the finer bins' sampling noise alone nearly fills a 0.05 budget.
ECE_BINS = 10
# 1/T is searched in this range: T from 0.01 (sharpen 100x) to 100 (nearly flat).
INVERSE_T_BOUNDS = (0.01, 100.0)


def logits(p: np.ndarray) -> np.ndarray:
    """logit(p) in float64, with p clipped as `shared.model.calibrate` clips it."""
    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(q) - np.log1p(-q)


def nll(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood (binary cross-entropy) of labels y (1 = fake) under p."""
    q = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def fit_temperature(y: np.ndarray, p: np.ndarray) -> float:
    """The T > 0 that minimises the NLL of sigmoid(logit(p) / T) on (y, p).

    The NLL is convex in a = 1/T (a logistic regression on one feature without intercept), so a
    bounded 1-D search finds the optimum. A model no better than chance gets the largest T."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, np.float64)
    if len(y) == 0 or y.min() == y.max():
        raise ValueError("fitting a temperature needs both classes in the validation split")
    z = logits(p)

    def loss(a: float) -> float:
        # log(1 + e^{a z}) - y a z, computed stably
        t = a * z
        return float(np.mean(np.logaddexp(0.0, t) - y * t))

    found = minimize_scalar(
        loss, bounds=INVERSE_T_BOUNDS, method="bounded", options={"xatol": 1e-6}
    )
    return float(1.0 / found.x)


def reliability(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Equal-width bins of P(fake): each bin's count, mean P(fake) and share of fakes."""
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    # Bin b holds lo <= p < hi; the last bin also holds p = 1.
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        out.append(
            {
                "lo": b / bins,
                "hi": (b + 1) / bins,
                "n": n,
                "mean_p_fake": float(p[mask].mean()) if n else float("nan"),
                "fake_share": float(y[mask].mean()) if n else float("nan"),
            }
        )
    return out


def ece(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of P(fake) over `bins` equal-width bins (NaN when empty)."""
    n = len(y)
    if n == 0:
        return float("nan")
    cells = [b for b in reliability(y, p, bins) if b["n"]]
    return float(sum(b["n"] / n * abs(b["fake_share"] - b["mean_p_fake"]) for b in cells))


def fit_on_valid(y: np.ndarray, p_raw: np.ndarray, bins: int = ECE_BINS) -> tuple[float, dict]:
    """(T, what model.json records): the temperature and the validation NLL and ECE before
    and after it."""
    t = fit_temperature(y, p_raw)
    p_cal = calibrate(p_raw, t)
    return t, {
        "method": "temperature scaling: P(fake) = sigmoid(logit(raw P(fake)) / T), T minimising "
        "the validation NLL",
        "temperature": round(t, 6),
        "n": int(len(y)),
        "nll_before": round(nll(y, p_raw), 6),
        "nll_after": round(nll(y, p_cal), 6),
        "ece_bins": bins,
        "ece_before": round(ece(y, p_raw, bins), 6),
        "ece_after": round(ece(y, p_cal, bins), 6),
        # T at the search's edge: the scores carry (almost) no signal on this split, or are
        # shifted so far that only flattening them lowers the NLL; a temperature cannot fix that.
        "at_search_bound": bool(
            1 / t <= INVERSE_T_BOUNDS[0] * 1.01 or 1 / t >= INVERSE_T_BOUNDS[1] / 1.01
        ),
    }


def choose_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(cut, balanced accuracy): the P(fake) cut, among the scores, maximising balanced
    accuracy on (y, p). With several equal best cuts, the lowest."""
    from sklearn.metrics import balanced_accuracy_score

    y = np.asarray(y).astype(int)
    cuts = np.unique(p)
    scores = [balanced_accuracy_score(y, (p >= t).astype(int)) for t in cuts]
    best = int(np.argmax(scores))
    return float(cuts[best]), float(scores[best])


def source_false_alarm(
    p: np.ndarray, sources: list[str], cut: float
) -> tuple[float, dict[str, float]]:
    """(worst source, per source): the share of each source's real photos at or above `cut`."""
    return _worst_false_alarm(_by_source(p, sources), cut)


def _by_source(p: np.ndarray, sources: list[str]) -> dict[str, np.ndarray]:
    p, sources = np.asarray(p), np.asarray(sources)
    return {s: p[sources == s] for s in sorted(set(sources.tolist()))}


def _worst_false_alarm(groups: dict[str, np.ndarray], cut: float) -> tuple[float, dict]:
    per = {s: float(np.mean(g >= cut)) for s, g in groups.items()}
    return float(max(per.values())), per


def false_alarm_threshold(
    y: np.ndarray, p: np.ndarray, sources: list[str], rate: float = 0.02
) -> tuple[float, float, dict[str, float]]:
    """(cut, the worst source's false-alarm rate, per real source): the lowest P(fake) cut at
    which at most `rate` of **every** real source's photos are called fake. Not pooled, where a
    large collection hides a small one's false alarms, and not averaged over sources, where one
    collection took 7.7 % while the mean kept 2 %. The lowest such cut catches the most fakes;
    any higher cut would give up catches for no promise kept better."""
    y = np.asarray(y).astype(int)
    # float32, as serving compares them: a float64 cut between two float32 scores would round
    # onto the lower one there and call a real photo fake that the search here had kept real.
    p = np.asarray(p, np.float32)
    real = y == 0
    if not real.any():
        raise ValueError("choosing a false-alarm threshold needs real photos in the split")
    p_real = p[real]
    groups = _by_source(p_real, [s for s, r in zip(sources, real, strict=True) if r])
    # A cut just above a real photo's score calls it real; every rate falls as the cut rises.
    above = np.nextafter(p_real, np.float32(2.0))
    cuts = np.unique(np.concatenate([[p_real.min()], above]))
    for cut in cuts:
        worst, per = _worst_false_alarm(groups, cut)
        if worst <= rate and cut <= 1.0:
            return float(cut), worst, per
    saturated = int(np.sum(p_real >= 1.0))
    raise ValueError(
        f"no P(fake) cut up to 1 calls at most {rate:.0%} of the real photos fake: "
        f"{saturated} of {len(p_real)} score 1.0"
    )


def source_counts(
    y: np.ndarray, p: np.ndarray, sources: list[str], cut: float
) -> dict[str, dict[str, int]]:
    """Each source's photos at `cut`: its reals (`real`) and how many of them are called fake
    (`called_fake`), its fakes (`fake`) and how many are caught (`caught`); a source without
    reals or fakes has no such keys. Pass float32 scores and cut to count as serving compares."""
    y, p, src = np.asarray(y), np.asarray(p), np.asarray(sources)
    out: dict[str, dict[str, int]] = {}
    for name in sorted(set(sources)):
        mask = src == name
        for label, key, called in ((0, "real", "called_fake"), (1, "fake", "caught")):
            sel = mask & (y == label)
            if sel.any():
                row = out.setdefault(name, {})
                row[key] = int(sel.sum())
                row[called] = int(np.sum(p[sel] >= cut))
    return out


def operating_sources(y: np.ndarray, p: np.ndarray, sources: list[str], cut: float) -> dict:
    """Each source's validation photos at the cut, as model.json's operating point records them:
    how many of its reals are called fake (false alarms) and how many of its fakes are caught,
    as shares."""
    out: dict[str, dict] = {}
    for name, c in source_counts(y, p, sources, cut).items():
        row = out[name] = {}
        if "real" in c:
            row.update(real=c["real"], called_fake=round(c["called_fake"] / c["real"], 6))
        if "fake" in c:
            row.update(fake=c["fake"], caught=round(c["caught"] / c["fake"], 6))
    return out


def versus_every_real(y: np.ndarray, sources: list[str]) -> dict[str, np.ndarray]:
    """For each source with fakes, the mask of its fakes and every real photo of every source: a
    generator is measured against real photos of every kind, not only its own collection's (an
    all-fake source such as stable-diffusion has no reals of its own)."""
    y, src = np.asarray(y), np.asarray(sources)
    real = y == 0
    return {name: real | ((src == name) & (y == 1)) for name in sorted(set(src[y == 1].tolist()))}


def plot_reliability(
    groups: dict[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str,
    bins: int = ECE_BINS,
) -> None:
    """Reliability diagram: share of fakes against mean P(fake) per bin (the diagonal is
    perfect calibration), each group's ECE in its legend, and how many images each bin holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6, 6.5), dpi=100, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for name, (y, p) in groups.items():
        if len(y) == 0:
            continue
        rows = [b for b in reliability(y, p, bins) if b["n"]]
        ax.plot(
            [b["mean_p_fake"] for b in rows],
            [b["fake_share"] for b in rows],
            "o-",
            label=f"{name} (n={len(y)}, ECE {ece(y, p, bins):.3f})",
        )
        hist.hist(np.asarray(p), bins=edges, histtype="step", label=name)
    ax.set(
        ylabel="share that is fake",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.set(xlabel=f"P(fake) ({bins} equal-width bins)", ylabel="images")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
