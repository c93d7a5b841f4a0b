"""Confidence intervals and paired tests for the augmentation study, on `scipy.stats`.

The study compares classifiers trained with and without synthetic images on the same test
images, over several training seeds. What its verdicts rest on (docs/study_statistics.md):

- `seed_image_bootstrap`: the two-level bootstrap of every arm's seed-averaged metric (seeds
  drawn again, then test images), on resamples shared by the arms, vectorised over resamples;
- `interval_from_replicates`: the primary interval of a difference from those replicates, on
  Student's t scale for the number of seeds, with its p-value;
- `compare_with_baseline`: every arm against the baseline on one endpoint, with Holm's
  adjustment (`holm_adjust`), the paired t-interval (`paired_t_interval`) and the sign-flip test
  (`sign_flip_test`) over seeds beside it, the minimum detectable effect
  (`minimum_detectable_effect`) and the verdict;
- `recovered_share`: the share of the oracle's gain over duplicates that synthetic images
  recovered;
- `test_size_detectable_effect`: what a test split of N images can show at best.

Also, over test images alone (one classifier, or seeds averaged with the seeds held fixed):
`bootstrap_ci`, `paired_image_bootstrap_difference`, `seed_averaged_bootstrap_ci`,
`seed_averaged_image_bootstrap_difference`; `mcnemar_exact` (McNemar's exact test on paired
right/wrong calls); `summarise_over_seeds`; `verdict` (the word for an interval). With fewer than
2 seeds a seed-level statistic raises `NotComputableError`: no interval, so no verdict.

The image-level intervals are percentile bootstrap intervals from `scipy.stats.bootstrap` with a
seeded NumPy generator, so the same inputs and seed give the same interval. The percentile method
is used, not BCa, because BCa's jackknife fails on metrics that are undefined on some resamples
(sensitivity of a resample with no diseased image). Such resamples give NaN; they are left out of
the interval, and an `UndefinedResamplesWarning` says how many were. The two-level bootstrap
draws test images within class, so every resample keeps the split's class counts.
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


# Seed-level inference: what the study's verdicts rest on (docs/study_statistics.md).

# Metrics the seed-and-image bootstrap computes for many resamples at once. The threshold metrics
# score 0/1 decisions (probability >= 0.5); "auc" scores the probabilities themselves.
REPLICATED_METRICS = ("accuracy", "sensitivity", "specificity", "balanced_accuracy", "auc")
# Power at which `minimum_detectable_effect` is quoted.
DETECTION_POWER = 0.8


class NotComputableError(classification.MetricInputError):
    """A seed-level statistic asked of fewer than 2 seeds: no interval, so no verdict."""


def _check_seed_count(num_seeds: int) -> None:
    if num_seeds < 2:
        raise NotComputableError(
            f"a seed-level interval needs at least 2 seeds per arm, got {num_seeds}: it is not "
            "computable, so no verdict is called; train more seeds (e.g. "
            "--config.study.seeds=0,1,2,3,4,5,6,7,8,9)"
        )


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise classification.MetricInputError(
            f"confidence must lie strictly between 0 and 1, got {confidence!r}; e.g. 0.95"
        )


def _paired_seed_values(values_arm: Any, values_base: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both arms' per-seed values as float64 arrays of one length, at least 2."""
    values_arm = _check_seed_values(values_arm, "values_arm")
    values_base = _check_seed_values(values_base, "values_base")
    if values_arm.shape != values_base.shape:
        raise classification.MetricInputError(
            f"values_arm and values_base differ in length: {values_arm.size} and "
            f"{values_base.size} seeds; pair each arm seed with the baseline seed"
        )
    _check_seed_count(values_arm.size)
    return values_arm, values_base


