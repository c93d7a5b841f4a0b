"""DiffAugment (Zhao et al. 2020): differentiable augmentation of every image D sees.

    images = diffaugment.augment(key, images, "color,translation,cutout")

On small sets D memorises the real images and G collapses. Augmenting both the real and the
generated images, in the D step and in the G step, with transformations that gradients pass
through keeps D from memorising without teaching G the augmentations. The three policies, for
one-channel images in [-1, 1] (NHWC), each drawn per image:

  color        brightness + U(-0.5, 0.5); contrast: (x - mean) * U(0.5, 1.5) + mean.
               (The original's saturation is the identity on one channel and is left out.)
  translation  a shift of up to 1/8 of the side in each direction, whole pixels, zero-filled
               (zero is mid-grey in [-1, 1], as the original's zero padding).
  cutout       a square of half the side, set to zero, at a random place (it may overlap the
               border).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str, flag: str = "--config.train.diffaugment") -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> ().

    Args:
      policy: comma-separated policy names.
      flag: the config flag the policy came from, for the error message.

    Raises:
      ValueError: an unknown name (lists the valid ones and names `flag`).
    """
    names = tuple(name.strip() for name in policy.split(",") if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(
            f"augmentation {', '.join(map(repr, unknown))} does not exist; valid: "
            f"{', '.join(POLICIES)} (comma-separated, {flag})"
        )
    return names


def color(key: jax.Array, images: jax.Array) -> jax.Array:
    brightness_key, contrast_key = jax.random.split(key)
    batch = images.shape[0]
    brightness = jax.random.uniform(brightness_key, (batch, 1, 1, 1), minval=-0.5, maxval=0.5)
    images = images + brightness
    mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
    contrast = jax.random.uniform(contrast_key, (batch, 1, 1, 1), minval=0.5, maxval=1.5)
    return (images - mean) * contrast + mean


def translate(images: jax.Array, shifts: jax.Array) -> jax.Array:
    """Moves image i by shifts[i] = (dy, dx) whole pixels, filling with zeros.

    Output pixel (y, x) takes input pixel (y - dy, x - dx).
    """
    height, width = images.shape[1], images.shape[2]
    pad = max(height, width)
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(image, shift):
        start = (pad - shift[0], pad - shift[1], 0)
        return jax.lax.dynamic_slice(image, start, (height, width, image.shape[-1]))

    return jax.vmap(one)(padded, shifts)


def translation(key: jax.Array, images: jax.Array, ratio: float = TRANSLATION_RATIO):
    height, width = images.shape[1], images.shape[2]
    limit = jnp.array([int(height * ratio + 0.5), int(width * ratio + 0.5)])
    shifts = jax.random.randint(key, (images.shape[0], 2), -limit, limit + 1)
    return translate(images, shifts)


def cutout(key: jax.Array, images: jax.Array, ratio: float = CUTOUT_RATIO) -> jax.Array:
    batch, height, width = images.shape[:3]
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    y_key, x_key = jax.random.split(key)
    # Centres anywhere in the image, as the original (the square may leave the border).
    centre_y = jax.random.randint(y_key, (batch, 1, 1), 0, height + (1 - size_y % 2))
    centre_x = jax.random.randint(x_key, (batch, 1, 1), 0, width + (1 - size_x % 2))
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (
        (rows >= centre_y - size_y // 2)
        & (rows < centre_y - size_y // 2 + size_y)
        & (cols >= centre_x - size_x // 2)
        & (cols < centre_x - size_x // 2 + size_x)
    )
    return images * (~inside)[..., None].astype(images.dtype)


_FUNCTIONS = {"color": color, "translation": translation, "cutout": cutout}


def augment(
    key: jax.Array,
    images: jax.Array,
    policy: str | tuple[str, ...],
    probability: jax.Array | float | None = None,
) -> jax.Array:
    """Applies the policies in order, each with its own key; the identity for an empty policy.

    Args:
      key: PRNG key.
      images: (B, H, W, C).
      policy: names from POLICIES, as a tuple or comma-separated.
      probability: None applies every policy to every image (DiffAugment). A scalar p in [0, 1]
        (ADA, possibly traced) applies each policy to each image independently with probability
        p, so p = 0 is the identity and p = 1 is DiffAugment.
    """
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for index, name in enumerate(names):
        op_key = jax.random.fold_in(key, index)
        augmented = _FUNCTIONS[name](op_key, images)
        if probability is None:
            images = augmented
        else:
            chosen = jax.random.uniform(jax.random.fold_in(op_key, len(POLICIES)), (len(images),))
            images = jnp.where((chosen < probability)[:, None, None, None], augmented, images)
    return images
