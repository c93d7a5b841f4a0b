"""train: GAN state, losses, optimisers, pure jit steps, sharding, checkpointing, loops.

The pure steps are re-exported here for use from other code:

    from xraygan_jax.train import gan_train_step, create_gan_state
"""

from xraygan_jax.train.optimizers import make_optimizer
from xraygan_jax.train.state import GANState, create_gan_state
from xraygan_jax.train.steps import (
    discriminator_step,
    gan_train_step,
    generate,
    generator_step,
    sample_latents,
)

__all__ = [
    "GANState",
    "create_gan_state",
    "discriminator_step",
    "gan_train_step",
    "generate",
    "generator_step",
    "make_optimizer",
    "sample_latents",
]
