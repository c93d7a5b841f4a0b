"""Tests of the study's intervals and paired tests against cases worked out by hand.

Bootstrap cases are chosen so that the resampling distribution is known exactly (a constant, or
two images whose resamples take three values with probabilities 1/4, 1/2, 1/4), so the interval
follows from the percentile rule without running a reference bootstrap.
"""

import math
import re

import numpy as np
import pytest

from xraygan_jax.metrics import classification, statistics

ACCURACY = classification.metric_function("accuracy")


def test_bootstrap_of_an_all_correct_classifier_is_one_one():
    # Every resample is all correct: accuracy 1 on every resample, so the interval is (1, 1).
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    probabilities = np.where(labels == 1, 0.9, 0.1)
    assert statistics.bootstrap_ci(labels, probabilities, ACCURACY, num_resamples=200) == (
        1.0,
        1.0,
    )


def test_bootstrap_of_two_images_one_right_follows_the_three_point_distribution():
    # Image 0 right, image 1 wrong. A resample of 2 draws: both image 0 (accuracy 1, chance
    # 1/4), one of each (1/2, chance 1/2), both image 1 (0, chance 1/4).
    # 95%: the 2.5% and 97.5% quantiles fall inside the 25% masses at 0 and 1 -> (0, 1).
    # 40%: the 30% and 70% quantiles both fall in the middle mass (25%..75%) -> (0.5, 0.5).
    labels = [1, 1]
    probabilities = [0.9, 0.1]
    assert statistics.bootstrap_ci(labels, probabilities, ACCURACY) == (0.0, 1.0)
    assert statistics.bootstrap_ci(labels, probabilities, ACCURACY, confidence=0.4) == (0.5, 0.5)


def test_bootstrap_is_reproducible_under_a_seed_and_contains_the_estimate():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 80)
    probabilities = np.clip(0.35 * labels + 0.65 * rng.random(80), 0, 1)
    auc = classification.metric_function("auc")
    first = statistics.bootstrap_ci(labels, probabilities, auc, num_resamples=300, seed=7)
    again = statistics.bootstrap_ci(labels, probabilities, auc, num_resamples=300, seed=7)
    other = statistics.bootstrap_ci(labels, probabilities, auc, num_resamples=300, seed=8)
    assert first == again
    assert first != other
    estimate = classification.roc_auc(labels, probabilities)
    assert first[0] < estimate < first[1]
    assert 0 <= first[0] and first[1] <= 1


def test_bootstrap_leaves_out_resamples_where_the_metric_is_undefined():
    # One diseased image (found) among 10. A resample of 10 draws misses it with chance
    # (9/10)^10 = 0.349, so about 2000 * 0.349 = 697 of 2000 resamples have no positive and
    # sensitivity 0/0 = NaN (binomial s.d. sqrt(2000 * 0.349 * 0.651) = 21). Every other
    # resample holds only found positives: sensitivity 1, interval (1, 1).
    labels = [1] + [0] * 9
    probabilities = [0.9] + [0.1] * 9
    sensitivity = classification.metric_function("sensitivity")
    with pytest.warns(statistics.UndefinedResamplesWarning, match="sensitivity") as record:
        interval = statistics.bootstrap_ci(labels, probabilities, sensitivity)
    assert interval == (1.0, 1.0)
    left_out = int(re.search(r"on (\d+) of 2000", str(record[0].message)).group(1))
    assert 697 - 5 * 21 < left_out < 697 + 5 * 21


def test_bootstrap_of_a_metric_undefined_everywhere_is_nan():
    # One class only: AUC is undefined on the data and on every resample.
    with pytest.warns(statistics.UndefinedResamplesWarning, match="all 50"):
        low, high = statistics.bootstrap_ci(
            [0, 0, 0, 0],
            [0.1, 0.2, 0.3, 0.4],
            classification.metric_function("auc"),
            num_resamples=50,
        )
    assert math.isnan(low) and math.isnan(high)


def test_paired_image_bootstrap_uses_the_same_images_for_both_arms():
    # Identical classifiers: on jointly resampled images the difference is 0 on every
    # resample, so (0, 0). Independent resampling of the two arms would spread it.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 50)
    probabilities = rng.random(50)
    result = statistics.paired_image_bootstrap_difference(
        labels, probabilities, probabilities, ACCURACY, num_resamples=200
    )
    assert result == {"difference": 0.0, "low": 0.0, "high": 0.0}