def paired_t_interval(
    values_arm: Any, values_base: Any, *, confidence: float = 0.95
) -> dict[str, float | int]:
    """Mean over seeds of metric(arm) - metric(base), with the paired Student t-interval.

    Seed i of the arm is paired with seed i of the baseline. The t-interval is exact for
    normally distributed seed differences and close to it for other shapes at 5+ seeds; unlike a
    percentile bootstrap of 3 values (whose 95% interval is their minimum and maximum), it widens
    as seeds get fewer. It covers the seed-to-seed variation only: the test images are the same
    for every seed, so their sampling noise is in `seed_image_bootstrap` instead.

    Args:
      values_arm: the metric per seed for the compared arm, shape [n], n >= 2.
      values_base: the metric per seed for the baseline, same seeds in the same order, [n].
      confidence: the interval's coverage, e.g. 0.95.

    Returns:
      {"mean_difference", "low", "high", "std" (of the differences, ddof 1), "p_value"
      (two-sided, of no mean difference), "n"}. When every seed has the same difference the
      interval is that value and the p-value NaN (a t statistic needs spread).

    Raises:
      NotComputableError: fewer than 2 seeds.
      MetricInputError: lengths differ, or a bad confidence.
    """
    _check_confidence(confidence)
    values_arm, values_base = _paired_seed_values(values_arm, values_base)
    differences = values_arm - values_base
    mean = float(np.mean(differences))
    std = float(np.std(differences, ddof=1))
    result = {"mean_difference": mean, "std": std, "n": int(differences.size)}
    if std == 0.0:
        return {**result, "low": mean, "high": mean, "p_value": float("nan")}
    test = scipy.stats.ttest_rel(values_arm, values_base)
    interval = test.confidence_interval(confidence)
    return {
        **result,
        "low": float(interval.low),
        "high": float(interval.high),
        "p_value": float(test.pvalue),
    }


def sign_flip_test(values_arm: Any, values_base: Any, *, seed: int = 0) -> float:
    """Two-sided paired permutation test over seeds: p-value of no mean difference.

    Under the null hypothesis each seed's difference is as likely positive as negative; the
    p-value is the share of sign assignments whose mean difference is at least as far from zero
    as the observed one (`scipy.stats.permutation_test`, exact for up to 13 seeds, 2^13 flips).
    It assumes nothing about the shape of the differences, but with n seeds it can never go
    below 2 / 2^n (0.25 with 3 seeds, 0.002 with 10).

    Raises:
      NotComputableError: fewer than 2 seeds.
    """
    values_arm, values_base = _paired_seed_values(values_arm, values_base)
    differences = values_arm - values_base
    if np.all(differences == 0):
        return 1.0
    result = scipy.stats.permutation_test(
        (values_arm, values_base),
        lambda arm, base, axis: np.mean(arm - base, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=9999,
        alternative="two-sided",
        **{_RNG_KEYWORD: np.random.default_rng(seed)},
    )
    return float(result.pvalue)


def holm_adjust(p_values: Any) -> np.ndarray:
    """Holm's step-down adjustment: p-values valid for the family of comparisons together.

    Rejecting every hypothesis whose adjusted p-value is below alpha keeps the chance of any
    false claim in the family at most alpha, whatever the dependence between the comparisons.
    NaN p-values (comparisons that were not computable) are left NaN and do not count.

    Args:
      p_values: one raw p-value per comparison, shape [m].

    Returns:
      float64 [m]: min(1, max over j <= rank of (m - j) p_(j)), in the input order.
    """
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p_values))
    if valid.size == 0:
        return adjusted
    order = valid[np.argsort(p_values[valid], kind="stable")]
    factors = valid.size - np.arange(valid.size)
    stepped = np.maximum.accumulate(np.minimum(1.0, factors * p_values[order]))
    adjusted[order] = stepped
    return adjusted


def minimum_detectable_effect(
    standard_error: float,
    *,
    alpha: float = 0.05,
    power: float = DETECTION_POWER,
    dof: float = np.inf,
) -> float:
    """The smallest true difference found with probability `power` by a two-sided level-alpha test.

    (q_{1 - alpha/2} + q_{power}) x standard error, with q the quantiles of Student's t with
    `dof` degrees of freedom (the normal's by default): 2.80 standard errors at alpha 0.05, 80%
    power and many degrees of freedom; 3.16 with 10 seeds (9), 6.2 with 3 (2). A "no detectable
    difference" means differences smaller than this could have hidden.
    """
    distribution = scipy.stats.norm if np.isinf(dof) else scipy.stats.t(dof)
    z = distribution.ppf(1 - alpha / 2) + distribution.ppf(power)
    return float(z * standard_error)


def test_size_detectable_effect(
    num_test_images: int, *, alpha: float = 0.05, power: float = DETECTION_POWER
) -> float:
    """The detectable accuracy difference a test split of this size allows at best, seeds aside.

    Two classifiers at 50% accuracy erring independently differ by a binomial noise of
    sqrt(0.5 / N) on N test images; `minimum_detectable_effect` of that standard error, capped
    at 1 (the whole scale). It depends on the test size alone, so it is known before anything is
    trained: 1.0 (100 points) for 2 test images, 0.16 for 150, 0.11 for 300.
    """
    if num_test_images < 1:
        return 1.0
    error = float(np.sqrt(0.5 / num_test_images))
    return min(1.0, minimum_detectable_effect(error, alpha=alpha, power=power))


