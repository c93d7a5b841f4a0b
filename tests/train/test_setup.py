"""setup.check_gan_config: each rule's message, spanning config sections or not, and the
combinations it lets through. Nothing is built or read, so these tests take milliseconds."""

import re

import pytest

from experiments.configs import sngan_test as sngan_test_config
from experiments.configs import test as test_config
from xraygan_jax import errors
from xraygan_jax.train import setup


def _config(base=test_config, **settings):
    """base's config with "section.key" settings, e.g. _config(**{"model.d_norm": "layer"})."""
    config = base.get_config()
    for path, value in settings.items():
        section, key = path.split(".")
        config[section][key] = value
    return config


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # Spanning sections: data x model.
        (
            {"data.image_size": 48},
            "image_size 48 is not supported by the dcgan architecture; supported: 32, 64, 128 "
            "(--config.model.kind / --config.data.image_size)",
        ),
        # train x model.
        (
            {"train.compute_dtype": "float16"},
            "compute_dtype 'float16' is unknown; use one of: float32, bfloat16 "
            "(--config.train.compute_dtype)",
        ),
        (
            {"train.loss": "wgan_gp"},
            "--config.train.loss=wgan_gp cannot be combined with --config.model.d_norm=batch: "
            "the gradient penalty is defined per image, and BatchNorm makes each image's logit "
            "depend on the whole batch (Gulrajani et al. leave it out); set "
            "--config.model.d_norm=layer or none.",
        ),
        (
            {"model.conditioning": "acgan", "train.per_class": True},
            "--config.model.conditioning=acgan needs both classes in one GAN: its auxiliary "
            "classifier has nothing to tell apart in a per-class GAN; set "
            "--config.train.per_class=false.",
        ),
        # One section's rules, reported as config errors with their own text.
        (
            {"model.kind": "fcgan", "model.d_norm": "group"},
            "--config.model.d_norm='group' is unknown; use one of: batch, layer, none",
        ),
        (
            {"model.spectral_norm": True},
            "--config.model.spectral_norm=True cannot be combined with --config.model.d_norm="
            "batch: BatchNorm after a spectrally normalised layer rescales",
        ),
        (
            {"train.loss": "wgan"},
            "GAN loss 'wgan' does not exist; use one of: bce, hinge, least_squares, wgan_gp "
            "(--config.train.loss)",
        ),
    ],
)
def test_each_rule_refuses_its_options_by_name(settings, message):
    with pytest.raises(errors.ConfigError, match=re.escape(message)):
        setup.check_gan_config(_config(**settings))


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"model.kind": "fcgan", "data.image_size": 48},  # dense layers take any size
        {"train.loss": "wgan_gp", "model.d_norm": "layer"},
        {"train.loss": "wgan_gp", "model.d_norm": "none"},
        # fcgan's D has no BatchNorm, whatever d_norm says.
        {"train.loss": "wgan_gp", "model.kind": "fcgan", "model.d_norm": "batch"},
        # R1 is allowed with BatchNorm (docs/small_data.md).
        {"train.r1_weight": 1.0},
        {"model.conditioning": "acgan", "train.per_class": False},
    ],
)
def test_options_that_work_together_pass(settings):
    setup.check_gan_config(_config(**settings))


def test_sngan_rules_come_from_the_model_and_wgan_gp_fits_its_discriminator():
    setup.check_gan_config(_config(sngan_test_config, **{"train.loss": "wgan_gp"}))
    with pytest.raises(
        errors.ConfigError,
        match=r"--config.model.d_norm=batch cannot be used with --config.model.kind=sngan",
    ):
        setup.check_gan_config(_config(sngan_test_config, **{"model.d_norm": "batch"}))
    with pytest.raises(
        errors.ConfigError,
        match=r"image_size 48 is not supported by the sngan architecture.*--config.data.image_size",
    ):
        setup.check_gan_config(_config(sngan_test_config, **{"data.image_size": 48}))
