"""The images of an augmentation study: the real splits, the oracle arms' new real images and
the synthetic ones.

    data = images.load_data(config, gan_workdir="runs/dcgan")       # a StudyData

The real train split gives up a stratified, seeded validation share (it chooses each
classifier's weights and threshold) and, on a real data set with an oracle arm, a held-out pool
that no arm trains on (the oracle's new real images; the phantom set generates fresh ones
instead). The test split is scored once per classifier. Synthetic images are sampled from a GAN
run's checkpoint, or read from a folder DIR/<class>/*.png, as many as the largest arm needs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import errors, runs
from xraygan_jax.data import mixing, phantom, pipeline, sources
from xraygan_jax.study import arms

# Salts of the two seeded draws from the train split (validation share, oracle pool).
_VAL_SALT = 0x5A1
_ORACLE_SALT = 0x0AC


def oracle_needed(config: ml_collections.ConfigDict) -> bool:
    """Whether the study has an oracle arm (a control fraction strictly between 0 and 1)."""
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
                f"split) but the {arms.arm_name(max(controlled))} oracle arm needs {count}: raise "
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
    if oracle_needed(config) and config.data.source != "cxr_phantom":
        real_train, pool = _hold_out_oracle_pool(
            real_train,
            float(config.study.oracle_fraction),
            int(config.study.split_seed),
            class_names,
        )
    train, val = _carve_validation(
        real_train, float(config.study.val_fraction), int(config.study.split_seed)
    )
    oracle = _oracle_images(config, train, pool, class_names) if oracle_needed(config) else None
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
