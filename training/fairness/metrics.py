"""Group fairness figures from confusion counts: disparate impact, average odds difference.

Everything a binary group definition needs reduces to four cells — (privileged, unprivileged) ×
(truly favourable, truly unfavourable) — each holding `n` rows of which `k` were *judged*
favourable. The functions here take those counts with any leading shape, so one call scores the
point estimate and every bootstrap resample at once.

Conventions follow IBM AIF360 (`ClassificationMetric`): the favourable label is the positive
class, so TPR = P(ŷ = fav | y = fav) and FPR = P(ŷ = fav | y = unfav);
DI = P(ŷ = fav | unpriv) / P(ŷ = fav | priv);
AOD = ½[(FPR_unpriv − FPR_priv) + (TPR_unpriv − TPR_priv)].
An undefined ratio is NaN with a sentence saying why, never a ZeroDivisionError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PRIV, UNPRIV = 0, 1
FAV, UNFAV = 0, 1
SIDES = ("privileged", "unprivileged")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass
class Cells:
    """Counts for one group definition. `n` and `k` have shape (..., 2 sides, 2 classes).

    `n[..., s, c]`: rows of side s whose true class is c (FAV/UNFAV);
    `k[..., s, c]`: of those, how many were judged favourable.
    """

    n: np.ndarray
    k: np.ndarray

    @classmethod
    def from_rows(cls, side: np.ndarray, truly_fav: np.ndarray, judged_fav: np.ndarray) -> Cells:
        """`side` holds PRIV, UNPRIV or -1 (row outside both groups: ignored)."""
        n = np.zeros((2, 2), dtype=np.int64)
        k = np.zeros((2, 2), dtype=np.int64)
        for s in (PRIV, UNPRIV):
            for c, truth in ((FAV, True), (UNFAV, False)):
                cell = (side == s) & (truly_fav == truth)
                n[s, c] = int(cell.sum())
                k[s, c] = int((cell & judged_fav).sum())
        return cls(n, k)

    # Per-side rates, shape (..., 2).
    def size(self) -> np.ndarray:
        return self.n.sum(-1)

    def selection_rate(self) -> np.ndarray:
        return _ratio(self.k.sum(-1), self.n.sum(-1))

    def tpr(self) -> np.ndarray:
        return _ratio(self.k[..., FAV], self.n[..., FAV])

    def fpr(self) -> np.ndarray:
        return _ratio(self.k[..., UNFAV], self.n[..., UNFAV])

    def confusion(self) -> dict[str, np.ndarray]:
        """TP/FP/TN/FN with the favourable label as positive (AIF360's convention)."""
        return {
            "tp": self.k[..., FAV],
            "fn": self.n[..., FAV] - self.k[..., FAV],
            "fp": self.k[..., UNFAV],
            "tn": self.n[..., UNFAV] - self.k[..., UNFAV],
        }

    # Between-group figures, shape (...).
    def disparate_impact(self) -> np.ndarray:
        sel = self.selection_rate()
        return _ratio(sel[..., UNPRIV], sel[..., PRIV])

    def average_odds_difference(self) -> np.ndarray:
        tpr, fpr = self.tpr(), self.fpr()
        return 0.5 * ((fpr[..., UNPRIV] - fpr[..., PRIV]) + (tpr[..., UNPRIV] - tpr[..., PRIV]))


def wilson(k, n, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (nan, nan) when n is 0.

    Unlike the bootstrap it stays honest at 0/n and n/n, where small groups often sit.
    """
    from statistics import NormalDist

    k, n = int(k), int(n)
    if n <= 0:
        return (float("nan"), float("nan"))
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends, not 1 - 1e-16
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (float(lo), float(hi))


def why_undefined(cells: Cells, names: tuple[str, str], fav: str, unfav: str) -> dict[str, str]:
    """Plain sentences for every figure the point counts leave undefined (keys: di, aod, ...)."""
    n, k = cells.n, cells.k
    notes: dict[str, str] = {}
    di: list[str] = []
    aod: list[str] = []
    empty = [s for s in (PRIV, UNPRIV) if n[s].sum() == 0]
    for s in empty:
        di.append(f"group '{names[s]}' has no rows")
        aod.append(f"group '{names[s]}' has no rows")
    present = [s for s in (PRIV, UNPRIV) if s not in empty]
    for c, cls, rate in ((FAV, fav, "TPR"), (UNFAV, unfav, "FPR")):
        lacking = [s for s in present if n[s, c] == 0]
        if len(lacking) == 2:
            aod.append(f"neither group has truly {cls} images, so {rate} is undefined")
        elif lacking:
            who = names[lacking[0]]
            aod.append(f"group '{who}' has no truly {cls} images, so its {rate} is undefined")
    if not di and k[PRIV].sum() == 0:
        di.append(
            f"no row of the privileged group '{names[PRIV]}' was judged {fav} "
            "(selection rate 0, the ratio's denominator)"
        )
    if di:
        notes["di"] = "DI undefined: " + "; ".join(di) + "."
    if aod:
        notes["aod"] = "AOD undefined: " + "; ".join(aod) + "."
    flat = []
    for s in present:
        size, judged = int(n[s].sum()), int(k[s].sum())
        if judged in (0, size):
            # Resampling all-equal rows gives all-equal resamples; the rule of three gives the
            # 95 % bound the bootstrap cannot.
            said = fav if judged else unfav
            flat.append(
                f"all {size} rows of '{names[s]}' were judged {said}, so the bootstrap shows no "
                f"spread for that group (95 % rule-of-three bound on the other outcome: "
                f"{min(1.0, 3 / size):.3f})"
            )
    if flat:
        notes["ci"] = "Interval understates uncertainty: " + "; ".join(flat) + "."
    return notes


@dataclass
class Bootstrap:
    """Percentile bootstrap, resampling rows with replacement *within* each of the four cells.

    Stratifying by group and true class keeps every resample's denominators equal to the data's:
    the class mix is the experimenter's design (e.g. FairFace reals + pSp fakes) and group sizes
    are what was observed, so the interval expresses only the uncertainty of the judged rates.
    """

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    chunk_cells: int = 4_000_000  # resample indices held at once, bounds memory
    progress: object = field(default=None, repr=False)  # a tqdm bar, updated per resample chunk

    def resample(self, judged_fav_by_cell: list[list[np.ndarray]], key: int) -> Cells:
        """Judged-favourable flags per [side][class] -> Cells with a leading resample axis."""
        rng = np.random.default_rng([self.seed, key])
        n = np.zeros((self.resamples, 2, 2), dtype=np.int64)
        k = np.zeros((self.resamples, 2, 2), dtype=np.int64)
        for s in (PRIV, UNPRIV):
            for c in (FAV, UNFAV):
                flags = np.asarray(judged_fav_by_cell[s][c], dtype=np.int64)
                size = len(flags)
                n[:, s, c] = size
                if size == 0:
                    continue
                step = max(1, self.chunk_cells // size)
                for start in range(0, self.resamples, step):
                    stop = min(start + step, self.resamples)
                    idx = rng.integers(0, size, size=(stop - start, size))
                    k[start:stop, s, c] = flags[idx].sum(axis=1)
        if self.progress is not None:
            self.progress.update(1)
        return Cells(n, k)

    def interval(self, values: np.ndarray) -> tuple[float, float]:
        """Percentile interval over resamples; NaN when over 5 % of resamples are undefined."""
        values = np.asarray(values, dtype=np.float64)
        ok = values[np.isfinite(values)]
        if len(ok) == 0 or len(ok) < 0.95 * len(values):
            return (float("nan"), float("nan"))
        tail = (1 - self.level) / 2 * 100
        lo, hi = np.percentile(ok, [tail, 100 - tail])
        return (float(lo), float(hi))


# The per-race comparison of SD fakes: one scheme, stated in the report.
SD_SCHEME = (
    "each FairFace race as the unprivileged group against the other six races pooled as the "
    "privileged group"
)
AOD_GOAL = 0.02  # |AOD| at most this
GAP_GOAL = 5.0  # catch rates within this many points across races
POOLED = "All seven"
