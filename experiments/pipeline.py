"""The main job: phantom data -> DC-cGAN -> FID/KID with floors -> augmentation study -> report.

    python -m experiments.pipeline --workdir=runs/demo
    python -m experiments.pipeline --config=experiments/configs/pipeline.py --workdir=runs/full

Leaves WORKDIR/report.md and report.html (self-contained), the GAN run in WORKDIR/gan and the
study in WORKDIR/study. Running it again reuses finished stages and resumes the others.
This file is intentionally kept short: the job is xraygan_jax.pipeline.run_pipeline.
"""

import shlex
import sys

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax import pipeline

_DEFAULT_CONFIG = "experiments/configs/pipeline_demo.py"
_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Pipeline config (a get_config() file).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "The pipeline's folder (resumed when it exists).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    launch.init_jax()
    command = shlex.join(["python", "-m", "experiments.pipeline", *sys.argv[1:]])
    path = pipeline.run_pipeline(_CONFIG.value, _WORKDIR.value, command=command)
    print(path)


if __name__ == "__main__":
    launch.run(main, default_config=_DEFAULT_CONFIG)
