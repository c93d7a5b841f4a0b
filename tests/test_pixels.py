"""Tests for xraygan_jax.pixels: the models' [-1, 1] range back to uint8."""

import numpy as np
import pytest

from xraygan_jax import pixels


def test_to_uint8_quantises_the_model_range():
    values = np.array([-1.0, -0.5, 0.0, 1.0, 2.0], np.float32)
    assert pixels.to_uint8(values).tolist() == [0, 64, 128, 255, 255]
    with pytest.raises(TypeError, match=r"uint8 in \[0, 255\] or floats in \[-1, 1\], got .*int32"):
        pixels.to_uint8(np.zeros(3, np.int32))
