"""The augmentation study: do synthetic images from a GAN help a chest X-ray classifier?

    results = study.run_study(config, workdir="runs/study", gan_workdir="runs/dcgan")

For every real-set size (`config.study.real_per_class`, nested subsets), every arm and every seed,
one classifier is trained for the same number of steps (`xraygan_jax.train.classifier_loop`), its
weights and decision threshold chosen on a validation split carved from the real train split, and
it is scored once on the test split. The arms:

- `0%`, the baseline: real images only;
- `f%` for every synthetic fraction f of `config.study.fractions` (1 = synthetic only, the
  classification accuracy score), in mode `add` (real kept, synthetic added) or `replace`;
- the controls of `config.study.controls`, each with the extra-image counts of the synthetic arm
  of the same fraction and mode: `f% duplicate` (extra copies of real train images: is a gain just
  more looks at real data?), `f% oracle` (extra NEW real images: the ceiling a perfect generator
  would reach; on the phantom set freshly generated ones, on a real set a held-out share of the
  train split that no arm trains on), and `classic` / `f% + classic` (the classical flip, shear
  and zoom augmentation, without and with synthetic images).

Every arm is compared with the 0% arm of its size on one declared endpoint
(`config.study.primary_metric`) by `statistics.compare_with_baseline`: the seed-averaged difference
with a two-level (seeds, then test images) bootstrap interval on Student's t scale, the paired
t-interval and the sign-flip test over seeds beside it, Holm's adjustment over the arms, and the
minimum detectable effect. Only a Holm-adjusted p-value below `config.study.alpha` calls an arm
better or worse; the other endpoints are shown with unadjusted intervals and no verdict. Each
synthetic arm with both controls is read against them: the share of the oracle's gain over
duplicates that the GAN's images recovered. docs/study_statistics.md explains the inference.

Written to `workdir`: study.csv (one row per arm, seed and size), predictions.csv (one row per
test image, arm, seed and size: anyone can recompute every statistic), summary.json, study.md
(tables and a verdict written from the numbers), plots/*.png, and arms/<arm>/ (each classifier's
result and orbax checkpoint; a finished arm is not trained again).

This module checks the config and runs the arms; each classifier is scored by
`evaluators.classifier_metrics.ClassifierEvaluator`, built from its `predict_fn`. The rest, in
the order they import each other (tests: the `study` contract in pyproject.toml):
  writers  the files above, from the results and their summary;
  summary  every arm over seeds and against 0% (the statistics above);
  images   the real splits, the oracle arms' images and the synthetic ones (`load_data`);
  arms     the arms (`Arm`, `plan_arms`) and one classifier's result (`ArmResult`, result.json).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import pathlib
import warnings
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import errors
from xraygan_jax.data import mixing, pipeline
from xraygan_jax.evaluators import classifier_metrics
from xraygan_jax.metrics import classification
from xraygan_jax.study import arms, images, summary, writers
from xraygan_jax.train import augment, classifier_loop, reporting


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises errors.ConfigError for study settings that cannot work, naming the flag."""
    fractions = list(config.study.fractions)
    for fraction in fractions:
        if not 0.0 <= float(fraction) <= 1.0:
            raise errors.ConfigError(
                f"--config.study.fractions: {fraction} is outside [0, 1] (a fraction of the "
                "training set; 0.1 = 10% synthetic, 1 = synthetic only)."
            )
    if 0.0 not in [float(f) for f in fractions]:
        raise errors.ConfigError(
            "--config.study.fractions must include 0 (the baseline every arm is compared with)."
        )
    if config.study.mode not in mixing.MIX_MODES:
        raise errors.ConfigError(
            f"--config.study.mode={config.study.mode!r} is unknown; use one of: "
            f"{', '.join(mixing.MIX_MODES)}."
        )
    if not 0.0 < float(config.study.val_fraction) < 1.0:
        raise errors.ConfigError(
            f"--config.study.val_fraction={config.study.val_fraction} must be in (0, 1)."
        )
    if not list(config.study.seeds):
        raise errors.ConfigError("--config.study.seeds is empty; give at least one seed.")
    for size in config.study.real_per_class:
        if int(size) < 0:
            raise errors.ConfigError(
                f"--config.study.real_per_class: {size} must be >= 0 (0 = every real image)."
            )
    primary = config.study.get("primary_metric", "auc")
    if primary not in summary.PRIMARY_METRICS:
        raise errors.ConfigError(
            f"--config.study.primary_metric={primary!r} is unknown; use one of: "
            f"{', '.join(summary.PRIMARY_METRICS)}."
        )
    controls = tuple(config.study.get("controls", ()))
    unknown = [c for c in controls if c not in arms.CONTROLS]
    if unknown:
        raise errors.ConfigError(
            f"--config.study.controls: {', '.join(map(repr, unknown))} unknown; use any of: "
            f"{', '.join(arms.CONTROLS)}."
        )
    if images.oracle_needed(config) and not 0.0 < float(config.study.oracle_fraction) < 1.0:
        raise errors.ConfigError(
            f"--config.study.oracle_fraction={config.study.oracle_fraction} must be in (0, 1): "
            "the share of each class of a real train split held out for the oracle arm."
        )
    if not 0.0 < float(config.study.get("alpha", 0.05)) < 0.5:
        raise errors.ConfigError(
            f"--config.study.alpha={config.study.alpha} must be in (0, 0.5), e.g. 0.05."
        )
    if "classic" in controls:
        augment.check_parameters(**config.study.classic_augment.to_dict())
    threads = config.study.get("threads", 1)
    if not isinstance(threads, int) or threads < 1:
        raise errors.ConfigError(
            f"--config.study.threads={threads!r} must be a whole number >= 1 (classifiers "
            "trained at the same time; 1 = one after another)."
        )
    classifier_loop.check_config(config)


