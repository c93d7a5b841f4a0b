"""Hyper-parameter sweeps of GAN training: FID/KID with floors, wall time, classifier gain.

    python -m experiments.sweep --config=experiments/configs/sweep_dcgan.py --workdir=runs/sweep

Writes WORKDIR/sweep.csv and WORKDIR/plots/sweep_<parameter>.png; each point is a normal GAN run
in WORKDIR/points/<name>. Points run one after another and resume.
This file is intentionally kept short: the sweep is xraygan_jax.sweep.run_sweep.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax import sweep

_DEFAULT_CONFIG = "experiments/configs/sweep_dcgan.py"
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Sweep config (a get_config() file).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's folder (resumed when it exists).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    launch.init_jax()
    sweep.run_sweep(_CONFIG.value, _WORKDIR.value)
    print(f"{_WORKDIR.value}/sweep.csv")


if __name__ == "__main__":
    launch.run(main, default_config=_DEFAULT_CONFIG)
