"""Tests for xraygan_jax.pixels: the models' [-1, 1] range back to uint8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xraygan_jax import pixels


def test_to_uint8_quantises_the_model_range():
    values = np.array([-1.0, -0.5, 0.0, 1.0, 2.0], np.float32)
    assert pixels.to_uint8(values).tolist() == [0, 64, 128, 255, 255]
    with pytest.raises(TypeError, match=r"uint8 in \[0, 255\] or floats in \[-1, 1\], got .*int32"):
        pixels.to_uint8(np.zeros(3, np.int32))


def _nvidia(values: np.ndarray) -> np.ndarray:
    # stylegan2-ada's metric_utils: (x * 127.5 + 128).clamp(0, 255).to(torch.uint8), in float32.
    return np.clip(values * np.float32(127.5) + np.float32(128), 0, 255).astype(np.uint8)


def test_quantisation_is_nvidias_on_the_host_and_under_jit():
    values = np.random.default_rng(2).uniform(-1.2, 1.2, (1000,)).astype(np.float32)
    values[:3] = [-1.0, 0.0, 1.0]
    expected = _nvidia(values)
    on_host = pixels.quantize(values)
    on_device = np.asarray(jax.jit(pixels.quantize)(jnp.asarray(values)))
    assert on_host.dtype == on_device.dtype == np.float32
    np.testing.assert_array_equal(on_host, expected.astype(np.float32))
    np.testing.assert_array_equal(on_device, on_host)
    np.testing.assert_array_equal(pixels.to_uint8(values), expected)
    assert list(on_host[:3]) == [0.0, 128.0, 255.0]


def test_every_uint8_value_survives_the_round_trip():
    images = np.arange(256, dtype=np.uint8)
    model_range = images.astype(np.float32) / 127.5 - 1.0  # data.pipeline's conversion
    np.testing.assert_array_equal(pixels.to_uint8(model_range), images)
    assert pixels.quantize(images) is images
