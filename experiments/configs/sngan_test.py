"""Tiny SN-ResNet cGAN for tests: sngan.py's design at test.py's sizes (32x32, narrow, a few
dozen phantom images, two epochs).

    python -m experiments.train_gan --config=experiments/configs/sngan_test.py --workdir=/tmp/t
"""

import ml_collections

from experiments.configs import sngan
from experiments.configs import test as test_config

_TINY_MODEL = ("nz", "ngf", "ndf")
_TINY_TRAIN = (
    "batch_size",
    "num_epochs",
    "checkpoint_every_epochs",
    "sample_every_epochs",
    "log_every_steps",
    "num_grid_images",
)


def get_config() -> ml_collections.ConfigDict:
    config = sngan.get_config()
    tiny = test_config.get_config()
    config.data = tiny.data
    for key in _TINY_MODEL:
        config.model[key] = tiny.model[key]
    for key in _TINY_TRAIN:
        config.train[key] = tiny.train[key]
    return config
