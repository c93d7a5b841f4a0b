"""The small-data comparison: GAN options on 100 phantom images per class, equal image budgets.

    python -m experiments.sweep --config=experiments/configs/small_data.py --workdir=runs/small

Every arm trains the reports' DC-cGAN (64x64, ngf = ndf = 64, Adam 2e-4 / 0.5, batch 64) on the
same seeded 100 images per class for the same number of images shown (gan.train.num_images,
thousands), then is scored per class by FID, KID and precision/recall beside the real-vs-real
floor (docs/fid_protocol.md). "reports" is the reports' recipe itself, one GAN per class, each
shown half the budget (so every class is shown as many images as in the other arms, and the
compute is the same); every other arm is one conditional GAN on both classes (ACGAN and
projection need both), so "joint" is the baseline the single options change.
docs/small_data.md has the results.
"""

import ml_collections

from experiments.configs import common, dcgan, study, sweep_dcgan

# Policies of DiffAugment and ADA in the arms below.
_AUGMENT = "color,translation,cutout"

ARMS = (
    # Per class, as many images shown as the joint arms show each class.
    "reports: train.per_class=True; train.num_images=6.4",
    "joint:",
    f"combined: train.diffaugment={_AUGMENT}; model.spectral_norm=True; model.d_norm=none; "
    "train.loss=hinge; model.conditioning=projection",
    f"diffaugment: train.diffaugment={_AUGMENT}",
    "spectral_norm: model.spectral_norm=True; model.d_norm=none",
    "ada: train.ada=True",
    "r1: train.r1_weight=1.0",
    # The reports' recipe with twice the images (and the compute) of every other arm.
    "reports_double_budget: train.per_class=True",
    "hinge: train.loss=hinge",
    "projection: model.conditioning=projection",
    "acgan: model.conditioning=acgan",
    "wgan_gp: train.loss=wgan_gp; model.d_norm=layer",
    "least_squares: train.loss=least_squares",
    # The best single options together (added after the arms above had run).
    "hinge_acgan: train.loss=hinge; model.conditioning=acgan",
    "hinge_acgan_r1: train.loss=hinge; model.conditioning=acgan; train.r1_weight=1.0",
)


def get_config() -> ml_collections.ConfigDict:
    config = sweep_dcgan.get_config()
    config.data = common.data_config()
    config.data.image_size = 64
    config.data.train_images_per_class = 100  # the COVID report's set size

    config.gan = dcgan.get_config()
    del config.gan["data"]
    config.gan.train.per_class = False
    config.gan.train.num_images = 12.8  # thousands of images shown per arm (200 steps of 64)
    config.gan.train.checkpoint_every_epochs = 1000  # the last epoch is always saved
    config.gan.train.sample_every_epochs = 1000  # and sampled
    config.gan.train.log_every_steps = 25
    config.gan.train.num_grid_images = 36
    # ADA's p can cross [0, 1] within half the budget (StyleGAN2-ADA's 500 kimg is for runs of
    # thousands of kimg).
    config.gan.train.ada_kimg = 6.4

    config.sweep.mode = "arms"
    config.sweep.arms = ARMS
    config.sweep.grid = ()
    config.sweep.classifier_gain = False

    config.study_job = study.get_config()
    del config.study_job["data"]
    return config
