"""GAN losses on D's logits, by name: "bce" (default), "hinge", "least_squares", "wgan_gp".

bce            the non-saturating binary cross-entropy both reports trained with, through
               `optax.sigmoid_binary_cross_entropy` (numerically stable, no sigmoid layer), the
               equivalent of PyTorch's `nn.BCELoss` after `nn.Sigmoid` in the DCGAN tutorial.
hinge          D: mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))); G: -mean(D(G(z)))
               (Lim & Ye 2017; Miyato et al. 2018).
least_squares  D: 0.5 mean((D(x) - 1)^2) + 0.5 mean(D(G(z))^2); G: 0.5 mean((D(G(z)) - 1)^2)
               (LSGAN, Mao et al. 2017, with targets 0 and 1 on the raw output).
wgan_gp        D: mean(D(G(z))) - mean(D(x)) plus the gradient penalty below; G: -mean(D(G(z)))
               (Gulrajani et al. 2017). The penalty is added by the training step, which owns D.

The losses form a registry, `LOSSES`, of `Loss` entries keyed by name (config.train.loss), as
StudioGAN keeps its loss functions in dicts. An entry holds D's and G's losses and says what
else the loss needs: WGAN-GP's gradient penalty (`needs_gradient_penalty`, which the training
step adds), and logits that depend on their image alone (`needs_per_image_logits`), which D's
BatchNorm in train mode breaks (the config check refuses the pair). Code outside this module
asks the entry, never the name: `steps.StepOptions` looks it up once.

Gradient penalties, on a function `d` from images (B, H, W, C) to logits (B,):

  gradient_penalty  mean_i (||grad_x d(x_hat)_i|| - 1)^2 at x_hat = e x + (1 - e) G(z), e ~ U(0, 1)
                    per image (WGAN-GP; weight config.train.gp_weight, the paper's 10).
  r1_penalty        mean_i ||grad_x d(x)_i||^2 on real images (Mescheder et al. 2018); the step
                    adds gamma / 2 times it (config.train.r1_weight), lazily: every k-th step with
                    weight k * gamma / 2 (StyleGAN2's lazy regularisation, config.train.r1_every).

Both differentiate sum_i d(x)_i with respect to the images, which gives every image's own
gradient when d treats the images of a batch independently (no BatchNorm in train mode).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Loss:
    """One GAN loss: D's and G's losses on D's logits, and what the step must add to them.

    Attributes:
        name: its name in LOSSES, the value of config.train.loss.
        d_loss: (real_logits (B,), fake_logits (B,)) -> D's scalar loss.
        g_loss: fake_logits (B,) -> G's scalar loss.
        needs_gradient_penalty: the training step adds gp_weight times `gradient_penalty` to D's
            loss (WGAN-GP).
        per_image_reason: why the loss needs each image's logit to depend on that image alone
            (the config check's message quotes it); "" when it does not.
    """

    name: str
    d_loss: Callable[[jax.Array, jax.Array], jax.Array]
    g_loss: Callable[[jax.Array], jax.Array]
    needs_gradient_penalty: bool = False
    per_image_reason: str = ""

    @property
    def needs_per_image_logits(self) -> bool:
        """Whether D's logits must be per image: no BatchNorm in D (it mixes the batch)."""
        return bool(self.per_image_reason)


def _bce_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """BCE(D(x), 1) + BCE(D(G(z)), 0), summed as the tutorial's errD."""
    real = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    fake = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return jnp.mean(real) + jnp.mean(fake)


def _bce_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """The non-saturating BCE(D(G(z)), 1) = -log sigmoid(D(G(z)))."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)))


def _hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def _least_squares_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    return 0.5 * jnp.mean((real_logits - 1.0) ** 2) + 0.5 * jnp.mean(fake_logits**2)


def _least_squares_generator_loss(fake_logits: jax.Array) -> jax.Array:
    return 0.5 * jnp.mean((fake_logits - 1.0) ** 2)


def _wasserstein_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    return jnp.mean(fake_logits) - jnp.mean(real_logits)


def _minus_mean_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """-mean(D(G(z))): G's hinge loss and its Wasserstein loss."""
    return -jnp.mean(fake_logits)


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("bce", _bce_discriminator_loss, _bce_generator_loss),
        Loss("hinge", _hinge_discriminator_loss, _minus_mean_generator_loss),
        Loss("least_squares", _least_squares_discriminator_loss, _least_squares_generator_loss),
        Loss(
            "wgan_gp",
            _wasserstein_discriminator_loss,
            _minus_mean_generator_loss,
            needs_gradient_penalty=True,
            per_image_reason=(
                "the gradient penalty is defined per image, and BatchNorm makes each image's "
                "logit depend on the whole batch (Gulrajani et al. leave it out)"
            ),
        ),
    )
}
KINDS = tuple(LOSSES)


def get_loss(kind: str) -> Loss:
    """The LOSSES entry named `kind`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones and names the flag).
    """
    if kind not in LOSSES:
        raise ValueError(
            f"GAN loss {kind!r} does not exist; use one of: {', '.join(KINDS)} "
            "(--config.train.loss)"
        )
    return LOSSES[kind]


def check_kind(kind: str) -> None:
    """Raises ValueError unless `kind` names a loss (`get_loss`)."""
    get_loss(kind)


def discriminator_loss(
    real_logits: jax.Array, fake_logits: jax.Array, kind: str = "bce"
) -> jax.Array:
    """D's loss `kind` (`get_loss(kind).d_loss`); for "bce", BCE(D(x), 1) + BCE(D(G(z)), 0).

    Args:
        real_logits: D's logits on real images, (B,).
        fake_logits: D's logits on generated images, (B,).
        kind: one of KINDS (module docstring).

    Returns:
        Scalar loss.
    """
    return get_loss(kind).d_loss(real_logits, fake_logits)


def generator_loss(fake_logits: jax.Array, kind: str = "bce") -> jax.Array:
    """G's loss `kind` (`get_loss(kind).g_loss`); for "bce", the non-saturating BCE(D(G(z)), 1).

    Args:
        fake_logits: D's logits on generated images, (B,).
        kind: one of KINDS (module docstring).

    Returns:
        Scalar loss (a batch mean).
    """
    return get_loss(kind).g_loss(fake_logits)


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
