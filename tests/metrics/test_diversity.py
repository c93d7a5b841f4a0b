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
        "(collapsed = recall < 0.01 and diversity < 0.25)"
    )
    varied = {**record, "class": "PNEUMONIA", "diversity": 0.8}
    assert diversity.collapse_warning(varied) is None
    old = {"epoch": 4, "class": "COVID", "recall": 0.0}  # no diversity field
    assert diversity.collapse_warnings([record, varied, old]) == [
        diversity.collapse_warning(record),
        "COVID collapsed (epoch 4): recall 0.000, diversity not measured "
        "(collapsed = recall < 0.01 and diversity < 0.25)",
    ]
