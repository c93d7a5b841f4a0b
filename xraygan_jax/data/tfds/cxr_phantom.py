"""TFDS builder for the embedded procedural set `cxr_phantom` (no download; generated here).

The config name encodes the image size, split sizes, difficulty and seed, plus a hash of every
`phantom.PhantomSpec` field, e.g. ``64px_n1000-100-300_difficulty0.5_seed0_1a2b3c4d5e``; record
``i`` of a split is ``phantom.generate(spec, split, i, i + 1)`` (written in order).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from xraygan_jax.data import phantom
from xraygan_jax.data.tfds import base

# Images rendered per `phantom.generate` call: vectorised, and a few MB at 128 px.
_CHUNK = 256


@dataclasses.dataclass(eq=False)
class CxrPhantomConfig(tfds.core.BuilderConfig):
    """A phantom set: the full generator spec (its ``image_size`` is the set's)."""

    spec: phantom.PhantomSpec = dataclasses.field(default_factory=phantom.PhantomSpec)

    @property
    def image_size(self) -> int:
        return self.spec.image_size


def make_config(spec: phantom.PhantomSpec) -> CxrPhantomConfig:
    """The config for one phantom spec, named so that distinct specs never share built data.

    Args:
      spec: what to generate.

    Returns:
      A `CxrPhantomConfig` with a name like ``64px_n1000-100-300_difficulty0.5_seed0_<hash>``.
    """
    name = (
        f"{spec.image_size}px_n{spec.num_train}-{spec.num_val}-{spec.num_test}"
        f"_difficulty{base.number(spec.difficulty)}_seed{spec.seed}"
        f"_{base.short_hash(dataclasses.asdict(spec))}"
    )
    return CxrPhantomConfig(name=name, spec=spec, description=repr(spec))


class CxrPhantom(base.Builder):
    """Procedural chest radiographs, NORMAL and PNEUMONIA (see `xraygan_jax.data.phantom`)."""

    name = "cxr_phantom"
    BUILDER_CONFIGS = [make_config(phantom.PhantomSpec())]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self._require_config()
        return self._make_info(
            description=(
                "Procedural PA chest radiographs from xraygan_jax.data.phantom; PNEUMONIA images "
                "carry one to three lung consolidations. "
                f"{config.spec!r}"
            ),
            image_size=config.image_size,
            class_names=phantom.CLASS_NAMES,
        )

    def _make_split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        spec = self.builder_config.spec
        # TFDS cannot write an empty split; a split of size 0 is left out.
        return {
            split: self._generate_examples(split)
            for split in phantom.SPLITS
            if spec.num_examples(split) > 0
        }

    def _generate_examples(self, split: str):
        spec = self.builder_config.spec
        total = spec.num_examples(split)
        counts = np.zeros(len(phantom.CLASS_NAMES), np.int64)
        for start in range(0, total, _CHUNK):
            stop = min(start + _CHUNK, total)
            images, labels = phantom.generate(spec, split, start, stop)
            counts += np.bincount(labels, minlength=len(counts))
            for offset in range(stop - start):
                yield start + offset, {"image": images[offset], "label": int(labels[offset])}
        self._record_split(split, counts)
