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
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import functools
import json
import os
import pathlib
import warnings
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import errors, runs, viz
from xraygan_jax.data import mixing, phantom, pipeline, sources
from xraygan_jax.evaluators import classifier_metrics
from xraygan_jax.metrics import classification, statistics
from xraygan_jax.train import augment, classifier_loop, reporting

# study.csv: what identifies a classifier, then `binary_metrics` at threshold 0.5 up to the
# confusion counts (type I / II errors are fp / fn).
_METRIC_COLUMNS = classification.METRIC_NAMES[: classification.METRIC_NAMES.index("fn") + 1]
CSV_COLUMNS = ("arm", "fraction", "mode", "real_per_class", "seed") + _METRIC_COLUMNS
EXTRA_COLUMNS = (
    "threshold_val",
    "accuracy_at_val_threshold",
    "sensitivity_at_val_threshold",
    "specificity_at_val_threshold",
    "num_real",
    "num_synthetic",
    "source",
    "classic",
    "best_step",
    "seconds",
)
_VAL_SALT = 0x5A1
_ORACLE_SALT = 0x0AC

CONTROLS = ("duplicate", "oracle", "classic")
# Where an arm's extra images come from.
SOURCES = ("gan", "duplicate", "oracle")
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
_ENDPOINT_TITLES = {
    "auc": "AUC",
    "accuracy": "accuracy at 0.5",
    "accuracy_at_val_threshold": "accuracy at the validation threshold",
    "sensitivity": "sensitivity at 0.5",
    "specificity": "specificity at 0.5",
}
# A test split whose best-case detectable accuracy difference exceeds this supports no claim.
_LARGEST_USEFUL_DETECTABLE_EFFECT = 0.5


def arm_name(fraction: float) -> str:
    """'0%', '10%', '100%': the fraction of synthetic images in the training set."""
    return f"{fraction * 100:g}%"


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of the study: which extra images, how many, and whether classic augmentation.

    Attributes:
      fraction: share of extra images in the training set (module `mixing`); 0 = none.
      source: "gan" (synthetic), "duplicate" (copies of real train images) or "oracle" (new
        real images); meaningless at fraction 0.
      classic: the classical augmentation (`config.study.classic_augment`) instead of the
        study's own `config.augment`.
    """

    fraction: float
    source: str = "gan"
    classic: bool = False

    @property
    def name(self) -> str:
        """'0%', '20%', '20% duplicate', '20% oracle', 'classic', '20% + classic'."""
        if self.fraction == 0:
            return "classic" if self.classic else arm_name(0.0)
        name = arm_name(self.fraction)
        if self.source != "gan":
            name += f" {self.source}"
        return name + (" + classic" if self.classic else "")

    @property
    def is_baseline(self) -> bool:
        return self.fraction == 0 and not self.classic

    def arm_id(self, size: int, seed: int) -> str:
        """The arm's folder name; the baseline's and synthetic arms' as before controls existed."""
        kind = "synthetic" if self.source == "gan" else self.source
        suffix = "_classic" if self.classic else ""
        return f"real{size or 'all'}_{kind}{self.fraction * 100:g}{suffix}_seed{seed}"


def plan_arms(config: ml_collections.ConfigDict) -> list[Arm]:
    """The arms of a study config, in the order the report lists them."""
    fractions = sorted({float(f) for f in config.study.fractions})
    controls = tuple(config.study.get("controls", ()))
    controlled = [f for f in fractions if 0 < f < 1]
    arms = [Arm(0.0)]
    if "classic" in controls:
        arms.append(Arm(0.0, classic=True))
    for fraction in controlled:
        arms.append(Arm(fraction))
        arms += [Arm(fraction, source) for source in ("duplicate", "oracle") if source in controls]
        if "classic" in controls:
            arms.append(Arm(fraction, classic=True))
    arms += [Arm(f) for f in fractions if f == 1.0]
    return arms


def _oracle_needed(config: ml_collections.ConfigDict) -> bool:
    fractions = [float(f) for f in config.study.fractions]
    return "oracle" in tuple(config.study.get("controls", ())) and any(0 < f < 1 for f in fractions)


