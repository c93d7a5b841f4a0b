"""A tiny pipeline for tests: the test GAN for two epochs, FID with floors, a two-arm study.

python -m experiments.pipeline --config=experiments/configs/pipeline_test.py --workdir=/tmp/p
"""

import ml_collections

from experiments.configs import pipeline, study_test
from experiments.configs import test as gan_test


def get_config() -> ml_collections.ConfigDict:
    config = pipeline.get_config()
    config.data = gan_test.get_config().data
    config.gan = pipeline._without_data(gan_test.get_config())
    config.gan.train.per_class = False
    config.train_fcgan = False
    config.study_job = pipeline._without_data(study_test.get_config())
    return config
