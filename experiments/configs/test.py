"""Tiny DC-cGAN for tests: 32x32, narrow, a few dozen phantom images, two epochs.

    python -m experiments.train_gan --config=experiments/configs/test.py --workdir=/tmp/t
"""

import ml_collections

from experiments.configs import dcgan


def get_config() -> ml_collections.ConfigDict:
    config = dcgan.get_config()
    config.data.image_size = 32
    config.data.phantom.num_train = 48
    config.data.phantom.num_val = 8
    config.data.phantom.num_test = 16
    config.model.nz = 8
    config.model.ngf = 8
    config.model.ndf = 8
    config.model.embed_dim = 4
    config.model.g_features = (32, 64)
    config.model.d_features = (64, 32)
    config.train.batch_size = 8
    config.train.num_epochs = 2
    config.train.checkpoint_every_epochs = 1
    config.train.sample_every_epochs = 1
    config.train.log_every_steps = 2
    config.train.num_grid_images = 4
    return config
