"""The main job at the reports' scale: DC-cGAN (and FC-cGAN) per class, FID per 20 epochs, study.

    python -m experiments.pipeline --config=experiments/configs/pipeline.py --workdir=runs/full

On the real Kermany set (BUILD.md has the recipe and its expected run time):

    python -m experiments.pipeline --config=experiments/configs/pipeline.py \\
        --workdir=runs/kermany --config.data.source=kermany --config.data.dir=/data/chest_xray

`config.gan` and `config.fcgan` are GAN job configs and `config.study_job` a study config, each
without a data section: every stage uses `config.data`.
"""

import ml_collections

from experiments.configs import common, dcgan, fcgan, study


def _without_data(job: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    del job["data"]
    return job


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = common.data_config()
    config.data.image_size = 64
    config.gan = _without_data(dcgan.get_config())
    config.train_fcgan = True  # the first report compared both
    config.fcgan = _without_data(fcgan.get_config())
    config.study_job = _without_data(study.get_config())
    return config
