"""A two-point sweep for tests: the test GAN at two generator learning rates, with the gain.

python -m experiments.sweep --config=experiments/configs/sweep_test.py --workdir=/tmp/sweep
"""

import ml_collections

from experiments.configs import study_test, sweep_dcgan
from experiments.configs import test as gan_test


def get_config() -> ml_collections.ConfigDict:
    config = sweep_dcgan.get_config()
    config.data = gan_test.get_config().data
    config.gan = gan_test.get_config()
    del config.gan["data"]
    config.gan.train.per_class = False
    config.gan.train.num_epochs = 1
    config.sweep.grid = ("optim.g_lr=1e-4,2e-4",)
    config.sweep.classifier_gain = True
    config.sweep.gain_fraction = 0.5
    config.study_job = study_test.get_config()
    del config.study_job["data"]
    return config
