"""Orbax checkpoints of a training run: state, data-iterator position and run metadata together.

One `Checkpointer` per model being trained (one per class in per-class GAN mode), each in its own
directory under `workdir/checkpoints/`. A checkpoint is an orbax `Composite` of three items:

  state      the train-state pytree (params, batch stats, optimiser states, step), `PyTreeSave`,
             so that part of it (the generator alone, for sampling) can be restored by itself;
  data_iter  optional: a grain iterator's position (grain's orbax handler, one file per process);
  meta       JSON: epoch, step, the model config and parameter shapes (for the architecture check);
             the GAN loop adds its data position there, counted in global batches, which any
             number of processes can resume from (grain's files belong to one process count).

Checkpoints are numbered by epoch. Orbax writes each into a temporary directory and renames it only
once complete, so a process killed while saving leaves the earlier checkpoints intact and the
half-written one invisible to `latest_epoch()`.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores `(state, data iterator, meta)` per epoch in one directory.

    Args:
      directory: where the numbered checkpoints live (created if missing).
      max_to_keep: how many checkpoints to keep; None keeps all (evaluation reads every one).
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = None):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            # Synchronous: the loop saves rarely (every 20 epochs) and a save must be complete
            # before a crash-prone step follows; it also keeps "killed while saving" simple.
            enable_async_checkpointing=False,
            create=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_names=("state", "data_iter", "meta"),
        )

    def all_epochs(self) -> list[int]:
        """Epochs with a complete checkpoint, ascending."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The newest complete checkpoint's epoch, or None when there is none."""
        epochs = self.all_epochs()
        return epochs[-1] if epochs else None

    def save(
        self,
        epoch: int,
        state: Any,
        meta: Mapping[str, Any],
        data_iterator: grain.DatasetIterator | None = None,
    ) -> None:
        """Writes the checkpoint of `epoch` and waits until it is complete on disk.

        Raises:
          OSError: when the disk is full or not writable; the message names the directory and
            says which earlier checkpoint is still intact.
        """
        items = {"state": ocp.args.PyTreeSave(state), "meta": ocp.args.JsonSave(dict(meta))}
        if data_iterator is not None:
            items["data_iter"] = grain.checkpoint.CheckpointSave(data_iterator)
        try:
            self._manager.save(epoch, args=ocp.args.Composite(**items), force=True)
            self._manager.wait_until_finished()
        except OSError as error:
            intact = self.latest_epoch()
            raise OSError(
                f"could not write checkpoint epoch {epoch} to {self.directory}: {error}. "
                f"The latest intact checkpoint is "
                f"{'epoch ' + str(intact) if intact is not None else 'none'}; free disk space "
                "and rerun the same command to resume from it."
            ) from error

    def read_meta(self, epoch: int) -> dict[str, Any]:
        """The JSON metadata saved with `epoch`."""
        restored = self._manager.restore(
            epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        )
        return dict(restored["meta"])

    def restore(
        self,
        epoch: int,
        abstract_state: Any,
        data_iterator: grain.DatasetIterator | None = None,
    ) -> Any:
        """Restores the state of `epoch` (and moves `data_iterator` to its saved position).

        Args:
          epoch: a value from `all_epochs()`.
          abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) shaped like the
            state, e.g. from `jax.eval_shape`; it fixes structure, dtypes and placement.
          data_iterator: a fresh iterator of the same pipeline, set in place to the saved position.

        Returns:
          The restored state.
        """
        items = {"state": _pytree_restore(abstract_state)}
        if data_iterator is not None:
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self._manager.restore(epoch, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_part(self, epoch: int, abstract_part: Mapping[str, Any]) -> dict[str, Any]:
        """Restores only some fields of the saved state, e.g. the generator for sampling.

        Args:
          epoch: a value from `all_epochs()`.
          abstract_part: {state field name: abstract pytree}, e.g.
            {"g_params": ..., "g_batch_stats": ...}; the other fields (optimiser states, D) are
            not read.

        Returns:
          {field name: restored pytree}.
        """
        restored = self._manager.restore(
            epoch,
            args=ocp.args.Composite(state=_pytree_restore(dict(abstract_part), partial=True)),
        )
        return dict(restored["state"])

    def close(self) -> None:
        self._manager.close()


def _pytree_restore(abstract: Any, *, partial: bool = False) -> ocp.args.PyTreeRestore:
    """Restore arguments that place every leaf as its abstract leaf's sharding says."""
    return ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=partial,
    )


def shape_summary(tree: Any) -> dict[str, list[int]]:
    """Maps each leaf's path to its shape, for comparing architectures across runs."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(path): list(leaf.shape) for path, leaf in leaves}


def check_compatible(
    saved_meta: Mapping[str, Any], current_meta: Mapping[str, Any], directory: os.PathLike
) -> None:
    """Raises if a checkpoint was written by a different architecture than the current config.

    Compares the model config and the parameter shapes saved in the checkpoint's metadata with the
    current ones, and names every difference, so a user never silently overwrites (or crashes on)
    another run's checkpoints.

    Raises:
      ValueError: listing what differs, with the directory and what to do.
    """
    differences = []
    saved_model = saved_meta.get("model", {})
    current_model = current_meta.get("model", {})
    for key in sorted(set(saved_model) | set(current_model)):
        old, new = saved_model.get(key), current_model.get(key)
        if _normalise(old) != _normalise(new):
            differences.append(f"model.{key}: checkpoint {old!r}, config {new!r}")
    for key in ("image_size", "num_classes"):
        if saved_meta.get(key) != current_meta.get(key):
            differences.append(
                f"{key}: checkpoint {saved_meta.get(key)!r}, config {current_meta.get(key)!r}"
            )
    saved_shapes = saved_meta.get("param_shapes", {})
    current_shapes = current_meta.get("param_shapes", {})
    if not differences and saved_shapes != current_shapes:
        changed = sorted(
            k
            for k in set(saved_shapes) | set(current_shapes)
            if saved_shapes.get(k) != current_shapes.get(k)
        )
        for key in changed[:5]:
            differences.append(
                f"param {key}: checkpoint {saved_shapes.get(key)}, config {current_shapes.get(key)}"
            )
    if differences:
        raise ValueError(
            f"{directory} holds a checkpoint of a different architecture than this config:\n  "
            + "\n  ".join(differences)
            + "\nNothing was overwritten. Use a new --workdir, or the config the run was made with."
        )


def _normalise(value: Any) -> Any:
    """JSON turns tuples into lists; compare them as equal."""
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value