@dataclasses.dataclass
class StudyData:
    """The images of a study: real train (without val), val carved from it, test, synthetic, and
    the oracle arms' new real images (None without an oracle arm)."""

    train: pipeline.ArraySource
    val: pipeline.ArraySource
    test: pipeline.ArraySource
    synthetic: pipeline.ArraySource | None
    class_names: tuple[str, ...]
    oracle: pipeline.ArraySource | None = None


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
    if primary not in PRIMARY_METRICS:
        raise errors.ConfigError(
            f"--config.study.primary_metric={primary!r} is unknown; use one of: "
            f"{', '.join(PRIMARY_METRICS)}."
        )
    controls = tuple(config.study.get("controls", ()))
    unknown = [c for c in controls if c not in CONTROLS]
    if unknown:
        raise errors.ConfigError(
            f"--config.study.controls: {', '.join(map(repr, unknown))} unknown; use any of: "
            f"{', '.join(CONTROLS)}."
        )
    if _oracle_needed(config) and not 0.0 < float(config.study.oracle_fraction) < 1.0:
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


def _hold_out_oracle_pool(
    source: pipeline.ArraySource, fraction: float, seed: int, class_names: Sequence[str]
) -> tuple[pipeline.ArraySource, pipeline.ArraySource]:
    """(the train split without the oracle pool, the pool): a stratified, seeded share per class.

    Raises:
      errors.DataError: a class too small to give the pool an image, or one the pool would leave
        too few images for validation and training (both name the class and the counts).
    """
    counts = {}
    for label in np.unique(source.labels):
        size = int(np.count_nonzero(source.labels == label))
        count = int(round(size * fraction))
        name = class_names[int(label)]
        if count < 1:
            raise errors.DataError(
                f"class {name} has {size} train image(s): holding out "
                f"--config.study.oracle_fraction={fraction} of them for the oracle arm leaves the "
                f"pool empty (it needs at least {int(np.ceil(1 / fraction))} images per class). "
                "Use a larger set, or drop 'oracle' from --config.study.controls."
            )
        if size - count < 2:
            raise errors.DataError(
                f"class {name} has {size} train image(s): an oracle pool of {count} "
                f"(--config.study.oracle_fraction={fraction}) is more than the split can spare, "
                f"leaving {size - count} for validation and training (at least 2). Lower "
                "--config.study.oracle_fraction, or drop 'oracle' from --config.study.controls."
            )
        counts[int(label)] = count
    return _split_per_class(source, counts, seed, _ORACLE_SALT)


def _extra_needed(config, train: pipeline.ArraySource, fractions) -> dict[int, int]:
    """Extra images per class the largest real set needs over the given fractions."""
    needed = {}
    for label, count in enumerate(np.bincount(train.labels)):
        per_fraction = [
            mixing.num_synthetic(int(count), float(f))
            if config.study.mode == "add"
            else mixing.num_replaced(int(count), float(f))
            for f in fractions
        ]
        needed[label] = max(per_fraction, default=0)
    return needed


def _oracle_images(config, train, pool, class_names) -> pipeline.ArraySource:
    """New real images for the oracle arms: generated ones (phantom) or the held-out pool."""
    controlled = [float(f) for f in config.study.fractions if 0 < float(f) < 1]
    needed = _extra_needed(config, train, controlled)
    if pool is None:  # the phantom set: fresh images from its generator
        labels = np.concatenate([np.full(n, label, np.int64) for label, n in needed.items()])
        spec = sources.phantom_spec(config.data)
        return pipeline.ArraySource(phantom.generate_fresh(spec, labels), labels)
    available = np.bincount(pool.labels, minlength=len(class_names))
    for label, count in needed.items():
        if available[label] < count:
            raise errors.DataError(
                f"the oracle pool holds {available[label]} {class_names[label]} image(s) "
                f"(--config.study.oracle_fraction={config.study.oracle_fraction} of the train "
                f"split) but the {arm_name(max(controlled))} oracle arm needs {count}: raise "
                "--config.study.oracle_fraction or lower --config.study.fractions."
            )
    return pool


