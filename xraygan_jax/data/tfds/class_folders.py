"""TFDS builder for any one-folder-per-class set (the COVID set of the second report).

``manual_dir`` holds one folder per class; label ``i`` is ``class_names[i]``. The set has no splits
of its own: `xraygan_jax.data.folders.stratified_split` makes them, seeded and stratified
(80:20 train:test by default, as the second report; an optional val share). The config name
encodes the image size, split fractions and seed, and a hash of the resolved source path and the
class names, e.g. ``128px_test0.2_val0_seed0_1a2b3c4d5e``.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds
from absl import logging

from xraygan_jax.data import folders
from xraygan_jax.data.tfds import base


@dataclasses.dataclass(eq=False)
class ClassFoldersConfig(tfds.core.BuilderConfig):
    """A class-folder set: image size, classes, split fractions and seed, source folder."""

    image_size: int = 128
    class_names: tuple[str, ...] = ()
    test_fraction: float = 0.2
    val_fraction: float = 0.0
    split_seed: int = 0
    source_dir: str = ""


def make_config(
    image_size: int,
    source_dir: str,
    class_names: tuple[str, ...],
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
) -> ClassFoldersConfig:
    """The config for one class-folder set.

    Args:
      image_size: side of the square images.
      source_dir: the folder holding one folder per class.
      class_names: the class folder names, label order.
      test_fraction, val_fraction: shares of each class for test and val.
      split_seed: the split seed.

    Returns:
      A `ClassFoldersConfig` whose name differs for any difference in these arguments.
    """
    source_dir = os.path.realpath(os.path.expanduser(source_dir))
    class_names = tuple(class_names)
    name = (
        f"{image_size}px_test{base.number(test_fraction)}_val{base.number(val_fraction)}"
        f"_seed{split_seed}_{base.short_hash([source_dir, class_names])}"
    )
    return ClassFoldersConfig(
        name=name,
        image_size=image_size,
        class_names=class_names,
        test_fraction=float(test_fraction),
        val_fraction=float(val_fraction),
        split_seed=int(split_seed),
        source_dir=source_dir,
        description=f"{source_dir} classes {', '.join(class_names)}",
    )


class ClassFolders(base.Builder):
    """Chest radiographs in one folder per class, split by seed."""

    name = "class_folders"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the images in one folder per class (e.g. COVID/ and NORMAL/) under one directory and pass
    it as manual_dir (--config.data.dir=... in the launchers), with the class folder names as
    --config.data.class_names=COVID,NORMAL.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        config = self._require_config()
        return self._make_info(
            description=(
                f"Chest radiographs of classes {', '.join(config.class_names)}, grayscale, "
                "centre-cropped to a square and resized with Pillow's bicubic filter; split "
                f"test={config.test_fraction}, val={config.val_fraction}, seed={config.split_seed}."
            ),
            image_size=config.image_size,
            class_names=config.class_names,
        )

    def _make_split_generators(self, dl_manager):
        config = self.builder_config
        root = os.fspath(dl_manager.manual_dir)
        items, skipped = folders.scan_class_folders(root, config.class_names)
        self._add_skipped(skipped)
        self.info.metadata["source_dir"] = root
        self.info.metadata["fingerprint"] = folders.fingerprint([path for path, _ in items])
        splits = folders.stratified_split(
            items, config.test_fraction, config.val_fraction, config.split_seed
        )
        class_dirs = [os.path.join(root, name) for name in config.class_names]
        generators = {}
        for split, split_items in splits.items():
            if not split_items:
                # TFDS cannot write an empty split (a fraction too small for every class).
                logging.warning("The %s split of %s is empty; it is left out.", split, root)
                continue
            generators[split] = self._generate_examples(split, split_items, class_dirs, root)
        return generators

    def _generate_examples(self, split, items, class_dirs, root):
        return self._generate_from_files(split, items, class_dirs, root)
