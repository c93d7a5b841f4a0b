"""The augmentation study: do synthetic images from a GAN help a chest X-ray classifier?

    results = study.run_study(config, workdir="runs/study", gan_workdir="runs/dcgan")

For every real-set size (`config.study.real_per_class`, nested subsets), every synthetic fraction
(`config.study.fractions`, 0 = the baseline, 1 = train on synthetic only, the classification
accuracy score) and every seed, one classifier is trained for the same number of steps
(`xraygan_jax.train.classifier_loop`), its weights and decision threshold chosen on a validation
split carved from the real train split, and it is scored once on the test split. Then:

- per arm: accuracy, sensitivity, specificity, precision, F1, ROC AUC, confusion counts (type I
  errors = false positives, type II = false negatives), at threshold 0.5 and at the threshold
  chosen on validation; mean and standard deviation over seeds, and a 95% bootstrap interval over
  test images;
- against the 0% arm of the same size: McNemar's exact test per seed on the same test images,
  the 95% interval of the accuracy difference by resampling test images (seeds averaged), and the
  paired interval over seeds; an arm is called "better" only when both intervals lie above zero.

Written to `workdir`: study.csv (one row per arm, seed and size), predictions.csv (one row per
test image, arm, seed and size: anyone can recompute every statistic), study.md (tables and a
verdict written from the numbers), plots/*.png, and arms/<arm>/ (each classifier's result and
orbax checkpoint; a finished arm is not trained again).
"""

from __future__ import annotations

import csv
import dataclasses
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
from xraygan_jax.data import mixing, pipeline, sources
from xraygan_jax.metrics import classification, statistics
from xraygan_jax.train import classifier_loop, reporting

# study.csv: what identifies a classifier, then `binary_metrics` at threshold 0.5 up to the
# confusion counts (type I / II errors are fp / fn).
CSV_COLUMNS = ("arm", "fraction", "mode", "real_per_class", "seed") + (
    classification.METRIC_NAMES[: classification.METRIC_NAMES.index("fn") + 1]
)
EXTRA_COLUMNS = (
    "threshold_val",
    "accuracy_at_val_threshold",
    "sensitivity_at_val_threshold",
    "specificity_at_val_threshold",
    "num_real",
    "num_synthetic",
    "best_step",
    "seconds",
)
_VAL_SALT = 0x5A1


def arm_name(fraction: float) -> str:
    """'0%', '10%', '100%': the fraction of synthetic images in the training set."""
    return f"{fraction * 100:g}%"


@dataclasses.dataclass
class StudyData:
    """The images of a study: real train (without val), val carved from it, test, synthetic."""

    train: pipeline.ArraySource
    val: pipeline.ArraySource
    test: pipeline.ArraySource
    synthetic: pipeline.ArraySource | None
    class_names: tuple[str, ...]


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
    classifier_loop.check_config(config)


def _carve_validation(
    source: pipeline.ArraySource, fraction: float, seed: int
) -> tuple[pipeline.ArraySource, pipeline.ArraySource]:
    """A stratified, seeded validation share of a train split, and the rest."""
    val, train = [], []
    for label in np.unique(source.labels):
        indices = np.flatnonzero(source.labels == label)
        order = np.random.default_rng([seed, _VAL_SALT, int(label)]).permutation(indices)
        count = max(1, int(round(indices.size * fraction)))
        if indices.size - count < 1:
            raise errors.DataError(
                f"class {label} has {indices.size} train image(s): too few to carve a validation "
                "share and keep any for training (--config.study.val_fraction)."
            )
        val.append(np.sort(order[:count]))
        train.append(np.sort(order[count:]))
    val_indices, train_indices = np.concatenate(val), np.concatenate(train)
    return (
        pipeline.ArraySource(source.images[train_indices], source.labels[train_indices]),
        pipeline.ArraySource(source.images[val_indices], source.labels[val_indices]),
    )


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


