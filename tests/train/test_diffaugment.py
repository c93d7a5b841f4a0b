"""DiffAugment: each policy does what it draws, gradients pass, bad names are listed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xraygan_jax.train import diffaugment


def _images(batch=3, size=8):
    return jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 1)), jnp.float32)


def test_translation_moves_pixels_by_the_drawn_amount_and_fills_zeros():
    images = _images()
    shifts = jnp.array([[1, 2], [-2, 0], [0, -3]])
    moved = diffaugment.translate(images, shifts)
    for index, (dy, dx) in enumerate(np.asarray(shifts)):
        expected = np.zeros((8, 8, 1), np.float32)
        source = np.asarray(images[index])
        for y in range(8):
            for x in range(8):
                if 0 <= y - dy < 8 and 0 <= x - dx < 8:
                    expected[y, x] = source[y - dy, x - dx]
        np.testing.assert_array_equal(np.asarray(moved[index]), expected)


def test_random_translation_stays_within_an_eighth_of_the_side():
    image = jnp.zeros((1, 16, 16, 1)).at[0, 8, 8, 0].set(1.0)
    for seed in range(20):
        moved = diffaugment.translation(jax.random.key(seed), image)
        y, x = np.argwhere(np.asarray(moved[0, ..., 0]) == 1.0)[0]
        assert abs(y - 8) <= 2 and abs(x - 8) <= 2


def test_gradients_pass_through_every_policy():
    images = _images()

    def loss(x):
        return jnp.sum(diffaugment.augment(jax.random.key(1), x, "color,translation,cutout") ** 2)

    gradient = jax.grad(loss)(images)
    assert np.isfinite(np.asarray(gradient)).all() and float(jnp.abs(gradient).sum()) > 0
    # A pure translation's gradient is the moved-back ones where the image stayed in frame.
    shifts = jnp.array([[1, 0], [0, 1], [0, 0]])
    grad = jax.grad(lambda x: jnp.sum(diffaugment.translate(x, shifts)))(images)
    assert float(grad[0, 7].sum()) == 0.0 and float(grad[0, 0].sum()) == 8.0


def test_cutout_zeroes_a_square_of_half_the_side():
    images = jnp.ones((4, 8, 8, 1))
    out = np.asarray(diffaugment.cutout(jax.random.key(0), images))
    for image in out:
        zeros = np.argwhere(image[..., 0] == 0)
        assert 0 < len(zeros) <= 16
        rows, cols = zeros[:, 0], zeros[:, 1]
        assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4


def test_empty_policy_is_the_identity_and_unknown_names_are_listed():
    images = _images()
    assert diffaugment.augment(jax.random.key(0), images, "") is images
    with pytest.raises(ValueError, match=r"'flip' does not exist; valid: color, translation"):
        diffaugment.parse_policy("color,flip")
