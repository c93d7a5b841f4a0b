"""The augmentation study on the embedded phantom set: small CNN, 0/10/20/100% synthetic with
duplicate and oracle controls, ten seeds.

    python -m experiments.train_gan --config=experiments/configs/dcgan.py --workdir=runs/dcgan
    python -m experiments.augmentation_study --config=experiments/configs/study.py \\
        --gan_workdir=runs/dcgan --workdir=runs/study

Writes study.csv, predictions.csv, study.md (accuracy, sensitivity, specificity, AUC; every arm
against 0% on the primary endpoint with a two-level bootstrap interval, Holm-adjusted verdicts and
detectable effects; the GAN arms read against their duplicate and oracle controls) and plots/
into the workdir: 8 arms x 10 seeds = 80 classifiers. The real-set-size sweep:
--config.study.real_per_class=25,50,100,0 (0 = every image). docs/study_statistics.md explains
the inference.
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
    # Ten seeds for the small CNN (about 5 s each here); at least 5 for bigger models. With
    # fewer than 2 no seed-level interval exists and no verdict is called.
    config.study.seeds = tuple(range(10))
    # Classifiers trained at the same time, in threads of this process (one compilation; each
    # classifier's result is the same as trained alone). 1 = one after another.
    config.study.threads = 1
    # Real train images per class, for the real-set-size sweep (nested subsets); 0 = all.
    config.study.real_per_class = (0,)
    # Validation share carved from the real train split (chooses weights and threshold).
    config.study.val_fraction = 0.15
    config.study.split_seed = 0
    config.study.num_bootstrap = 2000
    # The validation score that chooses each classifier's kept weights and ranks the arms
    # (classifier_loop.SELECT_METRICS).
    config.study.primary_metric = "auc"
    # The family-wise error rate of the verdicts (Holm over the arms compared at each size).
    config.study.alpha = 0.05
    # Control arms, each with the extra-image counts of the synthetic arm of the same fraction
    # (fractions strictly between 0 and 1): duplicate (copies of real train images), oracle (new
    # real images: fresh phantom images, or a held-out share of a real train split), classic
    # (the classical augmentation below, alone and with synthetic images).
    config.study.controls = ("duplicate", "oracle")
    # On a real data set: the share of each class of the train split held out for the oracle
    # arms; no arm trains on it.
    config.study.oracle_fraction = 0.2
    # The classic arms' augmentation (flip, shear, zoom; the second report's kind). Its literal
    # shear_range=0.2 is 0.2 degrees in Keras, practically none: here 10 degrees and 10% zoom.
    config.study.classic_augment = ml_collections.ConfigDict()
    config.study.classic_augment.flip = True
    config.study.classic_augment.shear_degrees = 10.0
    config.study.classic_augment.zoom_range = 0.1

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
    # constant | warmup_cosine (linear warm-up from 0 to lr, cosine decay to 0 at num_steps).
    config.optim.schedule = "warmup_cosine"
    config.optim.warmup_steps = 20

    # The second report's augmentation (flip; its rescale is the [-1, 1] input already).
    config.augment = ml_collections.ConfigDict()
    config.augment.flip = True
    config.augment.shear_degrees = 0.0
    config.augment.zoom_range = 0.0

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 300  # the same for every arm
    config.train.batch_size = 32
    config.train.eval_every_steps = 50
    # The kept weights: the latest evaluated ones within one standard error of the best by the
    # primary metric ("one_se"), or simply the best ("best"). Picking an earlier checkpoint on a
    # validation gain within noise kept badly calibrated weights (docs/performance.md).
    config.train.select_rule = "one_se"
    config.train.patience_evals = 0  # 0: every arm runs all its steps; weights chosen on val
    # none | weights (N / (C * N_c) per example) | sampling (balanced batches)
    config.train.class_balance = "sampling"
    config.train.log_every_steps = 50
    return config
