"""The perturbations of experiments/benchmarks/metric_sensitivity.py."""

import numpy as np
import pytest

from experiments.benchmarks import metric_sensitivity


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(20, 236, (3, 8, 8, 1)).astype(np.uint8)


def test_clean_is_the_images_unchanged():
    images = _images()
    np.testing.assert_array_equal(metric_sensitivity.perturb(images, "clean"), images)


def test_pixelate2_copies_each_blocks_top_left_pixel():
    images = _images()
    out = metric_sensitivity.perturb(images, "pixelate2")
    for dy in (0, 1):
        for dx in (0, 1):
            np.testing.assert_array_equal(out[:, dy::2, dx::2], images[:, ::2, ::2])


def test_blur_and_noise_and_contrast_change_the_images_as_named():
    images = _images()
    x = images.astype(np.float64)
    blurred = metric_sensitivity.perturb(images, "blur0.7").astype(np.float64)
    assert blurred.std() < x.std()  # a blur smooths the pixels
    noisy = metric_sensitivity.perturb(images, "noise6").astype(np.float64)
    assert 4.5 < (noisy - x).std() < 7.5  # about 6 grey levels of noise (192 pixels)
    flat = metric_sensitivity.perturb(images, "contrast0.8").astype(np.float64)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(flat, np.round(mean + 0.8 * (x - mean)), atol=1.0)
    assert metric_sensitivity.perturb(images, "noise6").dtype == np.uint8


@pytest.mark.parametrize("name", ["sharpen", "blur", "noise", "blurx", "pixelate3"])
def test_an_unknown_perturbation_is_refused_with_the_valid_forms(name):
    with pytest.raises(
        ValueError,
        match=rf"--perturbations: '{name}' is unknown; use clean, "
        r"pixelate2, blur<sigma>, noise<grey levels> or contrast<factor>",
    ):
        metric_sensitivity.perturb(_images(), name)
