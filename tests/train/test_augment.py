"""The Keras-style augmentation: exact flips, shear and zoom where the formula puts pixels, config.

The warp tests use a 16x16 image that is black (-1) except a white (+1) vertical line in column 4,
so a pixel's value tells where the warp sampled the input: 0 halfway between the line and black.
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from xraygan_jax import errors
from xraygan_jax.train import augment

SIZE = 16
LINE_COLUMN = 4
# Compiled once per shape: eager vmapped map_coordinates dispatches op by op, which is slower.
_warp = jax.jit(augment.shear_and_zoom)


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _line_image() -> np.ndarray:
    image = -np.ones((1, SIZE, SIZE, 1), np.float32)
    image[:, :, LINE_COLUMN, :] = 1.0
    return image


def _random_images(num: int) -> jax.Array:
    return jax.random.uniform(_key(0), (num, SIZE, SIZE, 1), minval=-1.0, maxval=1.0)


def test_everything_off_returns_the_images_exactly():
    images = _random_images(8)
    same = augment.random_affine(_key(1), images, flip=False, shear_degrees=0.0, zoom_range=0.0)
    assert same is images
    jitted = jax.jit(
        functools.partial(augment.random_affine, flip=False, shear_degrees=0.0, zoom_range=0.0)
    )(_key(1), images)
    np.testing.assert_array_equal(jitted, images)
    # The warp itself at shear 0, zoom 1 samples whole pixels: exact too.
    ones = jnp.ones((8,))
    warped = _warp(images, 0.0 * ones, ones, ones)
    np.testing.assert_array_equal(warped, images)


def test_flip_mirrors_each_image_exactly_or_leaves_it():
    images = np.asarray(_random_images(64))
    flip = jax.jit(
        functools.partial(augment.random_affine, flip=True, shear_degrees=0.0, zoom_range=0.0)
    )
    flipped = np.asarray(flip(_key(2), images))
    was_flipped = np.all(flipped == np.flip(images, axis=2), axis=(1, 2, 3))
    was_kept = np.all(flipped == images, axis=(1, 2, 3))
    # Every image is exactly one of the two (random images are not symmetric) ...
    np.testing.assert_array_equal(was_flipped, ~was_kept)
    # ... and the coin is per image: both outcomes occur (all equal has probability 2^-63).
    assert 0 < was_flipped.sum() < 64
    # The same key gives the same flips.
    np.testing.assert_array_equal(flip(_key(2), images), flipped)


def test_shear_moves_rows_where_the_formula_says():
    # sin(angle) = 0.2: row y moves right by 0.2 * (y - 7.5) pixels, so the bottom row (y = 15)
    # by +1.5 and the top row by -1.5. The line (column 4) then lies halfway between columns
    # 5 and 6 at the bottom and between 2 and 3 at the top: value 0 in both, black elsewhere.
    angle = math.degrees(math.asin(0.2))
    warped = _warp(jnp.asarray(_line_image()), jnp.array([angle]), jnp.ones(1), jnp.ones(1))
    bottom = -np.ones(SIZE, np.float32)
    bottom[[5, 6]] = 0.0
    top = -np.ones(SIZE, np.float32)
    top[[2, 3]] = 0.0
    np.testing.assert_allclose(warped[0, SIZE - 1, :, 0], bottom, atol=1e-5)
    np.testing.assert_allclose(warped[0, 0, :, 0], top, atol=1e-5)
    # The two rows beside the centre move by -/+0.1 pixel: the line stays mostly in column 4.
    np.testing.assert_allclose(warped[0, 7, 3:6, 0], [-0.8, 0.8, -1.0], atol=1e-5)
    np.testing.assert_allclose(warped[0, 8, 3:6, 0], [-1.0, 0.8, -0.8], atol=1e-5)


def test_zoom_out_by_two_halves_the_image_and_fills_black():
    # Factor 2: output (y, x) samples the input at 2 * (y - 7.5) + 7.5 = 2y - 7.5 (same for x).
    # Column 6 samples 4.5 (halfway off the line: 0); rows 4..11 sample 0.5..14.5, inside the
    # image; everything else samples black or outside the image (filled black).
    warped = _warp(jnp.asarray(_line_image()), jnp.zeros(1), jnp.full(1, 2.0), jnp.full(1, 2.0))
    expected = -np.ones((SIZE, SIZE), np.float32)
    expected[4:12, 6] = 0.0
    np.testing.assert_allclose(warped[0, :, :, 0], expected, atol=1e-6)


def test_each_image_draws_its_own_shear_and_zoom():
    images = jnp.tile(jnp.asarray(_line_image()), (8, 1, 1, 1))
    warped = jax.jit(
        functools.partial(augment.random_affine, flip=False, shear_degrees=20.0, zoom_range=0.2)
    )(_key(3), images)
    assert warped.shape == images.shape and warped.dtype == images.dtype
    distinct = {np.asarray(image).tobytes() for image in warped}
    assert len(distinct) == 8
    assert float(jnp.max(jnp.abs(warped - images))) > 0.5


def test_make_augment_binds_the_config():
    aug_config = ml_collections.ConfigDict({"flip": True, "shear_degrees": 10, "zoom_range": 0.1})
    augment_fn = augment.make_augment(aug_config)
    # random_affine with the config's values (the int 10 as a float).
    assert augment_fn.func is augment.random_affine
    assert augment_fn.keywords == {"flip": True, "shear_degrees": 10.0, "zoom_range": 0.1}
    assert isinstance(augment_fn.keywords["shear_degrees"], float)
    # Fields left out are off: an empty config is the identity.
    images = _random_images(4)
    identity = augment.make_augment(ml_collections.ConfigDict())
    assert identity(_key(4), images) is images


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"flip": True, "rescale": 0.5}, r"unknown field\(s\) 'rescale'; the fields are: flip, "),
        ({"shear_degrees": 90.0}, r"shear_degrees=90.0 must be in \[0, 90\) degrees"),
        ({"shear_degrees": -1.0}, r"shear_degrees=-1.0 must be in \[0, 90\)"),
        ({"zoom_range": 1.0}, r"zoom_range=1.0 must be in \[0, 1\)"),
        ({"zoom_range": True}, r"zoom_range=True must be a number"),
        ({"flip": 1}, r"flip=1 must be True or False"),
    ],
)
def test_make_augment_rejects_bad_configs(fields, message):
    with pytest.raises(errors.ConfigError, match=message):
        augment.make_augment(ml_collections.ConfigDict(fields))
