"""The models' pixel range: images enter and leave the networks as floats in [-1, 1].

Floats are mapped back to uint8 with NVIDIA's quantisation ``clip(x * 127.5 + 128, 0, 255)``
truncated (stylegan2-ada's `metric_utils`), which inverts `data.pipeline`'s ``x / 127.5 - 1``
exactly on every uint8 value. A leaf of the package (NumPy only, no matplotlib), so the sampler
in `train/` converts its output without importing the pictures module `viz`.
"""

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images as uint8: uint8 passes through, floats in [-1, 1] are quantised.

    Args:
      images: uint8 or floating array, any shape.

    Returns:
      uint8 array of the same shape.

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
    return np.clip(images.astype(np.float64) * 127.5 + 128.0, 0, 255).astype(np.uint8)
