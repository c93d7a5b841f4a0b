"""What the three TFDS builders share: features, config names, per-class counts, file decoding.

Features are TensorFlow-free (docs/design_notes.md, section "TensorFlow Datasets without
TensorFlow"): the image is a ``tfds.features.Tensor`` of uint8 ``[S, S, 1]`` stored
zlib-compressed, the label a ``ClassLabel``. Sets are written in the order they are generated
(``disable_shuffling=True``), so record ``i`` of a phantom split is phantom image ``i`` and a build
is reproducible; grain shuffles at read time.

Each built set keeps in ``builder.info.metadata`` (``metadata.json`` next to the records):
``counts`` ({split: {class name: n}}), ``skipped`` ([[path, reason], ...]), ``build_seconds``, and
for folder sets ``source_dir`` and ``fingerprint`` (number of files and bytes scanned), which
`xraygan_jax.data.sources` compares with the folder to stop on a changed source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging as std_logging
import os
import time
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from tensorflow_datasets.core.utils import tqdm_utils

from xraygan_jax.data import folders

# Bump when the records a config produces change (preprocessing, phantom rendering): a new version
# is built next to the old one instead of reusing it.
VERSION = tfds.core.Version("1.0.0")
RELEASE_NOTES = {"1.0.0": "Initial release: uint8 [S, S, 1] images and class labels."}


def features(image_size: int, class_names: Sequence[str]) -> tfds.features.FeaturesDict:
    """The record format of every set: ``{"image": uint8 [S, S, 1], "label": class index}``."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(
                shape=(image_size, image_size, 1), dtype=np.uint8, encoding="zlib"
            ),
            "label": tfds.features.ClassLabel(names=list(class_names)),
        }
    )


def short_hash(value) -> str:
    """A 10-hex-digit digest of a JSON-able value, for config names."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def number(value: float) -> str:
    """A float as a short, directory-safe token: 0.2 -> '0.2', 1e-05 -> '1e-05'."""
    return f"{float(value):g}"


class _DropTfdsChatter(std_logging.Filter):
    """Drops TFDS's info and warning lines (config notices, 'Generating dataset ...')."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        from_tfds = f"{os.sep}tensorflow_datasets{os.sep}" in record.pathname
        return not (from_tfds and record.levelno < std_logging.ERROR)


class _DropOwnCustomConfigNotice(std_logging.Filter):
    """Drops TFDS's 'Using custom data configuration' warning for this package's configs.

    Every set here uses a config made from a data config (its parameters are in its name), and
    TFDS repeats the notice whenever a builder is made, including when a data source is unpickled
    in each grain worker. Other datasets' notices pass.
    """

    def filter(self, record: std_logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Using custom data configuration"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(type(arg).__module__.startswith(__package__) for arg in args)


std_logging.getLogger("absl").addFilter(_DropOwnCustomConfigNotice())


@contextlib.contextmanager
def quiet_tfds() -> Iterator[None]:
    """Silences TFDS's progress bars and info/warning logs inside the block, then restores them.

    Our builders log their own progress (with an ETA) through absl; TFDS's tqdm bars and its
    'Using custom data configuration' notice (every set here uses one) only add noise.
    """
    was_active = getattr(tqdm_utils, "_active", True)
    chatter = _DropTfdsChatter()
    absl_logger = std_logging.getLogger("absl")
    tfds.display_progress_bar(False)
    absl_logger.addFilter(chatter)
    try:
        yield
    finally:
        absl_logger.removeFilter(chatter)
        tfds.display_progress_bar(was_active)


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the xraygan_jax builders: quiet logs, per-class counts and skipped files kept."""

    VERSION = VERSION
    RELEASE_NOTES = RELEASE_NOTES

    def _log_download_bytes(self) -> None:
        # TFDS prints this to stdout; a library should log it.
        logging.info("Building %s into %s.", self.name, self.data_dir)

    def _log_download_done(self) -> None:
        logging.info("Built %s in %s.", self.name, self.data_dir)

    def _make_info(
        self, *, description: str, image_size: int, class_names: Sequence[str], **kwargs
    ) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=description,
            features=features(image_size, class_names),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(counts={}, skipped=[]),
            **kwargs,
        )

    def _require_config(self):
        if self.builder_config is None:
            raise ValueError(
                f"The {self.name} builder needs a config: build it with "
                f"config={type(self).__module__}.make_config(...), or use "
                "xraygan_jax.data.sources.prepare(data_config)."
            )
        return self.builder_config

    def _split_generators(self, dl_manager):
        self._build_start = time.monotonic()
        # A rebuild starts from the old set's metadata (the property loads it): start afresh.
        metadata = self.info.metadata
        metadata.clear()
        metadata.update(counts={}, skipped=[])
        return self._make_split_generators(dl_manager)

    def _make_split_generators(self, dl_manager) -> dict[str, Iterator]:
        raise NotImplementedError

    def _record_split(self, split: str, counts: Sequence[int]) -> None:
        names = self.info.features["label"].names
        self.info.metadata["counts"][split] = {
            name: int(count) for name, count in zip(names, counts, strict=True)
        }
        self.info.metadata["build_seconds"] = round(time.monotonic() - self._build_start, 3)

    def _add_skipped(self, skipped: Sequence[folders.SkippedFile]) -> None:
        self.info.metadata["skipped"].extend([s.path, s.reason] for s in skipped)

    def _generate_from_files(
        self, split: str, items: Sequence[tuple[str, int]], class_dirs: Sequence[str], root: str
    ) -> Iterator[tuple[str, dict]]:
        """Decodes ``(path, label)`` items on a thread pool and yields TFDS examples.

        Files that do not decode are skipped and recorded; a class whose every file in this split
        failed is an error naming its folder. Keys are paths relative to ``root`` (unique).
        """
        image_size = self.builder_config.image_size
        names = self.info.features["label"].names
        counts = [0] * len(names)
        tried = [0] * len(names)
        failures: dict[int, list[folders.SkippedFile]] = {}
        decoded = folders.decode_images([path for path, _ in items], image_size)
        for (path, label), result in zip(items, decoded, strict=True):
            tried[label] += 1
            if result.image is None:
                skipped = folders.SkippedFile(path, f"cannot decode: {result.error}")
                failures.setdefault(label, []).append(skipped)
                self._add_skipped([skipped])
                logging.warning("Skipping %s: %s", path, result.error)
                continue
            counts[label] += 1
            yield os.path.relpath(path, root), {"image": result.image, "label": label}
        for label, name in enumerate(names):
            if tried[label] and not counts[label]:
                reasons = "; ".join(f"{s.path}: {s.reason}" for s in failures[label][:3])
                raise ValueError(
                    f"No image of class {name} in the {split} split could be decoded: all "
                    f"{tried[label]} files in {class_dirs[label]!r} failed ({reasons}). Replace "
                    "the corrupt files or remove the class."
                )
        self._record_split(split, counts)
