"""The study's numbers over seeds: every arm summarised and compared with the 0% arm of its size.

    summaries = summary.summarise(config, results, data.test.labels, data.class_names)

For every real-set size and arm: means and standard deviations over seeds of the test metrics,
the accuracy's two-level (seeds, then test images) bootstrap interval, and for every arm beside
the baseline the comparison on each endpoint of ENDPOINTS (`statistics.compare_with_baseline`:
the difference with its interval, the paired t-interval, the sign-flip test, the minimum
detectable effect; Holm's adjustment and the verdict on the primary one), McNemar's test per
seed, and, for a synthetic arm with both controls, the share of the oracle's gain over duplicates
its images recovered. docs/study_statistics.md explains the inference.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from xraygan_jax.metrics import statistics
from xraygan_jax.study import arms

# The endpoints: (metric of `statistics.seed_image_bootstrap`, what it scores). Threshold metrics
# score 0/1 decisions; "val_decisions" are those at each classifier's validation threshold.
ENDPOINTS = {
    "auc": ("auc", "probabilities"),
    "accuracy": ("accuracy", "probabilities"),
    "accuracy_at_val_threshold": ("accuracy", "val_decisions"),
    "sensitivity": ("sensitivity", "probabilities"),
    "specificity": ("specificity", "probabilities"),
}
# The endpoints a study can declare primary (and so choose its classifiers' weights by).
PRIMARY_METRICS = ("auc", "accuracy", "accuracy_at_val_threshold")
# A test split whose best-case detectable accuracy difference exceeds this supports no claim.
_LARGEST_USEFUL_DETECTABLE_EFFECT = 0.5
# Metrics summarised over seeds: the confusion counts that are errors, and the val-threshold ones.
_SUMMARY_METRICS = (
    tuple(m for m in arms.METRIC_COLUMNS if m not in ("tp", "tn")) + arms.EXTRA_COLUMNS[:4]
)


def _arm_of(result: arms.ArmResult) -> arms.Arm:
    """The Arm a result belongs to (the 0% arms' source "real" is the Arm's default, "gan")."""
    source = "gan" if result.source == "real" else result.source
    return arms.Arm(float(result.fraction), source, bool(result.classic))


def _groups(
    results: Sequence[arms.ArmResult],
) -> dict[Any, dict[arms.Arm, list[arms.ArmResult]]]:
    """{real_per_class: {arm: [results sorted by seed]}}, arms in the report's order."""
    groups: dict[Any, dict[arms.Arm, list[arms.ArmResult]]] = {}
    for result in results:
        of_size = groups.setdefault(result.real_per_class, {})
        of_size.setdefault(_arm_of(result), []).append(result)
    for size, of_size in groups.items():
        for rows in of_size.values():
            rows.sort(key=lambda r: r.seed)
        groups[size] = dict(sorted(of_size.items(), key=lambda item: _arm_order(item[0])))
    return groups


def _arm_order(arm: arms.Arm) -> tuple:
    return (
        arm.fraction == 1.0,
        arm.fraction,
        arm.classic and arm.fraction > 0,
        arms.SOURCES.index(arm.source),
        arm.classic,
    )


def _scores(rows: Sequence[arms.ArmResult], kind: str) -> np.ndarray:
    """[seeds, N] test scores of an arm: probabilities, or 0/1 decisions at each validation
    threshold (scored at 0.5 downstream, which gives the accuracy at that threshold)."""
    probabilities = np.array([r.test_probabilities for r in rows], dtype=np.float64)
    if kind == "probabilities":
        return probabilities
    thresholds = np.array([r.threshold_val for r in rows], dtype=np.float64)[:, None]
    return (probabilities >= thresholds).astype(np.float64)


