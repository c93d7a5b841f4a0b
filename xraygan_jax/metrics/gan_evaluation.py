"""FID, KID and precision/recall of a GAN run, per class, for every checkpoint or during training.

    evaluator = gan_evaluation.FIDEvaluator(config)          # config of the run
    metrics = evaluator.run(state, labels=[0, 1])             # {"NORMAL/fid": ..., ...}
    records = gan_evaluation.evaluate_run("runs/dcgan")       # eval.jsonl + plots/fid_vs_epoch.png

The real side of every comparison is one class of one split of the run's data set, its Inception
features cached once per data set, split, class and image size (`xraygan_jax.metrics.reference`).
Every record carries `num_real` and `num_fake`: FID is biased at small N (FACTS.md), so it is only
comparable between evaluations with the same counts; KID is unbiased and reported beside it.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import viz
from xraygan_jax.data import mixing, pipeline, sources
from xraygan_jax.metrics import fid, reference, weights
from xraygan_jax.train import gan_loop, generation, reporting

_REFERENCE_BATCH = 64


def reference_key(data_config, split: str, class_name: str) -> reference.ReferenceKey:
    """The cache key of one class of one split: the TFDS config name says how it was built."""
    return reference.ReferenceKey(
        dataset=data_config.source,
        split=split,
        class_name=class_name,
        image_size=int(data_config.image_size),
        fingerprint=sources.builder(data_config).builder_config.name,
    )


def _class_batches(source, label: int) -> Iterator[np.ndarray]:
    indices = pipeline.class_indices(source, label)
    for start in range(0, len(indices), _REFERENCE_BATCH):
        chunk = indices[start : start + _REFERENCE_BATCH]
        yield np.stack([np.asarray(source[int(i)]["image"]) for i in chunk])


class FIDEvaluator:
    """Compares generated images of each class with the real images of that class.

    Built from a run's config; `run(state)` returns flat metrics. The Inception network is compiled
    once and the real features computed once (then cached on disk), so calling `run` every few
    epochs costs only the generated images' features.

    Args:
      config: the run's config (`config.data` says what is real; `config.eval` how many images
        and which split).
      extractor: an `fid.InceptionFeatureExtractor`; default one from `config.eval.weights_path`.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        extractor: fid.InceptionFeatureExtractor | None = None,
    ):
        self.config = config
        self.class_names = sources.class_names(config.data)
        self.split = config.eval.reference_split
        self.num_images = int(config.eval.num_images_per_class)
        self._extractor = extractor
        self._references: dict[int, reference.Reference] = {}

    @property
    def extractor(self) -> fid.InceptionFeatureExtractor:
        if self._extractor is None:
            path = self.config.eval.weights_path or None
            self._extractor = fid.InceptionFeatureExtractor(weights.load_params(path))
        return self._extractor

    def reference(self, label: int) -> reference.Reference:
        """The real features of class `label` in the reference split (computed once)."""
        if label not in self._references:
            data = self.config.data
            source = sources.get_source(data, self.split)
            key = reference_key(data, self.split, self.class_names[label])
            self._references[label] = reference.load_or_compute(
                key, lambda: _class_batches(source, label), self.extractor
            )
        return self._references[label]

    def compare(self, label: int, images: np.ndarray) -> dict[str, float | int]:
        """FID, KID and precision/recall of `images` (uint8 or [-1, 1]) against class `label`."""
        return fid.evaluate(self.reference(label).features, self.extractor(images))

    def run(self, state, labels: Sequence[int], *, seed: int = 0) -> dict[str, float]:
        """Generates `num_images_per_class` images per label from `state` and compares them.

        Returns:
          {"<class>/fid": ..., "<class>/kid_mean": ..., "<class>/precision": ..., ...}.
        """
        results = {}
        for label in labels:
            images = np.concatenate(
                list(
                    generation.sample_images(
                        state,
                        label,
                        self.num_images,
                        nz=self.config.model.nz,
                        seed=seed,
                        use_ema=self.config.train.ema_decay > 0,
                    )
                )
            )
            metrics = self.compare(label, images)
            results.update({f"{self.class_names[label]}/{k}": v for k, v in metrics.items()})
        return results


