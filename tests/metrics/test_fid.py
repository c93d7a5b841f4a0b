"""Tests of FID, KID, precision/recall and the feature statistics against plain references.

None of these needs the Inception weights: the statistics are tested on random features, and
the extractor's input checks run before its network (built here on zero variables).
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance

from xraygan_jax.metrics import fid
from xraygan_jax.pretrained import inception_weights


def _random_covariance(rng, dim):
    a = rng.standard_normal((dim, 2 * dim))
    return a @ a.T / (2 * dim) + 0.1 * np.eye(dim)


def _frechet_with_sqrtm(mu1, sigma1, mu2, sigma2):
    # The textbook form (TTUR / pytorch-fid): the square root of the non-symmetric product.
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


@pytest.mark.slow  # 2048-d eigendecompositions: a minute on 2 shared cores
def test_frechet_of_unit_gaussians_one_apart_in_2048_d_is_2048():
    eye = np.eye(2048)
    a = fid.FeatureStats.from_moments(np.zeros(2048), eye, count=10_000)
    b = fid.FeatureStats.from_moments(np.ones(2048), eye, count=10_000)
    assert fid.frechet_distance(a, b) == pytest.approx(2048, rel=1e-9)
    assert fid.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("dim", [16, 128])
def test_frechet_matches_scipy_sqrtm_form(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
    sigma1, sigma2 = _random_covariance(rng, dim), _random_covariance(rng, dim)
    expected = _frechet_with_sqrtm(mu1, sigma1, mu2, sigma2)
    got = fid.frechet_distance_from_moments(mu1, sigma1, mu2, sigma2)
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "num_a, num_b, dim",
    [
        pytest.param(30, 40, 64, id="both-below-dim"),
        pytest.param(200, 150, 64, id="both-above-dim"),
        pytest.param(5, 300, 16, id="one-below-one-above"),
        # 2048-d eigendecompositions for the reference value: about 6 s on 2 cores.
        pytest.param(48, 48, 2048, id="fid-sized", marks=pytest.mark.slow),
    ],
)
def test_frechet_from_features_equals_the_moments_form(num_a, num_b, dim):
    rng = np.random.default_rng([num_a, num_b, dim])
    # Correlated, offset features, as Inception's are (non-negative, mean about 0.3).
    mixing = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    a = 0.3 + rng.standard_normal((num_a, dim)) @ mixing
    b = 0.5 + 1.3 * rng.standard_normal((num_b, dim)) @ mixing
    mu1, sigma1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, sigma2 = b.mean(0), np.cov(b, rowvar=False)
    # The exact value: the moments form with only the product's rank's largest eigenvalues. The
    # rest are zero but for round-off, whose square roots the moments form adds (about 1e-4 at
    # D = 2048, N = 48).
    eigenvalues, eigenvectors = scipy.linalg.eigh(sigma1)
    root = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T
    product = scipy.linalg.eigvalsh(root @ sigma2 @ root)
    kept = product[-min(num_a - 1, num_b - 1, dim) :]
    diff = mu1 - mu2
    exact = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(kept).sum()
    got = fid.frechet_distance_from_features(a, b)
    assert got == pytest.approx(exact, rel=1e-12)
    moments = fid.frechet_distance_from_moments(mu1, sigma1, mu2, sigma2)
    assert got == pytest.approx(moments, rel=1e-7)
    assert fid.frechet_distance_from_features(a, a) == pytest.approx(0, abs=1e-9)


def test_evaluate_takes_the_feature_form_for_small_sets_and_the_moments_form_for_stats():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((40, 32)), 0.2 + rng.standard_normal((50, 32))
    with pytest.warns(fid.SmallSampleWarning, match="from 40 and 50 samples"):
        from_features = fid.evaluate(real, fake, kid_num_subsets=2)
    with pytest.warns(fid.SmallSampleWarning, match="from 40 and 50 samples"):
        from_stats = fid.evaluate(fid.FeatureStats.from_features(real), fake)
    assert from_features["fid"] == pytest.approx(from_stats["fid"], rel=1e-9)
    assert (from_features["num_real"], from_features["num_fake"]) == (40, 50)


def test_frechet_from_features_rejects_bad_features():
    with pytest.raises(
        ValueError, match=r"features_b: expected features of shape \[N, 8\], got \(4, 7\)"
    ):
        fid.frechet_distance_from_features(np.zeros((4, 8)), np.zeros((4, 7)))
    with pytest.raises(ValueError, match="FID needs at least 2 samples in features_a, got 1"):
        fid.frechet_distance_from_features(np.zeros((1, 8)), np.zeros((4, 8)))
    with pytest.raises(ValueError, match="features_a: features contain NaN or Inf"):
        fid.frechet_distance_from_features(np.full((3, 8), np.inf), np.zeros((4, 8)))


def test_frechet_rejects_bad_moments():
    eye = np.eye(4)
    with pytest.raises(ValueError, match=r"sigma2 has shape \(3, 3\), expected \(4, 4\)"):
        fid.frechet_distance_from_moments(np.zeros(4), eye, np.zeros(4), np.eye(3))
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        fid.frechet_distance_from_moments(np.full(4, np.nan), eye, np.zeros(4), eye)


def test_fid_from_few_samples_warns_with_the_counts():
    rng = np.random.default_rng(0)
    a = fid.FeatureStats.from_features(rng.standard_normal((50, 8)))
    b = fid.FeatureStats.from_features(rng.standard_normal((60, 8)))
    with pytest.warns(fid.SmallSampleWarning, match="from 50 and 60 samples: below 2048"):
        fid.frechet_distance(a, b)


def test_streaming_statistics_equal_numpy_in_float64(tmp_path):
    rng = np.random.default_rng(1)
    # Offset features: a sum-of-squares accumulation would lose digits here.
    features = (1000 + rng.standard_normal((103, 6))).astype(np.float32)
    stats = fid.FeatureStats(dim=6)
    for start, stop in [(0, 1), (1, 40), (40, 41), (41, 103)]:
        stats.update(features[start:stop])
    reference = features.astype(np.float64)
    assert stats.count == 103
    np.testing.assert_allclose(stats.mean, reference.mean(0), rtol=1e-13)
    np.testing.assert_allclose(stats.cov, np.cov(reference, rowvar=False), rtol=1e-9, atol=1e-12)

    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = fid.FeatureStats.load(path)
    assert loaded.count == 103
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_allclose(loaded.cov, stats.cov, rtol=1e-15)
    loaded.update(reference[:3])  # a loaded file keeps streaming
    np.testing.assert_allclose(
        loaded.cov, np.cov(np.concatenate([reference, reference[:3]]), rowvar=False), rtol=1e-9
    )


def test_statistics_reject_bad_features(tmp_path):
    stats = fid.FeatureStats(dim=4)
    with pytest.raises(ValueError, match=r"expected features of shape \[N, 4\], got \(2, 5\)"):
        stats.update(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        stats.update(np.full((2, 4), np.nan))
    stats.update(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="a covariance needs at least 2 samples .* got 1"):
        _ = stats.cov
    path = tmp_path / "other.npz"
    np.savez(path, mu=np.zeros(4))
    with pytest.raises(ValueError, match=r"lacks \['count', 'sigma'\]"):
        fid.FeatureStats.load(path)


def _kid_reference(real, fake, index_pairs):
    """Unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3 written out as sums over pairs."""
    d = real.shape[1]
    values = []
    for index_fake, index_real in index_pairs:
        x, y = fake[index_fake], real[index_real]
        m = len(x)
        kernel = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
        xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
        yy = sum(kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
        xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(m))
        values.append(xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m))
    return np.mean(values), np.std(values)


@pytest.mark.parametrize("precomputed", [True, False])
def test_kid_matches_pairwise_reference(precomputed, monkeypatch):
    if not precomputed:
        monkeypatch.setattr(fid, "_MAX_PRECOMPUTED_KID_SAMPLES", 0)
    rng = np.random.default_rng(2)
    real = rng.standard_normal((25, 8))
    fake = 0.5 + rng.standard_normal((30, 8))
    # Subsets of 20 drawn as compute_kid documents: generated first, then real.
    draws = np.random.default_rng(7)
    pairs = [
        (draws.choice(30, 20, replace=False), draws.choice(25, 20, replace=False)) for _ in range(4)
    ]
    mean, std = fid.compute_kid(real, fake, num_subsets=4, subset_size=20, seed=7)
    expected_mean, expected_std = _kid_reference(real, fake, pairs)
    assert mean == pytest.approx(expected_mean, rel=1e-10)
    assert std == pytest.approx(expected_std, rel=1e-8)
    assert std > 0


def test_kid_subsets_are_the_smaller_set_size_when_below_subset_size():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((12, 4)), rng.standard_normal((15, 4))
    mean, std = fid.compute_kid(real, fake, num_subsets=3, subset_size=1000, seed=0)
    # m = min(12, 15, 1000) = 12: every real subset is the whole real set, reordered.
    draws = np.random.default_rng(0)
    pairs = [
        (draws.choice(15, 12, replace=False), draws.choice(12, 12, replace=False)) for _ in range(3)
    ]
    expected_mean, expected_std = _kid_reference(real, fake, pairs)
    assert (mean, std) == pytest.approx((expected_mean, expected_std), rel=1e-9)


def test_kid_rejects_too_few_samples_and_mismatched_features():
    with pytest.raises(ValueError, match="KID needs at least 2 samples in feats_b, got 1"):
        fid.compute_kid(np.zeros((5, 3)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"feats_b: expected features of shape \[N, 3\]"):
        fid.compute_kid(np.zeros((5, 3)), np.zeros((5, 4)))


def _precision_recall_reference(real, fake, k):
    real_real = scipy.spatial.distance.cdist(real, real)
    fake_fake = scipy.spatial.distance.cdist(fake, fake)
    # Sorted distances include the sample itself at 0: the k-th neighbour is column k.
    real_radius = np.sort(real_real, axis=1)[:, k]
    fake_radius = np.sort(fake_fake, axis=1)[:, k]
    fake_real = scipy.spatial.distance.cdist(fake, real)
    precision = np.mean([(fake_real[i] <= real_radius).any() for i in range(len(fake))])
    recall = np.mean([(fake_real[:, j] <= fake_radius).any() for j in range(len(real))])
    return precision, recall


@pytest.mark.parametrize("k", [1, 3])
def test_precision_recall_match_brute_force(k):
    rng = np.random.default_rng(4)
    real = rng.standard_normal((60, 5))
    fake = 0.8 * rng.standard_normal((45, 5)) + 0.7  # overlapping but shifted
    got = fid.precision_recall(real, fake, k=k, block_size=7)  # blocks of 7 rows
    expected = _precision_recall_reference(real, fake, k)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0 < got[0] < 1 and 0 < got[1] < 1


def test_precision_recall_of_a_set_with_itself_is_one():
    features = np.random.default_rng(5).standard_normal((20, 3))
    assert fid.precision_recall(features, features) == (1.0, 1.0)


def test_precision_recall_rejects_too_few_samples():
    with pytest.raises(ValueError, match="with k=3 needs at least 4 samples in fake_feats, got 3"):
        fid.precision_recall(np.zeros((10, 2)), np.zeros((3, 2)))


def test_evaluate_reports_every_metric_with_counts():
    # 256-d features: the bookkeeping is the same as at 2048, the matrices 512x cheaper.
    rng = np.random.default_rng(6)
    real = rng.standard_normal((40, 256)).astype(np.float32)
    fake = (0.2 + rng.standard_normal((30, 256))).astype(np.float32)
    with pytest.warns(fid.SmallSampleWarning):
        result = fid.evaluate(real, fake, kid_num_subsets=5)
    assert result["num_real"] == 40 and result["num_fake"] == 30
    assert result["kid_subset_size"] == 30 and result["pr_k"] == 3
    assert result["fid"] == fid.frechet_distance_from_features(real, fake)  # N_r N_g <= 256^2
    moments_fid = fid.frechet_distance_from_moments(
        real.astype(np.float64).mean(0),
        np.cov(real.astype(np.float64), rowvar=False),
        fake.astype(np.float64).mean(0),
        np.cov(fake.astype(np.float64), rowvar=False),
    )
    assert result["fid"] == pytest.approx(moments_fid, rel=1e-7)  # its round-off: see above
    assert (result["kid_mean"], result["kid_std"]) == fid.compute_kid(
        real, fake, num_subsets=5, subset_size=1000
    )
    assert (result["precision"], result["recall"]) == fid.precision_recall(real, fake)

    with pytest.warns(fid.SmallSampleWarning):
        from_stats = fid.evaluate(fid.FeatureStats.from_features(real), fake)
    assert set(from_stats) == {"fid", "num_real", "num_fake"}
    assert from_stats["fid"] == pytest.approx(moments_fid, rel=1e-9)


def test_evaluate_rejects_a_single_image():
    with pytest.raises(ValueError, match="FID needs at least 2 samples in fake_feats, got 1"):
        fid.evaluate(np.zeros((5, 2048)), np.zeros((1, 2048)))


@pytest.fixture(scope="module")
def zero_extractor():
    # Zero variables: enough to exercise the input checks, which run before the network.
    shapes = inception_weights.expected_layers()[0]
    variables = flax.traverse_util.unflatten_dict(
        {key: jnp.zeros(s.shape, s.dtype) for key, s in shapes.items()}
    )
    return fid.InceptionFeatureExtractor(variables, batch_size=2)


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 64, 64), np.uint8), r"got shape \(2, 64, 64\) \(add a channel axis"),
        (np.zeros((2, 64, 64, 2), np.uint8), r"C = 1 or 3 \(NHWC\), got shape \(2, 64, 64, 2\)"),
        (np.zeros((2, 3, 64, 64), np.uint8), r"got shape \(2, 3, 64, 64\)"),
        (np.zeros((0, 64, 64, 1), np.uint8), "at least one image"),
        (np.zeros((2, 8, 8, 1), np.int32), "got dtype int32; cast integer images"),
        (np.full((2, 8, 8, 1), 255.0, np.float32), r"in \[-1, 1\] .* got values in \[255, 255\]"),
        (np.array([0.0, np.nan]).reshape(2, 1, 1, 1), "1 of 2 generated images contain NaN"),
    ],
)
def test_extractor_rejects_bad_images(zero_extractor, images, message):
    with pytest.raises(ValueError, match=message):
        zero_extractor(images)


def test_extractor_accepts_jax_arrays_and_rejects_bad_batch_size(zero_extractor):
    checked = fid.check_images(jax.numpy.zeros((1, 4, 4, 3), jnp.float32))
    assert checked.shape == (1, 4, 4, 3)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        fid.InceptionFeatureExtractor(zero_extractor.variables, batch_size=0)
