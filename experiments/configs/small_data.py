"""The small-data comparison: GAN options on 100 phantom images per class, equal image budgets.

    python -m experiments.sweep --config=experiments/configs/small_data.py --workdir=runs/small

Every arm trains the main job's conditional DC-cGAN (64x64, ngf = ndf = 32, Adam 2e-4 / 0.5 with
D's learning rate 5e-5, an EMA of G at 0.99, batch 64: experiments/configs/pipeline_demo.py without
its mode-seeking term) on the same seeded 100 images per class for the same number of images shown
(gan.train.num_images, thousands: 60, about 5 minutes of 2 CPU cores an arm and 4.7 times the
earlier comparison's 12.8; docs/small_data.md says why not more), then is scored per class by FID,
KID, precision/recall and diversity beside the real-vs-real floor (docs/fid_protocol.md). "joint"
is that GAN as it is, the baseline each other arm changes by one option or one combination; an arm
whose name ends in "_seed1" repeats the arm of its name with another seed.
docs/small_data.md has the results.
"""

import ml_collections

from experiments.configs import common, dcgan, study, sweep_dcgan

# Policies of DiffAugment and ADA in the arms below.
_AUGMENT = "color,translation,cutout"
# The mode-seeking term of the main job's GAN (experiments/configs/pipeline_demo.py).
_MODE_SEEKING = "train.mode_seeking=0.1; train.mode_seeking_size=16"

ARMS = (
    "joint:",
    f"diffaugment: train.diffaugment={_AUGMENT}",
    "ada: train.ada=True",
    "spectral_norm: model.spectral_norm=True; model.d_norm=none",
    "r1: train.r1_weight=1.0",
    "hinge: train.loss=hinge",
    "acgan: model.conditioning=acgan",
    # The best arm of the earlier comparison at 12.8 thousand images.
    "hinge_acgan_r1: train.loss=hinge; model.conditioning=acgan; train.r1_weight=1.0",
    # The few-shot literature's recipe: augmentation, a Lipschitz D, hinge, projection.
    f"combined: train.diffaugment={_AUGMENT}; model.spectral_norm=True; model.d_norm=none; "
    "train.loss=hinge; model.conditioning=projection",
    # Added after the arms above had run, all of which collapsed: the mode-seeking term the main
    # job adopted (docs/gan_convergence.md, "Mode seeking"), alone and with the best arm of
    # the nine; then a second seed of each of these two, the best arms of all.
    f"mode_seeking: {_MODE_SEEKING}",
    f"acgan_mode_seeking: model.conditioning=acgan; {_MODE_SEEKING}",
    f"mode_seeking_seed1: {_MODE_SEEKING}; train.seed=1",
    f"acgan_mode_seeking_seed1: model.conditioning=acgan; {_MODE_SEEKING}; train.seed=1",
)


def get_config() -> ml_collections.ConfigDict:
    config = sweep_dcgan.get_config()
    config.data = common.data_config()
    config.data.image_size = 64
    config.data.train_images_per_class = 100  # the COVID report's set size

    config.gan = dcgan.get_config()
    del config.gan["data"]
    # The main job's GAN (experiments/configs/pipeline_demo.py): one conditional DC-cGAN,
    # ngf = ndf = 32, D's learning rate 5e-5, an EMA of G.
    config.gan.train.per_class = False
    config.gan.model.ngf = 32
    config.gan.model.ndf = 32
    config.gan.optim.d_lr = 5e-5
    config.gan.train.ema_decay = 0.99
    config.gan.train.num_images = 60.0  # thousands of images shown per arm (938 steps of 64)
    config.gan.train.checkpoint_every_epochs = 1000  # the last epoch is always saved
    config.gan.train.sample_every_epochs = 1000  # and sampled
    config.gan.train.log_every_steps = 100
    config.gan.train.num_grid_images = 36
    # ADA's p can cross [0, 1] within half the budget (StyleGAN2-ADA's 500 kimg is for runs of
    # thousands of kimg).
    config.gan.train.ada_kimg = 30.0

    config.sweep.mode = "arms"
    config.sweep.arms = ARMS
    config.sweep.grid = ()
    config.sweep.classifier_gain = False

    config.study_job = study.get_config()
    del config.study_job["data"]
    return config