def _stratified_image_weights(labels: np.ndarray, num_resamples: int, rng) -> np.ndarray:
    """[B, N] counts of every test image in B resamples drawn with replacement within class.

    Drawing within class keeps the test split's class counts, so sensitivity and specificity are
    defined on every resample.
    """
    weights = np.zeros((num_resamples, labels.size), np.float64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        weights[:, members] = _resample_counts(members.size, num_resamples, rng)
    return weights


def _resample_counts(num_items: int, num_resamples: int, rng) -> np.ndarray:
    """[B, n] how often each of n items is drawn in each of B draws of n with replacement."""
    draws = rng.integers(0, num_items, size=(num_resamples, num_items))
    draws += np.arange(num_resamples)[:, None] * num_items
    counts = np.bincount(draws.ravel(), minlength=num_resamples * num_items)
    return counts.reshape(num_resamples, num_items).astype(np.float64)


def _weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one classifier under each row of image weights [B, N], ties counted half."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, np.diff(sorted_scores) != 0])
    positive = labels[order] == 1
    sorted_weights = weights[:, order]
    positive_weight = np.add.reduceat(sorted_weights * positive, starts, axis=1)
    negative_weight = np.add.reduceat(sorted_weights * ~positive, starts, axis=1)
    negatives_below = np.cumsum(negative_weight, axis=1) - negative_weight
    wins = np.sum(positive_weight * (negatives_below + 0.5 * negative_weight), axis=1)
    return wins / (positive_weight.sum(axis=1) * negative_weight.sum(axis=1))


def _replicated_metric(
    metric: str, labels: np.ndarray, scores: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """metric of every seed's classifier (rows of scores [S, N]) under weights [B, N]: [B, S]."""
    if metric == "auc":
        return np.stack([_weighted_auc(labels, row, weights) for row in scores], axis=1)
    correct = ((scores >= 0.5) == (labels == 1)).astype(np.float64)  # [S, N]
    positive = (labels == 1).astype(np.float64)
    sensitivity = (weights * positive) @ correct.T / (weights @ positive)[:, None]
    specificity = (weights * (1 - positive)) @ correct.T / (weights @ (1 - positive))[:, None]
    if metric == "accuracy":
        return weights @ correct.T / weights.sum(axis=1, keepdims=True)
    if metric == "sensitivity":
        return sensitivity
    if metric == "specificity":
        return specificity
    return 0.5 * (sensitivity + specificity)


def _check_replicated_metric(metric: str) -> None:
    if metric not in REPLICATED_METRICS:
        raise classification.MetricInputError(
            f"metric {metric!r} is unknown to the seed-and-image bootstrap; use one of: "
            f"{', '.join(REPLICATED_METRICS)}"
        )


def seed_image_bootstrap(
    labels: Any,
    scores_by_arm: dict[str, Any],
    metric: str,
    *,
    num_resamples: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The two-level bootstrap of every arm's seed-averaged metric, on shared resamples.

    Each resample draws the seeds again (n of the n, with replacement, the same draw for every
    arm, so seed i stays paired across arms) and the test images again (within class, the same
    draw for every seed and arm, as every classifier saw the same test images), and averages the
    metric over the drawn seeds. Both sources of noise enter: which seeds were trained and which
    test images were drawn. Seed-by-image noise enters twice, once through each draw, which
    makes the interval slightly wide rather than narrow (the calibration in
    docs/study_statistics.md measures it). Differences and ratios between arms are taken
    replicate by replicate.

    Args:
      labels: test labels, 0 or 1, [N], both classes present.
      scores_by_arm: {arm name: [S, N] probabilities of class 1 per seed}, or 0/1 decisions for
        the threshold metrics (scored at 0.5); every arm with the same S >= 2 seeds.
      metric: one of REPLICATED_METRICS.
      num_resamples: B.
      seed: seeds the resampling; the same inputs and seed give the same replicates.

    Returns:
      ({arm: metric on all test images, averaged over seeds}, {arm: [B] replicates}).

    Raises:
      NotComputableError: fewer than 2 seeds.
      MetricInputError: unknown metric, shapes that differ, one test class only, bad options.
    """
    _check_bootstrap_options(num_resamples, 0.95)
    _check_replicated_metric(metric)
    labels = classification.check_labels(labels)
    if np.unique(labels).size < 2:
        raise classification.MetricInputError(
            "the seed-and-image bootstrap needs test images of both classes, got one class only"
        )
    rows = {arm: _seed_rows(scores, labels.shape[0]) for arm, scores in scores_by_arm.items()}
    shapes = {rows_.shape for rows_ in rows.values()}
    if len(shapes) != 1:
        raise classification.MetricInputError(
            f"every arm needs the same seeds: got score shapes {sorted(shapes)} ([seeds, images])"
        )
    num_seeds = next(iter(shapes))[0]
    _check_seed_count(num_seeds)
    rng = np.random.default_rng(seed)
    weights = _stratified_image_weights(labels, int(num_resamples), rng)
    seed_counts = _resample_counts(num_seeds, int(num_resamples), rng)
    ones = np.ones((1, labels.size))
    points, replicates = {}, {}
    for arm, scores in rows.items():
        points[arm] = float(np.mean(_replicated_metric(metric, labels, scores, ones)))
        per_seed = _replicated_metric(metric, labels, scores, weights)  # [B, S]
        replicates[arm] = np.sum(per_seed * seed_counts, axis=1) / num_seeds
    return points, replicates


def interval_from_replicates(
    point: float, replicates: np.ndarray, num_seeds: int, *, confidence: float = 0.95
) -> dict[str, float]:
    """The primary interval: the two-level bootstrap's standard error on Student's t scale.

    The bootstrap replicates measure how far the seed-averaged difference would move if both the
    seeds and the test images were drawn again. Their spread underestimates the seed part by a
    factor (n - 1) / n in variance (a bootstrap of n values divides by n), and with few seeds the
    spread is itself uncertain, so the interval is

        point +- t_{n-1}(1 - (1 - confidence) / 2) x sqrt(n / (n - 1)) x sd(replicates).

    With no test-image noise this is exactly the paired t-interval over seeds; with much of it,
    a slightly wide normal interval. Percentile intervals of the same replicates called a
    difference in 12% (10 seeds) and 26% (3 seeds) of simulated null studies whose seeds varied
    by 9 accuracy points; this interval stays at or below the nominal 5%
    (docs/study_statistics.md).

    Args:
      point: the difference on all test images, averaged over seeds.
      replicates: its bootstrap replicates, [B].
      num_seeds: n, the seeds per arm (>= 2).
      confidence: the interval's coverage.

    Returns:
      {"difference": point, "low", "high", "se" (the inflated standard error), "p_value"
      (two-sided, of no difference, on the same t scale: p < 1 - confidence exactly when the
      interval excludes zero), "dof"}; NaN but the point when no replicate is finite.

    Raises:
      NotComputableError: fewer than 2 seeds.
    """
    _check_confidence(confidence)
    _check_seed_count(num_seeds)
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    dof = num_seeds - 1
    nan = float("nan")
    if values.size < 2:
        return {
            "difference": float(point),
            "low": nan,
            "high": nan,
            "se": nan,
            "p_value": nan,
            "dof": dof,
        }
    se = float(np.std(values, ddof=1) * np.sqrt(num_seeds / dof))
    quantile = float(scipy.stats.t.ppf(1 - (1 - confidence) / 2, dof))
    if se == 0.0:
        p_value = 1.0 if point == 0 else 0.0
    else:
        p_value = float(2 * scipy.stats.t.sf(abs(point) / se, dof))
    return {
        "difference": float(point),
        "low": float(point - quantile * se),
        "high": float(point + quantile * se),
        "se": se,
        "p_value": p_value,
        "dof": dof,
    }


def compare_with_baseline(
    labels: Any,
    scores_base: Any,
    scores_by_arm: dict[str, Any],
    metric: str,
    *,
    alpha: float = 0.05,
    num_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Every arm against the baseline on one endpoint: the study's verdict rule.

    For each arm: the seed-averaged difference with its two-level bootstrap interval (the
    primary interval, `seed_image_bootstrap`), the paired t-interval and the sign-flip test over
    seeds beside it, Holm's adjustment over the arms compared, and the minimum detectable effect.
    An arm is "better" or "worse" only when its Holm-adjusted p-value is below alpha (so its
    primary interval excludes zero, also after the adjustment); otherwise "no detectable
    difference", or "not enough data" when nothing could be computed.

    Args:
      labels: test labels [N].
      scores_base: the baseline's [S, N] scores (see `seed_image_bootstrap`).
      scores_by_arm: {arm: [S, N] scores}, the same seeds in the same order as the baseline.
      metric: one of REPLICATED_METRICS (higher is better).
      alpha: the family-wise error rate of the verdicts.
      num_resamples, seed: of the bootstrap.

    Returns:
      {arm: {"difference", "low", "high", "se", "p_value", "p_holm", "t_low", "t_high",
      "t_p_value", "sign_flip_p", "mde", "verdict", "num_seeds"}}.

    Raises:
      NotComputableError: fewer than 2 seeds.
    """
    _check_confidence(1 - alpha)
    labels = classification.check_labels(labels)
    arms = dict(scores_by_arm)
    points, replicates = seed_image_bootstrap(
        labels,
        {"__baseline__": scores_base, **arms},
        metric,
        num_resamples=num_resamples,
        seed=seed,
    )
    base_rows = _seed_rows(scores_base, labels.shape[0])
    ones = np.ones((1, labels.size))
    base_per_seed = _replicated_metric(metric, labels, base_rows, ones)[0]
    results = {}
    for arm, scores in arms.items():
        result = interval_from_replicates(
            points[arm] - points["__baseline__"],
            replicates[arm] - replicates["__baseline__"],
            base_rows.shape[0],
            confidence=1 - alpha,
        )
        arm_per_seed = _replicated_metric(metric, labels, _seed_rows(scores, labels.size), ones)[0]
        t_test = paired_t_interval(arm_per_seed, base_per_seed, confidence=1 - alpha)
        result.update(
            t_low=t_test["low"],
            t_high=t_test["high"],
            t_p_value=t_test["p_value"],
            sign_flip_p=sign_flip_test(arm_per_seed, base_per_seed, seed=seed),
            mde=minimum_detectable_effect(result["se"], alpha=alpha, dof=result["dof"]),
            num_seeds=int(base_rows.shape[0]),
        )
        results[arm] = result
    adjusted = holm_adjust([results[arm]["p_value"] for arm in arms])
    for arm, p_holm in zip(arms, adjusted, strict=True):
        result = results[arm]
        result["p_holm"] = float(p_holm)
        if np.isnan(p_holm):
            result["verdict"] = NOT_ENOUGH_DATA
        elif p_holm < alpha:
            # Holm's p below alpha implies the raw interval excludes zero: its side decides.
            result["verdict"] = BETTER if result["low"] > 0 else WORSE
        else:
            result["verdict"] = NO_DETECTABLE_DIFFERENCE
    return results


def recovered_share(
    points: dict[str, float],
    replicates: dict[str, np.ndarray],
    num_seeds: int,
    *,
    confidence: float = 0.95,
) -> dict[str, float]:
    """The share of the oracle's gain over duplicates that the GAN's images recovered.

        share = (gan - duplicate) / (oracle - duplicate)

    0 means the synthetic images did no more than duplicates of real ones, 1 as much as new real
    images. The interval is the delta method's (Fieller's first order) on the two-level
    bootstrap's variances and covariance, on Student's t scale as `interval_from_replicates`;
    it is meaningful only where the oracle's gain is clearly above zero (the caller checks), as
    a ratio with a denominator near zero has no finite interval.

    Args:
      points: {"gan", "duplicate", "oracle"}: seed-averaged metric on all test images.
      replicates: the same keys: [B] replicates from one `seed_image_bootstrap` call.
      num_seeds: seeds per arm.
      confidence: the interval's coverage.

    Returns:
      {"share", "low", "high"}; NaN when the oracle's gain is exactly zero.
    """
    _check_confidence(confidence)
    _check_seed_count(num_seeds)
    gain = points["gan"] - points["duplicate"]
    ceiling = points["oracle"] - points["duplicate"]
    nan = float("nan")
    if ceiling == 0:
        return {"share": nan, "low": nan, "high": nan}
    share = gain / ceiling
    numerator = replicates["gan"] - replicates["duplicate"]
    denominator = replicates["oracle"] - replicates["duplicate"]
    covariance = np.cov(numerator, denominator)
    variance = (
        covariance[0, 0] - 2 * share * covariance[0, 1] + share**2 * covariance[1, 1]
    ) / ceiling**2
    se = float(np.sqrt(max(variance, 0.0)) * np.sqrt(num_seeds / (num_seeds - 1)))
    quantile = float(scipy.stats.t.ppf(1 - (1 - confidence) / 2, num_seeds - 1))
    return {"share": float(share), "low": share - quantile * se, "high": share + quantile * se}


def sd_interval(sd: float, num_seeds: int, level: float = 0.95) -> tuple[float, float]:
    """The chi-square interval of a standard deviation over `num_seeds` draws (assumed normal).

    Describes how well a seed-to-seed spread is known, e.g. a baseline's accuracy sd over seeds;
    NaN for fewer than 2 seeds.
    """
    if num_seeds < 2:
        return float("nan"), float("nan")
    dof = num_seeds - 1
    tail = (1 - level) / 2
    return (
        float(sd * np.sqrt(dof / scipy.stats.chi2.ppf(1 - tail, dof))),
        float(sd * np.sqrt(dof / scipy.stats.chi2.ppf(tail, dof))),
    )