def why_no_claim(test_labels: np.ndarray, class_names: Sequence[str]) -> str | None:
    """Why a test split supports no claim (None when it can): too small, or one class only."""
    counts = np.bincount(test_labels, minlength=len(class_names))
    composition = " + ".join(f"{n} {c}" for c, n in zip(class_names, counts, strict=True))
    if (counts == 0).any():
        return (
            f"The test split has one class only ({composition}): AUC, sensitivity or "
            "specificity is undefined, and no verdict is called."
        )
    detectable = statistics.test_size_detectable_effect(int(counts.sum()))
    if detectable > _LARGEST_USEFUL_DETECTABLE_EFFECT:
        return (
            f"The test split has {composition} images: too small for any claim. Even two "
            "classifiers erring independently could differ by about "
            f"{detectable * 100:.0f} points in accuracy unnoticed (the minimum detectable "
            f"effect at {statistics.DETECTION_POWER:.0%} power), so no verdict is called."
        )
    return None


def seed_note(num_seeds: int) -> str | None:
    """Why no verdict is called with fewer than 2 seeds (None with 2 or more)."""
    if num_seeds >= 2:
        return None
    return (
        f"{num_seeds} seed per arm: the seed-level interval is not computable (it needs at least "
        "2 seeds, 10 for the small CNN), so no verdict is called."
    )


def summarise(
    config: ml_collections.ConfigDict,
    results: Sequence[arms.ArmResult],
    test_labels: np.ndarray,
    class_names: Sequence[str] = ("NORMAL", "PNEUMONIA"),
) -> list[dict[str, Any]]:
    """One summary per (size, arm): means, stds, intervals, tests against the 0% arm, verdict.

    Comparison fields, for every endpoint E of ENDPOINTS (differences arm - 0%, as fractions):
    `d_E` (seed-averaged), `d_E_low` / `d_E_high` (the primary two-level interval), `d_E_p`,
    `d_E_t_low` / `d_E_t_high` (paired t over seeds), `d_E_sign_p`, `d_E_mde`; for the primary
    endpoint also `p_holm` and `verdict`; and for synthetic arms with both controls `recovered`
    (share of the oracle's gain over duplicates) with `recovered_low` / `recovered_high`.
    """
    num_resamples = int(config.study.num_bootstrap)
    primary = config.study.get("primary_metric", "auc")
    alpha = float(config.study.get("alpha", 0.05))
    blocked = why_no_claim(test_labels, class_names)
    summaries = []
    for size, of_size in _groups(results).items():
        baseline = next((arm for arm in of_size if arm.is_baseline), None)
        # Seeds every arm of this size has: comparisons pair arms seed by seed.
        seeds = sorted(set.intersection(*[{r.seed for r in rows} for rows in of_size.values()]))
        paired = {arm: [r for r in rows if r.seed in seeds] for arm, rows in of_size.items()}
        size_summaries = {}
        for arm, rows in of_size.items():
            summary: dict[str, Any] = {
                "real_per_class": size,
                "arm": arm.name,
                "fraction": arm.fraction,
                "source": arm.source if arm.fraction else "real",
                "classic": arm.classic,
                "num_seeds": len(rows),
                "num_real": rows[0].num_real,
                "num_synthetic": rows[0].num_synthetic,
            }
            for metric in _SUMMARY_METRICS:
                stats = statistics.summarise_over_seeds([getattr(r, metric) for r in rows])
                summary[f"{metric}_mean"] = stats["mean"]
                summary[f"{metric}_std"] = stats["std"]
            summary["accuracy_low"] = summary["accuracy_high"] = float("nan")
            if blocked is None and len(rows) >= 2:
                points, replicates = statistics.seed_image_bootstrap(
                    test_labels,
                    {"arm": _scores(rows, "probabilities")},
                    "accuracy",
                    num_resamples=num_resamples,
                )
                interval = statistics.interval_from_replicates(
                    points["arm"], replicates["arm"], len(rows)
                )
                summary["accuracy_low"], summary["accuracy_high"] = (
                    interval["low"],
                    interval["high"],
                )
            size_summaries[arm] = summary
        compared = [arm for arm in of_size if baseline is not None and arm != baseline]
        if compared:
            _compare(
                size_summaries,
                paired,
                baseline,
                compared,
                test_labels,
                primary,
                alpha,
                num_resamples,
                computable=blocked is None and len(seeds) >= 2,
            )
            _bracket(
                size_summaries,
                paired,
                baseline,
                test_labels,
                primary,
                alpha,
                num_resamples,
                computable=blocked is None and len(seeds) >= 2,
            )
        summaries.extend(size_summaries.values())
    return summaries


