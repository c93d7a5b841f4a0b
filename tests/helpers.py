"""Plain helpers the tests share: image files that encode their label, launcher runs, events.

Imported as `import helpers` (pytest puts tests/ on sys.path, as for conftest.py). Fixtures,
the shared trained GAN run and the prepared data set among them, live in conftest.py.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

# Mean gray level of each class's images before any conversion.
CLASS_LEVELS = (60, 190)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_launcher(module: str, *args: str, env: dict | None = None, timeout: int = 300):
    """`python -m module args...` from the repository root, as a user runs a launcher.

    Args:
        module: e.g. "experiments.train_gan".
        *args: its command-line arguments.
        env: variables added to this process's environment.
        timeout: seconds before the run counts as hung.

    Returns:
        The `subprocess.CompletedProcess`, with text stdout and stderr.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_image(path, *, mode: str, size: tuple[int, int], label: int) -> pathlib.Path:
    """Writes an image file (format from the suffix) whose content encodes ``label``.

    Args:
      path: the file to write (parents created).
      mode: Pillow mode: "L", "RGB", "RGBA" (top 10 rows transparent), "P" or "I;16".
      size: (width, height).
      label: 0 gives a dark image (mean ~60), 1 a bright one (~190).

    Returns:
      The path.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng([width, height, label, len(mode)])
    gray = CLASS_LEVELS[label] + rng.integers(-20, 21, (height, width))
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    if mode == "L":
        image = Image.fromarray(gray)
    elif mode in ("RGB", "P"):
        # Equal channels keep luma == gray; P quantises it to a 64-colour palette.
        image = Image.fromarray(np.repeat(gray[..., None], 3, axis=-1))
        if mode == "P":
            image = image.quantize(64)
    elif mode == "RGBA":
        alpha = np.full((height, width), 255, np.uint8)
        alpha[:10] = 0
        rgba = np.concatenate([np.repeat(gray[..., None], 3, axis=-1), alpha[..., None]], -1)
        image = Image.fromarray(rgba)
    elif mode == "I;16":
        # A 12-bit detector range in a 16-bit container. One black and one white pixel span the
        # full 0..4095 range, so scaling by the image's own range gives back about `gray`.
        wide = ((gray.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)
        wide[0, 0], wide[-1, -1] = 0, 4095
        image = Image.fromarray(wide)
    else:
        raise ValueError(f"write_image: unsupported mode {mode}")
    image.save(path)
    return path


def write_truncated_jpeg(path, *, size=(120, 100)) -> pathlib.Path:
    """A JPEG cut after 40% of its bytes (a broken download)."""
    path = pathlib.Path(path)
    write_image(path, mode="L", size=size, label=0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


def read_events(directory):
    """TensorBoard's own reader over one TensorBoard run folder, every event kept.

    The `tensorboard` package (the dev extra) reads event files without TensorFlow; what it
    returns is what TensorBoard shows, after its purge of events a restart superseded.
    """
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    every = {event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    return event_accumulator.EventAccumulator(str(directory), size_guidance=every).Reload()


def grid_tiles(grid: np.ndarray, tile_size: int, padding: int = 2) -> list[np.ndarray]:
    """The tiles of a `viz.tile` mosaic (HWC), row-major, checking the black borders between.

    Args:
      grid: the mosaic, [rows * (tile_size + padding) + padding, same for columns, C].
      tile_size: each tile's height and width.
      padding: the border width.

    Returns:
      Every tile, [tile_size, tile_size, C].
    """
    step = tile_size + padding
    rows, columns = (grid.shape[0] - padding) // step, (grid.shape[1] - padding) // step
    assert grid.shape[:2] == (rows * step + padding, columns * step + padding), grid.shape
    borders = np.ones(grid.shape[:2], bool)
    tiles = []
    for row in range(rows):
        for column in range(columns):
            top, left = padding + row * step, padding + column * step
            borders[top : top + tile_size, left : left + tile_size] = False
            tiles.append(grid[top : top + tile_size, left : left + tile_size])
    assert grid[borders].max() == 0, "the borders between tiles are not black"
    return tiles


def read_grid_png(path, width: int, height: int | None = None) -> np.ndarray:
    """The mosaic of a sample-grid PNG (`viz.save_image_grid`): gray, at one pixel per pixel.

    The PNG draws the mosaic scaled up by a whole factor at the bottom, centred, under an
    optional title (which may widen the figure); this finds the mosaic by its black bottom
    border, checks that every screen pixel of a mosaic pixel has its value, and undoes the
    scaling.

    Args:
      path: the PNG.
      width: the mosaic's width in image pixels (`viz.tile`'s).
      height: its height; default `width` (a square grid).

    Returns:
      uint8 [height, width, 1].
    """
    height = height or width
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    black = np.flatnonzero(pixels[-1, :, 0] == 0)
    left, right = black[0], black[-1] + 1
    scale = (right - left) // width
    assert scale >= 1 and right - left == width * scale, (pixels.shape, left, right, width)
    drawn = pixels[-height * scale :, left:right, 0]
    blocks = drawn.reshape(height, scale, width, scale)
    assert (blocks == blocks[:, :1, :, :1]).all(), "a mosaic pixel drawn in several values"
    return blocks[:, 0, :, 0, None]