def test_paired_image_bootstrap_of_two_images_follows_the_three_point_distribution():
    # Both diseased. Arm right on both (0.9, 0.9): accuracy 1 on every resample. Baseline
    # right on image 0 only: accuracy 1, 1/2, 0 with chance 1/4, 1/2, 1/4 (see
    # test_bootstrap_of_two_images_one_right...). Difference 0, 1/2, 1 with the same chances;
    # on the data 1 - 1/2 = 1/2. 95% -> (0, 1).
    result = statistics.paired_image_bootstrap_difference(
        [1, 1], [0.9, 0.9], [0.9, 0.1], ACCURACY, seed=1
    )
    assert result == {"difference": 0.5, "low": 0.0, "high": 1.0}


def test_mcnemar_exact_by_hand():
    # A right and B wrong on 1 image (b = 1), A wrong and B right on 6 (c = 6), 3 both right,
    # 2 both wrong. Two-sided p = 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128 = 0.125.
    correct_a = [True] + [False] * 6 + [True] * 3 + [False] * 2
    correct_b = [False] + [True] * 6 + [True] * 3 + [False] * 2
    result = statistics.mcnemar_exact(correct_a, correct_b)
    assert result["b"] == 1 and result["c"] == 6
    assert result["p_value"] == pytest.approx(0.125)
    assert type(result["b"]) is int and type(result["p_value"]) is float
    # b = 0, c = 5: p = 2 * C(5,0) / 2^5 = 2 / 32 = 0.0625; as 0/1 ints.
    result = statistics.mcnemar_exact([0] * 5, [1] * 5)
    assert (result["b"], result["c"]) == (0, 5)
    assert result["p_value"] == pytest.approx(0.0625)
    # b = c = 3: the observed count is the centre of Binomial(6, 1/2), every outcome is as
    # extreme or more, p = 1.
    assert statistics.mcnemar_exact([1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])["p_value"] == (
        pytest.approx(1.0)
    )


def test_mcnemar_without_discordant_images_has_p_one():
    # Both right on 2, both wrong on 1: b = c = 0, no evidence either way.
    assert statistics.mcnemar_exact([1, 1, 0], [1, 1, 0]) == {"b": 0, "c": 0, "p_value": 1.0}


def test_summarise_over_seeds_by_hand():
    # Mean of 0.5, 0.75, 1.0 is 0.75; squared deviations 0.0625 + 0 + 0.0625 = 0.125, over
    # n - 1 = 2: 0.0625, std 0.25.
    assert statistics.summarise_over_seeds([0.5, 0.75, 1.0]) == {
        "mean": 0.75,
        "std": 0.25,
        "n": 3,
    }
    single = statistics.summarise_over_seeds([0.8])
    assert single["mean"] == 0.8 and single["n"] == 1 and math.isnan(single["std"])


def test_paired_t_interval_by_hand():
    # Differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, se 0.1 / sqrt(3); t(2, 0.975) = 4.302653.
    result = statistics.paired_t_interval([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert result["mean_difference"] == pytest.approx(0.2)
    assert result["std"] == pytest.approx(0.1)
    assert (result["low"], result["high"]) == pytest.approx((0.2 - half, 0.2 + half))
    # t = 0.2 / (0.1 / sqrt 3) = 3.4641 on 2 degrees of freedom: two-sided p = 0.07418.
    assert result["p_value"] == pytest.approx(0.0741799, rel=1e-5)
    assert result["n"] == 3


def test_paired_t_interval_of_a_constant_gain_is_that_gain():
    result = statistics.paired_t_interval([0.75, 0.5, 0.625], [0.5, 0.25, 0.375])
    assert (result["low"], result["high"]) == (0.25, 0.25)
    assert math.isnan(result["p_value"])


def test_one_seed_is_not_computable_and_says_so():
    message = r"needs at least 2 seeds per arm, got 1: it is not computable, so no verdict"
    with pytest.raises(statistics.NotComputableError, match=message):
        statistics.paired_t_interval([0.75], [0.5])
    with pytest.raises(statistics.NotComputableError, match=message):
        statistics.sign_flip_test([0.75], [0.5])
    labels = np.array([0, 1, 0, 1])
    scores = np.array([[0.2, 0.8, 0.4, 0.6]])
    with pytest.raises(statistics.NotComputableError, match=message):
        statistics.compare_with_baseline(labels, scores, {"arm": scores}, "accuracy")


def test_sign_flip_test_is_exact_on_small_cases():
    # Differences +1, +1: of the 4 sign assignments, 2 (all + and all -) are as extreme.
    assert statistics.sign_flip_test([2.0, 2.0], [1.0, 1.0]) == pytest.approx(0.5)
    # Ten differences of one sign: 2 of 1024 assignments: p = 2 / 1024.
    assert statistics.sign_flip_test(np.arange(10) + 1.0, np.zeros(10)) == pytest.approx(2 / 1024)
    assert statistics.sign_flip_test([0.5, 0.5], [0.5, 0.5]) == 1.0


def test_holm_adjustment_by_hand():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> monotone: 0.03, 0.06, 0.06.
    adjusted = statistics.holm_adjust([0.04, 0.01, 0.03])
    np.testing.assert_allclose(adjusted, [0.06, 0.03, 0.06])
    np.testing.assert_allclose(statistics.holm_adjust([0.5, float("nan")]), [0.5, np.nan])
    np.testing.assert_allclose(statistics.holm_adjust([0.6, 0.9]), [1.0, 1.0])


def test_minimum_detectable_effect_is_2_8_standard_errors_at_80_percent_power():
    assert statistics.minimum_detectable_effect(0.01) == pytest.approx(0.028016, rel=1e-4)
    # With 9 degrees of freedom the t quantiles: 2.262157 + 0.883404.
    assert statistics.minimum_detectable_effect(0.01, dof=9) == pytest.approx(0.03145561, rel=1e-4)
    assert statistics.test_size_detectable_effect(2) == 1.0  # capped: the whole scale
    assert statistics.test_size_detectable_effect(300) == pytest.approx(
        2.8016 * math.sqrt(0.5 / 300), rel=1e-3
    )


def test_weighted_auc_equals_the_auc_of_the_repeated_images():
    rng = np.random.default_rng(3)
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0])
    scores = np.round(rng.random(10), 1)  # ties on purpose
    weights = rng.integers(0, 4, size=(5, 10)).astype(float)
    weights[:, 0] += 1  # at least one NORMAL image per row
    weights[:, 1] += 1  # and one PNEUMONIA
    got = statistics._weighted_auc(labels, scores, weights)
    for row, value in zip(weights.astype(int), got, strict=True):
        repeated = np.repeat(np.arange(10), row)
        assert value == pytest.approx(classification.roc_auc(labels[repeated], scores[repeated]))


