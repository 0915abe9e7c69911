"""DI / AOD / per-group rates against IBM AIF360, edge cases, and the bootstrap's behaviour."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from training.fairness.metrics import (
    FAV,
    PRIV,
    UNFAV,
    UNPRIV,
    Bootstrap,
    Cells,
    why_undefined,
    wilson,
)


def _aif360_metric(side, truth, pred):
    """AIF360's ClassificationMetric on rows coded 1 = favourable; g = 1 privileged."""
    import logging

    import pandas as pd

    logging.getLogger().setLevel(logging.ERROR)  # aif360 warns about optional extras
    from aif360.datasets import BinaryLabelDataset
    from aif360.metrics import ClassificationMetric

    g = (side == PRIV).astype(float)
    df = pd.DataFrame({"g": g, "y": truth.astype(float)})
    ds = BinaryLabelDataset(
        df=df, label_names=["y"], protected_attribute_names=["g"],
        favorable_label=1.0, unfavorable_label=0.0,
    )  # fmt: skip
    clf = ds.copy(deepcopy=True)
    clf.labels = pred.astype(float).reshape(-1, 1)
    return ClassificationMetric(
        ds, clf, unprivileged_groups=[{"g": 0}], privileged_groups=[{"g": 1}]
    )


@pytest.mark.parametrize(
    ("n_priv", "n_unpriv", "seed"), [(960, 52, 0), (40, 700, 1), (2632, 2367, 2), (13, 9, 3)]
)
def test_matches_aif360_to_1e9(n_priv, n_unpriv, seed):
    rng = np.random.default_rng(seed)
    side = np.r_[np.full(n_priv, PRIV), np.full(n_unpriv, UNPRIV)]
    truth = rng.random(len(side)) < 0.4
    # A detector that is worse on the unprivileged side, so the figures are not trivially 0/1.
    p_correct = np.where(side == PRIV, 0.9, 0.75)
    pred = np.where(rng.random(len(side)) < p_correct, truth, ~truth)
    ours = Cells.from_rows(side, truth, pred)
    ref = _aif360_metric(side, truth, pred)

    assert ours.disparate_impact() == pytest.approx(ref.disparate_impact(), abs=1e-9)
    aod = ref.average_odds_difference()
    assert ours.average_odds_difference() == pytest.approx(aod, abs=1e-9)
    for s, privileged in ((PRIV, True), (UNPRIV, False)):
        assert ours.tpr()[s] == pytest.approx(ref.true_positive_rate(privileged), abs=1e-9)
        assert ours.fpr()[s] == pytest.approx(ref.false_positive_rate(privileged), abs=1e-9)
        assert ours.selection_rate()[s] == pytest.approx(ref.selection_rate(privileged), abs=1e-9)
        conf = ours.confusion()
        assert conf["tp"][s] == ref.num_true_positives(privileged)
        assert conf["fp"][s] == ref.num_false_positives(privileged)
        assert conf["tn"][s] == ref.num_true_negatives(privileged)
        assert conf["fn"][s] == ref.num_false_negatives(privileged)


def test_matches_aif360_sklearn_api():
    """The second AIF360 interface, with the privileged group as a pandas index level."""
    import pandas as pd
    from aif360.sklearn.metrics import average_odds_difference, disparate_impact_ratio

    rng = np.random.default_rng(7)
    side = np.r_[np.full(300, PRIV), np.full(120, UNPRIV)]
    truth = rng.random(420) < 0.5
    pred = np.where(rng.random(420) < np.where(side == PRIV, 0.8, 0.6), truth, ~truth)
    idx = pd.MultiIndex.from_arrays([np.arange(420), (side == PRIV).astype(int)], names=["i", "g"])
    y_true = pd.Series(truth.astype(int), index=idx)
    ours = Cells.from_rows(side, truth, pred)
    di = disparate_impact_ratio(y_true, pred.astype(int), prot_attr="g", priv_group=1, pos_label=1)
    aod = average_odds_difference(
        y_true, pred.astype(int), prot_attr="g", priv_group=1, pos_label=1
    )
    assert ours.disparate_impact() == pytest.approx(di, abs=1e-9)
    assert ours.average_odds_difference() == pytest.approx(aod, abs=1e-9)


def test_hand_computed_example():
    """Numbers small enough to check on paper: DI = (3/5)/(8/10), AOD = ½[(1/2-3/4)+(2/3-5/6)]."""
    n = np.array([[6, 4], [3, 2]])  # [side][FAV, UNFAV]
    k = np.array([[5, 3], [2, 1]])
    c = Cells(n, k)
    assert c.disparate_impact() == pytest.approx((3 / 5) / (8 / 10))
    assert c.average_odds_difference() == pytest.approx(0.5 * ((1 / 2 - 3 / 4) + (2 / 3 - 5 / 6)))


