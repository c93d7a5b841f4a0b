"""Confidence intervals and paired tests for the augmentation study, on `scipy.stats`.

The study compares classifiers trained with and without synthetic images on the same test
images, over a few training seeds:

- `bootstrap_ci`: the percentile bootstrap interval of one metric over test images.
- `paired_image_bootstrap_difference`: the interval of metric(arm) - metric(baseline), resampling
  test images jointly (both classifiers see the same resampled images).
- `mcnemar_exact`: McNemar's exact test on the paired right/wrong calls of two classifiers.
- `paired_difference_ci`: the mean difference of a metric over seeds, with a paired bootstrap
  interval over seeds.
- `summarise_over_seeds`: mean, sample standard deviation and count.
- `verdict`: the word a report prints for an interval of a difference. A gain is claimed only
  when the whole interval lies above zero.

Intervals are percentile bootstrap intervals from `scipy.stats.bootstrap` with a seeded NumPy
generator, so the same inputs and seed give the same interval. The percentile method is used, not
BCa, because BCa's jackknife fails on metrics that are undefined on some resamples (sensitivity
of a resample with no diseased image). Such resamples give NaN; they are left out of the interval,
and an `UndefinedResamplesWarning` says how many were.
"""

import dataclasses
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.stats

from xraygan_jax.metrics import classification

# What `verdict` returns.
BETTER = "better"
WORSE = "worse"
NO_DETECTABLE_DIFFERENCE = "no detectable difference"
NOT_ENOUGH_DATA = "not enough data"
# Resamples evaluated per `statistic` call inside scipy: bounds memory on large test sets.
_RESAMPLES_PER_BATCH = 256
# SciPy 1.15 renamed `random_state` to `rng`; both take a NumPy Generator.
_RNG_KEYWORD = (
    "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
)

MetricFn = Callable[[np.ndarray, np.ndarray], float]


class UndefinedResamplesWarning(UserWarning):
    """Some bootstrap resamples gave NaN (the metric was undefined there) and were left out."""


def _check_bootstrap_options(num_resamples: int, confidence: float) -> None:
    if int(num_resamples) != num_resamples or num_resamples < 1:
        raise classification.MetricInputError(
            f"num_resamples must be a positive integer, got {num_resamples!r}; 2000 or more is "
            "usual for a 95% interval"
        )
    if not 0 < confidence < 1:
        raise classification.MetricInputError(
            f"confidence must lie strictly between 0 and 1, got {confidence!r}; e.g. 0.95"
        )


