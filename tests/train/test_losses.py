"""GAN losses equal their formulas on hand-computed logits; an unknown loss lists the valid ones;
the registry's entries say what each loss needs, and no code outside it tests a loss's name."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest

import xraygan_jax
from xraygan_jax.train import losses, steps

REAL = jnp.array([2.0, -0.5])
FAKE = jnp.array([-1.5, 0.5])


def test_hinge_loss_equals_its_formula():
    # D: mean(relu(1 - [2, -0.5])) + mean(relu(1 + [-1.5, 0.5])) = mean(0, 1.5) + mean(0, 1.5).
    assert float(losses.discriminator_loss(REAL, FAKE, "hinge")) == pytest.approx(0.75 + 0.75)
    # G: -mean([-1.5, 0.5]) = 0.5.
    assert float(losses.generator_loss(FAKE, "hinge")) == pytest.approx(0.5)


def test_least_squares_loss_equals_its_formula():
    # D: 0.5 mean((1)^2, (-1.5)^2) + 0.5 mean(2.25, 0.25) = 0.5 * 1.625 + 0.5 * 1.25.
    assert float(losses.discriminator_loss(REAL, FAKE, "least_squares")) == pytest.approx(1.4375)
    # G: 0.5 mean((-2.5)^2, (-0.5)^2) = 0.5 * 3.25.
    assert float(losses.generator_loss(FAKE, "least_squares")) == pytest.approx(1.625)


def test_bce_is_the_default_and_equals_minus_log_sigmoid():
    sigmoid = 1 / (1 + np.exp(-np.asarray(FAKE)))
    expected_g = float(np.mean(-np.log(sigmoid)))
    assert float(losses.generator_loss(FAKE)) == pytest.approx(expected_g, rel=1e-6)
    real_sigmoid = 1 / (1 + np.exp(-np.asarray(REAL)))
    expected_d = float(np.mean(-np.log(real_sigmoid)) + np.mean(-np.log(1 - sigmoid)))
    assert float(losses.discriminator_loss(REAL, FAKE)) == pytest.approx(expected_d, rel=1e-6)


def test_an_unknown_loss_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"'wgan' does not exist; use one of: bce, hinge"):
        losses.generator_loss(FAKE, "wgan")
    every = r"use one of: bce, hinge, least_squares, wgan_gp \(--config.train.loss\)"
    for look_up in (
        lambda: losses.get_loss("wgan"),
        lambda: losses.check_kind("wgan"),
        lambda: losses.discriminator_loss(REAL, FAKE, "wgan"),
        lambda: steps.StepOptions(loss="wgan").gan_loss,
    ):
        with pytest.raises(ValueError, match=rf"GAN loss 'wgan' does not exist; {every}"):
            look_up()


def test_wgan_losses_equal_their_formulas():
    np.testing.assert_allclose(
        losses.discriminator_loss(REAL, FAKE, "wgan_gp"), jnp.mean(FAKE) - jnp.mean(REAL)
    )
    np.testing.assert_allclose(losses.generator_loss(FAKE, "wgan_gp"), -jnp.mean(FAKE))


# What each loss needs beyond D's logits: (gradient penalty, per-image logits, i.e. no BatchNorm).
NEEDS = {
    "bce": (False, False),
    "hinge": (False, False),
    "least_squares": (False, False),
    "wgan_gp": (True, True),
}


def test_the_registry_holds_the_four_losses_bce_first():
    assert losses.KINDS == tuple(losses.LOSSES) == tuple(NEEDS)
    assert steps.StepOptions().gan_loss is losses.LOSSES["bce"]  # the default


@pytest.mark.parametrize("name", list(NEEDS))
def test_each_entry_says_what_its_loss_needs(name):
    loss = losses.get_loss(name)
    assert loss.name == name
    assert (loss.needs_gradient_penalty, loss.needs_per_image_logits) == NEEDS[name]
    # A loss that cannot take BatchNorm in D gives the reason the config check prints.
    assert bool(loss.per_image_reason) == loss.needs_per_image_logits
    assert steps.StepOptions(loss=name).gan_loss is loss
    # The public functions are the entry's.
    np.testing.assert_array_equal(
        losses.discriminator_loss(REAL, FAKE, name), loss.d_loss(REAL, FAKE)
    )
    np.testing.assert_array_equal(losses.generator_loss(FAKE, name), loss.g_loss(FAKE))


def test_no_code_outside_the_registry_compares_a_loss_name():
    """The step and the config checks ask an entry's properties, never `loss == "wgan_gp"`."""
    names = "|".join(losses.KINDS)
    comparison = re.compile(
        rf"""(==|!=|\bin)\s*[(\[{{]?\s*["']({names})["']|["']({names})["']\s*(==|!=)"""
    )
    package = pathlib.Path(xraygan_jax.__file__).parent
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path != package / "train" / "losses.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if comparison.search(line)
    ]
    assert not found, found