def _split_per_class(
    source: pipeline.ArraySource, counts: dict[int, int], seed: int, salt: int
) -> tuple[pipeline.ArraySource, pipeline.ArraySource]:
    """(the rest, the taken share): `counts[label]` images of every class, a seeded choice."""
    taken, rest = [], []
    for label in np.unique(source.labels):
        indices = np.flatnonzero(source.labels == label)
        order = np.random.default_rng([seed, salt, int(label)]).permutation(indices)
        taken.append(np.sort(order[: counts[int(label)]]))
        rest.append(np.sort(order[counts[int(label)] :]))
    taken_indices, rest_indices = np.concatenate(taken), np.concatenate(rest)
    return (
        pipeline.ArraySource(source.images[rest_indices], source.labels[rest_indices]),
        pipeline.ArraySource(source.images[taken_indices], source.labels[taken_indices]),
    )


def _carve_validation(
    source: pipeline.ArraySource, fraction: float, seed: int
) -> tuple[pipeline.ArraySource, pipeline.ArraySource]:
    """A stratified, seeded validation share of a train split, and the rest."""
    counts = {}
    for label in np.unique(source.labels):
        size = int(np.count_nonzero(source.labels == label))
        counts[int(label)] = max(1, int(round(size * fraction)))
        if size - counts[int(label)] < 1:
            raise errors.DataError(
                f"class {label} has {size} train image(s): too few to carve a validation "
                "share and keep any for training (--config.study.val_fraction)."
            )
    return _split_per_class(source, counts, seed, _VAL_SALT)


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


def load_data(
    config: ml_collections.ConfigDict,
    *,
    gan_workdir: str | os.PathLike | None = None,
    images_dir: str | os.PathLike | None = None,
) -> StudyData:
    """Real splits of `config.data` and the synthetic images, checked against each other.

    Raises:
      errors.DataError: the GAN run's image size or classes differ from the study's (both
        named), or a test split with one class only is reported later as AUC undefined.
    """
    class_names = sources.class_names(config.data)
    real_train = pipeline.ArraySource.from_source(sources.get_source(config.data, "train"))
    pool = None
    if _oracle_needed(config) and config.data.source != "cxr_phantom":
        real_train, pool = _hold_out_oracle_pool(
            real_train,
            float(config.study.oracle_fraction),
            int(config.study.split_seed),
            class_names,
        )
    train, val = _carve_validation(
        real_train, float(config.study.val_fraction), int(config.study.split_seed)
    )
    oracle = _oracle_images(config, train, pool, class_names) if _oracle_needed(config) else None
    test = pipeline.ArraySource.from_source(sources.get_source(config.data, "test"))
    synthetic = None
    size = int(config.data.image_size)
    needs_synthetic = any(float(f) > 0 for f in config.study.fractions)
    if needs_synthetic and gan_workdir:
        run = runs.Run(gan_workdir)
        gan_config = run.load_config()
        gan_size = int(gan_config.data.image_size)
        gan_classes = sources.class_names(gan_config.data)
        if gan_size != size or tuple(gan_classes) != tuple(class_names):
            raise errors.DataError(
                f"the GAN run {gan_workdir} makes {gan_size}x{gan_size} images of classes "
                f"{', '.join(gan_classes)}; the classifier's data is {size}x{size} with classes "
                f"{', '.join(class_names)}. Train the GAN on the same data, or set "
                "--config.data.image_size / --config.data.class_names to match."
            )
        epoch = int(config.synthetic.epoch)
        sample_fn, epochs = run.sample_fn(
            None if epoch <= 0 else epoch, batch_stats=config.synthetic.batch_stats
        )
        needed = _extra_needed(config, train, config.study.fractions)
        images, labels = [], []
        for label, count in needed.items():
            if count:
                images.append(sample_fn(label, count, int(config.synthetic.seed)))
                labels.append(np.full(count, label, np.int64))
        synthetic = pipeline.ArraySource(np.concatenate(images), np.concatenate(labels))
        logging.info("synthetic images from %s, checkpoint epochs %s", gan_workdir, epochs)
    elif needs_synthetic and images_dir:
        synthetic = mixing.load_image_folder(images_dir, size, class_names)
    elif needs_synthetic:
        raise errors.ConfigError(
            "fractions above 0 need synthetic images: pass --gan_workdir=RUN (a GAN run) or "
            "--images_dir=DIR (DIR/<class>/*.png)."
        )
    return StudyData(train, val, test, synthetic, tuple(class_names), oracle)


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
) -> list[dict[str, Any]]:
    """Trains and scores every arm (resuming finished ones), then writes the outputs.

    Args:
      config: the study config (experiments/configs/study.py).
      workdir: the study's folder.
      gan_workdir: a GAN run that generates the synthetic images; or
      images_dir: a folder DIR/<class>/*.png of synthetic images.

    Returns:
      One result dict per (size, arm, seed), as in study.csv plus the test probabilities.
    """
    check_config(config)
    workdir = pathlib.Path(workdir)
    data = load_data(config, gan_workdir=gan_workdir, images_dir=images_dir)
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
    plan = [(size, arm, seed) for size in sizes for arm in plan_arms(config) for seed in seeds]
    progress = reporting.Progress(len(plan), 1, "[study]", every_steps=1, unit="arm")
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
                f"{result['arm']}, {result['real_per_class']} real per class, seed "
                f"{result['seed']}: accuracy {result['accuracy']:.3f}",
            )
        results = [future.result() for future in futures]
    write_outputs(config, workdir, results, data)
    return results


