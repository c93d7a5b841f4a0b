"""A tiny study for tests: two arms (0% and 50% synthetic), one seed, a few steps, 32x32.

    python -m experiments.augmentation_study --config=experiments/configs/study_test.py \\
        --gan_workdir=RUN --workdir=/tmp/study
"""

import ml_collections

from experiments.configs import study
from experiments.configs import test as gan_test


def get_config() -> ml_collections.ConfigDict:
    config = study.get_config()
    config.data = gan_test.get_config().data
    config.study.fractions = (0.0, 0.5)
    config.study.seeds = (0,)
    config.study.val_fraction = 0.25
    config.study.num_bootstrap = 200
    config.model.width = 4
    config.train.num_steps = 6
    config.optim.warmup_steps = 2  # below num_steps
    config.train.batch_size = 8
    config.train.eval_every_steps = 3
    config.train.log_every_steps = 3
    return config
