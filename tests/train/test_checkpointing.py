"""Checkpointer: a full disk while saving names the directory and keeps the earlier checkpoint;
the SN-ResNet cGAN's state restores bitwise."""

import errno
import functools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments.configs import sngan_test as sngan_test_config
from xraygan_jax.train import checkpointing, setup, sharding, steps


def test_full_disk_while_saving_names_the_directory_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    checkpointer = checkpointing.Checkpointer(tmp_path / "ck")
    state = {"w": jnp.arange(3.0)}
    checkpointer.save(20, state, {"epoch": 20})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full)
    with pytest.raises(
        OSError,
        match=r"could not write checkpoint epoch 40 to .*ck: .*No space"
        r"[\s\S]*latest intact checkpoint is epoch 20; free disk space",
    ):
        checkpointer.save(40, {"w": jnp.zeros(3)}, {"epoch": 40})
    monkeypatch.undo()

    assert checkpointer.all_epochs() == [20]
    restored = checkpointer.restore(20, jax.eval_shape(lambda: state))
    np.testing.assert_array_equal(restored["w"], [0.0, 1.0, 2.0])
    assert checkpointer.read_meta(20) == {"epoch": 20}


@pytest.mark.slow  # compiles sngan's init and its step: 15-60 s on 2 cores
def test_sngan_state_restores_bitwise_and_training_goes_on_identically(tmp_path):
    """The SN-ResNet cGAN's state (spectral norm's power-iteration vectors, conditional
    BatchNorm, EMA, both Adam states) saved after one step and restored into the abstract state
    the loop builds: equal leaf for leaf, and the next step from it equals the step from the
    state that was never saved."""
    config = sngan_test_config.get_config()
    mesh = sharding.make_mesh()
    abstract, init = setup.abstract_state(config, 2, mesh)
    options = steps.StepOptions.from_config(config.train)
    # States in and out replicated on the mesh as in the loop, so that the restored state's
    # placement matches and the step compiles once.
    replicated = sharding.replicated(mesh)
    step = jax.jit(
        functools.partial(steps.gan_train_step, options=options),
        out_shardings=(replicated, replicated),
    )
    key = jax.random.key(0, impl="rbg")
    batch = {
        "image": jax.random.uniform(key, (8, 32, 32, 1), minval=-1.0, maxval=1.0),
        "label": jnp.arange(8, dtype=jnp.int32) % 2,
    }
    # An "rbg" key: XLA CPU compiles a threefry draw per parameter shape slowly
    # (docs/performance.md, section "Test-suite compile times").
    first, _ = step(init(key), batch, jax.random.fold_in(key, 0))
    checkpointer = checkpointing.Checkpointer(tmp_path / "ck")
    checkpointer.save(1, first, {"epoch": 1})
    restored = checkpointer.restore(1, abstract)
    checkpointer.close()
    assert jax.tree.structure(restored) == jax.tree.structure(first)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(first), jax.device_get(restored))
    assert restored.d_batch_stats and restored.ema_g_params is not None
    straight, _ = step(first, batch, jax.random.fold_in(key, 1))
    resumed, _ = step(restored, batch, jax.random.fold_in(key, 1))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight), jax.device_get(resumed))
