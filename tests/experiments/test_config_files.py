"""Every shipped config passes the option checks: each GAN job (and every point of every shipped
sweep) the GAN loop's, each study (alone, or the one beside a pipeline's or sweep's GAN) the
study's."""

import importlib
import pathlib

import pytest

from xraygan_jax import errors, pipeline, study, sweep
from xraygan_jax.train import setup

CONFIGS = sorted(
    path.stem
    for path in pathlib.Path("experiments/configs").glob("*.py")
    if path.stem not in ("__init__", "common")
)


def _gan_configs(config):
    if "sweep" in config:
        return [sweep.point_config(config, point) for point in sweep.points(config)]
    if "model" in config and "nz" in config.model:
        return [config]
    if "gan" in config:  # the pipeline configs: a GAN job beside the study
        job = config.gan.copy_and_resolve_references()
        with job.unlocked():
            job.data = config.data
        return [job]
    return []


def _study_configs(config):
    if "study" in config:
        return [config]
    if "study_job" in config:  # the pipelines' and sweeps' study, on their data
        return [pipeline.study_config(config, epoch=1)]
    return []


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_config_options_are_valid(name):
    config = importlib.import_module(f"experiments.configs.{name}").get_config()
    gan_jobs, study_jobs = _gan_configs(config), _study_configs(config)
    assert gan_jobs or study_jobs, f"{name}: holds neither a GAN job nor a study to check"
    for job in gan_jobs:
        setup.check_gan_config(job)
    for job in study_jobs:
        study.check_config(job)
        # Every study compares its arms with the 0% baseline, listed first.
        assert study.arms.plan_arms(job)[0] == study.arms.Arm(0.0), name


def test_the_small_data_config_is_the_comparisons_best_arm():
    """dcgan_small_data.py trains what the comparison's best arm trained: its GAN config with
    the arm's values, up to how often it logs, samples and saves."""
    comparison = importlib.import_module("experiments.configs.small_data").get_config()
    (arm,) = [a for a in sweep.parse_arms(comparison) if a[sweep.ARM] == "acgan_mode_seeking"]
    trained = sweep.point_config(comparison, arm)
    best = importlib.import_module("experiments.configs.dcgan_small_data").get_config()
    bookkeeping = {
        "checkpoint_every_epochs",
        "sample_every_epochs",
        "log_every_steps",
        "num_grid_images",
        "ada_kimg",  # ADA is off in both
    }
    for section in ("model", "optim", "train"):
        for key, value in trained[section].items():
            if key not in bookkeeping:
                assert best[section][key] == value, f"{section}.{key}"
    assert best.train.mode_seeking > 0 and not best.train.ada


def test_the_sngan_config_is_refused_with_the_dc_cgans_options():
    """sngan.py's design with dcgan.py's label plane or BatchNorm in D: a ConfigError before
    anything is built, naming the flags."""
    for field, value, flag in (
        ("conditioning", "plane", "--config.model.conditioning=plane"),
        ("d_norm", "batch", "--config.model.d_norm=batch"),
    ):
        config = importlib.import_module("experiments.configs.sngan").get_config()
        config.model[field] = value
        with pytest.raises(errors.ConfigError, match=f"{flag} cannot be used with "):
            setup.check_gan_config(config)
    config.model.kind = "stylegan"
    with pytest.raises(errors.ConfigError, match="use one of: dcgan, fcgan, sngan"):
        setup.check_gan_config(config)
