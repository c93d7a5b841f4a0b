"""Writes one PNG grid per class of the configured data set, to look at before training.

    python -m experiments.preview_data --out=previews/          # phantom, train split
    python -m experiments.preview_data --config.data.source=kermany \
        --config.data.dir=/data/chest_xray --split=test --num_per_class=36 --out=kermany_test.png

--out is a folder (files named {source}_{split}_{class}.png) or a .png path (its stem gets
_{class} appended). Prints the paths written. Builds the set first if needed (see prepare_data).
"""

import os

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax import viz
from xraygan_jax.data import sources

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/dcgan.py", "Job config (a get_config() file).", lock_config=True
)
_OUT = flags.DEFINE_string("out", "data_preview", "Folder, or a .png path, for the grids.")
_SPLIT = flags.DEFINE_string("split", "train", "Split to preview: train, val or test.")
_NUM_PER_CLASS = flags.DEFINE_integer("num_per_class", 16, "Images per class grid.")
_SEED = flags.DEFINE_integer("seed", 0, "Which images are drawn.")


def main(argv):
    del argv
    launch.quiet_library_logs()
    data = _CONFIG.value.data
    class_names = sources.class_names(data)
    source = sources.get_source(data, _SPLIT.value)
    images, labels = sources.sample_per_class(
        source, len(class_names), _NUM_PER_CLASS.value, seed=_SEED.value
    )
    if _OUT.value.lower().endswith(".png"):
        directory, prefix = os.path.dirname(_OUT.value) or ".", _OUT.value[:-4] + "_"
        prefix = os.path.basename(prefix)
    else:
        directory, prefix = _OUT.value, f"{data.source}_{_SPLIT.value}_"
    paths = viz.save_class_grids(
        images,
        labels,
        class_names,
        directory,
        prefix=prefix,
        title=f"{data.source} {_SPLIT.value}, {data.image_size} px:",
    )
    for path in paths.values():
        print(path)


if __name__ == "__main__":
    launch.run(main)
