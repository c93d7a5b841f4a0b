"""One GAN step on 8 (fake CPU) devices gives the state of the same step on 1 device.

JAX fixes its device count at import, so the comparison runs in a child process started with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (this file run as a script); the rest of the
suite keeps its single device. The child prints the largest absolute difference per part of the
state; the test asserts each is below 1e-5. Two data-parallel forms are checked:
  jit:       jax.jit with the state replicated and the batch split over a ("data",) mesh, no
             axis_name (what the training loop does);
  shard_map: the step under jax.shard_map with axis_name="data" on per-device batch shards, which
             exercises the pmean of gradients and BatchNorm's cross-device statistics.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

NUM_DEVICES = 8
TOLERANCE = 1e-5
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _max_differences(reference, other) -> dict[str, float]:
    """Largest |reference - other| per top-level part of a (state, metrics) pair."""
    import jax
    import numpy as np

    state, metrics = reference
    other_state, other_metrics = other
    parts = {
        "step": (state.step, other_state.step),
        "g_params": (state.g_params, other_state.g_params),
        "g_batch_stats": (state.g_batch_stats, other_state.g_batch_stats),
        "d_params": (state.d_params, other_state.d_params),
        "d_batch_stats": (state.d_batch_stats, other_state.d_batch_stats),
        "g_opt_state": (state.g_opt_state, other_state.g_opt_state),
        "d_opt_state": (state.d_opt_state, other_state.d_opt_state),
        "ema_g_params": (state.ema_g_params, other_state.ema_g_params),
        "metrics": (metrics, other_metrics),
    }
    differences = {}
    for name, (left, right) in parts.items():
        left_leaves = jax.tree.leaves(jax.device_get(left))
        right_leaves = jax.tree.leaves(jax.device_get(right))
        assert len(left_leaves) == len(right_leaves) > 0, name
        differences[name] = max(
            float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            for a, b in zip(left_leaves, right_leaves, strict=True)
        )
    return differences


def _compare_on_devices() -> dict[str, dict[str, float]]:
    """Runs one gan_train_step three ways; returns the differences to the 1-device run."""
    import functools

    import jax
    import numpy as np
    from jax.sharding import PartitionSpec

    from experiments.configs import test as test_config
    from xraygan_jax.train import setup, sharding, steps

    assert jax.device_count() == NUM_DEVICES, jax.devices()
    config = test_config.get_config()
    image_size, batch_size = 32, 16
    config.data.image_size = image_size
    config.train.ema_decay = 0.5
    # Its pairs (0, 1), (2, 3), ... stay on one device (two images each): the sums are
    # averaged over devices before they are divided.
    config.train.mode_seeking = 1.0
    init = setup.make_init(config, num_classes=2)
    options = steps.StepOptions.from_config(config.train)  # its EMA, as the state's
    # rbg: the initial values do not matter here, and threefry draws of every parameter shape
    # take long to compile on XLA CPU. The step keys below are default (threefry) keys.
    gan_state = jax.jit(init)(jax.random.key(0, impl="rbg"))
    rng = np.random.default_rng(1)
    batch = {
        "image": rng.uniform(-1.0, 1.0, (batch_size, image_size, image_size, 1)).astype(np.float32),
        "label": rng.integers(0, 2, batch_size).astype(np.int32),
    }
    step_key = jax.random.key(2)

    train_step = functools.partial(steps.gan_train_step, options=options)
    one_device = jax.jit(train_step)(gan_state, batch, step_key)

    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    jit_step = jax.jit(
        train_step,
        in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
        out_shardings=(replicated, replicated),
    )
    sharded_batch = sharding.shard_batch(batch, mesh)
    assert len(sharded_batch["image"].sharding.device_set) == NUM_DEVICES
    jit_result = jit_step(jax.device_put(gan_state, replicated), sharded_batch, step_key)

    def per_device_step(state, local_batch, key):
        return train_step(state, local_batch, key, axis_name=sharding.DATA_AXIS)

    def shard_map_result(check_vma: bool):
        # check_vma=False has pmap's autodiff semantics for the mapped axis; True is the default.
        shard_map_step = jax.jit(
            jax.shard_map(
                per_device_step,
                mesh=mesh,
                in_specs=(PartitionSpec(), PartitionSpec(sharding.DATA_AXIS), PartitionSpec()),
                out_specs=(PartitionSpec(), PartitionSpec()),
                check_vma=check_vma,
            )
        )
        return shard_map_step(jax.device_put(gan_state, replicated), sharded_batch, step_key)

    # The step must have moved the state, else equal states would prove nothing.
    moved = _max_differences((gan_state, one_device[1]), one_device)
    return {
        "jit": _max_differences(one_device, jit_result),
        "shard_map": _max_differences(one_device, shard_map_result(check_vma=True)),
        "shard_map_no_vma": _max_differences(one_device, shard_map_result(check_vma=False)),
        "moved": moved,
    }


@pytest.mark.slow  # a training run in a child process with 8 fake devices
def test_eight_devices_match_one_device():
    environment = dict(os.environ)
    environment["XLA_FLAGS"] = (
        environment.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={NUM_DEVICES}"
    )
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), environment.get("PYTHONPATH", "")])
    environment["JAX_PLATFORMS"] = "cpu"
    child = subprocess.run(
        [sys.executable, __file__],
        env=environment,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if child.returncode != 0:
        pytest.fail(f"the 8-device child process failed:\n{child.stderr[-4000:]}")
    differences = json.loads(child.stdout.strip().splitlines()[-1])
    for part in ("g_params", "d_params", "g_batch_stats", "d_batch_stats", "g_opt_state"):
        assert differences["moved"][part] > 1e-4, (part, differences["moved"])
    for form in ("jit", "shard_map", "shard_map_no_vma"):
        for part, difference in differences[form].items():
            assert difference < TOLERANCE, (form, part, differences[form])


def test_batch_size_must_divide_over_devices():
    from xraygan_jax.train import sharding

    sharding.check_batch_divisible(32, 8)
    with pytest.raises(
        ValueError,
        match=r"batch_size 30 does not divide over 8 devices; use a multiple of 8 \(e.g. 32\)",
    ):
        sharding.check_batch_divisible(30, 8)
    with pytest.raises(ValueError, match=r"batch_size 0 .* \(e.g. 8\)"):
        sharding.check_batch_divisible(0, 8)


def test_mean_over_is_the_identity_without_an_axis_and_a_pmean_with_one():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from xraygan_jax.train import sharding

    tree = {"loss": jnp.arange(4.0)}
    assert sharding.mean_over(tree, None) is tree
    averaged = jax.vmap(lambda x: sharding.mean_over(x, "devices"), axis_name="devices")(tree)
    np.testing.assert_array_equal(averaged["loss"], np.full(4, 1.5, np.float32))


def test_shard_batch_splits_axis_zero_over_the_mesh():
    import jax
    import numpy as np

    from xraygan_jax.train import sharding

    mesh = sharding.make_mesh()
    assert mesh.axis_names == (sharding.DATA_AXIS,) and mesh.size == jax.device_count()
    batch = {"image": np.ones((4, 2, 2, 1), np.float32), "label": np.arange(4, dtype=np.int32)}
    sharded = sharding.shard_batch(batch, mesh)
    assert sharded["image"].shape == (4, 2, 2, 1)
    assert sharded["label"].sharding == sharding.batch_sharding(mesh)
    np.testing.assert_array_equal(sharded["label"], batch["label"])


if __name__ == "__main__":
    print(json.dumps(_compare_on_devices()))
