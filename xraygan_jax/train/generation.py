"""Images from a trained run: restore a generator from a checkpoint and sample it per class.

Used by `experiments.generate` (PNG folders, as the second report saved 50 images to a folder),
by the FID evaluation (images per class for every checkpoint) and by the augmentation study.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Iterator

import jax
import numpy as np
from PIL import Image

from xraygan_jax import compiler, viz
from xraygan_jax.data import sources
from xraygan_jax.train import checkpointing, gan_loop, sharding, steps

_GENERATE_STREAM = 3


@functools.cache
def _jitted_generate():
    """One jitted `steps.generate` for every call: it compiles once per state and batch shape.

    Built on first use, not at import, so that JAX's backend is chosen by then.
    """
    return compiler.jit(steps.generate, static_argnames="use_ema")


def checkpoint_epochs(workdir: str | os.PathLike, gan_name: str) -> list[int]:
    """Epochs with a complete checkpoint for one GAN of a run."""
    directory = pathlib.Path(workdir) / "checkpoints" / gan_name
    if not directory.exists():
        return []
    return checkpointing.Checkpointer(directory).all_epochs()


def load_gan_state(workdir: str | os.PathLike, gan_name: str, epoch: int | None = None):
    """Restores one GAN of a run at `epoch` (default: the latest). Returns (state, epoch).

    Raises:
      FileNotFoundError: no checkpoint (or not that epoch), naming what exists.
    """
    config = gan_loop.load_run_config(workdir)
    num_classes = len(sources.class_names(config.data))
    directory = pathlib.Path(workdir) / "checkpoints" / gan_name
    checkpoints = checkpointing.Checkpointer(directory)
    epochs = checkpoints.all_epochs()
    if not epochs:
        raise FileNotFoundError(
            f"no checkpoint in {directory}; train first with experiments.train_gan"
        )
    epoch = epochs[-1] if epoch is None else epoch
    if epoch not in epochs:
        raise FileNotFoundError(
            f"no checkpoint of epoch {epoch} in {directory}; saved epochs: {epochs}"
        )
    abstract, _, _ = gan_loop.abstract_and_init(config, num_classes, sharding.make_mesh())
    checkpointing.check_compatible(
        checkpoints.read_meta(epoch), gan_loop.run_meta(config, num_classes, abstract), directory
    )
    state = checkpoints.restore(epoch, abstract)
    checkpoints.close()
    return state, epoch


def sample_images(
    state, label: int, num: int, *, nz: int, seed: int, use_ema: bool, batch_size: int = 256
) -> Iterator[np.ndarray]:
    """Yields uint8 [b, S, S, 1] batches of `num` generated images of one class in total."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _GENERATE_STREAM), label)
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        latents = steps.sample_latents(jax.random.fold_in(key, start), count, nz)
        labels = np.full((count,), label, np.int32)
        images = _jitted_generate()(state, latents, labels, use_ema=use_ema)
        yield viz.to_uint8(jax.device_get(images))


def generate_per_class(
    workdir: str | os.PathLike,
    num_per_class: int,
    *,
    epoch: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """`num_per_class` uint8 images of every class from a run's checkpoints.

    Returns:
      ({class name: uint8 [N, S, S, 1]}, {class name: epoch of the checkpoint used}).
    """
    config = gan_loop.load_run_config(workdir)
    class_names = sources.class_names(config.data)
    images, epochs = {}, {}
    states: dict[str, tuple] = {}
    for label, class_name in enumerate(class_names):
        gan_name = class_name if config.train.per_class else gan_loop.JOINT_GAN_NAME
        if gan_name not in states:
            states[gan_name] = load_gan_state(workdir, gan_name, epoch)
        state, used_epoch = states[gan_name]
        batches = sample_images(
            state,
            label,
            num_per_class,
            nz=config.model.nz,
            seed=seed,
            use_ema=config.train.ema_decay > 0,
        )
        images[class_name] = np.concatenate(list(batches))
        epochs[class_name] = used_epoch
    return images, epochs


def write_image_folder(images: dict[str, np.ndarray], out_dir: str | os.PathLike) -> dict[str, int]:
    """Writes `out_dir/<class>/<class>_00000.png`, ... (what mixing.load_image_folder reads)."""
    counts = {}
    for class_name, class_images in images.items():
        folder = pathlib.Path(out_dir) / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(class_images):
            Image.fromarray(image[..., 0], mode="L").save(folder / f"{class_name}_{index:05d}.png")
        counts[class_name] = len(class_images)
    return counts
