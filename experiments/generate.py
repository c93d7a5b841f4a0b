"""Writes generated PNGs per class from a run's latest (or a chosen) checkpoint.

    python -m experiments.generate --workdir=runs/dcgan --num_per_class=50 --out=runs/generated

Layout: OUT/<class>/<class>_00000.png, ... (what the augmentation study reads back).
"""

from absl import flags, logging

from experiments import launch
from xraygan_jax.train import generation

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_NUM = flags.DEFINE_integer("num_per_class", 50, "Images to write per class.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/generated).")
_EPOCH = flags.DEFINE_integer("epoch", None, "Checkpoint epoch to use (default: the latest).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latent vectors.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    launch.init_jax()
    images, epochs = generation.generate_per_class(
        _WORKDIR.value, _NUM.value, epoch=_EPOCH.value, seed=_SEED.value
    )
    out = _OUT.value or f"{_WORKDIR.value}/generated"
    counts = generation.write_image_folder(images, out)
    for class_name, count in counts.items():
        logging.info("%s: %d images from epoch %d", class_name, count, epochs[class_name])
        print(
            f"{class_name}: {count} images from checkpoint epoch {epochs[class_name]}"
            f" -> {out}/{class_name}"
        )


if __name__ == "__main__":
    launch.run(main)