def _synthetic_needed(config, train: pipeline.ArraySource) -> dict[int, int]:
    """Synthetic images per class the largest real set needs over every fraction."""
    needed = {}
    for label, count in enumerate(np.bincount(train.labels)):
        per_fraction = [
            mixing.num_synthetic(int(count), float(f))
            if config.study.mode == "add"
            else mixing.num_replaced(int(count), float(f))
            for f in config.study.fractions
        ]
        needed[label] = max(per_fraction)
    return needed


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
    train, val = _carve_validation(
        real_train, float(config.study.val_fraction), int(config.study.split_seed)
    )
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
        needed = _synthetic_needed(config, train)
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
    return StudyData(train, val, test, synthetic, tuple(class_names))


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


def _arm_id(size: int, fraction: float, seed: int) -> str:
    return f"real{size or 'all'}_synthetic{fraction * 100:g}_seed{seed}"


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
      One result dict per (size, fraction, seed), as in study.csv plus the test probabilities.
    """
    check_config(config)
    workdir = pathlib.Path(workdir)
    data = load_data(config, gan_workdir=gan_workdir, images_dir=images_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    sizes = _sizes(config, data.train)
    fractions = sorted({float(f) for f in config.study.fractions})
    seeds = [int(s) for s in config.study.seeds]
    plan = [(size, f, seed) for size in sizes for f in fractions for seed in seeds]
    progress = reporting.Progress(len(plan), 1, "[study]", every_steps=1, unit="arm")
    results = []
    for done, (size, fraction, seed) in enumerate(plan, start=1):
        results.append(_run_arm(config, data, workdir, size, fraction, seed))
        progress.update(
            done,
            f"{arm_name(fraction)} synthetic, {size or 'all'} real per class, seed {seed}: "
            f"accuracy {results[-1]['accuracy']:.3f}",
        )
    write_outputs(config, workdir, results, data)
    return results


def _run_arm(config, data: StudyData, workdir, size, fraction, seed) -> dict[str, Any]:
    arm_dir = workdir / "arms" / _arm_id(size, fraction, seed)
    result_path = arm_dir / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    real = data.train
    if size:
        real = mixing.subsample_per_class(
            real, num_per_class=size, seed=int(config.study.split_seed)
        )
    if fraction > 0:
        train_set = mixing.mix(real, data.synthetic, fraction, mode=config.study.mode, seed=seed)
    else:
        train_set = real
    if config.study.mode == "replace":
        counts = np.bincount(real.labels)
        num_real = len(real) - sum(mixing.num_replaced(int(c), fraction) for c in counts)
    else:
        num_real = 0 if fraction == 1.0 else len(real)
    check_training_set(train_set, data.class_names, arm_name(fraction), size)
    name = f"{arm_name(fraction)} syn, {size or 'all'} real/class, seed {seed}"
    trained = classifier_loop.train_classifier(
        config, train_set, data.val, seed=seed, workdir=arm_dir / "checkpoint", name=name
    )
    val_probabilities = classifier_loop.predict(trained.state, data.val.images)
    threshold = classification.choose_threshold(data.val.labels, val_probabilities)
    test_probabilities = classifier_loop.predict(trained.state, data.test.images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
        at_half = classification.binary_metrics(data.test.labels, test_probabilities)
        at_val = classification.binary_metrics(data.test.labels, test_probabilities, threshold)
    result = {
        "arm": arm_name(fraction),
        "fraction": fraction,
        "mode": config.study.mode,
        "real_per_class": size or "all",
        "seed": seed,
        **{k: at_half[k] for k in CSV_COLUMNS[5:]},
        "threshold_val": threshold,
        "accuracy_at_val_threshold": at_val["accuracy"],
        "sensitivity_at_val_threshold": at_val["sensitivity"],
        "specificity_at_val_threshold": at_val["specificity"],
        "num_real": num_real,
        "num_synthetic": len(train_set) - num_real,
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


def _groups(results: Sequence[dict]) -> dict[Any, dict[float, list[dict]]]:
    """{real_per_class: {fraction: [results sorted by seed]}}."""
    groups: dict[Any, dict[float, list[dict]]] = {}
    for result in results:
        arms = groups.setdefault(result["real_per_class"], {})
        arms.setdefault(float(result["fraction"]), []).append(result)
    for arms in groups.values():
        for rows in arms.values():
            rows.sort(key=lambda r: r["seed"])
    return groups


def summarise(
    config: ml_collections.ConfigDict, results: Sequence[dict], test_labels: np.ndarray
) -> list[dict[str, Any]]:
    """One summary per (size, arm): means, stds, intervals, tests against the 0% arm, verdict."""
    num_resamples = int(config.study.num_bootstrap)
    accuracy = classification.metric_function("accuracy")
    summaries = []
    for size, arms in _groups(results).items():
        base_rows = arms.get(0.0, [])
        base_by_seed = {r["seed"]: r for r in base_rows}
        for fraction, rows in sorted(arms.items()):
            probabilities = np.array([r["test_probabilities"] for r in rows])
            summary: dict[str, Any] = {
                "real_per_class": size,
                "arm": arm_name(fraction),
                "fraction": fraction,
                "num_seeds": len(rows),
                "num_real": rows[0]["num_real"],
                "num_synthetic": rows[0]["num_synthetic"],
            }
            for metric in (
                "accuracy",
                "sensitivity",
                "specificity",
                "precision",
                "f1",
                "auc",
                "fp",
                "fn",
                "threshold_val",
                "accuracy_at_val_threshold",
                "sensitivity_at_val_threshold",
                "specificity_at_val_threshold",
            ):
                values = [r[metric] for r in rows]
                stats = statistics.summarise_over_seeds(values) if len(values) else {}
                summary[f"{metric}_mean"] = stats.get("mean", float("nan"))
                summary[f"{metric}_std"] = stats.get("std", float("nan"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", statistics.UndefinedResamplesWarning)
                summary["accuracy_low"], summary["accuracy_high"] = (
                    statistics.seed_averaged_bootstrap_ci(
                        test_labels, probabilities, accuracy, num_resamples=num_resamples
                    )
                )
            paired = [r for r in rows if r["seed"] in base_by_seed]
            if fraction > 0 and paired:
                base_rows_paired = [base_by_seed[r["seed"]] for r in paired]
                # At 0.5 (suffix "") and at each classifier's validation threshold ("_val"):
                # thresholded decisions scored at 0.5 give the accuracy at that threshold.
                for suffix, decide in (("", _at_half), ("_val", _at_val_threshold)):
                    summary.update(
                        _comparison(
                            test_labels,
                            np.array([decide(r) for r in paired]),
                            np.array([decide(r) for r in base_rows_paired]),
                            num_resamples,
                            suffix,
                        )
                    )
            summaries.append(summary)
    return summaries


def _at_half(result: dict) -> np.ndarray:
    return np.asarray(result["test_probabilities"], dtype=np.float64)


def _at_val_threshold(result: dict) -> np.ndarray:
    """0/1 decisions at the classifier's own validation-chosen threshold."""
    probabilities = np.asarray(result["test_probabilities"], dtype=np.float64)
    return (probabilities >= result["threshold_val"]).astype(np.float64)


