"""Tests of the FID resize modes: each mode's 299x299 input against the tool it reproduces.

"clean" is checked against Pillow itself and "pytorch_fid" against torch's `F.interpolate`
(skipped without torch); "tf1" has its reference test in tests/models/test_inception.py. The
features are computed with random weights in the real network's shapes: that the modes give
different features, and that each extractor feeds its own mode's input, needs no trained network.
The reference-cache tests use a cheap projection instead of the network, as tests/metrics/
test_reference.py does, and write only under tmp_path.
"""

import flax
import numpy as np
import pytest
from PIL import Image

from xraygan_jax import compiler
from xraygan_jax.metrics import fid, reference
from xraygan_jax.pretrained import inception_weights

# Upsampling, non-square upsampling in RGB, downsampling (where Pillow antialiases), identity.
SHAPES = [(2, 64, 64, 1), (1, 37, 50, 3), (1, 400, 320, 1), (1, 299, 299, 3)]


@pytest.fixture(autouse=True)
def _cache_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYGAN_CACHE", str(tmp_path / "cache"))


def _random_images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("shape", SHAPES)
def test_clean_resize_is_pillows_float_bicubic(shape):
    images = _random_images(shape)
    resized = fid.resize_images(images, "clean")
    expected = np.empty((shape[0], 299, 299, shape[3]), np.float32)
    for index in range(shape[0]):
        for channel in range(shape[3]):
            # Pillow's own path to a float image, unlike the library's (float32 array -> "F").
            plane = Image.fromarray(images[index, :, :, channel]).convert("F")
            expected[index, :, :, channel] = plane.resize((299, 299), Image.Resampling.BICUBIC)
    expected = np.clip(expected, 0, 255)
    assert isinstance(resized, np.ndarray) and resized.dtype == np.float32
    assert resized.shape == expected.shape
    np.testing.assert_allclose(resized, expected, rtol=0, atol=1e-4)
    if shape[1:3] != (299, 299):
        # Fed as floats, as clean-fid does: not quantised back to integers.
        assert np.any(resized != np.round(resized))


@pytest.mark.parametrize("shape", SHAPES)
def test_pytorch_fid_input_is_torch_interpolate_of_images_in_0_1(shape):
    torch = pytest.importorskip("torch")
    images = _random_images(shape, seed=1)
    # pytorch-fid: ToTensor (x / 255), F.interpolate to 299 (bilinear, align_corners=False,
    # no antialiasing), then 2 x - 1.
    in_0_1 = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    interpolated = torch.nn.functional.interpolate(
        in_0_1, size=(299, 299), mode="bilinear", align_corners=False
    )
    interpolated = interpolated.numpy().transpose(0, 2, 3, 1)
    resized = np.asarray(fid.resize_images(images, "pytorch_fid"))
    assert resized.shape == interpolated.shape
    # Resized in 0..255 and scaled after: the same up to float32 rounding (linearity).
    np.testing.assert_allclose(resized / 255, interpolated, rtol=0, atol=1e-6)
    network_input = np.asarray(fid.normalize_resized(resized, "pytorch_fid"))
    expected = 2 * interpolated - 1
    if shape[3] == 1:
        expected = np.repeat(expected, 3, axis=-1)
    np.testing.assert_allclose(network_input, expected, rtol=0, atol=1e-6)


def test_pytorch_fid_uses_half_pixel_centres_and_tf1_does_not():
    row = np.asarray([[[[0], [100]]]], np.float32)  # one row of two pixels
    half_pixel = np.asarray(fid.resize_images(row, "pytorch_fid", size=4))[0, 0, :, 0]
    tf1 = np.asarray(fid.resize_images(row, "tf1", size=4))[0, 0, :, 0]
    # Source of output x: (x + 0.5) / 2 - 0.5 clamped to the edges, against x / 2.
    np.testing.assert_allclose(half_pixel, [0, 25, 75, 100], atol=1e-5)
    np.testing.assert_allclose(tf1, [0, 50, 100, 100], atol=1e-5)


def test_normalisation_per_mode():
    resized = np.asarray([0.0, 128.0, 255.0], np.float32).reshape(1, 1, 3, 1)
    tf1 = np.asarray(fid.normalize_resized(resized, "tf1"))
    np.testing.assert_array_equal(fid.normalize_resized(resized, "clean"), tf1)
    np.testing.assert_allclose(tf1[0, 0, :, 0], [-1, 0, 127 / 128])
    np.testing.assert_allclose(
        np.asarray(fid.normalize_resized(resized, "pytorch_fid"))[0, 0, :, 0],
        [-1, 1 / 255, 1],
        atol=1e-7,
    )
    assert tf1.shape == (1, 1, 3, 3)  # grayscale repeated to RGB


def test_unknown_resize_mode_names_it_and_lists_the_valid_ones():
    assert fid.RESIZE_MODES == ("tf1", "pytorch_fid", "clean")
    message = r"unknown resize mode 'bilinear'; expected one of tf1, pytorch_fid, clean"
    with pytest.raises(ValueError, match=message):
        fid.InceptionFeatureExtractor({}, resize="bilinear")
    with pytest.raises(ValueError, match=message):
        fid.resize_images(np.zeros((1, 8, 8, 1), np.uint8), "bilinear")
    with pytest.raises(ValueError, match=message):
        reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, resize="bilinear")


