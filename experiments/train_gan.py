"""Trains the conditional GAN(s) of a config; resumes from the workdir's latest checkpoint.

    python -m experiments.train_gan --config=experiments/configs/dcgan.py --workdir=runs/dcgan
    python -m experiments.train_gan --config=experiments/configs/dcgan.py --workdir=runs/kermany \
        --config.data.source=kermany --config.data.dir=/data/chest_xray

This file is intentionally kept short: the loop is xraygan_jax.gan_loop.train_and_evaluate.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax import gan_loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/dcgan.py", "Job config (a get_config() file).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, samples, metrics).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    launch.init_jax(multi_process=True)
    gan_loop.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    launch.run(main)
