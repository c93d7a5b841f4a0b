"""train: states, losses, optimisers, pure jit steps, sharding, checkpointing, setup.

The GAN training loop, which also writes the run folder and evaluates, sits above this package
(`xraygan_jax.gan_loop`); `setup` builds the models and states it trains.

The pure steps are re-exported here for use from other code:

    from xraygan_jax.train import gan_train_step, create_gan_state
    from xraygan_jax.train import classifier_train_step, create_classifier_state
"""

from xraygan_jax.train.classifier_steps import (
    ClassifierState,
    classifier_train_step,
    create_classifier_state,
    eval_step,
)
from xraygan_jax.train.optimizers import make_classifier_optimizer, make_optimizer
from xraygan_jax.train.state import GANState, create_gan_state
from xraygan_jax.train.steps import (
    discriminator_step,
    gan_train_step,
    generate,
    generator_step,
    sample_latents,
)

__all__ = [
    "ClassifierState",
    "GANState",
    "classifier_train_step",
    "create_classifier_state",
    "eval_step",
    "make_classifier_optimizer",
    "create_gan_state",
    "discriminator_step",
    "gan_train_step",
    "generate",
    "generator_step",
    "make_optimizer",
    "sample_latents",
]