def _training_set(config, data: StudyData, real, arm: Arm, seed: int) -> pipeline.ArraySource:
    mode = config.study.mode
    if arm.fraction == 0:
        return real
    if arm.source == "duplicate":
        return mixing.duplicate_real(real, arm.fraction, mode=mode, seed=seed)
    extra = data.oracle if arm.source == "oracle" else data.synthetic
    return mixing.mix(real, extra, arm.fraction, mode=mode, seed=seed)


def _arm_config(config: ml_collections.ConfigDict, arm: Arm) -> ml_collections.ConfigDict:
    """The classifier config of an arm: the classic augmentation replaces `augment` if asked."""
    if not arm.classic:
        return config
    arm_config = config.copy_and_resolve_references()
    with arm_config.unlocked():
        arm_config.augment = config.study.classic_augment.copy_and_resolve_references()
    return arm_config


def _run_arm(config, data: StudyData, workdir, size, arm: Arm, seed) -> dict[str, Any]:
    arm_dir = workdir / "arms" / arm.arm_id(size, seed)
    result_path = arm_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
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
    result = {
        "arm": arm.name,
        "fraction": fraction,
        "mode": config.study.mode,
        "real_per_class": size or "all",
        "seed": seed,
        **{k: metrics[k] for k in _METRIC_COLUMNS},
        "threshold_val": threshold,
        "accuracy_at_val_threshold": metrics["accuracy_at_threshold"],
        "sensitivity_at_val_threshold": metrics["sensitivity_at_threshold"],
        "specificity_at_val_threshold": metrics["specificity_at_threshold"],
        "num_real": num_real,
        "num_synthetic": len(train_set) - num_real,
        "source": arm.source if fraction else "real",
        "classic": arm.classic,
        "best_step": trained.best_step,
        "seconds": trained.seconds,
        "history": trained.history,
        "test_probabilities": test_probabilities.tolist(),
    }
    arm_dir.mkdir(parents=True, exist_ok=True)
    temporary = result_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, allow_nan=True))
    os.replace(temporary, result_path)
    return result


# Outputs.

# Metrics summarised over seeds: the confusion counts that are errors, and the val-threshold ones.
_SUMMARY_METRICS = tuple(m for m in _METRIC_COLUMNS if m not in ("tp", "tn")) + EXTRA_COLUMNS[:4]


def _arm_of(result: dict) -> Arm:
    """The Arm of a result (results written before controls existed are GAN or baseline arms)."""
    source = result.get("source", "gan")
    return Arm(
        float(result["fraction"]),
        "gan" if source == "real" else source,
        bool(result.get("classic", False)),
    )


