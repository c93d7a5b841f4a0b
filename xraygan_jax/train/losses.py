"""GAN losses: the non-saturating binary cross-entropy both reports trained with.

On logits, through `optax.sigmoid_binary_cross_entropy` (numerically stable, no sigmoid layer),
the equivalent of PyTorch's `nn.BCELoss` after `nn.Sigmoid` in the DCGAN tutorial.
"""

import jax
import jax.numpy as jnp
import optax


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """BCE(D(x), 1) + BCE(D(G(z)), 0), each a batch mean, summed as the DCGAN tutorial's errD.

    Args:
        real_logits: D's logits on real images, (B,).
        fake_logits: D's logits on generated images, (B,).

    Returns:
        Scalar loss.
    """
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating generator loss BCE(D(G(z)), 1) = -log sigmoid(D(G(z))), batch mean.

    Args:
        fake_logits: D's logits on generated images, (B,).

    Returns:
        Scalar loss.
    """
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))
