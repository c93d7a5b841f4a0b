"""Files written so that an interruption never leaves a half-written one under the final name.

A leaf of the package (it imports nothing from it), so every layer can write its archives with it:
the FID statistics (`metrics.fid`), the reference-statistics cache (`metrics.reference`) and the
converted FID Inception weights (`pretrained.inception_weights`).
"""

import os
import pathlib

import numpy as np


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Writes arrays to an uncompressed .npz, atomically (aside, then renamed into place).

    Args:
      path: the archive to write; its folder is created if missing.
      **arrays: the arrays, by the names `np.load` gives them back under.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An interrupted write then never leaves a half-written file under the final name.
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    with open(partial, "wb") as file:
        np.savez(file, **arrays)
    os.replace(partial, path)