def _compare(
    summaries,
    paired,
    baseline,
    compared,
    labels,
    primary,
    alpha,
    num_resamples,
    *,
    computable: bool,
) -> None:
    """Fills the comparison fields of every compared arm's summary (see `summarise`)."""
    for arm in compared:
        summary = summaries[arm]
        summary["mcnemar_p"] = [
            statistics.mcnemar_exact(
                (np.asarray(a.test_probabilities) >= 0.5) == labels,
                (np.asarray(b.test_probabilities) >= 0.5) == labels,
            )["p_value"]
            for a, b in zip(paired[arm], paired[baseline], strict=True)
        ]
        summary["verdict"] = statistics.NOT_ENOUGH_DATA
        summary["p_holm"] = float("nan")
    if not computable:
        return
    for endpoint, (metric, kind) in ENDPOINTS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            comparison = statistics.compare_with_baseline(
                labels,
                _scores(paired[baseline], kind),
                {arm: _scores(paired[arm], kind) for arm in compared},
                metric,
                alpha=alpha,
                num_resamples=num_resamples,
            )
        for arm, result in comparison.items():
            summary = summaries[arm]
            prefix = f"d_{endpoint}"
            summary[prefix] = result["difference"]
            summary[f"{prefix}_low"], summary[f"{prefix}_high"] = result["low"], result["high"]
            summary[f"{prefix}_p"] = result["p_value"]
            summary[f"{prefix}_t_low"], summary[f"{prefix}_t_high"] = (
                result["t_low"],
                result["t_high"],
            )
            summary[f"{prefix}_sign_p"] = result["sign_flip_p"]
            summary[f"{prefix}_mde"] = result["mde"]
            if endpoint == primary:
                summary["p_holm"] = result["p_holm"]
                summary["verdict"] = result["verdict"]


def _bracket(
    summaries, paired, baseline, labels, primary, alpha, num_resamples, *, computable: bool
) -> None:
    """The share of the oracle's gain over duplicates that each synthetic arm recovered.

    Defined only where the oracle beat the duplicates (its interval excludes zero); otherwise
    NaN, and the report says why no share can be read.
    """
    if not computable:
        return
    metric, kind = ENDPOINTS[primary]
    by_name = {arm.name: arm for arm in paired}
    for arm in paired:
        if arm.source != "gan" or arm.classic or not 0 < arm.fraction < 1:
            continue
        duplicate = by_name.get(arms.Arm(arm.fraction, "duplicate").name)
        oracle = by_name.get(arms.Arm(arm.fraction, "oracle").name)
        if duplicate is None or oracle is None:
            continue
        points, replicates = statistics.seed_image_bootstrap(
            labels,
            {
                name: _scores(paired[a], kind)
                for name, a in (("gan", arm), ("duplicate", duplicate), ("oracle", oracle))
            },
            metric,
            num_resamples=num_resamples,
        )
        num_seeds = len(paired[arm])
        ceiling = statistics.interval_from_replicates(
            points["oracle"] - points["duplicate"],
            replicates["oracle"] - replicates["duplicate"],
            num_seeds,
            confidence=1 - alpha,
        )
        summary = summaries[arm]
        summary["oracle_gain"] = ceiling["difference"]
        summary["oracle_gain_low"], summary["oracle_gain_high"] = ceiling["low"], ceiling["high"]
        share = statistics.recovered_share(points, replicates, num_seeds, confidence=1 - alpha)
        summary["recovered"] = share["share"]
        summary["recovered_low"], summary["recovered_high"] = share["low"], share["high"]
        summary["recovered_defined"] = bool(ceiling["low"] > 0)
