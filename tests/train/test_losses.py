"""GAN losses equal their formulas on hand-computed logits; an unknown loss lists the valid ones."""

import jax.numpy as jnp
import numpy as np
import pytest

from xraygan_jax.train import losses

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


def test_wgan_losses_equal_their_formulas():
    np.testing.assert_allclose(
        losses.discriminator_loss(REAL, FAKE, "wgan_gp"), jnp.mean(FAKE) - jnp.mean(REAL)
    )
    np.testing.assert_allclose(losses.generator_loss(FAKE, "wgan_gp"), -jnp.mean(FAKE))
