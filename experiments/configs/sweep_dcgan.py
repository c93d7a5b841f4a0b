"""A hyper-parameter sweep of the DC-cGAN on the phantom set: learning rate and latent size.

    python -m experiments.sweep --config=experiments/configs/sweep_dcgan.py --workdir=runs/sweep

The first report's goal 1 (lr, nz, ngf/ndf, image size, batch size, optimiser, epochs): list any
"dotted.key=v1,v2" of the GAN config, e.g.
    --config.sweep.grid='("optim.g_lr=1e-4,2e-4", "model.ngf=32,64", "train.batch_size=32,64")'
With --config.sweep.classifier_gain=true each point also runs a small augmentation study and
reports the accuracy gain of its images (stretch goal 2: choose by classifier gain, not FID).
"""

import ml_collections

from experiments.configs import common, dcgan, study


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = common.data_config()
    config.data.phantom.num_train = 600
    config.gan = dcgan.get_config()
    del config.gan["data"]
    config.gan.train.per_class = False
    config.gan.model.ngf = 32
    config.gan.model.ndf = 32
    config.gan.train.num_epochs = 20
    config.gan.train.checkpoint_every_epochs = 20
    config.gan.train.sample_every_epochs = 10

    config.sweep = ml_collections.ConfigDict()
    config.sweep.grid = ("optim.g_lr=1e-4,2e-4", "model.nz=64,100")
    config.sweep.mode = "grid"  # grid: every combination; list: i-th values together
    config.sweep.classifier_gain = False
    config.sweep.gain_fraction = 0.2

    config.study_job = study.get_config()
    del config.study_job["data"]
    config.study_job.study.seeds = (0, 1)
    return config