def _groups(results: Sequence[dict]) -> dict[Any, dict[Arm, list[dict]]]:
    """{real_per_class: {arm: [results sorted by seed]}}, arms in the report's order."""
    groups: dict[Any, dict[Arm, list[dict]]] = {}
    for result in results:
        arms = groups.setdefault(result["real_per_class"], {})
        arms.setdefault(_arm_of(result), []).append(result)
    for size, arms in groups.items():
        for rows in arms.values():
            rows.sort(key=lambda r: r["seed"])
        groups[size] = dict(sorted(arms.items(), key=lambda item: _arm_order(item[0])))
    return groups


def _arm_order(arm: Arm) -> tuple:
    return (
        arm.fraction == 1.0,
        arm.fraction,
        arm.classic and arm.fraction > 0,
        SOURCES.index(arm.source),
        arm.classic,
    )


def _scores(rows: Sequence[dict], kind: str) -> np.ndarray:
    """[seeds, N] test scores of an arm: probabilities, or 0/1 decisions at each validation
    threshold (scored at 0.5 downstream, which gives the accuracy at that threshold)."""
    probabilities = np.array([r["test_probabilities"] for r in rows], dtype=np.float64)
    if kind == "probabilities":
        return probabilities
    thresholds = np.array([r["threshold_val"] for r in rows], dtype=np.float64)[:, None]
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


def _seed_note(num_seeds: int) -> str | None:
    if num_seeds >= 2:
        return None
    return (
        f"{num_seeds} seed per arm: the seed-level interval is not computable (it needs at least "
        "2 seeds, 10 for the small CNN), so no verdict is called."
    )


