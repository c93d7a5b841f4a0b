"""GAN metrics of what is already on disk: every checkpoint of a run, or a folder of images.

    records = drivers.evaluate_run("runs/dcgan")          # eval.jsonl, the FID plot, summary.md
    records = drivers.evaluate_folder("DIR", config)       # DIR/<class>/*.png from any tool

Both build `gan_metrics.GANMetricsEvaluator` from a sampler, as the training loop does, so a
checkpoint scored here and during training gives the same numbers. What they write goes where
the run folder says (`runs.Run`), in the records' format (`evaluators.records`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from xraygan_jax import errors, runs, viz
from xraygan_jax.data import mixing, sources
from xraygan_jax.evaluators import gan_metrics, records
from xraygan_jax.metrics import fid
from xraygan_jax.train import reporting


def evaluate_run(
    workdir: str | os.PathLike,
    *,
    num_images_per_class: int | None = None,
    reference_split: str | None = None,
    resize: str | None = None,
    batch_stats: str | None = None,
    weights_path: str | None = None,
    epochs: Sequence[int] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Evaluates every checkpoint of a run: one record per (GAN, epoch, class).

    Writes `workdir/eval.jsonl` and `workdir/plots/fid_vs_epoch.png` (FID against epoch, with
    each class's floor), rewrites the evaluation part of `workdir/summary.md` when the run has
    one, and prints a warning per collapsed class and checkpoint (metrics.diversity's rule) to
    standard error. Arguments left None take the run's `config.eval` values.

    Returns:
      The records written.

    Raises:
      errors.ConfigError: an eval setting that cannot work (names the flag).
      errors.MissingError: a GAN without checkpoints, or none of `epochs` saved (names them).
    """
    run = runs.Run(workdir)
    config = run.load_config()
    overrides = {
        "num_images_per_class": num_images_per_class,
        "reference_split": reference_split,
        "resize": resize,
        "batch_stats": batch_stats,
        "weights_path": weights_path,
    }
    with config.unlocked():
        for key, value in overrides.items():
            if value is not None:
                config.eval[key] = value
    gan_metrics.check_eval_config(config)
    written = []
    for gan_name, label in run.gan_names():
        saved = run.checkpoint_epochs(gan_name)
        if not saved:
            raise errors.MissingError(
                f"no checkpoint in {run.checkpoint_dir(gan_name)}; nothing to evaluate"
            )
        chosen = saved if epochs is None else [e for e in saved if e in set(epochs)]
        if not chosen:
            raise errors.MissingError(
                f"none of --epochs {list(epochs)} is a saved epoch of {gan_name}; saved: {saved}"
            )
        labels = [label] if label is not None else None
        progress = reporting.Progress(
            len(chosen),
            1,
            f"[eval {gan_name}]",
            every_steps=1,
            unit="checkpoint",
            counted="checkpoints",
        )
        for done, epoch in enumerate(chosen, start=1):
            sample_fn, _ = run.sample_fn({gan_name: epoch}, batch_stats=config.eval.batch_stats)
            evaluator = gan_metrics.GANMetricsEvaluator(
                sample_fn, config=config, labels=labels, seed=seed
            )
            metrics = evaluator.run()
            written += evaluator.records(metrics, gan=gan_name, epoch=epoch)
            progress.update(done, _fid_line(metrics))
            records.emit_collapse_warnings(
                written[-len(evaluator.labels) :], prefix=f"[eval {gan_name}] "
            )
    records.write_records(run.eval_path, written)
    plot_fid_by_epoch(written, run.fid_plot_path)
    update_summary(run)
    return written


def evaluate_folder(
    images_dir: str | os.PathLike,
    config: ml_collections.ConfigDict,
    *,
    extractor: fid.InceptionFeatureExtractor | None = None,
    seed: int = 0,
) -> list[dict]:
    """Evaluates images made by any tool, laid out `images_dir/<class>/*.png`, against real data.

    Every class of `config.data` needs a folder of square grayscale images of
    `config.data.image_size`; the number of images is what the folder holds.

    Raises:
      FileNotFoundError / ValueError: a missing or extra class folder, or images of another
        size (the message names both), from the shared class-folder reader.
    """
    gan_metrics.check_eval_config(config)
    class_names = sources.class_names(config.data)
    size = int(config.data.image_size)
    images = mixing.load_image_folder(images_dir, size, class_names)
    by_label = {label: images.images[images.labels == label] for label in range(len(class_names))}
    evaluator = gan_metrics.GANMetricsEvaluator(
        lambda label, num, seed: by_label[label], config=config, seed=seed, extractor=extractor
    )
    metrics = evaluator.run()
    return evaluator.records(metrics, images_dir=str(images_dir))


def update_summary(run: runs.Run) -> None:
    """Rewrites the evaluation part of `run`'s summary.md from its eval.jsonl (no summary: no-op).

    A summary written before it had an evaluation part gets one at its end.
    """
    path = run.summary_path
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    section = "\n".join(records.summary_section(records.read_records(run.eval_path)))
    if records.SUMMARY_BEGIN in text and records.SUMMARY_END in text:
        before, rest = text.split(records.SUMMARY_BEGIN, 1)
        after = rest.split(records.SUMMARY_END, 1)[1]
        text = before + section + after
    elif section:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def plot_fid_by_epoch(evaluated: Sequence[dict], path: str | os.PathLike) -> str:
    """FID against epoch, one line per class, each with its real-vs-real floor (dashed)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    floors: dict[str, float] = {}
    for record in sorted(evaluated, key=lambda r: r["epoch"]):
        label = f"{record['class']} (N real {record['num_real']}, generated {record['num_fake']})"
        epochs, values = series.setdefault(label, ([], []))
        epochs.append(record["epoch"])
        values.append(record["fid"])
        floor = record.get("fid_floor")
        if floor is not None and np.isfinite(floor):
            floors[label] = floor
    return viz.plot_metric_by_epoch(
        series,
        path,
        ylabel="FID",
        title="FID against epoch (dashed: real-vs-real floor)",
        floors=floors,
    )


def _fid_line(metrics: dict[str, float]) -> str:
    shown = {
        "fid": ".1f",
        "fid_floor": ".1f",
        "recall": ".3f",
        "diversity": ".3f",
        "coarse_diversity": ".3f",
    }
    return " ".join(
        f"{k} {v:{shown[k.rsplit('/', 1)[-1]]}}"
        for k, v in metrics.items()
        if k.rsplit("/", 1)[-1] in shown
    )
