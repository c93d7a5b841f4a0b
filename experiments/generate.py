"""Writes generated PNGs per class from a run's latest (or a chosen) checkpoint.

    python -m experiments.generate --workdir=runs/dcgan --num_per_class=50 --out=runs/generated

Layout: OUT/<class>/<class>_00000.png, ... (what the augmentation study and evaluate_gan read).
"""

from absl import flags

from experiments import launch
from xraygan_jax import runs
from xraygan_jax.data import folders

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_NUM = flags.DEFINE_integer("num_per_class", 50, "Images to write per class.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/generated).")
_EPOCH = flags.DEFINE_integer("epoch", None, "Checkpoint epoch to use (default: the latest).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the latent vectors.")
_BATCH_STATS = flags.DEFINE_enum(
    "batch_stats",
    None,
    ["running", "batch"],
    "G's BatchNorm: running statistics, or each batch's own (default: the run's config.eval).",
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    launch.init_jax()
    run = runs.Run(_WORKDIR.value)
    images, epochs = run.generate_per_class(
        _NUM.value, epoch=_EPOCH.value, seed=_SEED.value, batch_stats=_BATCH_STATS.value
    )
    out = _OUT.value or str(run.generated_dir)
    counts = folders.write_image_folder(images, out)
    for class_name, count in counts.items():
        print(
            f"{class_name}: {count} images from checkpoint epoch {epochs[class_name]}"
            f" -> {out}/{class_name}"
        )


if __name__ == "__main__":
    launch.run(main)
