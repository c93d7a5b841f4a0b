"""Do synthetic images help? Classifiers on 0/10/20/100% synthetic, several seeds, statistics.

    python -m experiments.augmentation_study --config=experiments/configs/study.py \\
        --gan_workdir=runs/dcgan --workdir=runs/study
    python -m experiments.augmentation_study --images_dir=runs/dcgan/generated \\
        --workdir=runs/study_folder --config.study.real_per_class=25,50,100,0

This file is intentionally kept short: the study is xraygan_jax.study.run_study.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax import study

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "experiments/configs/study.py",
    "Study config (a get_config() file).",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "The study's folder (resumed when it exists).")
_GAN_WORKDIR = flags.DEFINE_string(
    "gan_workdir", None, "A GAN run that makes the synthetic images."
)
_IMAGES_DIR = flags.DEFINE_string("images_dir", None, "Or a folder DIR/<class>/*.png of them.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    launch.init_jax()
    study.run_study(
        _CONFIG.value,
        _WORKDIR.value,
        gan_workdir=_GAN_WORKDIR.value,
        images_dir=_IMAGES_DIR.value,
    )
    print(f"{_WORKDIR.value}/study.md")


if __name__ == "__main__":
    launch.run(main, default_config="experiments/configs/study.py")