def evaluate_run(
    workdir: str | os.PathLike,
    *,
    num_images_per_class: int | None = None,
    reference_split: str | None = None,
    weights_path: str | None = None,
    epochs: Sequence[int] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Evaluates every checkpoint of a run: one record per (epoch, class).

    Writes `workdir/eval.jsonl` (appending) and `workdir/plots/fid_vs_epoch.png`.

    Args:
      workdir: a training run directory.
      num_images_per_class: generated images per class (default: the run's config.eval).
      reference_split: the real split compared with (default: the run's config.eval).
      weights_path: FID Inception weights (default: the run's config, then the cache).
      epochs: which checkpoint epochs (default: all).
      seed: seed of the generated latents.

    Returns:
      The records written.
    """
    workdir = pathlib.Path(workdir)
    config = gan_loop.load_run_config(workdir)
    if num_images_per_class is not None:
        config.eval.num_images_per_class = num_images_per_class
    if reference_split is not None:
        config.eval.reference_split = reference_split
    if weights_path is not None:
        config.eval.weights_path = weights_path
    evaluator = FIDEvaluator(config)
    records = []
    for gan_name, label in gan_loop.gan_names(config):
        labels = [label] if label is not None else list(range(len(evaluator.class_names)))
        saved = generation.checkpoint_epochs(workdir, gan_name)
        if not saved:
            raise FileNotFoundError(
                f"no checkpoint in {workdir / 'checkpoints' / gan_name}; nothing to evaluate"
            )
        chosen = saved if epochs is None else [e for e in saved if e in set(epochs)]
        progress = reporting.Progress(
            len(chosen), len(labels) * evaluator.num_images, f"[eval {gan_name}]", every_steps=1
        )
        for done, epoch in enumerate(chosen, start=1):
            state, _ = generation.load_gan_state(workdir, gan_name, epoch)
            metrics = evaluator.run(state, labels, seed=seed)
            for class_label in labels:
                class_name = evaluator.class_names[class_label]
                prefix = f"{class_name}/"
                record = {
                    "gan": gan_name,
                    "epoch": epoch,
                    "class": class_name,
                    "split": evaluator.split,
                    **{k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)},
                }
                records.append(record)
            progress.update(done, _fid_line(metrics))
    _write_records(workdir / "eval.jsonl", records)
    plot_fid_by_epoch(records, workdir / "plots" / "fid_vs_epoch.png")
    return records


def evaluate_folder(
    images_dir: str | os.PathLike,
    config: ml_collections.ConfigDict,
    *,
    extractor: fid.InceptionFeatureExtractor | None = None,
) -> list[dict]:
    """Evaluates PNGs made by any tool, laid out `images_dir/<class>/*.png`, against real data.

    Args:
      images_dir: one folder per class name of `config.data` (classes without a folder are
        skipped).
      config: says what is real (`config.data`) and which split (`config.eval.reference_split`).
      extractor: an Inception feature extractor (default: from `config.eval.weights_path`).

    Returns:
      One record per class found.
    """
    evaluator = FIDEvaluator(config, extractor=extractor)
    present = [name for name in evaluator.class_names if (pathlib.Path(images_dir) / name).is_dir()]
    if not present:
        raise FileNotFoundError(
            f"{images_dir} has none of the class folders {', '.join(evaluator.class_names)}"
        )
    images = mixing.load_image_folder(images_dir, int(config.data.image_size), tuple(present))
    records = []
    for name in present:
        label = evaluator.class_names.index(name)
        selected = images.images[images.labels == present.index(name)]
        metrics = evaluator.compare(label, selected)
        records.append(
            {"images_dir": str(images_dir), "class": name, "split": evaluator.split, **metrics}
        )
    return records


def plot_fid_by_epoch(records: Sequence[dict], path: str | os.PathLike) -> str:
    """FID against epoch, one line per class (the first report's 20-epoch analysis)."""
    # FID depends on the sample counts (FACTS.md): they go into each line's label.
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in sorted(records, key=lambda r: r["epoch"]):
        label = f"{record['class']} (N real {record['num_real']}, generated {record['num_fake']})"
        epochs, values = series.setdefault(label, ([], []))
        epochs.append(record["epoch"])
        values.append(record["fid"])
    return viz.plot_metric_by_epoch(series, path, ylabel="FID", title="FID against epoch")


def _fid_line(metrics: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.1f}" for k, v in metrics.items() if k.endswith("/fid"))


def _write_records(path: pathlib.Path, records: Sequence[dict]) -> None:
    with open(path, "a", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
    logging.info("wrote %d evaluation records to %s", len(records), path)