def test_edge_cases_give_sentences_not_division_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy divide warning would fail here
        # Unprivileged group of size 0.
        empty = Cells(np.array([[5, 5], [0, 0]]), np.array([[3, 1], [0, 0]]))
        assert np.isnan(empty.disparate_impact()) and np.isnan(empty.average_odds_difference())
        notes = why_undefined(empty, ("Male", "Female"), "real", "fake")
        assert "group 'Female' has no rows" in notes["di"]
        assert "group 'Female' has no rows" in notes["aod"]
        # No fakes anywhere (FairFace): DI fine, AOD undefined for a stated reason.
        reals = Cells(np.array([[10, 0], [8, 0]]), np.array([[9, 0], [6, 0]]))
        assert reals.disparate_impact() == pytest.approx((6 / 8) / (9 / 10))
        assert np.isnan(reals.average_odds_difference())
        notes = why_undefined(reals, ("White", "Non-White"), "real", "fake")
        assert "di" not in notes
        assert notes["aod"] == (
            "AOD undefined: neither group has truly fake images, so FPR is undefined."
        )
        # One group with no positives (truly favourable rows).
        one = Cells(np.array([[4, 4], [0, 5]]), np.array([[2, 1], [0, 2]]))
        assert np.isnan(one.tpr()[UNPRIV]) and np.isfinite(one.tpr()[PRIV])
        assert (
            "group 'Black' has no truly real images"
            in why_undefined(one, ("Non-Black", "Black"), "real", "fake")["aod"]
        )
        # A small group judged all one way: the interval cannot show its spread; say so.
        flat = Cells(np.array([[50, 0], [10, 0]]), np.array([[45, 0], [10, 0]]))
        note = why_undefined(flat, ("Non-Child", "Age 0-2"), "real", "fake")["ci"]
        assert "all 10 rows of 'Age 0-2' were judged real" in note and "0.300" in note
        # Privileged selection rate 0: DI's denominator.
        zero = Cells(np.array([[4, 4], [3, 5]]), np.array([[0, 0], [2, 2]]))
        assert np.isnan(zero.disparate_impact())
        assert "selection rate 0" in why_undefined(zero, ("A", "B"), "real", "fake")["di"]


def _cells_flags(rng, sizes, rates):
    return [[rng.random(sizes[s][c]) < rates[s][c] for c in (FAV, UNFAV)] for s in (PRIV, UNPRIV)]


def test_bootstrap_is_seeded_and_behaves_like_the_binomial():
    rng = np.random.default_rng(0)
    flags = _cells_flags(rng, [[2000, 600], [900, 300]], [[0.9, 0.2], [0.7, 0.3]])
    boot = Bootstrap(resamples=2000, seed=5)
    a, b = boot.resample(flags, key=1), boot.resample(flags, key=1)
    assert np.array_equal(a.k, b.k)
    assert not np.array_equal(a.k, boot.resample(flags, key=2).k)
    assert (a.n == np.array([[2000, 600], [900, 300]])).all()
    # Resampling a cell of n flags with mean p: the count's sd is sqrt(n p (1-p)).
    p = flags[UNPRIV][FAV].mean()
    sd = np.sqrt(900 * p * (1 - p))
    assert a.k[:, UNPRIV, FAV].std() == pytest.approx(sd, rel=0.1)
    assert a.k[:, UNPRIV, FAV].mean() == pytest.approx(900 * p, rel=0.01)
    point = Cells.from_rows(
        np.r_[np.zeros(2600), np.ones(1200)].astype(int),
        np.r_[np.ones(2000), np.zeros(600), np.ones(900), np.zeros(300)].astype(bool),
        np.concatenate([flags[0][0], flags[0][1], flags[1][0], flags[1][1]]),
    )
    lo, hi = boot.interval(a.disparate_impact())
    assert lo < float(point.disparate_impact()) < hi
    assert hi - lo < 0.1


def test_bootstrap_of_5k_rows_1000_resamples_takes_seconds():
    rng = np.random.default_rng(1)
    flags = _cells_flags(rng, [[2632, 0], [2367, 0]], [[0.9, 0], [0.85, 0]])
    start = time.perf_counter()
    Bootstrap(resamples=1000, seed=0).resample(flags, key=0)
    assert time.perf_counter() - start < 5


def test_interval_is_empty_when_most_resamples_are_undefined():
    boot = Bootstrap(resamples=100)
    vals = np.r_[np.full(10, np.nan), np.linspace(0, 1, 90)]
    assert all(np.isnan(boot.interval(vals)))
    lo, hi = boot.interval(np.linspace(0, 1, 100))
    assert lo == pytest.approx(0.025) and hi == pytest.approx(0.975)


def test_wilson_interval_by_hand_and_against_scipy():
    """3/10 by hand: z = 1.959964, centre (0.3 + z²/20)/(1 + z²/10), half-width
    z·sqrt(0.021 + z²/400)/(1 + z²/10) -> [0.1078, 0.6032]; 0/n and n/n keep a finite side."""
    from scipy.stats import binomtest

    assert wilson(3, 10) == pytest.approx((0.10779, 0.60322), abs=1e-5)
    z2 = 1.959963984540054**2
    assert wilson(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))  # 0.2775: not [0, 0]
    assert wilson(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    assert all(np.isnan(wilson(0, 0)))
    for k, n in ((0, 6), (4, 8), (11, 15), (85, 296), (433, 1500)):
        ref = binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-9)
    lo90, hi90 = wilson(4, 8, level=0.90)
    lo95, hi95 = wilson(4, 8)
    assert lo95 < lo90 < 0.5 < hi90 < hi95
