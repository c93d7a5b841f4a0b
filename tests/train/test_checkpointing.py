"""Checkpointer: a full disk while saving names the directory and keeps the earlier checkpoint."""

import errno

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from xraygan_jax.train import checkpointing


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
