"""GAN losses on D's logits: "bce" (default), "hinge" and "least_squares".

bce            the non-saturating binary cross-entropy both reports trained with, through
               `optax.sigmoid_binary_cross_entropy` (numerically stable, no sigmoid layer), the
               equivalent of PyTorch's `nn.BCELoss` after `nn.Sigmoid` in the DCGAN tutorial.
hinge          D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))); G: -mean(D(G(z)))
               (Lim & Ye 2017; Miyato et al. 2018).
least_squares  D: 0.5 mean((D(x) - 1)^2) + 0.5 mean(D(G(z))^2); G: 0.5 mean((D(G(z)) - 1)^2)
               (LSGAN, Mao et al. 2017, with targets 0 and 1 on the raw output).
"""

import jax
import jax.numpy as jnp
import optax

KINDS = ("bce", "hinge", "least_squares")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(
            f"GAN loss {kind!r} does not exist; use one of: {', '.join(KINDS)} "
            "(--config.train.loss)"
        )


def discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, kind: str = "bce"
) -> jax.Array:
    """D's loss; for "bce", BCE(D(x), 1) + BCE(D(G(z)), 0) summed as the tutorial's errD.

    Args:
        real_logits: D's logits on real images, (B,).
        fake_logits: D's logits on generated images, (B,).
        kind: "bce", "hinge" or "least_squares" (module docstring).

    Returns:
        Scalar loss.
    """
    check_kind(kind)
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    if kind == "least_squares":
        return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits**2)
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def generator_loss(fake_logits: jax.Array, kind: str = "bce") -> jax.Array:
    """G's loss; for "bce" the non-saturating BCE(D(G(z)), 1) = -log sigmoid(D(G(z))).

    Args:
        fake_logits: D's logits on generated images, (B,).
        kind: "bce", "hinge" or "least_squares" (module docstring).

    Returns:
        Scalar loss (a batch mean).
    """
    check_kind(kind)
    if kind == "hinge":
        return -jnp.mean(fake_logits)
    if kind == "least_squares":
        return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))