@pytest.fixture(scope="module")
def random_variables():
    """He-initialised kernels, zero BatchNorm means and betas, unit variances: activations keep
    their scale through the 94 layers, so the features depend on every input pixel."""
    rng = np.random.default_rng(0)
    flat = {}
    for path, shape in inception_weights.expected_layers()[0].items():
        if path[-1] == "kernel":
            fan_in = int(np.prod(shape.shape[:-1]))
            value = rng.standard_normal(shape.shape, np.float32) * np.sqrt(2 / fan_in)
        elif path[-1] == "var":
            value = np.ones(shape.shape, np.float32)
        else:
            value = np.zeros(shape.shape, np.float32)
        flat[path] = value.astype(np.float32)
    return flax.traverse_util.unflatten_dict(flat)


def test_modes_give_different_features_each_from_its_own_input(random_variables):
    images = _random_images((2, 32, 32, 1), seed=2)
    generated = np.random.default_rng(3).uniform(-1, 1, images.shape).astype(np.float32)
    quantised = np.clip(generated * 127.5 + 128, 0, 255).astype(np.uint8)
    # The extractors' own network function, so that its one compilation (batch 2) serves all.
    network = compiler.jit(fid._network_features)
    features = {}
    for mode in fid.RESIZE_MODES:
        extractor = fid.InceptionFeatureExtractor(random_variables, batch_size=2, resize=mode)
        assert extractor.resize == mode
        features[mode] = extractor(images)
        network_input = fid.normalize_resized(fid.resize_images(images, mode), mode)
        expected = network(extractor.variables, network_input)
        np.testing.assert_allclose(features[mode], expected, rtol=0, atol=1e-4)
        if mode == "clean":
            # The host path: padded after the resize, generator output quantised in NumPy as
            # the device modes quantise it (tests/models/test_inception.py checks "tf1").
            np.testing.assert_allclose(extractor(images[:1]), features[mode][:1], atol=1e-5)
            np.testing.assert_array_equal(extractor(generated), extractor(quantised))
    scale = np.abs(features["tf1"]).mean()
    for first, second in [("tf1", "pytorch_fid"), ("tf1", "clean"), ("pytorch_fid", "clean")]:
        difference = np.abs(features[first] - features[second]).mean()
        assert difference > 0.01 * scale, (first, second, difference, scale)


class _ProjectionExtractor:
    """A fixed random projection of the pixels standing in for the network, with a mode."""

    def __init__(self, resize):
        self.resize = resize
        offset = fid.RESIZE_MODES.index(resize)
        self._projection = np.random.default_rng(offset).standard_normal((8 * 8, 2048))

    def __call__(self, images):
        images = fid.check_images(images)
        pixels = images.reshape(len(images), -1).astype(np.float32) / 255
        return (pixels @ self._projection).astype(np.float32)


def _batches():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8) for _ in range(2)]


def _never_called():
    raise AssertionError("the cached reference should have been reused")


def test_reference_key_names_its_mode_and_tf1_keeps_the_old_name():
    old = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, "seed=0")
    assert old.resize == "tf1"
    assert old == reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, "seed=0", "tf1")
    assert old.filename().startswith("cxr_phantom-test-NORMAL-64px-")
    names = {
        mode: reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, resize=mode).filename()
        for mode in fid.RESIZE_MODES
    }
    assert names == {
        "tf1": "cxr_phantom-test-NORMAL-64px.npz",
        "pytorch_fid": "cxr_phantom-test-NORMAL-64px-pytorch_fid.npz",
        "clean": "cxr_phantom-test-NORMAL-64px-clean.npz",
    }


def test_reference_caches_of_different_modes_never_mix(tmp_path):
    made = {}
    for mode in fid.RESIZE_MODES:
        key = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 8, resize=mode)
        made[mode] = reference.load_or_compute(key, _batches, _ProjectionExtractor(mode))
    folder = tmp_path / "cache" / "fid_reference"
    assert len(list(folder.glob("*.npz"))) == 3
    for mode in fid.RESIZE_MODES:
        key = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 8, resize=mode)
        again = reference.load_or_compute(key, _never_called, _ProjectionExtractor(mode))
        assert again.key.resize == mode
        np.testing.assert_array_equal(again.features, made[mode].features)
        stored = str(np.load(folder / key.filename())["preprocessing"])
        assert stored == reference.preprocessing_version(mode)
    assert len({reference.preprocessing_version(mode) for mode in fid.RESIZE_MODES}) == 3
    assert not np.array_equal(made["tf1"].features, made["clean"].features)


def test_an_extractor_of_another_mode_is_refused(tmp_path):
    key = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 8)
    with pytest.raises(
        ValueError, match="resizes with 'clean' but the reference key asks for 'tf1'"
    ):
        reference.load_or_compute(key, _batches, _ProjectionExtractor("clean"), cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.npz"))


def test_a_file_from_before_the_resize_modes_is_read_as_tf1(tmp_path):
    key = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 8)
    reference.load_or_compute(key, _batches, _ProjectionExtractor("tf1"), cache_dir=tmp_path)
    path = tmp_path / key.filename()
    with np.load(path) as archive:
        older = {name: archive[name] for name in archive.files if name != "key_resize"}
    np.savez(path, **older)
    assert reference.load(path).key == key
    reused = reference.load_or_compute(
        key, _never_called, _ProjectionExtractor("tf1"), cache_dir=tmp_path
    )
    assert reused.stats.count == 8
