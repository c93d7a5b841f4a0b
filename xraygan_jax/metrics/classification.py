"""Binary classification metrics for the augmentation study, in NumPy and SciPy.

The positive class is the disease class: label 1 (PNEUMONIA, COVID-19) unless `positive_label`
says otherwise. `probabilities` are the classifier's probabilities of the positive class, and an
image is predicted positive when its probability is at or above the threshold (`p >= threshold`).

- `confusion_counts`: TP, FP, TN, FN of hard predictions.
- `binary_metrics`: accuracy, sensitivity, specificity, precision, F1, ROC AUC and the confusion
  counts at one threshold, with type I errors (false positives: healthy called diseased) and type
  II errors (false negatives: disease missed) named as the study reports them.
- `roc_auc`: the Mann-Whitney U statistic over all positive-negative pairs, ties counted half.
- `choose_threshold`: the threshold that maximises Youden's J or accuracy on a validation split.
  The study chooses thresholds on validation data only; the test split is never used to choose.
- `metric_function`: one named metric as a `(labels, probabilities) -> float` function, the form
  `statistics.bootstrap_ci` resamples.

A ratio whose denominator is zero (sensitivity with no positive image, precision with no positive
prediction, ...) is NaN, not 0 or 1: a NaN says "undefined here", which a report can show.
"""

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.stats

# Criteria `choose_threshold` accepts.
THRESHOLD_CRITERIA = ("youden", "accuracy")
# Keys of `binary_metrics`, in the order reports list them.
METRIC_NAMES = (
    "accuracy",
    "sensitivity",
    "specificity",
    "precision",
    "f1",
    "auc",
    "tp",
    "fp",
    "tn",
    "fn",
    "type_i_errors",
    "type_ii_errors",
)


class MetricInputError(ValueError):
    """Labels, predictions, probabilities or options that the metrics cannot use."""


class UndefinedAUCWarning(UserWarning):
    """ROC AUC asked of labels holding one class only: there are no pairs to rank; AUC is NaN."""


