"""Tests of the binary classification metrics against cases counted by hand.

Each expected value is worked out in a comment from the listed labels and probabilities, not
recomputed with the formula under test.
"""

import math
import warnings

import numpy as np
import pytest
import scipy.stats

from xraygan_jax.metrics import classification

# Ten test images: 4 diseased (label 1), 6 healthy.
TEN_LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
TEN_PROBABILITIES = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05])


def test_binary_metrics_of_ten_images_at_threshold_one_half():
    # p >= 0.5 is positive. Diseased 0.9, 0.8, 0.6 found (TP = 3), 0.3 missed (FN = 1).
    # Healthy 0.7 and 0.5 (0.5 >= 0.5) called diseased (FP = 2), 0.4, 0.2, 0.1, 0.05 (TN = 4).
    # accuracy = (3 + 4) / 10 = 0.7; sensitivity = 3 / 4; specificity = 4 / 6 = 2 / 3;
    # precision = 3 / 5; F1 = 2*3 / (2*3 + 2 + 1) = 6 / 9 = 2 / 3.
    # AUC: 4 * 6 = 24 pairs. 0.9 and 0.8 beat all 6 healthy; 0.6 beats 0.5, 0.4, 0.2, 0.1,
    # 0.05 (5); 0.3 beats 0.2, 0.1, 0.05 (3). (6 + 6 + 5 + 3) / 24 = 20 / 24 = 5 / 6.
    metrics = classification.binary_metrics(TEN_LABELS, TEN_PROBABILITIES)
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (3, 2, 4, 1)
    assert metrics["type_i_errors"] == 2
    assert metrics["type_ii_errors"] == 1
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["sensitivity"] == pytest.approx(0.75)
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["precision"] == pytest.approx(0.6)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["auc"] == pytest.approx(5 / 6)
    assert list(metrics) == list(classification.METRIC_NAMES)
    assert all(type(metrics[name]) is int for name in ("tp", "fp", "tn", "fn"))
    assert all(type(metrics[name]) is float for name in ("accuracy", "auc", "f1"))


def test_binary_metrics_at_a_higher_threshold():
    # p >= 0.65: diseased 0.9, 0.8 found (TP = 2), 0.6 and 0.3 missed (FN = 2); healthy 0.7
    # called diseased (FP = 1), the other 5 healthy (TN = 5). accuracy = 7 / 10,
    # sensitivity = 2 / 4, specificity = 5 / 6, precision = 2 / 3, F1 = 4 / (4 + 1 + 2) = 4 / 7.
    metrics = classification.binary_metrics(TEN_LABELS, TEN_PROBABILITIES, threshold=0.65)
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (2, 1, 5, 2)
    assert metrics["sensitivity"] == pytest.approx(0.5)
    assert metrics["specificity"] == pytest.approx(5 / 6)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(4 / 7)
    # AUC does not depend on the threshold.
    assert metrics["auc"] == pytest.approx(5 / 6)


def test_confusion_counts_of_ten_predictions_and_the_other_positive_label():
    # Predictions are TEN_PROBABILITIES >= 0.5: [1, 1, 1, 0, 1, 1, 0, 0, 0, 0].
    predictions = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    counts = classification.confusion_counts(TEN_LABELS, predictions)
    assert counts == {"tp": 3, "fp": 2, "tn": 4, "fn": 1}
    # With label 0 as positive the roles swap: label 0 predicted 0 (TP) = 4, label 1 predicted
    # 0 (FP) = 1, label 1 predicted 1 (TN) = 3, label 0 predicted 1 (FN) = 2.
    counts = classification.confusion_counts(TEN_LABELS, predictions, positive_label=0)
    assert counts == {"tp": 4, "fp": 1, "tn": 3, "fn": 2}
    assert all(type(value) is int for value in counts.values())


def test_roc_auc_counts_a_tie_as_half_a_pair():
    # Positives 0.8, 0.4; negatives 0.4, 0.2, 0.9: 2 * 3 = 6 pairs.
    # 0.8 beats 0.4 and 0.2, loses to 0.9: 2. 0.4 ties 0.4 (1/2), beats 0.2 (1), loses to 0.9.
    # (2 + 1.5) / 6 = 7 / 12.
    assert classification.roc_auc([1, 1, 0, 0, 0], [0.8, 0.4, 0.4, 0.2, 0.9]) == pytest.approx(
        7 / 12
    )
    # All scores equal: every pair a tie, AUC 1/2. Perfect ranking: 1. Reversed: 0.
    assert classification.roc_auc([1, 0, 1, 0], [0.5] * 4) == pytest.approx(0.5)
    assert classification.roc_auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == pytest.approx(1.0)
    assert classification.roc_auc([1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8]) == pytest.approx(0.0)
    # Scores need not be probabilities (logits), and label 0 may be the positive class:
    # positives 2.0, -3.0 (label 0) vs negatives -1.0, 5.0: 2.0 beats -1.0 only, -3.0 beats
    # neither: 1 / 4.
    assert classification.roc_auc(
        [0, 1, 0, 1], [2.0, -1.0, -3.0, 5.0], positive_label=0
    ) == pytest.approx(0.25)


