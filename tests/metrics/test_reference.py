"""Tests of the reference-statistics cache: keys, reuse, invalidation, bad input.

The cache does not depend on which features it stores, so these tests feed it a cheap fixed
random projection of the pixels to 2048-d instead of the Inception network (whose features are
tested in tests/models/test_inception.py).
"""

import numpy as np
import pytest

from xraygan_jax.metrics import fid, reference

_PROJECTION = np.random.default_rng(0).standard_normal((8 * 8, 2048)).astype(np.float32)


def _projection_features(images):
    images = fid.check_images(images)
    return (images.reshape(len(images), -1).astype(np.float32) / 255) @ _PROJECTION


def _batches(num_batches=3, size=4, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, 8, 8, 1), dtype=np.uint8) for _ in range(num_batches)]


def _never_called():
    raise AssertionError("the cached reference should have been reused")


KEY = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, fingerprint="seed=0 n=12")


def test_file_name_is_readable_and_separates_fingerprints():
    assert KEY.filename().startswith("cxr_phantom-test-NORMAL-64px-")
    other = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, fingerprint="seed=1 n=12")
    assert other.filename() != KEY.filename()
    odd = reference.ReferenceKey("my set/v2", "train", "COVID 19", 128)
    assert odd.filename() == "my_set_v2-train-COVID_19-128px.npz"


def test_computed_once_then_reused(tmp_path):
    batches = _batches()
    first = reference.load_or_compute(
        KEY, lambda: batches, _projection_features, cache_dir=tmp_path
    )
    features = np.concatenate([_projection_features(b) for b in batches])
    assert first.stats.count == 12
    np.testing.assert_allclose(first.stats.mean, features.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_array_equal(first.features, features)
    assert (tmp_path / KEY.filename()).is_file()

    again = reference.load_or_compute(KEY, _never_called, _projection_features, cache_dir=tmp_path)
    assert again.key == KEY and again.stats.count == 12
    np.testing.assert_array_equal(again.stats.cov, first.stats.cov)
    np.testing.assert_array_equal(again.features, features)


def test_other_keys_get_their_own_files(tmp_path):
    reference.load_or_compute(KEY, _batches, _projection_features, cache_dir=tmp_path)
    pneumonia = reference.ReferenceKey("cxr_phantom", "test", "PNEUMONIA", 64, "seed=0 n=12")
    other = reference.load_or_compute(
        pneumonia, lambda: _batches(seed=2), _projection_features, cache_dir=tmp_path
    )
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not np.array_equal(other.features, reference.load(tmp_path / KEY.filename()).features)


def test_features_asked_for_after_a_stats_only_file_are_computed(tmp_path):
    stats_only = reference.load_or_compute(
        KEY, _batches, _projection_features, cache_dir=tmp_path, keep_features=False
    )
    assert stats_only.features is None
    with_features = reference.load_or_compute(
        KEY, _batches, _projection_features, cache_dir=tmp_path
    )
    assert with_features.features.shape == (12, 2048)


def test_a_file_made_with_other_preprocessing_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "PREPROCESSING_VERSION", "an older pipeline")
    reference.load_or_compute(KEY, _batches, _projection_features, cache_dir=tmp_path)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="computed with .*an older pipeline.* delete it"):
        reference.load(tmp_path / KEY.filename())
    calls = []

    def batches():
        calls.append(1)
        return _batches()

    reference.load_or_compute(KEY, batches, _projection_features, cache_dir=tmp_path)
    assert calls == [1]
    assert reference.load(tmp_path / KEY.filename()).stats.count == 12


def test_stats_file_loads_as_feature_stats(tmp_path):
    made = reference.load_or_compute(KEY, _batches, _projection_features, cache_dir=tmp_path)
    stats = fid.FeatureStats.load(tmp_path / KEY.filename())
    assert stats.count == 12
    np.testing.assert_array_equal(stats.mean, made.stats.mean)


def test_fewer_than_two_images_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="holds 1 image.*at least 2 .*split or class empty"):
        reference.load_or_compute(
            KEY, lambda: _batches(num_batches=1, size=1), _projection_features, cache_dir=tmp_path
        )
    assert not (tmp_path / KEY.filename()).exists()
