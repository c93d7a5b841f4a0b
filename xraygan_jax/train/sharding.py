"""Data parallelism over every device: a 1-D ("data",) mesh, state replicated, batch split.

The form JAX recommends since pmap went into maintenance in JAX 0.8 (docs/design_notes.md, section
"Train steps and data parallelism"): jit the step with these shardings and XLA inserts the
collectives; BatchNorm statistics and losses are then over the global batch, exactly as on one
device. The steps also run per device, under `jax.shard_map` or `pmap` with an `axis_name`;
`mean_over` is their one reduction over that axis.
"""

from typing import Any

import jax
import numpy as np

DATA_AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named "data" over `devices` (default: every device of every process).

    Auto axis types: shardings are propagated by XLA (GSPMD), not part of the array types.

    Args:
        devices: the devices to use, or None for `jax.devices()`.

    Returns:
        The mesh.
    """
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh(
        (len(devices),),
        (DATA_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=devices,
    )


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """The same full copy on every device (states, keys, metrics)."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    """Split along axis 0 (the batch) over the "data" axis."""
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))


def check_batch_divisible(global_batch: int, num_devices: int) -> None:
    """Raises ValueError unless the global batch splits evenly over the devices.

    Args:
        global_batch: config.train.batch_size.
        num_devices: mesh.size.

    Raises:
        ValueError: naming the batch size and the nearest larger multiple that works.
    """
    if global_batch <= 0 or global_batch % num_devices:
        suggestion = max(num_devices, -(-global_batch // num_devices) * num_devices)
        raise ValueError(
            f"batch_size {global_batch} does not divide over {num_devices} devices; "
            f"use a multiple of {num_devices} (e.g. {suggestion})"
        )


def shard_batch(batch: Any, mesh: jax.sharding.Mesh) -> Any:
    """This process's part of a global batch -> global arrays split over the mesh.

    Works on one host (the part is the whole batch) and on many (each process passes the rows it
    loaded; the global batch is their concatenation in process order).

    Args:
        batch: a pytree of NumPy/JAX arrays with the batch on axis 0.
        mesh: the ("data",) mesh.

    Returns:
        The same pytree of jax.Arrays with `batch_sharding(mesh)`.
    """
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda part: jax.make_array_from_process_local_data(sharding, np.asarray(part)), batch
    )


def mean_over(tree: Any, axis_name: str | None) -> Any:
    """pmean over axis_name, or the tree itself when there is none (the global view).

    Under axis_name the steps (xraygan_jax.train.steps, xraygan_jax.train.classifier_steps)
    differentiate the pmean of the per-device losses (the global loss) and then pmean the
    gradients, which is right under both of JAX's autodiff semantics for mapped axes. In shard_map
    with check_vma=True, replicated params are invariant, so their gradient of the (invariant)
    global loss already is the global gradient and the second pmean leaves it unchanged. Under
    pmap or check_vma=False, each device gets d(sum of the per-device losses)/d(its copy of the
    params) divided by the device count, and the pmean of those is the global gradient.
    (Differentiating the local loss and pmean-ing the gradients alone would be N times too large
    with check_vma=True, which sums over devices in the transpose of the implicit broadcast of
    replicated params; Adam hides it in the params but not in its moments.)

    Args:
        tree: a pytree of arrays (a loss, gradients, metrics).
        axis_name: the mapped axis, or None.

    Returns:
        The tree averaged over the axis, or `tree` itself.
    """
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)
