"""Models and training states built from a config: the one place that turns a config into them.

    generator, discriminator = setup.make_models(config, num_classes=2)
    state = jax.jit(setup.make_init(config, num_classes=2))(jax.random.key(0))
    abstract, init = setup.abstract_state(config, num_classes=2, mesh=mesh)

The GAN training loop (`xraygan_jax.gan_loop`), the run folder (`xraygan_jax.runs`, which
restores a generator for sampling), the benchmarks and the tests all build through these
functions, so a model or a state is made the same way wherever it is made. Nothing here trains,
reads data or writes files.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections

from xraygan_jax.models import gan
from xraygan_jax.train import optimizers, sharding
from xraygan_jax.train import state as state_lib


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """The modules' `dtype` for `config.train.compute_dtype` (default "float32": no casts).

    Raises:
      ValueError: an unknown name (the message names `--config.train.compute_dtype`).
    """
    return gan.compute_dtype(config.train.get("compute_dtype", "float32"))


def make_models(config: ml_collections.ConfigDict, num_classes: int) -> tuple[Any, Any]:
    """The (generator, discriminator) Linen modules of a config.

    Args:
      config: a GAN config (`model`, `data.image_size`, `train.compute_dtype`).
      num_classes: the number of labels the models are conditioned on.

    Returns:
      (generator, discriminator), unbound modules.
    """
    return gan.make_gan(
        config.model,
        image_size=config.data.image_size,
        num_classes=num_classes,
        dtype=compute_dtype(config),
    )


def make_init(config: ml_collections.ConfigDict, num_classes: int) -> functools.partial:
    """`key -> GANState` for a config: its models, optimisers, image size, nz and EMA decay.

    Pure: jit it, or `jax.eval_shape` it.

    Example:
        state = jax.jit(setup.make_init(config, num_classes=2))(jax.random.key(0))
    """
    generator, discriminator = make_models(config, num_classes)
    return functools.partial(
        state_lib.create_gan_state,
        generator,
        discriminator,
        optimizers.make_optimizer(config.optim, "g"),
        optimizers.make_optimizer(config.optim, "d"),
        image_size=config.data.image_size,
        nz=config.model.nz,
        ema_decay=config.train.ema_decay,
        ada=bool(config.train.get("ada", False)),
    )


def abstract_state(config: ml_collections.ConfigDict, num_classes: int, mesh: jax.sharding.Mesh):
    """Returns (abstract state with replicated shardings, jitted init `key -> state`).

    The state is built shape-first (`jax.eval_shape`), then materialised directly replicated on
    the mesh by a jitted init, never on one device first (big_vision's pattern).
    """
    init = make_init(config, num_classes)
    replicated = sharding.replicated(mesh)
    abstract = jax.eval_shape(init, jax.random.key(0))
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated), abstract
    )
    return abstract, jax.jit(init, out_shardings=replicated)