def test_roc_auc_agrees_with_scipy_mannwhitneyu_on_random_scores_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 1)  # many ties
    u_statistic = scipy.stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u_statistic / ((labels == 1).sum() * (labels == 0).sum())
    assert classification.roc_auc(labels, scores) == pytest.approx(expected, rel=1e-12)


def test_one_class_gives_nan_auc_with_a_warning_and_the_other_metrics():
    # Three healthy images; 0.6 >= 0.5 is a false positive: TN = 2, FP = 1, TP = FN = 0.
    # accuracy = 2 / 3, specificity = 2 / 3; sensitivity = 0 / 0 -> NaN; precision = 0 / 1 = 0;
    # F1 = 0 / (0 + 1 + 0) = 0.
    with pytest.warns(classification.UndefinedAUCWarning, match="1 of the 2 classes") as record:
        metrics = classification.binary_metrics([0, 0, 0], [0.2, 0.6, 0.1])
    assert "0 positive, 3 negative" in str(record[0].message)
    assert math.isnan(metrics["auc"])
    assert math.isnan(metrics["sensitivity"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(2 / 3)
    assert metrics["precision"] == 0.0
    assert metrics["f1"] == 0.0
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (0, 1, 2, 0)


def test_auc_standard_error_is_delongs_and_matches_a_stratified_bootstrap():
    generator = np.random.default_rng(0)
    labels = np.r_[np.ones(60, int), np.zeros(30, int)]
    scores = np.r_[generator.normal(1.2, 1, 60), generator.normal(0, 1, 30)].round(1)  # ties
    standard_error = classification.auc_standard_error(labels, scores)
    # DeLong by hand on a tiny case: positives 0.9, 0.4; negatives 0.4, 0.1.
    # Placements: positives (1 + 1) / 2 = 1, (0.5 + 1) / 2 = 0.75; negatives (1 + 0.5) / 2 =
    # 0.75, (1 + 1) / 2 = 1; each pair of placements has variance 0.03125.
    tiny = classification.auc_standard_error([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.1])
    assert tiny == pytest.approx(math.sqrt(0.03125 / 2 + 0.03125 / 2))
    replicates = []
    for _ in range(3000):
        index = np.r_[generator.integers(0, 60, 60), 60 + generator.integers(0, 30, 30)]
        replicates.append(classification.roc_auc(labels[index], scores[index]))
    assert standard_error == pytest.approx(np.std(replicates), rel=0.1)


def test_auc_standard_error_is_nan_for_one_class_or_one_image_of_a_class():
    with pytest.warns(classification.UndefinedAUCWarning, match="AUC is undefined"):
        assert math.isnan(classification.auc_standard_error([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.warns(classification.UndefinedAUCWarning, match=r"two images of each class \(2 "):
        assert math.isnan(classification.auc_standard_error([1, 1, 0], [0.1, 0.2, 0.3]))


def test_zero_denominators_give_nan():
    # Two diseased images, both below the threshold: TP = FP = 0, FN = 2, TN = 0.
    # specificity = 0 / 0 and precision = 0 / 0 -> NaN; sensitivity = 0 / 2 = 0;
    # F1 = 0 / (0 + 0 + 2) = 0.
    with pytest.warns(classification.UndefinedAUCWarning):
        metrics = classification.binary_metrics([1, 1], [0.1, 0.2])
    assert math.isnan(metrics["specificity"])
    assert math.isnan(metrics["precision"])
    assert metrics["sensitivity"] == 0.0
    assert metrics["f1"] == 0.0


def test_choose_threshold_youden_on_six_points_breaks_ties_towards_the_smaller():
    # Sorted probabilities 0.1(0) 0.3(0) 0.4(1) 0.6(0) 0.7(1) 0.9(1); 3 positive, 3 negative.
    # Candidates: 0.1, midpoints 0.2, 0.35, 0.5, 0.65, 0.8, and just above 0.9.
    # J = TP/3 + TN/3 - 1:  0.1: 3/3 + 0/3 - 1 = 0;  0.2: 3/3 + 1/3 - 1 = 1/3;
    # 0.35: 3/3 + 2/3 - 1 = 2/3;  0.5: 2/3 + 2/3 - 1 = 1/3;  0.65: 2/3 + 3/3 - 1 = 2/3;
    # 0.8: 1/3 + 3/3 - 1 = 1/3;  above 0.9: 0 + 1 - 1 = 0. Tie 0.35 / 0.65 -> the smaller, 0.35.
    labels = [0, 0, 1, 0, 1, 1]
    probabilities = [0.1, 0.3, 0.4, 0.6, 0.7, 0.9]
    assert classification.choose_threshold(labels, probabilities) == pytest.approx(0.35)
    # Order of the images does not matter.
    order = [5, 2, 0, 4, 1, 3]
    assert classification.choose_threshold(
        np.array(labels)[order], np.array(probabilities)[order]
    ) == pytest.approx(0.35)


def test_choose_threshold_accuracy_can_call_everything_negative():
    # One diseased image (0.5) among five healthy (0.1, 0.2, 0.3, 0.6, 0.8).
    # Candidates 0.1, 0.15, 0.25, 0.4, 0.55, 0.7, just above 0.8.
    # TP + TN: 0.1: 1 + 0 = 1; 0.15: 1 + 1 = 2; 0.25: 1 + 2 = 3; 0.4: 1 + 3 = 4;
    # 0.55: 0 + 3 = 3; 0.7: 0 + 4 = 4; above 0.8: 0 + 5 = 5 -> everything negative.
    # Youden (P = 1, N = 5), J = TP/1 + TN/5 - 1: 0.1: 0; 0.15: 1/5; 0.25: 2/5; 0.4: 3/5;
    # 0.55: -2/5; 0.7: -1/5; above 0.8: 0 -> 0.4.
    labels = [0, 0, 0, 0, 0, 1]
    probabilities = [0.1, 0.2, 0.3, 0.6, 0.8, 0.5]
    assert classification.choose_threshold(labels, probabilities) == pytest.approx(0.4)
    threshold = classification.choose_threshold(labels, probabilities, "accuracy")
    assert 0.8 < threshold < 0.8 + 1e-12
    # At that threshold no image is called diseased: TN = 5, FN = 1, accuracy 5 / 6.
    metrics = classification.binary_metrics(labels, probabilities, threshold=threshold)
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (0, 0, 5, 1)
    assert metrics["accuracy"] == pytest.approx(5 / 6)


def test_metric_function_matches_binary_metrics_by_name():
    # Values from test_binary_metrics_of_ten_images_at_threshold_one_half.
    sensitivity = classification.metric_function("sensitivity")
    assert sensitivity(TEN_LABELS, TEN_PROBABILITIES) == pytest.approx(0.75)
    assert sensitivity.__name__ == "sensitivity"
    assert classification.metric_function("auc")(TEN_LABELS, TEN_PROBABILITIES) == pytest.approx(
        5 / 6
    )
    # At 0.65 the precision is 2 / 3 (test_binary_metrics_at_a_higher_threshold).
    precision = classification.metric_function("precision", threshold=0.65)
    assert precision(TEN_LABELS, TEN_PROBABILITIES) == pytest.approx(2 / 3)
    assert classification.metric_function("type_ii_errors")(TEN_LABELS, TEN_PROBABILITIES) == 1


def test_no_warning_when_both_classes_present():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        classification.binary_metrics(TEN_LABELS, TEN_PROBABILITIES)


@pytest.mark.parametrize(
    ("labels", "probabilities", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "3 labels, 2 probabilities"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels must be 0 or 1; found 2 at index 2"),
        ([0, 0.5, 1], [0.1, 0.2, 0.3], "found 0.5 at index 1"),
        ([0, 1, 1], [0.1, 1.2, 0.3], r"must lie in \[0, 1\]; found 1.2 at index 1"),
        ([0, 1, 1], [0.1, -0.5, 0.3], "found -0.5 at index 1"),
        ([0, 1, 1], [0.1, 0.2, float("nan")], "NaN \\(first at index 2"),
        ([], [], "labels is empty"),
        ([[0, 1]], [[0.1, 0.2]], r"one-dimensional .* shape \(1, 2\)"),
        (["a", "b"], [0.1, 0.2], "must be numbers 0 or 1"),
    ],
)
def test_binary_metrics_rejects_bad_input_by_name(labels, probabilities, message):
    with pytest.raises(classification.MetricInputError, match=message):
        classification.binary_metrics(labels, probabilities)
    assert issubclass(classification.MetricInputError, ValueError)


def test_bad_options_are_rejected_by_name():
    with pytest.raises(ValueError, match="3 labels, 2 predictions"):
        classification.confusion_counts([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="predictions must be 0 or 1; found 3 at index 0"):
        classification.confusion_counts([0, 1], [3, 1])
    with pytest.raises(ValueError, match="positive_label must be 0 or 1, got 2"):
        classification.binary_metrics([0, 1], [0.1, 0.9], positive_label=2)
    with pytest.raises(ValueError, match="threshold is NaN"):
        classification.binary_metrics([0, 1], [0.1, 0.9], threshold=float("nan"))
    with pytest.raises(ValueError, match="scores contain NaN \\(first at index 1"):
        classification.roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="2 labels, 3 scores|\\(2,\\) labels, \\(3,\\) scores"):
        classification.roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown threshold criterion 'f1'"):
        classification.choose_threshold([0, 1], [0.1, 0.9], "f1")
    with pytest.raises(ValueError, match="both classes .* found 0 positive and 3 negative"):
        classification.choose_threshold([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown metric 'recall'"):
        classification.metric_function("recall")