def _sizes(config, train: pipeline.ArraySource) -> list[int]:
    """The real-set sizes per class, ascending; 0 (every image) becomes the smallest class."""
    counts = np.bincount(train.labels)
    smallest = int(counts.min())
    sizes = []
    for size in config.study.real_per_class or (0,):
        size = int(size)
        if size > smallest:
            raise errors.DataError(
                f"--config.study.real_per_class: {size} per class is more than the smallest "
                f"class has after the validation share ({smallest}; counts per class "
                f"{counts.tolist()})."
            )
        sizes.append(size)
    return sorted(set(sizes), key=lambda s: (s == 0, s))


def check_training_set(
    train_set: pipeline.ArraySource, class_names: Sequence[str], arm: str, size: int
) -> None:
    """Raises errors.DataError when an arm would train without any image of some class."""
    counts = np.bincount(train_set.labels, minlength=len(class_names))
    empty = [name for name, count in zip(class_names, counts, strict=True) if count == 0]
    if empty:
        raise errors.DataError(
            f"arm {arm} synthetic with {size or 'all'} real images per class would train without "
            f"any {', '.join(empty)} image ({len(train_set)} images in all); raise "
            "--config.study.real_per_class or give synthetic images of every class."
        )


def run_study(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    gan_workdir: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
) -> list[arms.ArmResult]:
    """Trains and scores every arm (resuming finished ones), then writes the outputs.

    Args:
      config: the study config (experiments/configs/study.py).
      workdir: the study's folder.
      gan_workdir: a GAN run that generates the synthetic images; or
      images_dir: a folder DIR/<class>/*.png of synthetic images.

    Returns:
      One ArmResult per (size, arm, seed), in study.csv's order.
    """
    check_config(config)
    workdir = pathlib.Path(workdir)
    data = images.load_data(config, gan_workdir=gan_workdir, images_dir=images_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    sizes = _sizes(config, data.train)
    seeds = [int(s) for s in config.study.seeds]
    if len(seeds) < 2:
        logging.warning(
            "%d seed per arm: the seed-level interval is not computable and no verdict will be "
            "called; give at least 2 seeds (10 for the small CNN).",
            len(seeds),
        )
    plan = [(size, arm, seed) for size in sizes for arm in arms.plan_arms(config) for seed in seeds]
    progress = reporting.Progress(
        len(plan), 1, "[study]", every_steps=1, unit="arm", counted="arms"
    )
    threads = int(config.study.get("threads", 1))
    # Threads share one compilation; a classifier's result does not depend on what trains beside
    # it (tests/test_study.py checks it bitwise). The warnings filters are process-wide, so the
    # threads' own catch_warnings blocks are bracketed by one here that restores them after.
    with (
        concurrent.futures.ThreadPoolExecutor(threads) as pool,
        warnings.catch_warnings(),
    ):
        futures = [pool.submit(_run_arm, config, data, workdir, *job) for job in plan]
        for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            result = future.result()
            progress.update(
                done,
                f"{result.arm}, {result.real_per_class} real per class, seed {result.seed}: "
                f"accuracy {result.accuracy:.3f}",
            )
        results = [future.result() for future in futures]
    writers.write_outputs(config, workdir, results, data)
    return results


def _training_set(
    config, data: images.StudyData, real, arm: arms.Arm, seed: int
) -> pipeline.ArraySource:
    mode = config.study.mode
    if arm.fraction == 0:
        return real
    if arm.source == "duplicate":
        return mixing.duplicate_real(real, arm.fraction, mode=mode, seed=seed)
    extra = data.oracle if arm.source == "oracle" else data.synthetic
    return mixing.mix(real, extra, arm.fraction, mode=mode, seed=seed)


def _arm_config(config: ml_collections.ConfigDict, arm: arms.Arm) -> ml_collections.ConfigDict:
    """The classifier config of an arm: the classic augmentation replaces `augment` if asked."""
    if not arm.classic:
        return config
    arm_config = config.copy_and_resolve_references()
    with arm_config.unlocked():
        arm_config.augment = config.study.classic_augment.copy_and_resolve_references()
    return arm_config


def _run_arm(config, data: images.StudyData, workdir, size, arm: arms.Arm, seed) -> arms.ArmResult:
    """Trains and scores one classifier of `arm`, or reads it back when it finished before."""
    arm_dir = workdir / "arms" / arm.arm_id(size, seed)
    result_path = arm_dir / "result.json"
    if result_path.exists():
        return arms.ArmResult.load(result_path)
    real = data.train
    if size:
        real = mixing.subsample_per_class(
            real, num_per_class=size, seed=int(config.study.split_seed)
        )
    train_set = _training_set(config, data, real, arm, seed)
    fraction = arm.fraction
    if config.study.mode == "replace":
        counts = np.bincount(real.labels)
        num_real = len(real) - sum(mixing.num_replaced(int(c), fraction) for c in counts)
    else:
        num_real = 0 if fraction == 1.0 else len(real)
    check_training_set(train_set, data.class_names, arm.name, size)
    name = f"{arm.name}, {size or 'all'} real/class, seed {seed}"
    trained = classifier_loop.train_classifier(
        _arm_config(config, arm),
        train_set,
        data.val,
        seed=seed,
        workdir=arm_dir / "checkpoint",
        name=name,
        select_metric=config.study.get("primary_metric", "auc"),
    )
    threshold = classification.choose_threshold(data.val.labels, trained.val_probabilities)
    evaluator = classifier_metrics.ClassifierEvaluator(
        functools.partial(classifier_loop.predict, trained.state),
        images=data.test.images,
        labels=data.test.labels,
        threshold=threshold,
    )
    # Predicted once: predictions.csv and the bootstrap read the probabilities themselves.
    test_probabilities = evaluator.predict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
        metrics = evaluator.score(test_probabilities)
    result = arms.ArmResult(
        arm=arm.name,
        fraction=fraction,
        mode=config.study.mode,
        real_per_class=size or "all",
        seed=seed,
        **{k: metrics[k] for k in arms.METRIC_COLUMNS},
        threshold_val=threshold,
        accuracy_at_val_threshold=metrics["accuracy_at_threshold"],
        sensitivity_at_val_threshold=metrics["sensitivity_at_threshold"],
        specificity_at_val_threshold=metrics["specificity_at_threshold"],
        num_real=num_real,
        num_synthetic=len(train_set) - num_real,
        source=arm.source if fraction else "real",
        classic=arm.classic,
        best_step=trained.best_step,
        seconds=trained.seconds,
        history=trained.history,
        test_probabilities=test_probabilities.tolist(),
    )
    result.save(result_path)
    return result