def test_seed_image_bootstrap_of_identical_arms_has_zero_differences():
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    scores = np.random.default_rng(0).random((4, 8))
    for metric in statistics.REPLICATED_METRICS:
        points, replicates = statistics.seed_image_bootstrap(
            labels, {"a": scores, "b": scores.copy()}, metric, num_resamples=50
        )
        assert points["a"] == points["b"]
        np.testing.assert_array_equal(replicates["a"], replicates["b"])
    result = statistics.compare_with_baseline(labels, scores, {"same": scores}, "auc")["same"]
    assert result["difference"] == 0 and result["low"] == result["high"] == 0
    assert result["verdict"] == "no detectable difference"


def test_seed_image_bootstrap_point_is_the_mean_of_the_seed_metrics():
    labels = np.array([0, 1, 1, 0, 1, 0])
    scores = np.array([[0.2, 0.9, 0.4, 0.3, 0.8, 0.6], [0.6, 0.7, 0.8, 0.1, 0.2, 0.3]])
    points, _ = statistics.seed_image_bootstrap(
        labels, {"arm": scores}, "accuracy", num_resamples=10
    )
    assert points["arm"] == pytest.approx(np.mean([ACCURACY(labels, row) for row in scores]))


def test_interval_from_replicates_is_on_the_t_scale():
    replicates = np.array([-1.0, 1.0] * 50)  # sd (ddof 1) = sqrt(100 / 99)
    result = statistics.interval_from_replicates(0.5, replicates, 5)
    se = math.sqrt(100 / 99) * math.sqrt(5 / 4)
    half = 2.7764451051977987 * se  # t(4, 0.975)
    assert result["se"] == pytest.approx(se)
    assert (result["low"], result["high"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert result["dof"] == 4


def test_recovered_share_by_hand():
    points = {"gan": 0.82, "duplicate": 0.80, "oracle": 0.84}
    # Replicates that move together: the share is exactly 0.5 on every one, so its interval too.
    shift = np.linspace(-0.01, 0.01, 20)
    replicates = {
        "gan": 0.82 + shift,
        "duplicate": 0.80 + shift,
        "oracle": 0.84 + shift,
    }
    share = statistics.recovered_share(points, replicates, 10)
    assert share["share"] == pytest.approx(0.5)
    assert (share["low"], share["high"]) == pytest.approx((0.5, 0.5))


def test_seed_image_bootstrap_rejects_bad_input_by_name():
    labels = np.array([0, 1, 0, 1])
    scores = np.full((2, 4), 0.5)
    with pytest.raises(ValueError, match="metric 'f1' is unknown .* use one of: accuracy"):
        statistics.seed_image_bootstrap(labels, {"a": scores}, "f1")
    with pytest.raises(ValueError, match=r"every arm needs the same seeds: got score shapes"):
        statistics.seed_image_bootstrap(labels, {"a": scores, "b": scores[:1]}, "accuracy")
    with pytest.raises(ValueError, match="needs test images of both classes"):
        statistics.seed_image_bootstrap(np.ones(4, int), {"a": scores}, "accuracy")


@pytest.mark.parametrize(
    ("low", "high", "higher_is_better", "expected"),
    [
        (0.01, 0.05, True, "better"),
        (-0.05, -0.01, True, "worse"),
        (-0.01, 0.02, True, "no detectable difference"),
        (0.0, 0.1, True, "no detectable difference"),  # touching zero is not a gain
        (-0.1, 0.0, True, "no detectable difference"),
        (float("nan"), float("nan"), True, "not enough data"),
        (-3.0, -1.0, False, "better"),  # fewer missed diseases
        (1.0, 3.0, False, "worse"),
    ],
)
def test_verdict(low, high, higher_is_better, expected):
    assert statistics.verdict(low, high, higher_is_better=higher_is_better) == expected


def test_bad_input_is_rejected_by_name():
    with pytest.raises(ValueError, match="needs at least 2 images, got 1"):
        statistics.bootstrap_ci([1], [0.9], ACCURACY)
    with pytest.raises(ValueError, match="3 labels, 2 probabilities"):
        statistics.bootstrap_ci([1, 0, 1], [0.9, 0.1], ACCURACY)
    with pytest.raises(ValueError, match="found 1.5 at index 0"):
        statistics.bootstrap_ci([1, 0], [1.5, 0.1], ACCURACY)
    with pytest.raises(ValueError, match="num_resamples must be a positive integer, got 0"):
        statistics.bootstrap_ci([1, 0], [0.9, 0.1], ACCURACY, num_resamples=0)
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1, got 95"):
        statistics.bootstrap_ci([1, 0], [0.9, 0.1], ACCURACY, confidence=95)
    with pytest.raises(ValueError, match="2 labels, 3 probabilities"):
        statistics.paired_image_bootstrap_difference([1, 0], [0.9, 0.1], [0.9, 0.1, 0.5], ACCURACY)
    with pytest.raises(ValueError, match="differ in length: 3 and 2"):
        statistics.mcnemar_exact([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="correct_b must be 0 or 1; found 2 at index 1"):
        statistics.mcnemar_exact([1, 0], [1, 2])
    with pytest.raises(ValueError, match="differ in length: 3 and 2 seeds"):
        statistics.paired_t_interval([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="values must be a non-empty 1-D"):
        statistics.summarise_over_seeds([])


def test_seed_averaged_difference_of_identical_arms_is_exactly_zero():
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1])
    probabilities = np.array([[0.2, 0.8, 0.6, 0.4, 0.9, 0.1, 0.3, 0.7]] * 3)
    accuracy = classification.metric_function("accuracy")
    result = statistics.seed_averaged_image_bootstrap_difference(
        labels, probabilities, probabilities, accuracy, num_resamples=200
    )
    assert (result["difference"], result["low"], result["high"]) == (0.0, 0.0, 0.0)


def test_seed_averaged_difference_point_is_the_mean_of_the_seed_differences():
    # Seed 0: arm right on 4/4, base on 2/4 (+0.5); seed 1: arm 3/4, base 3/4 (0): mean 0.25.
    labels = np.array([1, 1, 0, 0])
    arm = np.array([[0.9, 0.9, 0.1, 0.1], [0.9, 0.9, 0.9, 0.1]])
    base = np.array([[0.9, 0.1, 0.9, 0.1], [0.9, 0.9, 0.1, 0.9]])
    accuracy = classification.metric_function("accuracy")
    result = statistics.seed_averaged_image_bootstrap_difference(
        labels, arm, base, accuracy, num_resamples=500, seed=3
    )
    assert result["difference"] == pytest.approx(0.25)
    assert result["low"] <= 0.25 <= result["high"]
    with pytest.raises(ValueError, match=r"must be \[num_seeds, 4\] for both arms"):
        statistics.seed_averaged_image_bootstrap_difference(labels, arm, base[:1], accuracy)


def test_seed_averaged_interval_of_a_perfect_classifier_is_one_to_one():
    labels = np.array([0, 1, 0, 1, 1])
    probabilities = np.array([[0.1, 0.9, 0.2, 0.8, 0.7], [0.0, 1.0, 0.3, 0.6, 0.9]])
    low, high = statistics.seed_averaged_bootstrap_ci(
        labels, probabilities, classification.metric_function("accuracy"), num_resamples=100
    )
    assert (low, high) == (1.0, 1.0)
