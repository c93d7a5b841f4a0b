"""SN-ResNet cGAN: residual G with class-conditional BatchNorm, residual D with spectral norm and
projection, hinge loss (Miyato et al. 2018; Miyato & Koyama 2018), on the embedded phantom set.

    python -m experiments.train_gan --config=experiments/configs/sngan.py --workdir=runs/sngan

On the real Kermany set, as dcgan.py:

    python -m experiments.train_gan --config=experiments/configs/sngan.py --workdir=runs/sngan \
        --config.data.source=kermany --config.data.dir=/data/chest_xray

One conditional GAN on both classes (cBN and projection need both labels in one GAN), 64x64,
ngf = ndf = 32 (SNGAN's widths at half their base of 64, so that a step costs a few DC-cGAN steps
on a CPU), Adam(2e-4, betas (0, 0.9)) for both networks and two D updates per G update (the
SNGAN/BigGAN recipe at a CPU budget), an EMA of G. Leaves the same files as dcgan.py. Why this
design, and what it costs per step: docs/models.md.
"""

import ml_collections

from experiments.configs import dcgan


def get_config() -> ml_collections.ConfigDict:
    config = dcgan.get_config()
    config.model.kind = "sngan"
    config.model.ngf = 32
    config.model.ndf = 32
    # D's only conditioning that fits this architecture (or "acgan"); G uses conditional BN.
    config.model.conditioning = "projection"
    config.model.d_norm = "none"
    config.model.spectral_norm = True

    config.optim.g_lr = 2e-4
    config.optim.d_lr = 2e-4
    config.optim.b1 = 0.0
    config.optim.b2 = 0.9

    config.train.per_class = False
    config.train.loss = "hinge"
    config.train.d_updates_per_step = 2
    # DiffAugment's translation and cutout (Zhao et al. 2020), the two policies that keep each
    # pixel's grey level; whether they pay within a CPU budget is still to be measured.
    config.train.diffaugment = "translation,cutout"
    # Samples come from the EMA of G. A horizon of about 100 steps: BigGAN's 0.9999 (or 0.999)
    # would leave a run of a few hundred steps sampling mostly its initial G (0.999^600 = 0.55).
    config.train.ema_decay = 0.99
    return config