def _comparison(labels, arm, base, num_resamples: int, suffix: str) -> dict[str, Any]:
    """Accuracy of an arm against the 0% arm, seed by seed on the same test images."""
    accuracy = classification.metric_function("accuracy")
    image_level = statistics.seed_averaged_image_bootstrap_difference(
        labels, arm, base, accuracy, num_resamples=num_resamples
    )
    seed_level = statistics.paired_difference_ci(
        [accuracy(labels, a) for a in arm], [accuracy(labels, b) for b in base]
    )
    mcnemar = [
        statistics.mcnemar_exact((a >= 0.5) == labels, (b >= 0.5) == labels)["p_value"]
        for a, b in zip(arm, base, strict=True)
    ]
    return {
        f"difference{suffix}": image_level["difference"],
        f"difference_low{suffix}": image_level["low"],
        f"difference_high{suffix}": image_level["high"],
        f"seed_difference_low{suffix}": seed_level["low"],
        f"seed_difference_high{suffix}": seed_level["high"],
        f"mcnemar_p{suffix}": mcnemar,
        f"verdict{suffix}": _verdict(image_level, seed_level, len(arm)),
    }


def _verdict(image_level: dict, seed_level: dict, num_seeds: int) -> str:
    """'better' / 'worse' only when the image-level interval (and, with 2+ seeds, the seed-level
    one) lies wholly on that side of zero; otherwise 'no detectable difference'."""
    words = [statistics.verdict(image_level["low"], image_level["high"])]
    if num_seeds >= 2:
        words.append(statistics.verdict(seed_level["low"], seed_level["high"]))
    if all(w == statistics.BETTER for w in words):
        return statistics.BETTER
    if all(w == statistics.WORSE for w in words):
        return statistics.WORSE
    return statistics.NO_DETECTABLE_DIFFERENCE


