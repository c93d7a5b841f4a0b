"""One entry point from a data config to a random-access source of records.

``data_config`` is the ``config.data`` section of every job (experiments/configs/common.py):

- ``source``: ``cxr_phantom`` (generated), ``kermany`` (chest_xray/{train,val,test}/{NORMAL,
  PNEUMONIA}) or ``folder`` (one folder per class, split by seed);
- ``dir``: the raw images for kermany / folder; ``class_names``: the class folders for folder;
- ``image_size``; ``data_dir`` (where built sets live); ``test_fraction``, ``val_fraction``,
  ``split_seed`` (folder only); ``phantom.*`` (cxr_phantom only).

`prepare` builds the matching TFDS set once (array_record, no TensorFlow, no Beam) and reports
counts per split and class, skipped files and time; `get_source` returns
``builder.as_data_source(split)``, whose records are ``{"image": uint8 [S, S, 1], "label": int}``.
Each distinct set of parameters gets its own TFDS config name (see xraygan_jax.data.tfds), so a
changed config never reads stale data. A folder set also remembers how many files and bytes it
was built from; if the folder changed since, `prepare` stops and says how to rebuild.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from xraygan_jax.data import folders, mixing, phantom
from xraygan_jax.data.tfds import base, class_folders, cxr_phantom, kermany

SOURCES = ("cxr_phantom", "kermany", "folder")
_SPLIT_ORDER = ("train", "val", "test")
_FILE_FORMAT = "array_record"


@dataclasses.dataclass(frozen=True)
class PrepareReport:
    """What `prepare` found or built.

    Attributes:
      source: the data config's source name.
      dataset_dir: the built set's directory (``data_dir/name/config/version``).
      class_names: label ``i`` is ``class_names[i]``.
      counts: ``{split: {class name: number of records}}``, splits in train/val/test order.
      skipped: files left out, with the reason (empty for cxr_phantom).
      seconds: time this call took (building, or only checking an existing set).
      built: True if this call built the set, False if it was already there.
    """

    source: str
    dataset_dir: str
    class_names: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    skipped: tuple[folders.SkippedFile, ...]
    seconds: float
    built: bool

    def format(self) -> str:
        """A plain-text table of counts per split and class, the skipped files and the time."""
        header = ["split", *self.class_names, "total"]
        rows = [header]
        for split, per_class in self.counts.items():
            values = [per_class.get(name, 0) for name in self.class_names]
            rows.append([split, *map(str, values), str(sum(values))])
        totals = [sum(c.get(name, 0) for c in self.counts.values()) for name in self.class_names]
        rows.append(["total", *map(str, totals), str(sum(totals))])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            f"{self.source}: {self.dataset_dir}",
            *(
                "  ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
                for row in rows
            ),
            f"skipped files: {len(self.skipped)}",
            *(f"  {item.path}: {item.reason}" for item in self.skipped),
            f"{'built' if self.built else 'already built, checked'} in {self.seconds:.2f} s",
        ]
        return "\n".join(lines)


def _source(data_config) -> str:
    source = data_config.source
    if source not in SOURCES:
        raise ValueError(
            f"Unknown data source {source!r} (config.data.source); expected one of "
            f"{', '.join(SOURCES)}."
        )
    return source


def _source_dir(data_config) -> str:
    directory = data_config.dir
    if not directory:
        raise ValueError(
            f"config.data.source={data_config.source} reads images from a folder: set "
            "--config.data.dir to it (for kermany the folder holding chest_xray, or chest_xray)."
        )
    return os.path.expanduser(os.fspath(directory))


def class_names(data_config) -> tuple[str, ...]:
    """The class names of the configured set; label ``i`` is ``class_names[i]``.

    Args:
      data_config: the ``config.data`` ConfigDict.

    Returns:
      ``("NORMAL", "PNEUMONIA")`` for cxr_phantom and kermany; ``data_config.class_names`` for
      folder, where a comma-separated entry (``--config.data.class_names=COVID,NORMAL``) is split.

    Raises:
      ValueError: unknown source, or folder class names empty or repeated.
    """
    source = _source(data_config)
    if source == "cxr_phantom":
        return tuple(phantom.CLASS_NAMES)
    if source == "kermany":
        return folders.KERMANY_CLASS_NAMES
    given = data_config.class_names
    given = (given,) if isinstance(given, str) else tuple(given)
    names = tuple(part.strip() for entry in given for part in str(entry).split(",") if part.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(
            f"config.data.class_names={given!r} must name distinct class folders, e.g. "
            "--config.data.class_names=COVID,NORMAL."
        )
    return names


def data_dir(data_config) -> str:
    """Where built TFDS sets live.

    Args:
      data_config: the ``config.data`` ConfigDict.

    Returns:
      ``data_config.data_dir`` if set, else ``$XRAYGAN_CACHE/tensorflow_datasets`` with
      ``XRAYGAN_CACHE`` defaulting to ``~/.cache/xraygan_jax``; user-expanded.
    """
    if data_config.data_dir:
        return os.path.expanduser(os.fspath(data_config.data_dir))
    cache = os.environ.get("XRAYGAN_CACHE") or os.path.join("~", ".cache", "xraygan_jax")
    return os.path.join(os.path.expanduser(cache), "tensorflow_datasets")


def phantom_spec(data_config) -> phantom.PhantomSpec:
    """The `phantom.PhantomSpec` of a cxr_phantom data config (image size and ``phantom.*``)."""
    settings = data_config.phantom
    return phantom.PhantomSpec(
        image_size=int(data_config.image_size),
        difficulty=float(settings.difficulty),
        seed=int(settings.seed),
        num_train=int(settings.num_train),
        num_val=int(settings.num_val),
        num_test=int(settings.num_test),
    )


def builder(data_config) -> tfds.core.DatasetBuilder:
    """The TFDS builder of the configured set (built or not), in `data_dir(data_config)`.

    Args:
      data_config: the ``config.data`` ConfigDict.

    Returns:
      A `CxrPhantom`, `Kermany` or `ClassFolders` builder with the config for these parameters.

    Raises:
      ValueError: unknown source, missing ``dir`` for a folder source, bad parameters.
    """
    source = _source(data_config)
    image_size = int(data_config.image_size)
    if image_size < 1:
        raise ValueError(f"config.data.image_size must be positive, got {image_size}.")
    if source == "cxr_phantom":
        builder_cls = cxr_phantom.CxrPhantom
        config = cxr_phantom.make_config(phantom_spec(data_config))
    elif source == "kermany":
        builder_cls = kermany.Kermany
        config = kermany.make_config(image_size, _source_dir(data_config))
    else:
        builder_cls = class_folders.ClassFolders
        config = class_folders.make_config(
            image_size,
            _source_dir(data_config),
            class_names(data_config),
            test_fraction=float(data_config.test_fraction),
            val_fraction=float(data_config.val_fraction),
            split_seed=int(data_config.split_seed),
        )
    # TFDS refuses a config object named like one the class declares (the default phantom spec):
    # that one is asked for by name.
    if config.name in builder_cls.builder_configs:
        config = config.name
    with base.quiet_tfds():
        return builder_cls(data_dir=data_dir(data_config), config=config, file_format=_FILE_FORMAT)


def _scan_fingerprint(source: str, data_config) -> dict[str, int]:
    directory = _source_dir(data_config)
    if source == "kermany":
        splits, _ = folders.scan_kermany(directory)
        paths = [path for items in splits.values() for path, _ in items]
    else:
        items, _ = folders.scan_class_folders(directory, class_names(data_config))
        paths = [path for path, _ in items]
    return folders.fingerprint(paths)


def _check_unchanged(source: str, data_config, dataset: tfds.core.DatasetBuilder) -> None:
    """Stops when the source folder no longer matches what the built set was made from."""
    if source == "cxr_phantom":
        return
    if not os.path.isdir(_source_dir(data_config)):
        logging.warning(
            "Source folder %s is gone; using the set built from it in %s.",
            data_config.dir,
            dataset.data_dir,
        )
        return
    built_from = dict(dataset.info.metadata.get("fingerprint", {}))
    now = _scan_fingerprint(source, data_config)
    if built_from and built_from != now:
        raise ValueError(
            f"The images in {data_config.dir} changed since {dataset.data_dir} was built from "
            f"them ({built_from['num_files']} files, {built_from['num_bytes']} bytes then; "
            f"{now['num_files']} files, {now['num_bytes']} bytes now). Rebuild it with "
            "`python -m experiments.prepare_data --rebuild` (sources.prepare(..., rebuild=True))."
        )


def _report(
    source: str, dataset: tfds.core.DatasetBuilder, seconds: float, built: bool
) -> PrepareReport:
    metadata = dataset.info.metadata
    counts = dict(metadata.get("counts", {}))
    ordered = {split: dict(counts[split]) for split in _SPLIT_ORDER if split in counts}
    return PrepareReport(
        source=source,
        dataset_dir=os.fspath(dataset.data_dir),
        class_names=tuple(dataset.info.features["label"].names),
        counts=ordered,
        skipped=tuple(folders.SkippedFile(*item) for item in metadata.get("skipped", [])),
        seconds=seconds,
        built=built,
    )


def prepare(data_config, *, rebuild: bool = False) -> PrepareReport:
    """Builds the configured TFDS set unless it is already built, and reports on it.

    Args:
      data_config: the ``config.data`` ConfigDict.
      rebuild: build again even if a set with this config exists (e.g. after the source folder
        changed).

    Returns:
      A `PrepareReport`: counts per split and class, skipped files with reasons, seconds.

    Raises:
      ValueError: unknown source; a bad folder layout, an empty class, or a changed source folder
        (each message names the folder and what to do).
      FileNotFoundError: the source folder does not exist.
    """
    start = time.monotonic()
    source = _source(data_config)
    with base.quiet_tfds():
        return _prepare(source, data_config, rebuild, start)


def _prepare(source: str, data_config, rebuild: bool, start: float) -> PrepareReport:
    dataset = builder(data_config)
    if dataset.is_prepared() and not rebuild:
        _check_unchanged(source, data_config, dataset)
        return _report(source, dataset, time.monotonic() - start, built=False)
    download_config = tfds.download.DownloadConfig(
        try_download_gcs=False,
        download_mode=(
            tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
            if rebuild
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
        ),
    )
    if source != "cxr_phantom":
        directory = _source_dir(data_config)
        # Clear errors (missing folder, wrong layout, empty class) before TFDS's own.
        _scan_fingerprint(source, data_config)
        download_config.manual_dir = directory
    logging.info("Preparing %s in %s.", source, dataset.data_dir)
    # The file format was fixed when the builder was made.
    dataset.download_and_prepare(download_config=download_config)
    report = _report(source, dataset, time.monotonic() - start, built=True)
    logging.info("Prepared %s in %.1f s.", report.dataset_dir, report.seconds)
    return report


def get_source(data_config, split: str):
    """A random-access source of one split, building the set first if needed.

    Args:
      data_config: the ``config.data`` ConfigDict.
      split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
      ``builder.as_data_source(split=split)``: ``len(source)`` and ``source[i]`` ->
      ``{"image": uint8 [S, S, 1], "label": int}``; picklable, usable by grain. With
      ``train_images_per_class`` > 0 the train split is a seeded subset of that many images of
      every class (``split_seed``), held in memory: the small-data setting (docs/small_data.md).

    Raises:
      ValueError: unknown source, a split the set does not have (the message lists its splits),
        or a class with fewer images than ``train_images_per_class``.
    """
    # Cheap when the set exists (a folder set is re-scanned to catch changed files).
    prepare(data_config)
    with base.quiet_tfds():
        dataset = builder(data_config)
    available = [s for s in _SPLIT_ORDER if s in dataset.info.splits]
    if split not in available:
        hint = ""
        if split == "val" and data_config.source == "folder":
            hint = " Set --config.data.val_fraction > 0 to make a val split."
        raise ValueError(
            f"The {data_config.source} set has no {split!r} split; it has "
            f"{', '.join(available)}.{hint}"
        )
    with base.quiet_tfds():
        source = dataset.as_data_source(split=split)
    per_class = int(data_config.get("train_images_per_class", 0))
    if split == "train" and per_class > 0:
        try:
            return mixing.subsample_per_class(
                source, seed=data_config.split_seed, num_per_class=per_class
            )
        except ValueError as error:
            raise ValueError(
                f"--config.data.train_images_per_class={per_class}: {error}"
            ) from error
    return source


def sample_per_class(
    source, num_classes: int, num_per_class: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``num_per_class`` records of each class, drawn at random (e.g. for a preview).

    Records are visited in a seeded random order until every class has enough, so a large set is
    not read whole unless a class is rare.

    Args:
      source: a random-access source of ``{"image", "label"}`` records.
      num_classes: number of classes.
      num_per_class: records wanted per class.
      seed: the order seed.

    Returns:
      ``(images, labels)``: uint8 ``[n, S, S, 1]`` grouped by class, and int64 ``[n]``.
    """
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be positive, got {num_per_class}.")
    chosen: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    for index in np.random.default_rng(seed).permutation(len(source)):
        record = source[int(index)]
        label = int(record["label"])
        if len(chosen[label]) < num_per_class:
            chosen[label].append(np.asarray(record["image"]))
            if all(len(images) == num_per_class for images in chosen):
                break
    images = [image for per_class in chosen for image in per_class]
    labels = [label for label, per_class in enumerate(chosen) for _ in per_class]
    if not images:
        raise ValueError(f"The source {source!r} is empty.")
    return np.stack(images), np.asarray(labels, np.int64)
