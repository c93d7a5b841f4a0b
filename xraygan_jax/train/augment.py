"""Classifier augmentation: the second report's Keras `ImageDataGenerator` in pure, jittable JAX.

The report trained its classifier with horizontal flips, shear and "rescaling". Each image of a
batch draws its own transform, as `ImageDataGenerator.random_transform` does per image:
  - flip: mirror left-right with probability 1/2 (Keras `horizontal_flip=True`);
  - shear: an angle uniform in [-shear_degrees, shear_degrees], in DEGREES. Keras documents
    `shear_range` as "shear angle in counter-clockwise direction in degrees" and has converted it
    with `deg2rad` since 2018 (earlier releases read radians). So the report's `shear_range=0.2`
    was 0.2 degrees, which moves the corner pixels of a 224-pixel image by under half a pixel:
    practically no shear. Configs state the angle they mean;
  - zoom: factors uniform in [1 - zoom_range, 1 + zoom_range], drawn separately for x and y
    (Keras `zoom_range`). Default 0 (off): the report did not zoom.
The report's `rescale=1/255` is not a geometric augmentation: Keras multiplies the pixel values by
it, to map uint8 to [0, 1]. Our images already enter the models in [-1, 1], so it has no
counterpart here; `zoom_range` is the geometric rescaling on offer.

The warp follows Keras's matrix: with (x, y) a pixel's offset from the image centre (x to the
right, y down, the centre at ((W - 1) / 2, (H - 1) / 2)), the output pixel takes the input at
    x_in = zoom_x * x - sin(angle) * zoom_y * y,    y_in = cos(angle) * zoom_y * y,
sampled bilinearly (`jax.scipy.ndimage.map_coordinates`, order 1). So a positive angle moves the
rows below the centre to the right and those above it to the left (counter-clockwise on screen),
and a zoom factor above 1 shows more of the image (zooms out). Pixels from outside the image are
black (-1); Keras fills with the nearest edge pixel by default, which smears the edge of an X-ray
inwards. The flip comes after the warp, as in Keras.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy import ndimage

from xraygan_jax import errors

# Black in the models' [-1, 1] range.
FILL_VALUE = -1.0
# make_augment's fields and their values when a config leaves one out (all off).
DEFAULTS = {"flip": False, "shear_degrees": 0.0, "zoom_range": 0.0}

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]


def check_parameters(*, flip: bool, shear_degrees: float, zoom_range: float) -> None:
    """Raises ConfigError unless the augmentation parameters are usable.

    Args:
        flip: must be a bool.
        shear_degrees: the largest shear angle, in [0, 90) degrees.
        zoom_range: the largest zoom change, in [0, 1).

    Raises:
        xraygan_jax.errors.ConfigError (a ValueError): naming the parameter, its value and the
            range it must lie in.
    """
    if not isinstance(flip, bool):
        raise errors.ConfigError(f"augment flip={flip!r} must be True or False")
    if not 0.0 <= shear_degrees < 90.0:
        raise errors.ConfigError(
            f"augment shear_degrees={shear_degrees!r} must be in [0, 90) degrees "
            "(0 = no shear; the second report's Keras shear_range=0.2 is 0.2 degrees)"
        )
    if not 0.0 <= zoom_range < 1.0:
        raise errors.ConfigError(
            f"augment zoom_range={zoom_range!r} must be in [0, 1): factors are drawn from "
            "[1 - zoom_range, 1 + zoom_range] (0 = no zoom)"
        )


def shear_and_zoom(
    images: jax.Array,
    shear_degrees: jax.Array,
    zoom_x: jax.Array,
    zoom_y: jax.Array,
    *,
    fill_value: float = FILL_VALUE,
) -> jax.Array:
    """Warps each image by its own shear angle and zoom factors (the module docstring's formula).

    Deterministic; `random_affine` draws the parameters. Shear 0 and zoom 1 give the images back
    exactly (every pixel is then sampled at a whole-pixel position).

    Args:
        images: [B, H, W, C] float.
        shear_degrees: [B] shear angles in degrees (positive: counter-clockwise on screen).
        zoom_x, zoom_y: [B] zoom factors (above 1 zooms out).
        fill_value: the value of pixels that come from outside the image.

    Returns:
        [B, H, W, C], the dtype of `images`.
    """
    height, width = images.shape[1], images.shape[2]
    rows, columns = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
    )
    center_y, center_x = (height - 1) / 2.0, (width - 1) / 2.0
    y, x = rows - center_y, columns - center_x

    def warp_one(image, angle_degrees, factor_x, factor_y):
        angle = jnp.deg2rad(angle_degrees.astype(jnp.float32))
        x_in = factor_x * x - jnp.sin(angle) * factor_y * y + center_x
        y_in = jnp.cos(angle) * factor_y * y + center_y

        def warp_channel(channel):
            return ndimage.map_coordinates(
                channel, [y_in, x_in], order=1, mode="constant", cval=fill_value
            )

        # Channels last in, channels last out.
        return jax.vmap(warp_channel, in_axes=2, out_axes=2)(image)

    warped = jax.vmap(warp_one)(images, shear_degrees, zoom_x, zoom_y)
    return warped.astype(images.dtype)


def random_affine(
    key: jax.Array,
    images: jax.Array,
    *,
    flip: bool,
    shear_degrees: float,
    zoom_range: float,
    fill_value: float = FILL_VALUE,
) -> jax.Array:
    """Random flip, shear and zoom, drawn independently for each image of the batch.

    With everything off it returns `images` itself (no computation, exact). Only the enabled
    parts draw random numbers and run.

    Example:
        augmented = jax.jit(functools.partial(
            augment.random_affine, flip=True, shear_degrees=0.2, zoom_range=0.0))(key, images)

    Args:
        key: a PRNG key; the same key and batch give the same output.
        images: [B, H, W, C] float in [-1, 1].
        flip: mirror each image left-right with probability 1/2.
        shear_degrees: shear angles uniform in [-shear_degrees, shear_degrees] degrees; 0 = off.
        zoom_range: zoom factors uniform in [1 - zoom_range, 1 + zoom_range], separately for x
            and y; 0 = off.
        fill_value: the value of pixels warped in from outside the image (-1 = black).

    Returns:
        [B, H, W, C], the dtype of `images`.

    Raises:
        xraygan_jax.errors.ConfigError (a ValueError): a parameter out of range
            (`check_parameters`).
    """
    check_parameters(flip=flip, shear_degrees=shear_degrees, zoom_range=zoom_range)
    num_images = images.shape[0]
    flip_key, shear_key, zoom_key = jax.random.split(key, 3)
    if shear_degrees or zoom_range:
        angles = jnp.zeros((num_images,), jnp.float32)
        zoom_x = zoom_y = jnp.ones((num_images,), jnp.float32)
        if shear_degrees:
            angles = jax.random.uniform(
                shear_key, (num_images,), minval=-shear_degrees, maxval=shear_degrees
            )
        if zoom_range:
            zoom_x, zoom_y = jax.random.uniform(
                zoom_key, (2, num_images), minval=1.0 - zoom_range, maxval=1.0 + zoom_range
            )
        images = shear_and_zoom(images, angles, zoom_x, zoom_y, fill_value=fill_value)
    if flip:
        flipped = jax.random.bernoulli(flip_key, 0.5, (num_images,))
        images = jnp.where(flipped[:, None, None, None], jnp.flip(images, axis=2), images)
    return images


def make_augment(aug_config: ml_collections.ConfigDict) -> AugmentFn:
    """The augmentation a config asks for, as `augment_fn(key, images) -> images`.

    Pass it to `classifier_steps.classifier_train_step(..., augment_fn=...)`.

    Example:
        aug_config = ml_collections.ConfigDict(
            {"flip": True, "shear_degrees": 0.2, "zoom_range": 0.0})
        augment_fn = augment.make_augment(aug_config)
        augmented = augment_fn(jax.random.key(0), images)

    Args:
        aug_config: fields `flip` (bool), `shear_degrees` (float, degrees), `zoom_range`
            (float); a field left out is off.

    Returns:
        `random_affine` with the config's parameters bound; the identity when all are off.

    Raises:
        xraygan_jax.errors.ConfigError (a ValueError): a field that is not one of the three, or
            a value out of range.
    """
    unknown = sorted(set(aug_config.keys()) - set(DEFAULTS))
    if unknown:
        raise errors.ConfigError(
            f"augment config has unknown field(s) {', '.join(map(repr, unknown))}; "
            f"the fields are: {', '.join(DEFAULTS)}"
        )
    parameters = {name: aug_config.get(name, default) for name, default in DEFAULTS.items()}
    # Configs may spell 0 as an int; bools are not numbers here.
    for name in ("shear_degrees", "zoom_range"):
        value = parameters[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.ConfigError(f"augment {name}={value!r} must be a number")
        parameters[name] = float(value)
    check_parameters(**parameters)
    return functools.partial(random_affine, **parameters)
