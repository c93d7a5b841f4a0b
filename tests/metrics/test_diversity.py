"""Diversity (mean pairwise feature distance, generated over real) and the collapse rule."""

import math

import numpy as np
import pytest
import scipy.spatial.distance

from xraygan_jax.metrics import diversity

# The corners of a square of side 2: four sides of 2 and two diagonals of 2 sqrt(2).
SQUARE = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])


def test_mean_pairwise_distance_of_hand_made_points():
    assert diversity.mean_pairwise_distance([[0.0, 0.0], [3.0, 4.0]]) == 5.0
    # A 3-4-5 triangle: (3 + 4 + 5) / 3.
    assert diversity.mean_pairwise_distance([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]]) == 4.0
    assert diversity.mean_pairwise_distance(SQUARE) == pytest.approx(
        (4 * 2 + 2 * 2 * math.sqrt(2)) / 6, rel=1e-15
    )
    # Identical rows are exactly 0 apart, far from the origin too.
    assert diversity.mean_pairwise_distance(np.full((5, 7), 1e3)) == 0.0


def test_mean_pairwise_distance_matches_scipy_pdist_across_blocks():
    features = np.random.default_rng(0).normal(size=(37, 2048)) * 3 + 10
    expected = scipy.spatial.distance.pdist(features).mean()
    # Blocks of 8 rows leave a partial last block; the result must not depend on the blocking.
    for block_size in (8, 1024):
        got = diversity.mean_pairwise_distance(features, block_size=block_size)
        assert got == pytest.approx(expected, rel=1e-12)


def test_diversity_is_one_for_a_shifted_copy_half_for_half_the_spread_zero_for_one_image():
    assert diversity.diversity(SQUARE, SQUARE + 5.0) == pytest.approx(1.0, rel=1e-15)
    assert diversity.diversity(SQUARE, 0.5 * SQUARE) == pytest.approx(0.5, rel=1e-15)
    assert diversity.diversity(SQUARE, np.repeat(SQUARE[:1], 6, axis=0)) == 0.0
    # Only the spread counts, not the number of images: the square's sides alone, two pairs.
    assert diversity.diversity(SQUARE, SQUARE[:2]) == pytest.approx(
        2 / ((4 * 2 + 2 * 2 * math.sqrt(2)) / 6), rel=1e-15
    )
    assert math.isnan(diversity.diversity(np.zeros((3, 2)), SQUARE))


