"""GAN losses on D's logits: "bce" (default), "hinge" and "least_squares".

bce            the non-saturating binary cross-entropy both reports trained with, through
               `optax.sigmoid_binary_cross_entropy` (numerically stable, no sigmoid layer), the
               equivalent of PyTorch's `nn.BCELoss` after `nn.Sigmoid` in the DCGAN tutorial.
hinge          D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))); G: -mean(D(G(z)))
               (Lim & Ye 2017; Miyato et al. 2018).
least_squares  D: 0.5 mean((D(x) - 1)^2) + 0.5 mean(D(G(z))^2); G: 0.5 mean((D(G(z)) - 1)^2)
               (LSGAN, Mao et al. 2017, with targets 0 and 1 on the raw output).
wgan_gp        D: mean(D(G(z))) - mean(D(x)) plus the gradient penalty below; G: -mean(D(G(z)))
               (Gulrajani et al. 2017). The penalty is added by the training step, which owns D.

Gradient penalties, on a function `d` from images (B, H, W, C) to logits (B,):

  gradient_penalty  mean_i (||grad_x d(x_hat)_i|| - 1)^2 at x_hat = e x + (1 - e) G(z), e ~ U(0, 1)
                    per image (WGAN-GP; weight config.train.gp_weight, the paper's 10).
  r1_penalty        mean_i ||grad_x d(x)_i||^2 on real images (Mescheder et al. 2018); the step
                    adds gamma / 2 times it (config.train.r1_weight), lazily: every k-th step with
                    weight k * gamma / 2 (StyleGAN2's lazy regularisation, config.train.r1_every).

Both differentiate sum_i d(x)_i with respect to the images, which gives every image's own
gradient when d treats the images of a batch independently (no BatchNorm in train mode).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

KINDS = ("bce", "hinge", "least_squares", "wgan_gp")


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
        kind: one of KINDS (module docstring).

    Returns:
        Scalar loss.
    """
    check_kind(kind)
    if kind == "hinge":
        return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    if kind == "least_squares":
        return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits**2)
    if kind == "wgan_gp":
        return jnp.mean(fake_logits) - jnp.mean(real_logits)
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def generator_loss(fake_logits: jax.Array, kind: str = "bce") -> jax.Array:
    """G's loss; for "bce" the non-saturating BCE(D(G(z)), 1) = -log sigmoid(D(G(z))).

    Args:
        fake_logits: D's logits on generated images, (B,).
        kind: one of KINDS (module docstring).

    Returns:
        Scalar loss (a batch mean).
    """
    check_kind(kind)
    if kind in ("hinge", "wgan_gp"):
        return -jnp.mean(fake_logits)
    if kind == "least_squares":
        return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


def _squared_gradient_norms(d: Callable[[jax.Array], jax.Array], images: jax.Array) -> jax.Array:
    """||grad_x d(x)_i||^2 per image, (B,)."""
    grads = jax.grad(lambda x: jnp.sum(d(x)))(images)
    return jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1)


def r1_penalty(d: Callable[[jax.Array], jax.Array], real_images: jax.Array) -> jax.Array:
    """mean_i ||grad_x d(x_i)||^2 on real images (unweighted; see the module docstring).

    Example:
        d = lambda x: discriminator.apply(variables, x, labels, train=False).logits
        penalty = losses.r1_penalty(d, images)
    """
    return jnp.mean(_squared_gradient_norms(d, real_images))


def gradient_penalty(
    d: Callable[[jax.Array], jax.Array], real_images: jax.Array, fake_images: jax.Array, key
) -> jax.Array:
    """WGAN-GP's mean_i (||grad d(x_hat_i)|| - 1)^2 on random interpolates (unweighted).

    Args:
        d: images -> logits (B,).
        real_images, fake_images: (B, H, W, C).
        key: PRNG key for the interpolation weights, one per image.
    """
    weights = jax.random.uniform(key, (real_images.shape[0], 1, 1, 1), real_images.dtype)
    interpolates = weights * real_images + (1.0 - weights) * fake_images
    # The norm's gradient at 0 is NaN; the epsilon keeps it finite for a flat d.
    norms = jnp.sqrt(_squared_gradient_norms(d, interpolates) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))
