"""Fully-connected cGAN after the second report (Keras, COVID-19 set).

    python -m experiments.train_gan --config=experiments/configs/fcgan.py --workdir=runs/fcgan

On the COVID set (one folder per class):

    python -m experiments.train_gan --config=experiments/configs/fcgan.py --workdir=runs/covid \
        --config.data.source=folder --config.data.dir=/data/covid \
        --config.data.class_names=COVID,NORMAL

G: four dense layers, LeakyReLU 0.2, BatchNorm with Keras momentum 0.8 (the same number in Flax's
convention), tanh; D: four dense layers with dropout, logit out; Adam lr 2e-3, b1 0.5.
"""

import ml_collections

from experiments.configs import dcgan


def get_config() -> ml_collections.ConfigDict:
    config = dcgan.get_config()
    config.model.kind = "fcgan"
    config.model.bn_momentum = 0.8
    config.optim.g_lr = 2e-3
    config.optim.d_lr = 2e-3
    config.train.per_class = False
    config.train.num_epochs = 200
    config.train.batch_size = 32
    return config