def test_bad_features_are_named():
    with pytest.raises(ValueError, match="at least 2 rows, got 1"):
        diversity.mean_pairwise_distance(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"must be \[N, D\], got shape \(4,\)"):
        diversity.mean_pairwise_distance(np.zeros(4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        diversity.mean_pairwise_distance([[0.0, np.nan], [1.0, 1.0]])
    with pytest.raises(ValueError, match="differ in dimension: 2 vs 3"):
        diversity.diversity(SQUARE, np.zeros((4, 3)))


@pytest.mark.parametrize(
    ("recall", "score", "collapsed"),
    [
        (0.0, 0.1, True),  # no real image covered, features bunched: the template case
        (0.0, 0.9, False),  # varied but far from the real images: bad, not collapsed
        (0.3, 0.1, False),  # narrow but covering some real images
        (0.0, None, True),  # a record written before diversity was: recall alone
        (0.0, float("nan"), True),
        (float("nan"), 0.1, True),  # too few images for recall: diversity alone
        (None, None, False),  # nothing measured, nothing claimed
        (0.01, 0.1, False),  # the thresholds are strict
        (0.0, 0.25, False),
    ],
)
def test_the_collapse_rule(recall, score, collapsed):
    assert diversity.is_collapsed(recall, score) is collapsed


def test_a_collapse_warning_names_the_class_and_the_numbers():
    record = {
        "gan": "conditional",
        "epoch": 2,
        "class": "NORMAL",
        "recall": 0.0,
        "diversity": 0.031,
    }
    assert diversity.collapse_warning(record) == (
        "NORMAL collapsed (gan conditional, epoch 2): recall 0.000, diversity 0.031 "
        "(collapsed = recall < 0.01 and the lower of diversity and coarse diversity < 0.25)"
    )
    varied = {**record, "class": "PNEUMONIA", "diversity": 0.8}
    assert diversity.collapse_warning(varied) is None
    old = {"epoch": 4, "class": "COVID", "recall": 0.0}  # no diversity field
    assert diversity.collapse_warnings([record, varied, old]) == [
        diversity.collapse_warning(record),
        "COVID collapsed (epoch 4): recall 0.000, diversity not measured "
        "(collapsed = recall < 0.01 and the lower of diversity and coarse diversity < 0.25)",
    ]
    # A template plus grain: varied features, one layout. The coarse figure names the collapse.
    grain = {**record, "diversity": 0.63, "coarse_diversity": 0.152}
    assert diversity.collapse_warning(grain) == (
        "NORMAL collapsed (gan conditional, epoch 2): recall 0.000, diversity 0.630, coarse "
        "diversity 0.152 (collapsed = recall < 0.01 and the lower of diversity and coarse "
        "diversity < 0.25)"
    )


@pytest.mark.parametrize(
    ("recall", "score", "coarse", "collapsed"),
    [
        (0.0, 0.63, 0.15, True),  # one layout plus grain: the main job's GAN at 3 minutes
        (0.0, 0.63, 0.9, False),  # varied layouts, varied features: not collapsed
        (0.0, 0.1, 0.9, True),  # bunched features: collapsed whatever the layout says
        (0.3, 0.63, 0.15, False),  # some real images covered
        (0.0, None, 0.15, True),  # feature diversity not measured: the coarse one alone
        (None, None, None, False),
        (0.0, 0.63, 0.25, False),  # the threshold is strict
    ],
)
def test_the_collapse_rule_takes_the_lower_diversity(recall, score, coarse, collapsed):
    assert diversity.is_collapsed(recall, score, coarse) is collapsed
    record = {"recall": recall, "diversity": score, "coarse_diversity": coarse}
    assert diversity.record_collapsed(record) is collapsed


def _films(layouts: np.ndarray, grain: float, seed: int) -> np.ndarray:
    """64 x 64 films: a bright square whose corner is each layout, plus white grain."""
    rng = np.random.default_rng(seed)
    images = np.full((len(layouts), 64, 64, 1), 40.0)
    for image, (row, col) in zip(images, layouts, strict=True):
        image[row : row + 24, col : col + 24] = 200.0
    return images + grain * rng.normal(size=images.shape)


def test_coarse_diversity_sees_one_layout_through_the_grain():
    rng = np.random.default_rng(0)
    real = _films(rng.integers(0, 40, (30, 2)), grain=10.0, seed=1)
    varied = _films(rng.integers(0, 40, (30, 2)), grain=10.0, seed=2)
    template = _films(np.repeat([[20, 20]], 30, axis=0), grain=40.0, seed=3)
    assert diversity.coarse_diversity(real, varied) == pytest.approx(1.0, abs=0.15)
    # Loud grain on one layout: far from alike at full resolution, near 0 at 16 x 16.
    full = diversity.diversity(real.reshape(30, -1), template.reshape(30, -1))
    coarse = diversity.coarse_diversity(real, template)
    assert full > 0.5 and coarse < 0.25


def test_coarse_images_average_blocks_or_resize():
    images = np.arange(2 * 32 * 32, dtype=np.float64).reshape(2, 32, 32, 1)
    blocks = diversity.coarse_images(images, size=16)
    np.testing.assert_allclose(blocks[0, 0], images[0, :2, :2].mean())
    assert blocks.shape == (2, 256)
    assert diversity.coarse_images(np.zeros((2, 24, 24, 1)), size=16).shape == (2, 256)
    assert diversity.coarse_images(np.zeros((2, 8, 8, 1)), size=16).shape == (2, 64)


def test_bad_images_are_named():
    with pytest.raises(ValueError, match=r"must be \[N, S, S, C\], got shape \(2, 8, 8\)"):
        diversity.coarse_images(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match=r"differ in shape: \(8, 8, 1\) vs \(16, 16, 1\)"):
        diversity.coarse_diversity(np.zeros((2, 8, 8, 1)), np.zeros((2, 16, 16, 1)))