def check_labels(
    labels: Any,
    *,
    name: str = "labels",
    hint: str = "map classes to 0 and 1 (1 = disease) before computing metrics",
) -> np.ndarray:
    """Validates binary labels and returns them as a 1-D int64 array.

    Args:
      labels: one label per image, each 0 or 1 (bool, int or float holding 0.0 / 1.0).
      name: what the caller calls the array, used in the error message.
      hint: what to do about a value other than 0 and 1, ending that message.

    Returns:
      The labels as int64, shape [N].

    Raises:
      MetricInputError: not 1-D, empty, or a value other than 0 and 1 (the message names the
        first such value and its index).
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise MetricInputError(
            f"{name} must be one-dimensional (one value per image), got shape {array.shape}; "
            "flatten them with np.ravel"
        )
    if array.size == 0:
        raise MetricInputError(f"{name} is empty; pass at least one image")
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise MetricInputError(f"{name} must be numbers 0 or 1, got dtype {array.dtype}")
    invalid = (array != 0) & (array != 1)
    if invalid.any():
        index = int(np.flatnonzero(invalid)[0])
        raise MetricInputError(
            f"{name} must be 0 or 1; found {array[index].item()!r} at index {index}; {hint}"
        )
    return array.astype(np.int64)


def check_probabilities(probabilities: Any, num_images: int) -> np.ndarray:
    """Validates positive-class probabilities and returns them as a 1-D float64 array.

    Args:
      probabilities: one probability of the positive class per image, in [0, 1].
      num_images: the number of labels they go with.

    Returns:
      The probabilities as float64, shape [N].

    Raises:
      MetricInputError: not 1-D, a length other than `num_images`, NaN, or a value outside
        [0, 1] (the message names the first such value and its index).
    """
    array = np.asarray(probabilities)
    if array.ndim != 1:
        raise MetricInputError(
            f"probabilities must be one-dimensional (one per image), got shape {array.shape}"
        )
    if array.shape[0] != num_images:
        raise MetricInputError(
            f"labels and probabilities differ in length: {num_images} labels, "
            f"{array.shape[0]} probabilities; pass one probability per labelled image"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise MetricInputError(f"probabilities must be numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    nan = np.isnan(array)
    if nan.any():
        index = int(np.flatnonzero(nan)[0])
        raise MetricInputError(
            f"probabilities contain NaN (first at index {index}, {int(nan.sum())} in all); the "
            "classifier's output is not finite, check its training loss"
        )
    outside = (array < 0) | (array > 1)
    if outside.any():
        index = int(np.flatnonzero(outside)[0])
        raise MetricInputError(
            f"probabilities must lie in [0, 1]; found {array[index].item()!r} at index "
            f"{index}; pass sigmoid(logits), not the logits"
        )
    return array


def _check_positive_label(positive_label: int) -> None:
    if positive_label not in (0, 1):
        raise MetricInputError(f"positive_label must be 0 or 1, got {positive_label!r}")


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if np.isnan(threshold):
        raise MetricInputError("threshold is NaN; pass a number, usually in [0, 1]")
    return threshold


def _ratio(numerator: int, denominator: int) -> float:
    # Undefined, not 0: a NaN shows in a report that the metric had nothing to measure.
    return float(numerator / denominator) if denominator else float("nan")


def _counts(is_positive: np.ndarray, predicted_positive: np.ndarray) -> dict[str, int]:
    return {
        "tp": int(np.count_nonzero(is_positive & predicted_positive)),
        "fp": int(np.count_nonzero(~is_positive & predicted_positive)),
        "tn": int(np.count_nonzero(~is_positive & ~predicted_positive)),
        "fn": int(np.count_nonzero(is_positive & ~predicted_positive)),
    }


def confusion_counts(labels: Any, predictions: Any, *, positive_label: int = 1) -> dict[str, int]:
    """The confusion matrix of hard predictions as four counts.

    Args:
      labels: true labels, 0 or 1, shape [N].
      predictions: predicted labels, 0 or 1, shape [N].
      positive_label: the disease class.

    Returns:
      {"tp", "fp", "tn", "fn"} as ints: true positives (disease found), false positives (type I
      errors), true negatives, false negatives (type II errors, disease missed).

    Raises:
      MetricInputError: lengths differ or a value is not 0 or 1.
    """
    _check_positive_label(positive_label)
    labels = check_labels(labels)
    predictions = check_labels(
        predictions, name="predictions", hint="threshold probabilities into 0 and 1 first"
    )
    if predictions.shape != labels.shape:
        raise MetricInputError(
            f"labels and predictions differ in length: {labels.shape[0]} labels, "
            f"{predictions.shape[0]} predictions; pass one prediction per labelled image"
        )
    return _counts(labels == positive_label, predictions == positive_label)


def _metrics_from_counts(counts: dict[str, int]) -> dict[str, float | int]:
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    return {
        "accuracy": _ratio(tp + tn, tp + fp + tn + fn),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        # The count form equals the harmonic mean of precision and sensitivity where both are
        # defined, and stays defined (0) when there are positives but no positive predictions.
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        **counts,
        "type_i_errors": fp,
        "type_ii_errors": fn,
    }


def _auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    num_positive = int(np.count_nonzero(is_positive))
    num_negative = is_positive.size - num_positive
    if num_positive == 0 or num_negative == 0:
        warnings.warn(
            f"AUC is undefined with one class: the labels hold 1 of the 2 classes "
            f"({num_positive} positive, {num_negative} negative images), so no pair can be "
            "ranked; AUC is NaN, the other metrics are still computed",
            UndefinedAUCWarning,
            stacklevel=3,
        )
        return float("nan")
    # Mann-Whitney U of the positives from their midranks: the positive-negative pairs ranked
    # right, a tie as half a pair. Same U as scipy.stats.mannwhitneyu, 5x faster without the
    # p-value, which matters inside a bootstrap.
    ranks = scipy.stats.rankdata(scores)
    u_statistic = ranks[is_positive].sum() - num_positive * (num_positive + 1) / 2
    return float(u_statistic / (num_positive * num_negative))


def roc_auc(labels: Any, scores: Any, *, positive_label: int = 1) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative.

    Computed as the Mann-Whitney U statistic of the positives' scores over the negatives',
    divided by n_positive * n_negative; a tied pair counts one half.

    Args:
      labels: true labels, 0 or 1, shape [N].
      scores: any real score that grows with the positive class (probabilities, logits), [N].
      positive_label: the disease class.

    Returns:
      AUC in [0, 1]; NaN, with an `UndefinedAUCWarning`, when the labels hold one class only.

    Raises:
      MetricInputError: lengths differ, a label is not 0 or 1, or a score is NaN.
    """
    _check_positive_label(positive_label)
    labels = check_labels(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != labels.shape:
        raise MetricInputError(
            f"labels and scores differ in shape: {labels.shape} labels, {scores.shape} scores; "
            "pass one score per labelled image"
        )
    if np.isnan(scores).any():
        index = int(np.flatnonzero(np.isnan(scores))[0])
        raise MetricInputError(
            f"scores contain NaN (first at index {index}); the classifier's output is not finite"
        )
    return _auc(labels == positive_label, scores)


def auc_standard_error(labels: Any, scores: Any, *, positive_label: int = 1) -> float:
    """DeLong's standard error of the AUC of `scores` on these images (DeLong et al. 1988).

    Each positive's placement (the share of negatives it outscores, a tie counting one half) and
    each negative's (the share of positives scoring above it) are averaged into the AUC; the
    variance of the AUC is var(positive placements) / n_positive + var(negative placements) /
    n_negative. It is the spread of the AUC over resamples of the images, for fixed scores.

    Args:
      labels: true labels, 0 or 1, shape [N].
      scores: any real score that grows with the positive class, [N].
      positive_label: the disease class.

    Returns:
      The standard error; NaN, with an `UndefinedAUCWarning`, when the labels hold one class
      or when a class has a single image (no variance of its placements).
    """
    auc = roc_auc(labels, scores, positive_label=positive_label)
    is_positive = check_labels(labels) == positive_label
    positives = np.asarray(scores, np.float64)[is_positive]
    negatives = np.asarray(scores, np.float64)[~is_positive]
    if np.isnan(auc) or min(positives.size, negatives.size) < 2:
        if not np.isnan(auc):
            warnings.warn(
                f"the AUC's standard error needs two images of each class ({positives.size} "
                f"positive, {negatives.size} negative); it is NaN",
                UndefinedAUCWarning,
                stacklevel=2,
            )
        return float("nan")
    wins = (positives[:, None] > negatives[None, :]) + 0.5 * (
        positives[:, None] == negatives[None, :]
    )
    variance = wins.mean(axis=1).var(ddof=1) / positives.size
    variance += wins.mean(axis=0).var(ddof=1) / negatives.size
    return float(np.sqrt(variance))


def binary_metrics(
    labels: Any, probabilities: Any, threshold: float = 0.5, *, positive_label: int = 1
) -> dict[str, float | int]:
    """All the study's test-set metrics of one classifier at one threshold.

    Args:
      labels: true labels, 0 or 1, shape [N].
      probabilities: probability of `positive_label` per image, in [0, 1], shape [N].
      threshold: an image is predicted positive when its probability is >= threshold. Choose it
        on validation data (`choose_threshold`), never on the test set.
      positive_label: the disease class.

    Returns:
      Floats "accuracy", "sensitivity" (recall of the positive class), "specificity" (recall of
      the negative class), "precision" (positive predictive value), "f1" (2TP / (2TP + FP +
      FN)), "auc" (threshold-free); ints "tp", "fp", "tn", "fn", "type_i_errors" (= fp) and
      "type_ii_errors" (= fn). A ratio with a zero denominator is NaN (sensitivity without
      positive images, specificity without negative ones, precision without positive
      predictions, F1 with neither positives nor positive predictions). With one class in the
      labels AUC is NaN and an `UndefinedAUCWarning` is raised; everything else is reported.

    Raises:
      MetricInputError: lengths differ, a label is not 0 or 1, a probability is NaN or outside
        [0, 1], or the threshold is NaN.
    """
    _check_positive_label(positive_label)
    threshold = _check_threshold(threshold)
    labels = check_labels(labels)
    probabilities = check_probabilities(probabilities, labels.shape[0])
    is_positive = labels == positive_label
    metrics = _metrics_from_counts(_counts(is_positive, probabilities >= threshold))
    metrics["auc"] = _auc(is_positive, probabilities)
    return {name: metrics[name] for name in METRIC_NAMES}


def metric_function(
    name: str, *, threshold: float = 0.5, positive_label: int = 1
) -> Callable[[np.ndarray, np.ndarray], float]:
    """One metric of `binary_metrics` as a function of (labels, probabilities).

    Computes only what the metric needs (no AUC for a threshold metric), which matters when a
    bootstrap calls it thousands of times.

    Args:
      name: a key of `binary_metrics` (`METRIC_NAMES`), e.g. "sensitivity" or "auc".
      threshold: the decision threshold, as in `binary_metrics`.
      positive_label: the disease class.

    Returns:
      `fn(labels, probabilities) -> float`, validating its inputs as `binary_metrics` does.

    Raises:
      MetricInputError: an unknown metric name, positive label or a NaN threshold.
    """
    if name not in METRIC_NAMES:
        raise MetricInputError(f"unknown metric {name!r}; choose one of {', '.join(METRIC_NAMES)}")
    _check_positive_label(positive_label)
    threshold = _check_threshold(threshold)

    def compute(labels: np.ndarray, probabilities: np.ndarray) -> float:
        labels = check_labels(labels)
        probabilities = check_probabilities(probabilities, labels.shape[0])
        is_positive = labels == positive_label
        if name == "auc":
            return _auc(is_positive, probabilities)
        return float(_metrics_from_counts(_counts(is_positive, probabilities >= threshold))[name])

    compute.__name__ = name
    return compute


def choose_threshold(
    labels: Any, probabilities: Any, criterion: str = "youden", *, positive_label: int = 1
) -> float:
    """The decision threshold that maximises a criterion on a validation split.

    Candidate thresholds are the smallest validation probability (everything positive), the
    midpoints between adjacent distinct probabilities (so the threshold falls between two
    validation images, not on one), and the next float above the largest (everything negative).
    Criteria are compared in exact integer form (Youden's J times n_pos * n_neg, accuracy times
    N), so ties are exact. Ties go to the smallest threshold, the one with the highest
    sensitivity: in screening a missed disease (type II error) costs more than a false alarm.

    Args:
      labels: validation labels, 0 or 1, shape [N].
      probabilities: validation probabilities of `positive_label`, in [0, 1], shape [N].
      criterion: "youden" (sensitivity + specificity - 1, needs both classes) or "accuracy".
      positive_label: the disease class.

    Returns:
      The threshold, for `binary_metrics(..., threshold=...)` on the test split.

    Raises:
      MetricInputError: invalid inputs, an unknown criterion, or Youden's J asked of one class.
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise MetricInputError(
            f"unknown threshold criterion {criterion!r}; choose one of "
            f"{', '.join(THRESHOLD_CRITERIA)}"
        )
    _check_positive_label(positive_label)
    labels = check_labels(labels)
    probabilities = check_probabilities(probabilities, labels.shape[0])
    is_positive = labels == positive_label
    num_positive = int(np.count_nonzero(is_positive))
    num_negative = labels.size - num_positive
    if criterion == "youden" and (num_positive == 0 or num_negative == 0):
        raise MetricInputError(
            f"Youden's J needs both classes in the validation labels; found {num_positive} "
            f"positive and {num_negative} negative images; carve a validation split that holds "
            "both classes, or use criterion='accuracy'"
        )
    distinct = np.unique(probabilities)
    candidates = np.concatenate(
        [distinct[:1], (distinct[:-1] + distinct[1:]) / 2, [np.nextafter(distinct[-1], np.inf)]]
    )
    # Counts at or above each candidate by binary search over the sorted scores of each class.
    positive_scores = np.sort(probabilities[is_positive])
    negative_scores = np.sort(probabilities[~is_positive])
    tp = num_positive - np.searchsorted(positive_scores, candidates, side="left")
    fp = num_negative - np.searchsorted(negative_scores, candidates, side="left")
    tn = num_negative - fp
    if criterion == "youden":
        # J * n_pos * n_neg, shifted by the constant n_pos * n_neg.
        score = tp * num_negative + tn * num_positive
    else:
        score = tp + tn
    # argmax takes the first maximum: the smallest threshold among ties.
    return float(candidates[int(np.argmax(score))])
