"""TFDS builder for the Kermany pediatric pneumonia set, from its folder layout (manual download).

The images are read from ``manual_dir``: ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`` (or the
folder that holds ``chest_xray``; see `xraygan_jax.data.folders` for the nested duplicate,
``__MACOSX`` and ``.DS_Store`` handling), decoded and preprocessed once. The config name encodes the
image size and a hash of the resolved source path, e.g. ``128px_1a2b3c4d5e``.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from xraygan_jax.data import folders
from xraygan_jax.data.tfds import base


@dataclasses.dataclass(eq=False)
class KermanyConfig(tfds.core.BuilderConfig):
    """A Kermany set: its image size and where its images came from."""

    image_size: int = 128
    source_dir: str = ""


def make_config(image_size: int, source_dir: str) -> KermanyConfig:
    """The config for one image size and source folder.

    Args:
      image_size: side of the square images.
      source_dir: the folder given by the user (``chest_xray`` or its parent).

    Returns:
      A `KermanyConfig` named ``{image_size}px_{hash of the real path}``.
    """
    source_dir = os.path.realpath(os.path.expanduser(source_dir))
    name = f"{image_size}px_{base.short_hash([source_dir, folders.KERMANY_CLASS_NAMES])}"
    return KermanyConfig(
        name=name, image_size=image_size, source_dir=source_dir, description=source_dir
    )


class Kermany(base.Builder):
    """Chest X-Ray Images (Pneumonia), Kermany et al. 2018, CC BY 4.0."""

    name = "kermany"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download "Chest X-Ray Images (Pneumonia)" (Kermany et al. 2018, CC BY 4.0; Kaggle
    paultimothymooney/chest-xray-pneumonia or Mendeley Data rscbjbr9sj), unpack it, and pass the
    folder holding chest_xray/{train,val,test}/{NORMAL,PNEUMONIA} (or chest_xray itself) as
    manual_dir (--config.data.dir=... in the launchers).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        config = self._require_config()
        return self._make_info(
            description=(
                "Pediatric chest radiographs (Guangzhou Women and Children's Medical Center), "
                "grayscale, centre-cropped to a square and resized with Pillow's bicubic filter."
            ),
            image_size=config.image_size,
            class_names=folders.KERMANY_CLASS_NAMES,
            homepage="https://data.mendeley.com/datasets/rscbjbr9sj/2",
            citation=(
                "Kermany D. S. et al., Identifying Medical Diagnoses and Treatable Diseases by "
                "Image-Based Deep Learning, Cell 172(5), 2018."
            ),
            license="CC BY 4.0",
        )

    def _make_split_generators(self, dl_manager):
        root = folders.resolve_kermany_root(os.fspath(dl_manager.manual_dir))
        splits, skipped = folders.scan_kermany(root)
        self._add_skipped(skipped)
        paths = [path for items in splits.values() for path, _ in items]
        self.info.metadata["source_dir"] = root
        self.info.metadata["fingerprint"] = folders.fingerprint(paths)
        return {
            split: self._generate_examples(
                split,
                items,
                [os.path.join(root, split, name) for name in folders.KERMANY_CLASS_NAMES],
                root,
            )
            for split, items in splits.items()
        }

    def _generate_examples(self, split, items, class_dirs, root):
        return self._generate_from_files(split, items, class_dirs, root)