def summarise(
    config: ml_collections.ConfigDict,
    results: Sequence[dict],
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
    for size, arms in _groups(results).items():
        baseline = next((arm for arm in arms if arm.is_baseline), None)
        # Seeds every arm of this size has: comparisons pair arms seed by seed.
        seeds = sorted(set.intersection(*[{r["seed"] for r in rows} for rows in arms.values()]))
        paired = {arm: [r for r in rows if r["seed"] in seeds] for arm, rows in arms.items()}
        size_summaries = {}
        for arm, rows in arms.items():
            summary: dict[str, Any] = {
                "real_per_class": size,
                "arm": arm.name,
                "fraction": arm.fraction,
                "source": arm.source if arm.fraction else "real",
                "classic": arm.classic,
                "num_seeds": len(rows),
                "num_real": rows[0]["num_real"],
                "num_synthetic": rows[0]["num_synthetic"],
            }
            for metric in _SUMMARY_METRICS:
                stats = statistics.summarise_over_seeds([r[metric] for r in rows])
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
        compared = [arm for arm in arms if baseline is not None and arm != baseline]
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
                (np.asarray(a["test_probabilities"]) >= 0.5) == labels,
                (np.asarray(b["test_probabilities"]) >= 0.5) == labels,
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
        duplicate = by_name.get(Arm(arm.fraction, "duplicate").name)
        oracle = by_name.get(Arm(arm.fraction, "oracle").name)
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


def write_outputs(config, workdir: pathlib.Path, results: Sequence[dict], data: StudyData):
    """study.csv, predictions.csv, summary.json, study.md and plots/ in `workdir`."""
    with open(workdir / "study.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS + EXTRA_COLUMNS)
        for result in results:
            defaults = {
                "source": "real" if float(result["fraction"]) == 0 else "gan",
                "classic": False,
            }  # results written before the control arms existed
            writer.writerow([result.get(c, defaults.get(c)) for c in CSV_COLUMNS + EXTRA_COLUMNS])
    with open(workdir / "predictions.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["arm", "fraction", "mode", "real_per_class", "seed", "image", "label", "probability"]
        )
        for result in results:
            for index, (label, probability) in enumerate(
                zip(data.test.labels, result["test_probabilities"], strict=True)
            ):
                writer.writerow(
                    [
                        result["arm"],
                        result["fraction"],
                        result["mode"],
                        result["real_per_class"],
                        result["seed"],
                        index,
                        int(label),
                        f"{probability:.6f}",
                    ]
                )
    summaries = summarise(config, results, data.test.labels, data.class_names)
    (workdir / "summary.json").write_text(json.dumps(summaries, indent=1, allow_nan=True))
    plots = write_plots(workdir, results, summaries, config.study.get("primary_metric", "auc"))
    write_markdown(config, workdir, summaries, data, plots)
    return summaries


def write_plots(workdir: pathlib.Path, results, summaries, primary: str = "auc") -> dict[str, str]:
    """Metrics against fraction (error bars), differences from 0% with their intervals, against
    real-set size, and training curves."""
    plots = {}
    by_size: dict[Any, list[dict]] = {}
    for summary in summaries:
        by_size.setdefault(summary["real_per_class"], []).append(summary)
    plots["by_fraction"] = viz.plot_study_by_fraction(
        by_size, workdir / "plots" / "metrics_by_fraction.png"
    )
    if any(f"d_{primary}" in s for s in summaries):
        plots["differences"] = viz.plot_study_differences(
            by_size, primary, _ENDPOINT_TITLES[primary], workdir / "plots" / "differences.png"
        )
    if len(by_size) > 1:
        plots["by_size"] = viz.plot_study_by_size(
            by_size, workdir / "plots" / "metrics_by_real_size.png"
        )
    curves = {}
    for result in results:
        if (
            result["seed"] == results[0]["seed"]
            and result["real_per_class"] == results[-1]["real_per_class"]
        ):
            history = result["history"]
            curves[result["arm"]] = (
                [h["step"] for h in history],
                [h["loss/train"] for h in history],
                [h["loss/val"] for h in history],
            )
    plots["curves"] = viz.plot_training_curves(curves, workdir / "plots" / "training_curves.png")
    return plots


def _format_mean_std(summary, metric, scale=100.0, digits=1) -> str:
    mean, std = summary[f"{metric}_mean"], summary[f"{metric}_std"]
    if not np.isfinite(mean):
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if np.isfinite(std):
        text += f" ± {std * scale:.{digits}f}"
    return text


def _points(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value * 100:+.1f}"


def _interval(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return f"[{low * 100:+.1f}, {high * 100:+.1f}]"


def _p(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


def _inference_paragraph(config, num_compared: int) -> str:
    primary = config.study.get("primary_metric", "auc")
    alpha = float(config.study.get("alpha", 0.05))
    return (
        f"Primary endpoint: **{_ENDPOINT_TITLES[primary]}** (`study.primary_metric`), on which "
        "each classifier's weights were also chosen on validation. Every arm is compared with "
        "the 0% arm on the same seeds and test images. Δ is the seed-averaged difference (arm "
        "minus 0%, in points). Its interval is the primary one: a two-level bootstrap (seeds "
        "drawn again, then test images) whose spread is put on Student's t scale for the "
        f"number of seeds. p (Holm) adjusts the p-values for the {num_compared} arms compared "
        f"at each real-set size (Holm's step-down method). An arm is called better or worse "
        f"only when that adjusted p-value is below {alpha:g}. Otherwise the table gives the "
        "smallest difference that could have gone undetected (detectable: at 80% power, "
        "unadjusted). The paired t-interval and the sign-flip test over seeds stand beside it; "
        "they ignore the test images' sampling noise. The other endpoints are secondary: "
        "intervals only, not adjusted, no verdict. These are statements about this run: its "
        "seeds, its test split and the machine it ran on."
    )


def write_markdown(config, workdir: pathlib.Path, summaries, data: StudyData, plots) -> str:
    """study.md: the tables with intervals and p-values, the plots and a verdict paragraph."""
    primary = config.study.get("primary_metric", "auc")
    test_counts = np.bincount(data.test.labels, minlength=len(data.class_names))
    seeds = list(config.study.seeds)
    lines = ["# Augmentation study", ""]
    for note in (why_no_claim(data.test.labels, data.class_names), _seed_note(len(seeds))):
        if note:
            lines += [f"**{note}**", ""]
    lines += [
        f"Classifier `{config.model.kind}`, {config.train.num_steps} steps per arm (batch "
        f"{config.train.batch_size}, {config.optim.name} lr {config.optim.lr}), mode "
        f"`{config.study.mode}`, {len(seeds)} seeds {seeds}. Test split: "
        + ", ".join(f"{n} {c}" for c, n in zip(data.class_names, test_counts, strict=True))
        + f"; validation (weights and threshold chosen on it): {len(data.val)} images carved "
        "from the real train split. Positive class: "
        f"{data.class_names[1]}. Threshold 0.5 unless noted.",
        "",
    ]
    by_size: dict[Any, list[dict]] = {}
    for summary in summaries:
        by_size.setdefault(summary["real_per_class"], []).append(summary)
    num_compared = max((sum("verdict" in s for s in rows) for rows in by_size.values()), default=0)
    if num_compared:
        lines += [_inference_paragraph(config, num_compared), ""]
    secondary = [e for e in ENDPOINTS if e != primary]
    for size, rows in by_size.items():
        lines += [
            f"## Real images per class: {size}",
            "",
            "Mean ± sd over seeds; accuracy's interval is the two-level one (seeds and test "
            "images).",
            "",
            "| arm | train images (real + extra) | AUC | accuracy % [95% CI] | sensitivity % | "
            "specificity % | type I (FP) | type II (FN) | accuracy % at val threshold |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in rows:
            interval = _interval(s["accuracy_low"], s["accuracy_high"]).replace("+", "")
            lines.append(
                f"| {s['arm']} | {s['num_real']} + {s['num_synthetic']} | "
                f"{_format_mean_std(s, 'auc', scale=1.0, digits=3)} | "
                f"{_format_mean_std(s, 'accuracy')} {interval} | "
                f"{_format_mean_std(s, 'sensitivity')} | {_format_mean_std(s, 'specificity')} | "
                f"{_format_mean_std(s, 'fp', scale=1.0)} | "
                f"{_format_mean_std(s, 'fn', scale=1.0)} | "
                f"{_format_mean_std(s, 'accuracy_at_val_threshold')} |"
            )
        compared = [s for s in rows if "verdict" in s]
        if compared:
            lines += [
                "",
                f"Primary endpoint, {_ENDPOINT_TITLES[primary]}, against 0%:",
                "",
                "| arm | Δ points [95% CI] | p | p (Holm) | detectable | paired t over seeds | "
                "sign-flip p | verdict |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for s in compared:
                d = f"d_{primary}"
                lines.append(
                    f"| {s['arm']} | {_points(s.get(d, np.nan))} "
                    f"{_interval(s.get(d + '_low', np.nan), s.get(d + '_high', np.nan))} | "
                    f"{_p(s.get(d + '_p', np.nan))} | {_p(s['p_holm'])} | "
                    f"{_detectable(s, primary)} | "
                    f"{_interval(s.get(d + '_t_low', np.nan), s.get(d + '_t_high', np.nan))} | "
                    f"{_p(s.get(d + '_sign_p', np.nan))} | {s['verdict']} |"
                )
            lines += [
                "",
                "Secondary endpoints against 0% (Δ points [95% CI], not adjusted, no verdict), "
                "and McNemar's exact test per seed at 0.5:",
                "",
                "| arm | "
                + " | ".join(_ENDPOINT_TITLES[e] for e in secondary)
                + " | McNemar p per seed |",
                "|---|" + "---|" * (len(secondary) + 1),
            ]
            for s in compared:
                cells = [
                    f"{_points(s.get(f'd_{e}', np.nan))} "
                    f"{_interval(s.get(f'd_{e}_low', np.nan), s.get(f'd_{e}_high', np.nan))}"
                    for e in secondary
                ]
                p_values = ", ".join(f"{p:.3g}" for p in s["mcnemar_p"])
                lines.append(f"| {s['arm']} | " + " | ".join(cells) + f" | {p_values} |")
        brackets = [bracket_sentence(s, primary) for s in rows if "recovered" in s]
        if brackets:
            lines += ["", *brackets]
        lines.append("")
    lines += ["## Verdict", "", verdict_paragraph(summaries, primary), ""]
    lines += ["## Plots", ""]
    for title, key in [
        ("Metrics against the synthetic fraction", "by_fraction"),
        (f"Differences from 0% in {_ENDPOINT_TITLES[primary]}, 95% CI", "differences"),
        ("Metrics against the real-set size", "by_size"),
        ("Training curves (first seed, largest real set)", "curves"),
    ]:
        if key in plots:
            lines.append(f"![{title}]({os.path.relpath(plots[key], workdir)})")
            lines.append("")
    lines += [
        "Files: `study.csv` (one row per arm, seed and size), `predictions.csv` (every test "
        "probability), `summary.json` (the numbers of these tables).",
        "",
    ]
    path = workdir / "study.md"
    path.write_text("\n".join(lines))
    return str(path)


def _detectable(s: dict, endpoint: str) -> str:
    mde = s.get(f"d_{endpoint}_mde", np.nan)
    return "n/a" if not np.isfinite(mde) else f"{mde * 100:.1f}"


def bracket_sentence(s: dict, primary: str) -> str:
    """How a synthetic arm reads against its duplicate and oracle controls, in one sentence."""
    title = _ENDPOINT_TITLES[primary]
    ceiling = (
        f"the oracle's gain over duplicates in {title}: {_points(s['oracle_gain'])} points "
        f"{_interval(s['oracle_gain_low'], s['oracle_gain_high'])}"
    )
    if s["recovered_defined"]:
        return (
            f"**{s['arm']} synthetic, {s['real_per_class']} real per class:** the GAN images "
            f"recovered {s['recovered'] * 100:.0f}% [{s['recovered_low'] * 100:.0f}%, "
            f"{s['recovered_high'] * 100:.0f}%] of the oracle's gain over duplicate ({ceiling}). "
            "0% would mean no more than extra looks at real images, 100% as much as new real "
            "images."
        )
    return (
        f"**{s['arm']} synthetic, {s['real_per_class']} real per class:** new real images did "
        f"not detectably beat duplicates of the real ones ({ceiling}), so at this size no share "
        "of a gain can be read: even a perfect generator's images would not be shown to help."
    )


def verdict_paragraph(summaries: Sequence[dict], primary: str = "auc") -> str:
    """One paragraph from the numbers: which arms differ from 0% on the primary endpoint."""
    compared = [s for s in summaries if "verdict" in s]
    if not compared:
        return "Only the baseline was trained; there is nothing to compare."
    title = _ENDPOINT_TITLES[primary]
    if all(s["verdict"] == statistics.NOT_ENOUGH_DATA for s in compared):
        return (
            "Not enough data for any verdict (see the note at the top): the differences in the "
            "tables are shown, but none is called."
        )

    def describe(s):
        d = f"d_{primary}"
        return (
            f"{s['arm']} with {s['real_per_class']} real images per class "
            f"({_points(s[d])} points, 95% CI {_points(s[d + '_low'])} to "
            f"{_points(s[d + '_high'])}, Holm p {_p(s['p_holm'])})"
        )

    sentences = []
    groups = {
        word: [s for s in compared if s["verdict"] == word]
        for word in (statistics.BETTER, statistics.WORSE, statistics.NO_DETECTABLE_DIFFERENCE)
    }
    if groups[statistics.BETTER]:
        sentences.append(
            f"{title} rose beyond noise for "
            + "; ".join(map(describe, groups[statistics.BETTER]))
            + "."
        )
    else:
        sentences.append(
            f"No arm beat the 0% baseline in {title} beyond noise: no gain is claimed."
        )
    if groups[statistics.WORSE]:
        sentences.append(
            "It fell beyond noise for " + "; ".join(map(describe, groups[statistics.WORSE])) + "."
        )
    if groups[statistics.NO_DETECTABLE_DIFFERENCE]:
        sentences.append(
            "No detectable difference for "
            + "; ".join(
                f"{describe(s)}: a difference under {_detectable(s, primary)} points could "
                "have gone undetected"
                for s in groups[statistics.NO_DETECTABLE_DIFFERENCE]
            )
            + "."
        )
    sentences.append(
        "An arm counts as better or worse only when its Holm-adjusted p-value on the primary "
        "endpoint is below the study's alpha, i.e. its two-level interval excludes zero after "
        "the adjustment for the arms compared."
    )
    return " ".join(sentences)
