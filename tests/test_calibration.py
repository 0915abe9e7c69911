"""Temperature scaling and the expected calibration error, on score sets whose truth is known:
labels drawn from sigmoid(z), scores made over- or under-confident by a known factor."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model import calibrate
from training.evaluation.calibration import (
    choose_threshold,
    ece,
    fit_on_valid,
    fit_temperature,
    nll,
    plot_reliability,
    reliability,
)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def scores(factor: float, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels that truly follow sigmoid(z); scores sigmoid(factor * z): factor > 1 is an
    over-confident model (its true temperature is `factor`), factor < 1 a timid one."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, n)
    y = (rng.random(n) < sigmoid(z)).astype(int)
    return y, sigmoid(factor * z).astype(np.float32)


def test_over_confident_scores_get_a_temperature_above_one_and_a_lower_ece():
    y, p = scores(3.0)
    t, info = fit_on_valid(y, p)
    assert t == pytest.approx(3.0, rel=0.05)  # the factor that made them over-confident
    assert info["ece_before"] > 0.08 and info["ece_after"] < 0.02
    assert info["nll_after"] < info["nll_before"] and not info["at_search_bound"]
    # Scores that point the wrong way: no positive temperature helps, so the fit flattens them
    # as far as it may (everything near 0.5), and says so.
    rng = np.random.default_rng(9)
    y_bad = rng.integers(0, 2, 400)
    p_bad = (np.where(y_bad == 1, 0.3, 0.7) + rng.normal(0, 0.05, 400)).astype(np.float32)
    t_flat, flat = fit_on_valid(y_bad, p_bad)
    assert flat["at_search_bound"] and t_flat > 90
    after = calibrate(p, t)
    assert ece(y, after) == pytest.approx(info["ece_after"], abs=1e-6)
    # Ranking is untouched: the calibrated scores order the faces exactly as before.
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(after[order]) >= 0)


def test_timid_scores_are_sharpened_and_calibrated_ones_left_alone():
    y, p = scores(0.4)
    assert fit_temperature(y, p) == pytest.approx(0.4, rel=0.05)
    y, p = scores(1.0, seed=1)
    assert fit_temperature(y, p) == pytest.approx(1.0, abs=0.05)
    assert ece(y, p) < 0.02  # scores that follow the labels' own law are calibrated


def test_the_fit_minimises_the_nll():
    y, p = scores(2.0, n=3000, seed=2)
    t = fit_temperature(y, p)
    best = nll(y, calibrate(p, t))
    for other in (t * 0.9, t * 1.1, 1.0):
        assert nll(y, calibrate(p, other)) > best


def test_one_class_cannot_be_calibrated():
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.zeros(5), np.full(5, 0.3))


def test_ece_by_hand():
    # 4 faces at 0.9 of which 2 fake (bin gap 0.4), 4 at 0.1 of which none fake (gap 0.1).
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9] * 4 + [0.1] * 4)
    assert ece(y, p, bins=10) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)
    bins = reliability(y, p, bins=10)
    assert [b["n"] for b in bins] == [0, 4, 0, 0, 0, 0, 0, 0, 0, 4]
    assert bins[9]["fake_share"] == 0.5 and bins[9]["mean_p_fake"] == pytest.approx(0.9)
    # P(fake) = 1 falls in the last bin, not past it.
    assert reliability(np.array([1]), np.array([1.0]), bins=15)[-1]["n"] == 1
    assert ece(np.array([0, 0]), np.array([1.0, 1.0])) == pytest.approx(1.0)


def test_serving_temperature_is_sigmoid_of_logit_over_t():
    p = np.array([0.02, 0.3, 0.5, 0.8, 0.999], np.float32)
    assert np.array_equal(calibrate(p, 1.0), p)  # T = 1: bit for bit what the model said
    z = np.log(p / (1 - p))
    np.testing.assert_allclose(calibrate(p, 2.0), sigmoid(z / 2), rtol=1e-6)
    assert calibrate(np.array([0.5], np.float32), 7.0)[0] == pytest.approx(0.5)
    # Saturated scores keep a finite logit: 0 and 1 map to finite, ordered values.
    edge = calibrate(np.array([0.0, 1.0], np.float32), 3.0)
    assert 0 < edge[0] < 0.01 and 0.99 < edge[1] < 1


def test_threshold_on_calibrated_scores_makes_the_same_calls():
    y, p = scores(3.0, n=2000, seed=3)
    t = fit_temperature(y, p)
    raw_cut, raw_bal = choose_threshold(y, p)
    cut, bal = choose_threshold(y, calibrate(p, t))
    assert bal == pytest.approx(raw_bal)  # a monotone map: the same faces on each side
    assert np.array_equal(p >= raw_cut, calibrate(p, t) >= cut)


def test_reliability_diagram_is_written(tmp_path):
    y, p = scores(3.0, n=500)
    path = tmp_path / "reliability.png"
    plot_reliability({"raw": (y, p), "calibrated": (y, calibrate(p, 3.0))}, path, "t")
    from PIL import Image

    with Image.open(path) as img:
        assert img.size[0] > 300 and img.size[1] > 300


def test_export_checks_the_network_and_serves_the_temperature(tmp_path):
    """A sharpening temperature must not fail the LiteRT-equals-Keras check (which is about the
    conversion), and the exported folder then serves sigmoid(logit / T) of what Keras says."""
    from dataclasses import replace

    from shared.model import Model, ModelSpec
    from tests.conftest import tiny_cnn
    from training.export import export_keras

    model = tiny_cnn(seed=11)
    spec = ModelSpec(name="t", version="0", size=64, color="gray", temperature=0.05)
    x = np.random.default_rng(5).random((6, 64, 64, 1), dtype=np.float32)
    served = export_keras(model, tmp_path, spec, check=x, explain=False)
    assert served.spec.temperature == 0.05 and Model(tmp_path).spec.temperature == 0.05
    keras_p = model.predict(x, verbose=0)[:, 0]
    # near 0.5, sigmoid(logit / T) scales LiteRT's float32 differences by up to 1/T
    np.testing.assert_allclose(served.predict(x), calibrate(keras_p, 0.05), atol=1e-5 / 0.05)
    assert not np.allclose(served.predict(x), keras_p, atol=1e-3)
    plain = export_keras(model, tmp_path / "plain", replace(spec, temperature=1.0), check=x)
    np.testing.assert_allclose(plain.predict(x), keras_p, atol=1e-5)


def test_false_alarm_threshold_holds_for_every_real_source():
    """100 reals of a big source all score low, 10 of a small one are spread out: a 2 % budget
    must hold for each source, so none of the small source's 10 may be called fake (its one
    false alarm is 10 %, which a mean over the two sources would have let through at 5 %), and
    the cut is the lowest such."""
    from training.evaluation.calibration import false_alarm_threshold, source_false_alarm

    big = np.linspace(0.01, 0.1, 100)
    small = np.linspace(0.05, 0.95, 10)
    fakes = np.linspace(0.5, 1.0, 50)
    p = np.concatenate([big, small, fakes])
    y = np.array([0] * 110 + [1] * 50)
    src = ["big"] * 100 + ["small"] * 10 + ["gen"] * 50
    cut, worst, per = false_alarm_threshold(y, p, src, 0.02)
    assert worst <= 0.02 and set(per) == {"big", "small"}
    # pooled, 2 of 110 reals (1.8 %) would pass; per source that is 20 % of the small one's
    assert per["small"] == 0.0 and cut > small[-1]
    below = np.nextafter(np.float32(cut), np.float32(0.0))  # the next float32 down
    assert source_false_alarm(p[y == 0].astype(np.float32), src[:110], below)[0] > 0.02
    # A 5 % budget still refuses the small source's one false alarm (10 %): the same cut. The
    # old rule (the mean over sources, 5 %) took it and called 10 % of that source's reals fake.
    assert false_alarm_threshold(y, p, src, 0.05)[0] == cut
    # 10 % lets exactly one of the small source's reals be called fake: a lower cut.
    cut10, worst10, per10 = false_alarm_threshold(y, p, src, 0.10)
    assert cut10 < cut and per10["small"] == pytest.approx(0.1) and worst10 == pytest.approx(0.1)


def test_false_alarm_threshold_needs_reals():
    from training.evaluation.calibration import false_alarm_threshold

    with pytest.raises(ValueError, match="real photos"):
        false_alarm_threshold(np.ones(4), np.linspace(0, 1, 4), ["g"] * 4)


def test_false_alarm_threshold_refuses_reals_saturated_at_one():
    """Reals scored 1.0 cannot be kept real by any cut a probability can take: refused, said."""
    from training.evaluation.calibration import false_alarm_threshold

    y = np.array([0, 0, 0, 1])
    with pytest.raises(ValueError, match="1 of 3 score 1.0"):
        false_alarm_threshold(y, np.array([0.1, 0.2, 1.0, 1.0]), ["r"] * 3 + ["g"], 0.02)
    cut, mean, _ = false_alarm_threshold(y, np.array([0.1, 0.2, 1.0, 1.0]), ["r"] * 3 + ["g"], 0.34)
    assert cut == np.nextafter(np.float32(0.2), np.float32(1)) and mean == pytest.approx(1 / 3)


def test_false_alarm_cut_holds_where_serving_compares_in_float32():
    """Serving compares float32 P(fake) with model.json's threshold; a cut found in float64
    just above a float32 score rounds back onto it there. The cut must keep its promise in
    float32, as `operating_sources` and serving count."""
    from training.evaluation.calibration import false_alarm_threshold, operating_sources

    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 400).astype(np.float32)
    y = np.array([0] * 300 + [1] * 100)
    src = ["a"] * 150 + ["b"] * 150 + ["g"] * 100
    for rate in (0.0, 0.01, 0.02, 0.1):
        cut, worst, per = false_alarm_threshold(y, p, src, rate)
        assert np.float32(cut) == cut  # a float32 value: no rounding anywhere
        rows = operating_sources(y, p, src, cut)
        served = max(rows[s]["called_fake"] for s in ("a", "b"))
        assert served == pytest.approx(worst, abs=1e-6) and served <= rate
        assert np.mean(p[y == 0] >= np.float32(cut)) <= rate * 2  # pooled, loosely
