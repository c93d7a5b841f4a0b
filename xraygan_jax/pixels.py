"""The models' pixel range: images enter and leave the networks as floats in [-1, 1].

Floats go back to the integers 0..255 with NVIDIA's quantisation, ``clip(x * 127.5 + 128, 0, 255)``
in float32, truncated (stylegan2-ada's `metric_utils`), which inverts `data.pipeline`'s
``x / 127.5 - 1`` exactly on every uint8 value. The one conversion of the package: the sampler,
the pictures and the FID preprocessing (on the host and inside jit) all use it. A leaf (NumPy
only, no matplotlib), so `train/`, `models/` and `metrics/` import it as freely as `viz` does.
"""

import numpy as np


def quantize(images):
    """Floats in [-1, 1] to float32 holding the integers 0..255; uint8 passes through.

    Works on NumPy arrays and on jax arrays, traced under jit or not, each with its own array
    namespace (`__array_namespace__`), so the host and the device quantise identically.

    Args:
      images: a floating or uint8 array (NumPy or jax), any shape.

    Returns:
      An array of the same kind and shape: float32 integer values, or the uint8 input itself.
    """
    if images.dtype == np.uint8:
        return images
    xp = images.__array_namespace__()
    return xp.floor(xp.clip(images.astype(xp.float32) * 127.5 + 128.0, 0.0, 255.0))


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images as a uint8 NumPy array: uint8 passes through, floats in [-1, 1] are quantised.

    Args:
      images: uint8 or floating array, any shape.

    Returns:
      uint8 array of the same shape (`quantize`'s values).

    Raises:
      TypeError: any other dtype.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TypeError(
            f"Images must be uint8 in [0, 255] or floats in [-1, 1], got dtype {images.dtype}."
        )
    return quantize(images).astype(np.uint8)
