"""Calibration of the study's verdict rule on simulated studies with a known answer.

The numbers asserted here are the ones docs/study_statistics.md reports, from
`python -m experiments.study_calibration` (more studies per setting).
"""

import numpy as np
import pytest

from xraygan_jax.metrics import calibration, statistics

pytestmark = pytest.mark.slow

NULL_STUDIES = 200


@pytest.mark.parametrize("seed_sd_points", [2.0, 9.0])
def test_null_studies_call_a_difference_at_most_7_percent_of_the_time(seed_sd_points):
    # Two arms drawn from one distribution of classifiers: any verdict is false.
    setting = calibration.Setting(num_seeds=10, num_test=300, seed_sd_points=seed_sd_points)
    rates = calibration.verdict_rates(setting, num_studies=NULL_STUDIES, num_resamples=500, seed=1)
    assert rates["called"] <= 0.07, rates


def test_a_true_5_point_gain_is_found_at_least_half_the_time_with_10_seeds():
    # Seeds varying by 2 accuracy points: the convergence target of the study's baseline.
    setting = calibration.Setting(num_seeds=10, num_test=300, seed_sd_points=2.0, gain_points=5)
    rates = calibration.verdict_rates(setting, num_studies=NULL_STUDIES, num_resamples=500, seed=2)
    assert rates["better"] >= 0.5, rates
    assert rates["worse"] == 0.0, rates


def test_holm_keeps_the_family_wise_error_of_three_null_arms_near_5_percent():
    setting = calibration.Setting(num_seeds=10, num_test=300, seed_sd_points=5.0)
    rng = np.random.default_rng(3)
    false_families = 0
    for study in range(100):
        labels, scores = calibration.simulate_arms(
            setting, {"base": 0.0, "a": 0.0, "b": 0.0, "c": 0.0}, rng
        )
        base = scores.pop("base")
        results = statistics.compare_with_baseline(
            labels, base, scores, "accuracy", num_resamples=500, seed=study
        )
        false_families += any(r["verdict"] != "no detectable difference" for r in results.values())
    assert false_families / 100 <= 0.07


def test_the_recovered_share_interval_covers_the_true_share():
    setting = calibration.Setting(num_seeds=10, num_test=300, seed_sd_points=5.0)
    result = calibration.bracket_coverage(
        setting, oracle_gain_points=8.0, gan_gain_points=4.0, num_studies=100, seed=4
    )
    assert result["true_share"] == pytest.approx(0.5, abs=1e-6)
    assert result["defined"] >= 0.5
    assert result["coverage"] >= 0.9, result


def test_an_arms_accuracy_interval_covers_its_expected_accuracy():
    setting = calibration.Setting(num_seeds=10, num_test=300, seed_sd_points=5.0)
    assert calibration.accuracy_interval_coverage(setting, num_studies=100, seed=5) >= 0.9


def test_the_simulated_seed_spread_is_the_asked_one():
    # The simulation itself: 10 seeds' accuracies vary by about the asked sd (within sampling).
    setting = calibration.Setting(num_seeds=400, num_test=2000, seed_sd_points=5.0)
    labels, scores = calibration.simulate_arms(setting, {"arm": 0.0}, np.random.default_rng(6))
    accuracies = np.mean((scores["arm"] >= 0.5) == labels, axis=1)
    assert np.std(accuracies, ddof=1) * 100 == pytest.approx(5.0, rel=0.2)
