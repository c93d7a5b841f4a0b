"""Builds the configured data set once (TFDS, array_record) and prints what it holds.

    python -m experiments.prepare_data                      # the embedded phantom set
    python -m experiments.prepare_data --config.data.source=kermany \
        --config.data.dir=/data/chest_xray --config.data.image_size=128
    python -m experiments.prepare_data --config.data.source=folder \
        --config.data.dir=/data/covid --config.data.class_names=COVID,NORMAL

Prints a table of images per split and class, every skipped file with the reason, and the time
taken. Later jobs with the same data config reuse the set. --rebuild builds it again (after the
source folder changed). The work is xraygan_jax.data.sources.prepare.
"""

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax.data import sources

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/configs/dcgan.py", "Job config (a get_config() file).", lock_config=True
)
_REBUILD = flags.DEFINE_bool("rebuild", False, "Build again even if the set exists.")


def main(argv):
    del argv
    launch.quiet_library_logs()
    report = sources.prepare(_CONFIG.value.data, rebuild=_REBUILD.value)
    print(report.format())


if __name__ == "__main__":
    launch.run(main)
