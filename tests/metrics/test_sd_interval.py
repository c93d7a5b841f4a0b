"""statistics.sd_interval: the interval of a seed-to-seed standard deviation."""

import numpy as np
import pytest

from xraygan_jax.metrics import statistics


@pytest.mark.parametrize("num_seeds", [10, 30])
def test_the_sd_interval_covers_the_true_sd_at_its_nominal_rate(num_seeds):
    generator = np.random.default_rng(num_seeds)
    draws = generator.normal(0.80, 0.02, (4000, num_seeds))
    sds = draws.std(axis=1, ddof=1)
    covered = [
        low <= 0.02 <= high for low, high in (statistics.sd_interval(sd, num_seeds) for sd in sds)
    ]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.015)


def test_the_sd_interval_of_the_documented_demo_baseline():
    low, high = statistics.sd_interval(0.0176, 30)
    assert (low, high) == pytest.approx((0.0140, 0.0236), abs=1e-4)  # docs/performance.md
    assert all(np.isnan(statistics.sd_interval(0.02, 1)))
