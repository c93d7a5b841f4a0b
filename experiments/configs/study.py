"""The augmentation study on the embedded phantom set: small CNN, 0/10/20/100% synthetic, 3 seeds.

    python -m experiments.train_gan --config=experiments/configs/dcgan.py --workdir=runs/dcgan
    python -m experiments.augmentation_study --config=experiments/configs/study.py \\
        --gan_workdir=runs/dcgan --workdir=runs/study

Writes study.csv, predictions.csv, study.md (accuracy, sensitivity, specificity, AUC with 95%
intervals, McNemar's test and a verdict per arm) and plots/ into the workdir. The real-set-size
sweep: --config.study.real_per_class=25,50,100,0 (0 = every image).
"""

import ml_collections

from experiments.configs import common
from xraygan_jax.models import classifier


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = common.data_config()
    config.data.image_size = 64

    config.study = ml_collections.ConfigDict()
    # Share of synthetic images in each arm's training set; 1.0 = synthetic only (CAS).
    config.study.fractions = (0.0, 0.1, 0.2, 1.0)
    # add: every real image kept, synthetic added (the reports' way); replace: the training set
    # keeps its size and part of it is replaced.
    config.study.mode = "add"
    config.study.seeds = (0, 1, 2)
    # Real train images per class, for the real-set-size sweep (nested subsets); 0 = all.
    config.study.real_per_class = (0,)
    # Validation share carved from the real train split (chooses weights and threshold).
    config.study.val_fraction = 0.15
    config.study.split_seed = 0
    config.study.num_bootstrap = 2000

    # Where synthetic images come from: --gan_workdir (sampled on the fly) or --images_dir.
    config.synthetic = ml_collections.ConfigDict()
    config.synthetic.epoch = 0  # 0 = the latest checkpoint
    config.synthetic.batch_stats = "running"
    config.synthetic.seed = 1234

    config.model = classifier.default_config()
    config.model.pretrained_path = ""  # a torchvision ResNet .pth for resnet18/50/152

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"
    config.optim.lr = 1e-3
    config.optim.b1 = 0.9
    config.optim.b2 = 0.999
    config.optim.momentum = 0.0

    # The second report's augmentation (flip; its rescale is the [-1, 1] input already).
    config.augment = ml_collections.ConfigDict()
    config.augment.flip = True
    config.augment.shear_degrees = 0.0
    config.augment.zoom_range = 0.0

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 300  # the same for every arm
    config.train.batch_size = 32
    config.train.eval_every_steps = 50
    config.train.patience_evals = 0  # 0: every arm runs all its steps; weights chosen on val
    # none | weights (N / (C * N_c) per example) | sampling (balanced batches)
    config.train.class_balance = "weights"
    config.train.log_every_steps = 50
    return config
