"""ClassifierEvaluator: a classifier's test metrics from its predict_fn, on a hand-checked case."""

import warnings

import numpy as np
import pytest

from xraygan_jax.evaluators import classifier_metrics
from xraygan_jax.metrics import classification

# Five test images: two NORMAL (0), three PNEUMONIA (1), and what the classifier predicts.
LABELS = np.array([0, 0, 1, 1, 1])
PROBABILITIES = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
IMAGES = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)  # image i's one pixel is i


def _predict(images):
    """A classifier that looks the probability up by the image's pixel."""
    _predict.calls += 1
    return PROBABILITIES[images[:, 0, 0, 0]]


def test_the_metrics_at_half_and_at_a_validation_threshold_by_hand():
    _predict.calls = 0
    evaluator = classifier_metrics.ClassifierEvaluator(
        _predict, images=IMAGES, labels=LABELS, threshold=0.3
    )
    metrics = evaluator.run()
    assert _predict.calls == 1
    # At 0.5: images 1, 3, 4 called PNEUMONIA; 2 missed, 1 a false alarm.
    assert {k: metrics[k] for k in ("tp", "fp", "tn", "fn")} == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(1 / 2)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    # 5 of the 6 (PNEUMONIA, NORMAL) pairs ranked right: only 0.4 < 0.6.
    assert metrics["auc"] == pytest.approx(5 / 6)
    # At 0.3: image 2 caught too.
    assert metrics["threshold"] == 0.3
    assert metrics["accuracy_at_threshold"] == pytest.approx(4 / 5)
    assert metrics["sensitivity_at_threshold"] == 1.0
    assert metrics["specificity_at_threshold"] == pytest.approx(1 / 2)
    assert "auc_at_threshold" not in metrics
    # Exactly binary_metrics' numbers, under their names.
    at_half = classification.binary_metrics(LABELS, PROBABILITIES)
    at_threshold = classification.binary_metrics(LABELS, PROBABILITIES, 0.3)
    assert metrics == {
        **at_half,
        "threshold": 0.3,
        **{f"{k}_at_threshold": v for k, v in at_threshold.items() if k != "auc"},
    }


def test_without_a_threshold_only_the_metrics_at_half():
    evaluator = classifier_metrics.ClassifierEvaluator(_predict, images=IMAGES, labels=LABELS)
    np.testing.assert_array_equal(evaluator.predict(), PROBABILITIES)
    assert evaluator.run() == classification.binary_metrics(LABELS, PROBABILITIES)


def test_one_class_gives_auc_nan_with_one_warning():
    evaluator = classifier_metrics.ClassifierEvaluator(
        _predict, images=IMAGES[2:], labels=LABELS[2:], threshold=0.3
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = evaluator.run()
    assert [w.category for w in caught] == [classification.UndefinedAUCWarning]
    assert np.isnan(metrics["auc"]) and metrics["accuracy_at_threshold"] == 1.0


def test_labels_other_than_zero_and_one_are_refused_when_built():
    with pytest.raises(classification.MetricInputError, match="labels"):
        classifier_metrics.ClassifierEvaluator(_predict, images=IMAGES, labels=[0, 1, 2, 1, 0])
