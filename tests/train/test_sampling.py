"""Sampling from a generator: BatchNorm modes, an EMA generator's own statistics, latents."""

import jax
import numpy as np
import pytest

from experiments.configs import test as test_config
from xraygan_jax.train import sampling, setup


@pytest.fixture(scope="module")
def fresh_state():
    config = test_config.get_config()
    config.train.ema_decay = 0.9
    return jax.jit(setup.make_init(config, num_classes=2))(jax.random.key(0))


@pytest.fixture(scope="module")
def ema_state(fresh_state):
    state = fresh_state
    # EMA weights that differ from the live G's, and live statistics that belong to neither.
    shifted = jax.tree.map(lambda p: p * 1.5, state.ema_g_params)
    stats = jax.tree.map(lambda s: s + 3.0, state.g_batch_stats)
    return state.replace(ema_g_params=shifted, g_batch_stats=stats)


@pytest.mark.slow  # compiles the GAN's init and sampler: 10-25 s on 2 cores
def test_ema_generator_statistics_come_from_the_ema_weights(ema_state):
    generator = sampling.GeneratorState.from_gan_state(ema_state, use_ema=True)
    assert generator.ema
    live = jax.tree.leaves(ema_state.g_batch_stats)
    stats = jax.tree.leaves(generator.batch_stats)
    assert all(not np.allclose(a, b) for a, b in zip(stats, live, strict=True))
    # The recalibrated statistics are the batch statistics of the EMA weights on the
    # recalibration batch: eval mode on that batch then equals train mode on it.
    key = jax.random.fold_in(jax.random.key(0), sampling._RECALIBRATE_STREAM)
    z = jax.random.normal(key, (sampling.RECALIBRATION_BATCH, generator.nz))
    labels = np.arange(sampling.RECALIBRATION_BATCH, dtype=np.int32) % 2
    running = sampling.generate(generator, z, labels, batch_stats="running")
    batch = sampling.generate(generator, z, labels, batch_stats="batch")
    np.testing.assert_allclose(running, batch, atol=2e-4)


@pytest.mark.slow  # compiles the GAN's init and sampler: 10-25 s on 2 cores
def test_without_ema_the_live_weights_and_statistics_are_used(ema_state):
    generator = sampling.GeneratorState.from_gan_state(ema_state, use_ema=False)
    assert not generator.ema
    jax.tree.map(np.testing.assert_array_equal, generator.params, ema_state.g_params)
    jax.tree.map(np.testing.assert_array_equal, generator.batch_stats, ema_state.g_batch_stats)


@pytest.mark.slow  # compiles the GAN's init and sampler: 10-25 s on 2 cores
def test_sample_fn_is_deterministic_per_seed(fresh_state):
    generator = sampling.GeneratorState.from_gan_state(fresh_state, use_ema=False)
    sample_fn = sampling.make_sample_fn({0: generator, 1: generator})
    first = sample_fn(0, 5, 7)
    assert first.dtype == np.uint8 and first.shape == (5, 32, 32, 1)
    np.testing.assert_array_equal(first, sample_fn(0, 5, 7))
    assert not np.array_equal(first, sample_fn(0, 5, 8))
    with pytest.raises(KeyError, match=r"no generator for label 2; labels: \[0, 1\]"):
        sample_fn(2, 1, 0)


def test_an_unknown_batch_stats_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"'eval' is unknown; use one of: running, batch"):
        sampling.check_batch_stats_mode("eval")
