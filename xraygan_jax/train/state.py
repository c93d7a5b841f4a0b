"""The GAN training state: one pytree holding everything a step changes and resume needs.

Forked from `flax.training.train_state.TrainState` for two optimisers (its docstring's advice).
The modules and optimisers are static fields (part of the pytree's structure, not its leaves), so
a jitted step sees them as constants. No PRNG key is stored: callers pass
`jax.random.fold_in(base_key, step)` to each step.

The state keeps the running values of ADA (p) and of the EMA of G (its params), so that
checkpoints hold them; whether they run, and their hyper-parameters (the EMA's decay, ADA's
target), are the step options' (`steps.StepOptions`), from which `train.setup.make_init` creates
the state.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class GANState:
    """Generator and discriminator parameters, BatchNorm statistics and optimiser states.

    Attributes:
        step: int32 scalar, the number of `gan_train_step`s taken.
        g_params, g_batch_stats: the generator's "params" and "batch_stats" collections.
        d_params, d_batch_stats: the discriminator's (d_batch_stats is {} without BatchNorm).
        g_opt_state, d_opt_state: optax states of g_tx and d_tx.
        ema_g_params: exponential moving average of g_params; None without EMA.
        ada_p: ADA's augmentation probability p, a float32 scalar; None without ADA. It is part of
            the state, so checkpoints keep it and a resumed run goes on from the saved p.
        ada_signs: the sum of mean(sign(D(x_real))) over the steps since p was last adjusted
            (float32 scalar; None without ADA).
        generator, discriminator: the Linen modules (static).
        g_tx, d_tx: the optax optimisers (static).
        nz: latent size, so steps can sample z (static).
    """

    step: jax.Array
    g_params: Any
    g_batch_stats: Any
    d_params: Any
    d_batch_stats: Any
    g_opt_state: optax.OptState
    d_opt_state: optax.OptState
    ema_g_params: Any
    ada_p: jax.Array | None
    ada_signs: jax.Array | None
    generator: nn.Module = flax.struct.field(pytree_node=False)
    discriminator: nn.Module = flax.struct.field(pytree_node=False)
    g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    nz: int = flax.struct.field(pytree_node=False, default=100)


def create_gan_state(
    generator: nn.Module,
    discriminator: nn.Module,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    key: jax.Array,
    *,
    image_size: int,
    nz: int,
    ema: bool = False,
    ada: bool = False,
) -> GANState:
    """Initialises both networks and their optimisers. Pure: jit it, or `jax.eval_shape` it.

    Example:
        generator, discriminator = gan.make_gan(config.model, image_size=64, num_classes=2)
        init = functools.partial(
            state.create_gan_state, generator, discriminator,
            optimizers.make_optimizer(config.optim, "g"),
            optimizers.make_optimizer(config.optim, "d"),
            image_size=64, nz=config.model.nz)
        abstract = jax.eval_shape(init, key)           # shapes only
        gan_state = jax.jit(init, out_shardings=replicated)(key)

    Args:
        generator, discriminator: Linen modules (xraygan_jax.models.gan).
        g_tx, d_tx: their optimisers (xraygan_jax.train.optimizers.make_optimizer).
        key: a typed PRNG key (`jax.random.key`).
        image_size: side of the square images.
        nz: latent size.
        ema: keep an EMA of the generator's params, starting at the initial params (for
            options with ema_decay > 0).
        ada: keep ADA's augmentation probability, starting at 0 (for options with ada=True).

    Returns:
        A GANState at step 0.
    """
    g_key, d_key = jax.random.split(key)
    z = jnp.zeros((1, nz), jnp.float32)
    labels = jnp.zeros((1,), jnp.int32)
    images = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    g_variables = generator.init(g_key, z, labels, train=False)
    d_variables = discriminator.init(d_key, images, labels, train=False)
    g_params = g_variables["params"]
    d_params = d_variables["params"]
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        g_batch_stats=g_variables.get("batch_stats", {}),
        d_params=d_params,
        d_batch_stats=d_variables.get("batch_stats", {}),
        g_opt_state=g_tx.init(g_params),
        d_opt_state=d_tx.init(d_params),
        ema_g_params=jax.tree.map(jnp.copy, g_params) if ema else None,
        ada_p=jnp.zeros((), jnp.float32) if ada else None,
        ada_signs=jnp.zeros((), jnp.float32) if ada else None,
        generator=generator,
        discriminator=discriminator,
        g_tx=g_tx,
        d_tx=d_tx,
        nz=int(nz),
    )