def write_outputs(config, workdir: pathlib.Path, results: Sequence[dict], data: StudyData):
    """study.csv, predictions.csv, summary.json, study.md and plots/ in `workdir`."""
    with open(workdir / "study.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS + EXTRA_COLUMNS)
        for result in results:
            writer.writerow([result[c] for c in CSV_COLUMNS + EXTRA_COLUMNS])
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
    summaries = summarise(config, results, data.test.labels)
    (workdir / "summary.json").write_text(json.dumps(summaries, indent=1, allow_nan=True))
    plots = write_plots(workdir, results, summaries)
    write_markdown(config, workdir, summaries, data, plots)
    return summaries


def write_plots(workdir: pathlib.Path, results, summaries) -> dict[str, str]:
    """Metrics against fraction (error bars), against real-set size, and training curves."""
    plots = {}
    by_size: dict[Any, list[dict]] = {}
    for summary in summaries:
        by_size.setdefault(summary["real_per_class"], []).append(summary)
    plots["by_fraction"] = viz.plot_study_by_fraction(
        by_size, workdir / "plots" / "metrics_by_fraction.png"
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


def write_markdown(config, workdir: pathlib.Path, summaries, data: StudyData, plots) -> str:
    """study.md: the tables with intervals and p-values, the plots and a verdict paragraph."""
    test_counts = np.bincount(data.test.labels, minlength=len(data.class_names))
    lines = [
        "# Augmentation study",
        "",
        f"Classifier `{config.model.kind}`, {config.train.num_steps} steps per arm (batch "
        f"{config.train.batch_size}, {config.optim.name} lr {config.optim.lr}), mode "
        f"`{config.study.mode}`, seeds {list(config.study.seeds)}. Test split: "
        + ", ".join(f"{n} {c}" for c, n in zip(data.class_names, test_counts, strict=True))
        + f"; validation (weights and threshold chosen on it): {len(data.val)} images carved "
        "from the real train split. Positive class: "
        f"{data.class_names[1]}. Threshold 0.5 unless noted.",
        "",
    ]
    if len(set(data.test.labels.tolist())) < 2:
        lines += ["**The test split has one class only: AUC is undefined (n/a).**", ""]
    by_size: dict[Any, list[dict]] = {}
    for summary in summaries:
        by_size.setdefault(summary["real_per_class"], []).append(summary)
    for size, rows in by_size.items():
        lines += [
            f"## Real images per class: {size}",
            "",
            "| arm | train images (real + synthetic) | accuracy % (mean ± sd) [95% CI] | "
            "sensitivity % | specificity % | AUC | type I (FP) | type II (FN) | "
            "Δ accuracy vs 0% [95% CI, images] | [95% CI, seeds] | McNemar p per seed | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in rows:
            interval = f"[{s['accuracy_low'] * 100:.1f}, {s['accuracy_high'] * 100:.1f}]"
            diff, seed_ci, p_values, verdict = _comparison_cells(s, "")
            lines.append(
                f"| {s['arm']} | {s['num_real']} + {s['num_synthetic']} | "
                f"{_format_mean_std(s, 'accuracy')} {interval} | "
                f"{_format_mean_std(s, 'sensitivity')} | {_format_mean_std(s, 'specificity')} | "
                f"{_format_mean_std(s, 'auc', scale=1.0, digits=3)} | "
                f"{_format_mean_std(s, 'fp', scale=1.0)} | "
                f"{_format_mean_std(s, 'fn', scale=1.0)} | "
                f"{diff} | {seed_ci} | {p_values} | {verdict} |"
            )
        lines += [
            "",
            "At each classifier's threshold chosen on validation (Youden's J), mean ± sd over "
            "seeds:",
            "",
            "| arm | threshold | accuracy % | sensitivity % | specificity % | "
            "Δ accuracy vs 0% [95% CI, images] | [95% CI, seeds] | McNemar p per seed | verdict |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in rows:
            diff, seed_ci, p_values, verdict = _comparison_cells(s, "_val")
            lines.append(
                f"| {s['arm']} | {_format_mean_std(s, 'threshold_val', scale=1.0, digits=3)} | "
                f"{_format_mean_std(s, 'accuracy_at_val_threshold')} | "
                f"{_format_mean_std(s, 'sensitivity_at_val_threshold')} | "
                f"{_format_mean_std(s, 'specificity_at_val_threshold')} | "
                f"{diff} | {seed_ci} | {p_values} | {verdict} |"
            )
        lines.append("")
    lines += ["## Verdict", "", verdict_paragraph(summaries), ""]
    lines += ["## Plots", ""]
    for title, key in [
        ("Metrics against the synthetic fraction", "by_fraction"),
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


def _comparison_cells(s: dict, suffix: str) -> tuple[str, str, str, str]:
    """(difference [CI], seed CI, McNemar p values, verdict) cells of a table row."""
    if f"difference{suffix}" not in s:
        return "baseline", "", "", ""
    diff = (
        f"{s['difference' + suffix] * 100:+.1f} [{s['difference_low' + suffix] * 100:+.1f}, "
        f"{s['difference_high' + suffix] * 100:+.1f}]"
    )
    low, high = s["seed_difference_low" + suffix], s["seed_difference_high" + suffix]
    seed_ci = f"[{low * 100:+.1f}, {high * 100:+.1f}]" if np.isfinite(low) else "n/a (1 seed)"
    p_values = ", ".join(f"{p:.3g}" for p in s["mcnemar_p" + suffix])
    return diff, seed_ci, p_values, s["verdict" + suffix]


def verdict_paragraph(summaries: Sequence[dict]) -> str:
    """One paragraph, written from the numbers: which arms differ from 0%, at both thresholds."""
    compared = [s for s in summaries if "verdict" in s]
    if not compared:
        return "Only the baseline was trained; there is nothing to compare."
    sentences = []
    for suffix, where in (("", "at threshold 0.5"), ("_val", "at the validation threshold")):

        def describe(s, suffix=suffix):
            low, high = s["seed_difference_low" + suffix], s["seed_difference_high" + suffix]
            seeds = (
                f", over seeds {low * 100:+.1f} to {high * 100:+.1f}" if np.isfinite(low) else ""
            )
            return (
                f"{s['arm']} synthetic with {s['real_per_class']} real images per class "
                f"({s['difference' + suffix] * 100:+.1f} points; 95% CI over test images "
                f"{s['difference_low' + suffix] * 100:+.1f} to "
                f"{s['difference_high' + suffix] * 100:+.1f}{seeds})"
            )

        groups = {
            word: [s for s in compared if s["verdict" + suffix] == word]
            for word in (statistics.BETTER, statistics.WORSE, statistics.NO_DETECTABLE_DIFFERENCE)
        }
        if groups[statistics.BETTER]:
            sentences.append(
                f"Accuracy {where} rose beyond noise for "
                + "; ".join(map(describe, groups[statistics.BETTER]))
                + "."
            )
        else:
            sentences.append(
                f"No arm beat the 0% baseline {where} by more than the noise: no gain is claimed."
            )
        if groups[statistics.WORSE]:
            sentences.append(
                f"It fell beyond noise {where} for "
                + "; ".join(map(describe, groups[statistics.WORSE]))
                + "."
            )
        if groups[statistics.NO_DETECTABLE_DIFFERENCE]:
            sentences.append(
                f"Not distinguishable from zero {where} (an interval includes zero): "
                + "; ".join(map(describe, groups[statistics.NO_DETECTABLE_DIFFERENCE]))
                + "."
            )
    sentences.append(
        "An arm counts as better or worse only when the interval over test images (seeds "
        "averaged) and, with two or more seeds, the interval over seeds both exclude zero."
    )
    if any(s["verdict"] != s["verdict_val"] for s in compared):
        sentences.append(
            "The two thresholds disagree for some arms: accuracy at 0.5 moves with the "
            "classifiers' calibration, which synthetic images change, while the validation "
            "threshold is chosen per classifier; the AUC column compares what they can separate "
            "at any threshold."
        )
    return " ".join(sentences)