def _percentile_interval(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    *,
    vectorized: bool,
    num_resamples: int,
    confidence: float,
    seed: int,
    what: str,
) -> tuple[float, float]:
    options = {
        "vectorized": vectorized,
        "paired": True,
        "confidence_level": confidence,
        "method": "percentile",
        "batch": _RESAMPLES_PER_BATCH,
    }
    with warnings.catch_warnings():
        # NaN resamples are counted and reported once below, not once per resample.
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
        result = scipy.stats.bootstrap(
            data,
            statistic,
            n_resamples=num_resamples,
            **options,
            **{_RNG_KEYWORD: np.random.default_rng(seed)},
        )
    distribution = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    undefined = np.isnan(distribution)
    if not undefined.any():
        interval = result.confidence_interval
        return float(interval.low), float(interval.high)
    num_undefined = int(undefined.sum())
    if num_undefined == distribution.size:
        warnings.warn(
            f"{what} is undefined (NaN) on all {distribution.size} bootstrap resamples; the "
            "interval is NaN (e.g. sensitivity with no diseased test image)",
            UndefinedResamplesWarning,
            stacklevel=3,
        )
        return float("nan"), float("nan")
    warnings.warn(
        f"{what} is undefined (NaN) on {num_undefined} of {distribution.size} bootstrap "
        f"resamples (e.g. no image of one class drawn); the interval uses the other "
        f"{distribution.size - num_undefined}; with many left out the test set is too small "
        "for this metric",
        UndefinedResamplesWarning,
        stacklevel=3,
    )
    # n_resamples=0 with a previous result: scipy recomputes the interval, resampling nothing.
    defined = dataclasses.replace(result, bootstrap_distribution=distribution[~undefined])
    result = scipy.stats.bootstrap(
        data,
        statistic,
        n_resamples=0,
        bootstrap_result=defined,
        **options,
        **{_RNG_KEYWORD: np.random.default_rng(seed)},
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


def _metric_name(metric_fn: MetricFn) -> str:
    name = getattr(metric_fn, "__name__", "")
    return "the metric" if not name or name.startswith("<") else name


def _check_enough_images(num_images: int) -> None:
    if num_images < 2:
        raise classification.MetricInputError(
            f"a bootstrap over test images needs at least 2 images, got {num_images}"
        )


def bootstrap_ci(
    labels: Any,
    probabilities: Any,
    metric_fn: MetricFn,
    *,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric over test images.

    Test images are drawn with replacement (labels and probabilities together), the metric is
    computed on each resample, and the interval is the central `confidence` share of those
    values. Resamples on which the metric is NaN are left out, with an
    `UndefinedResamplesWarning` giving their number.

    Args:
      labels: test labels, 0 or 1, shape [N] with N >= 2.
      probabilities: test probabilities of the positive class, in [0, 1], shape [N].
      metric_fn: `fn(labels, probabilities) -> float`, e.g.
        `classification.metric_function("sensitivity", threshold=t)`.
      num_resamples: bootstrap resamples.
      confidence: the interval's coverage, e.g. 0.95.
      seed: seeds the resampling; the same inputs and seed give the same interval.

    Returns:
      (low, high); (NaN, NaN) when the metric is undefined on every resample.

    Raises:
      MetricInputError: invalid labels or probabilities, fewer than 2 images, or bad options.
    """
    _check_bootstrap_options(num_resamples, confidence)
    labels = classification.check_labels(labels)
    probabilities = classification.check_probabilities(probabilities, labels.shape[0])
    _check_enough_images(labels.shape[0])
    return _percentile_interval(
        (labels, probabilities),
        metric_fn,
        vectorized=False,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
        what=_metric_name(metric_fn),
    )


def paired_image_bootstrap_difference(
    labels: Any,
    probabilities_arm: Any,
    probabilities_base: Any,
    metric_fn: MetricFn,
    *,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Interval of metric(arm) - metric(baseline) over jointly resampled test images.

    Each resample draws one set of image indices and scores both classifiers on it, so the
    interval reflects how differently the two classifiers do on the same images, not how hard
    the drawn images happen to be.

    Args:
      labels: test labels, 0 or 1, shape [N] with N >= 2.
      probabilities_arm: the compared classifier's probabilities of the positive class, [N].
      probabilities_base: the baseline's (0% synthetic) probabilities on the same images, [N].
      metric_fn: `fn(labels, probabilities) -> float`.
      num_resamples: bootstrap resamples.
      confidence: the interval's coverage, e.g. 0.95.
      seed: seeds the resampling.

    Returns:
      {"difference": metric(arm) - metric(base) on all test images, "low", "high"}; the
      interval is NaN when the difference is undefined on every resample.

    Raises:
      MetricInputError: invalid labels or probabilities, fewer than 2 images, or bad options.
    """
    _check_bootstrap_options(num_resamples, confidence)
    labels = classification.check_labels(labels)
    probabilities_arm = classification.check_probabilities(probabilities_arm, labels.shape[0])
    probabilities_base = classification.check_probabilities(probabilities_base, labels.shape[0])
    _check_enough_images(labels.shape[0])

    def difference(labels, probabilities_arm, probabilities_base):
        return metric_fn(labels, probabilities_arm) - metric_fn(labels, probabilities_base)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
        point = float(difference(labels, probabilities_arm, probabilities_base))
    low, high = _percentile_interval(
        (labels, probabilities_arm, probabilities_base),
        difference,
        vectorized=False,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
        what=f"the difference in {_metric_name(metric_fn)}",
    )
    return {"difference": point, "low": low, "high": high}


def _seed_rows(probabilities: Any, num_images: int) -> np.ndarray:
    """[num_seeds, N] float64 probabilities, every row validated."""
    rows = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    for row in rows:
        classification.check_probabilities(row, num_images)
    return rows


def _mean_over_seeds(metric_fn: MetricFn, labels: np.ndarray, rows: np.ndarray, indices) -> float:
    """The metric of every seed's classifier on the same (resampled) images, averaged."""
    indices = np.asarray(indices, dtype=np.int64)
    return float(np.mean([metric_fn(labels[indices], row[indices]) for row in rows]))


def seed_averaged_bootstrap_ci(
    labels: Any,
    probabilities: Any,
    metric_fn: MetricFn,
    *,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval of the mean over seeds of a metric, resampling test images (shared by seeds).

    Args:
      labels: test labels, 0 or 1, [N].
      probabilities: [num_seeds, N] probabilities of the positive class.
      metric_fn, num_resamples, confidence, seed: as `bootstrap_ci`.

    Returns:
      (low, high).
    """
    _check_bootstrap_options(num_resamples, confidence)
    labels = classification.check_labels(labels)
    rows = _seed_rows(probabilities, labels.shape[0])
    _check_enough_images(labels.shape[0])

    def mean_metric(indices):
        return _mean_over_seeds(metric_fn, labels, rows, indices)

    return _percentile_interval(
        (np.arange(labels.shape[0]),),
        mean_metric,
        vectorized=False,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
        what=_metric_name(metric_fn),
    )


def seed_averaged_image_bootstrap_difference(
    labels: Any,
    probabilities_arm: Any,
    probabilities_base: Any,
    metric_fn: MetricFn,
    *,
    num_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Interval of mean-over-seeds metric(arm) - mean-over-seeds metric(baseline), by images.

    Each resample draws one set of test-image indices and scores every seed's classifier of
    both arms on it, so the interval reflects the test set's sampling noise around the seeds'
    average (with one seed it is `paired_image_bootstrap_difference`).

    Args:
      labels: test labels, 0 or 1, [N].
      probabilities_arm, probabilities_base: [num_seeds, N] probabilities of the positive class.
      metric_fn: `fn(labels, probabilities) -> float`.
      num_resamples, confidence, seed: as `bootstrap_ci`.

    Returns:
      {"difference", "low", "high"}.
    """
    _check_bootstrap_options(num_resamples, confidence)
    labels = classification.check_labels(labels)
    arm = np.atleast_2d(np.asarray(probabilities_arm, dtype=np.float64))
    base = np.atleast_2d(np.asarray(probabilities_base, dtype=np.float64))
    if arm.shape != base.shape or arm.shape[1] != labels.shape[0]:
        raise classification.MetricInputError(
            f"probabilities must be [num_seeds, {labels.shape[0]}] for both arms, got "
            f"{arm.shape} and {base.shape}"
        )
    arm, base = _seed_rows(arm, labels.shape[0]), _seed_rows(base, labels.shape[0])
    _check_enough_images(labels.shape[0])

    def difference(indices):
        return _mean_over_seeds(metric_fn, labels, arm, indices) - _mean_over_seeds(
            metric_fn, labels, base, indices
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
        point = float(difference(np.arange(labels.shape[0])))
    low, high = _percentile_interval(
        (np.arange(labels.shape[0]),),
        difference,
        vectorized=False,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
        what=f"the difference in {_metric_name(metric_fn)}",
    )
    return {"difference": point, "low": low, "high": high}


def _check_correct(values: Any, name: str) -> np.ndarray:
    return classification.check_labels(
        values, name=name, hint="pass True (or 1) where the classifier was right"
    ).astype(bool)


def mcnemar_exact(correct_a: Any, correct_b: Any) -> dict[str, float | int]:
    """McNemar's exact test: do two classifiers err on the same images at different rates?

    Only discordant images count: b where A is right and B wrong, c where A is wrong and B
    right. Under the null hypothesis each discordant image goes either way with probability
    1/2, so the two-sided p-value is the binomial test of b successes in b + c trials.

    Args:
      correct_a: whether classifier A was right on each test image, bool or 0/1, shape [N].
      correct_b: the same for classifier B on the same images in the same order.

    Returns:
      {"b": int, "c": int, "p_value": float}; p_value is 1.0 when b + c == 0 (the two agree
      on every image, no evidence of a difference).

    Raises:
      MetricInputError: lengths differ, empty, or a value other than 0/1/True/False.
    """
    correct_a = _check_correct(correct_a, "correct_a")
    correct_b = _check_correct(correct_b, "correct_b")
    if correct_a.shape != correct_b.shape:
        raise classification.MetricInputError(
            f"correct_a and correct_b differ in length: {correct_a.shape[0]} and "
            f"{correct_b.shape[0]}; pass both classifiers' results on the same test images"
        )
    b = int(np.count_nonzero(correct_a & ~correct_b))
    c = int(np.count_nonzero(~correct_a & correct_b))
    p_value = 1.0 if b + c == 0 else float(scipy.stats.binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "p_value": p_value}


def _check_seed_values(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise classification.MetricInputError(
            f"{name} must be a non-empty 1-D sequence (one value per seed), got shape {array.shape}"
        )
    return array


def summarise_over_seeds(values: Any) -> dict[str, float | int]:
    """Mean, sample standard deviation and count of one metric over training seeds.

    Args:
      values: one value per seed, shape [n]. A NaN value makes mean and std NaN.

    Returns:
      {"mean": float, "std": float (ddof=1; NaN when n == 1), "n": int}.

    Raises:
      MetricInputError: empty or not 1-D.
    """
    values = _check_seed_values(values, "values")
    std = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    return {"mean": float(np.mean(values)), "std": std, "n": int(values.size)}


def _mean_difference(arm, base, axis=-1):
    return np.mean(arm - base, axis=axis)


def paired_difference_ci(
    values_arm: Any,
    values_base: Any,
    *,
    num_resamples: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float | int]:
    """Mean over seeds of metric(arm) - metric(base), with a paired bootstrap interval.

    Seed i of the arm is paired with seed i of the baseline (same data order and
    initialisation where the study shares them), and the per-seed differences are resampled.
    With few seeds (3) the bootstrap has few distinct resamples and its interval is narrower
    than it should be; report it beside the image-level interval and McNemar's test.

    Args:
      values_arm: the metric per seed for the compared arm, shape [n].
      values_base: the metric per seed for the baseline, same seeds in the same order, [n].
      num_resamples: bootstrap resamples.
      confidence: the interval's coverage, e.g. 0.95.
      seed: seeds the resampling.

    Returns:
      {"mean_difference", "low", "high", "n"}. With n == 1 the interval is NaN (one seed says
      nothing about variation between seeds); when every seed has the same difference the
      interval is that value; a NaN value makes everything but n NaN.

    Raises:
      MetricInputError: empty, lengths differ, or bad options.
    """
    _check_bootstrap_options(num_resamples, confidence)
    values_arm = _check_seed_values(values_arm, "values_arm")
    values_base = _check_seed_values(values_base, "values_base")
    if values_arm.shape != values_base.shape:
        raise classification.MetricInputError(
            f"values_arm and values_base differ in length: {values_arm.size} and "
            f"{values_base.size} seeds; pair each arm seed with the baseline seed"
        )
    differences = values_arm - values_base
    n = int(differences.size)
    mean_difference = float(np.mean(differences))
    nan = float("nan")
    if n == 1 or np.isnan(differences).any():
        return {"mean_difference": mean_difference, "low": nan, "high": nan, "n": n}
    if np.all(differences == differences[0]):
        # Every resample has this mean; returned exactly rather than through float rounding.
        value = float(differences[0])
        return {"mean_difference": value, "low": value, "high": value, "n": n}
    low, high = _percentile_interval(
        (values_arm, values_base),
        _mean_difference,
        vectorized=True,
        num_resamples=num_resamples,
        confidence=confidence,
        seed=seed,
        what="the mean difference over seeds",
    )
    return {"mean_difference": mean_difference, "low": low, "high": high, "n": n}


def verdict(low: float, high: float, *, higher_is_better: bool = True) -> str:
    """The word a report prints for an interval of a difference (arm minus baseline).

    Args:
      low, high: the interval of the difference.
      higher_is_better: False for metrics where less is better (error counts).

    Returns:
      "better" when the whole interval is on the good side of zero (above it, or below it when
      `higher_is_better` is False), "worse" when it is wholly on the bad side, "no detectable
      difference" when it touches or contains zero, and "not enough data" when either end is
      NaN (one seed, or a metric undefined on every resample).
    """
    low, high = float(low), float(high)
    if np.isnan(low) or np.isnan(high):
        return NOT_ENOUGH_DATA
    if low > 0:
        return BETTER if higher_is_better else WORSE
    if high < 0:
        return WORSE if higher_is_better else BETTER
    return NO_DETECTABLE_DIFFERENCE
