"""Sampling from a trained generator, without optimisers or discriminator.

    gen = sampling.GeneratorState.from_gan_state(gan_state, use_ema=True)
    sample_fn = sampling.make_sample_fn({0: gen, 1: gen}, batch_stats="running")
    images = sample_fn(label=1, num=100, seed=0)          # uint8 [100, S, S, 1]

`sample_fn(label, num, seed) -> uint8 images` is the interface every evaluator takes
(`xraygan_jax.evaluators`), whatever made the images.

Two BatchNorm modes, named in every evaluation record:
  running  G in eval mode with its running statistics (the default; what a deployed G does).
  batch    G in train mode, each batch normalised by its own statistics: the PyTorch DCGAN
           tutorial never calls `netG.eval()`, so its samples (and the first report's FIDs) are
           made this way. Samples then depend on the batch they are drawn in.

With an EMA generator the running statistics of the live G do not belong to the EMA weights; they
are recomputed from the EMA weights (`recalibrate_batch_stats`: one train-mode pass over a large
batch with BatchNorm momentum 0).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xraygan_jax import compiler, pixels

BATCH_STATS_MODES = ("running", "batch")
# Stream of the keys that draw the latents of evaluation / generation samples.
_SAMPLE_STREAM = 3
_RECALIBRATE_STREAM = 4
# Latents per recalibration pass: enough that the statistics' sampling noise is small.
RECALIBRATION_BATCH = 512
SampleFn = Callable[[int, int, int], np.ndarray]


@flax.struct.dataclass
class GeneratorState:
    """What sampling needs: G's module, weights and BatchNorm statistics, and the latent size.

    Attributes:
      params: the generator's params (the EMA ones when the run keeps an EMA).
      batch_stats: running BatchNorm statistics that belong to `params`.
      generator: the Linen module (static).
      nz: latent size (static).
      ema: whether `params` are EMA weights (static; reported in records).
    """

    params: Any
    batch_stats: Any
    generator: nn.Module = flax.struct.field(pytree_node=False)
    nz: int = flax.struct.field(pytree_node=False, default=100)
    ema: bool = flax.struct.field(pytree_node=False, default=False)

    @classmethod
    def from_gan_state(
        cls, state, *, use_ema: bool = True, recalibrate_key: jax.Array | None = None
    ) -> GeneratorState:
        """The sampling view of a `GANState`.

        Args:
          state: a GANState.
          use_ema: take `state.ema_g_params` when the state keeps them.
          recalibrate_key: key of the EMA statistics pass (default: a fixed key).
        """
        use_ema = use_ema and state.ema_g_params is not None
        generator_state = cls(
            params=state.ema_g_params if use_ema else state.g_params,
            batch_stats=state.g_batch_stats,
            generator=state.generator,
            nz=state.nz,
            ema=use_ema,
        )
        if use_ema:
            key = jax.random.key(0) if recalibrate_key is None else recalibrate_key
            generator_state = recalibrate_batch_stats(generator_state, key)
        return generator_state


def _forward(state: GeneratorState, z: jax.Array, labels: jax.Array, train: bool) -> jax.Array:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    if train:
        images, _ = state.generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])
        return images
    return state.generator.apply(variables, z, labels, train=False)


def generate(
    state: GeneratorState, z: jax.Array, labels: jax.Array, *, batch_stats: str = "running"
) -> jax.Array:
    """Images in [-1, 1], (N, S, S, 1), from latents `z` (N, nz) and int labels (N,).

    Args:
      state: a GeneratorState.
      z, labels: the inputs.
      batch_stats: "running" (eval mode) or "batch" (train mode; see the module docstring).
    """
    check_batch_stats_mode(batch_stats)
    return _forward(state, z, labels, train=batch_stats == "batch")


def check_batch_stats_mode(mode: str) -> None:
    if mode not in BATCH_STATS_MODES:
        raise ValueError(
            f"sampling batch_stats mode {mode!r} is unknown; use one of: "
            f"{', '.join(BATCH_STATS_MODES)} (--config.eval.batch_stats)"
        )


def recalibrate_batch_stats(
    state: GeneratorState, key: jax.Array, *, num_classes: int | None = None
) -> GeneratorState:
    """Running BatchNorm statistics recomputed for `state.params` (an EMA G's own statistics).

    One train-mode pass over `RECALIBRATION_BATCH` latents, labels spread evenly over the classes,
    with BatchNorm momentum 0, so the stored statistics are exactly that batch's.
    """
    if not jax.tree.leaves(state.batch_stats):
        return state
    num_classes = num_classes or int(getattr(state.generator, "num_classes", 1))
    z_key = jax.random.fold_in(key, _RECALIBRATE_STREAM)
    z = jax.random.normal(z_key, (RECALIBRATION_BATCH, state.nz), jnp.float32)
    labels = jnp.arange(RECALIBRATION_BATCH, dtype=jnp.int32) % num_classes
    generator = state.generator.clone(bn_momentum=0.0)
    updated = _batch_statistics(generator, state.params, state.batch_stats, z, labels)
    return state.replace(batch_stats=updated)


@functools.partial(jax.jit, static_argnums=0)
def _batch_statistics(generator, params, batch_stats, z, labels):
    """The BatchNorm statistics a train-mode pass stores (compiled once per generator)."""
    _, updated = generator.apply(
        {"params": params, "batch_stats": batch_stats},
        z,
        labels,
        train=True,
        mutable=["batch_stats"],
    )
    return updated["batch_stats"]


_JITTED: dict[str, Callable] = {}


def jitted_generate(batch_stats: str = "running") -> Callable:
    """`generate` compiled once per mode and shared by every caller (it recompiles per shape).

    Returns:
      `(state, z, labels) -> images`.
    """
    check_batch_stats_mode(batch_stats)
    if batch_stats not in _JITTED:
        _JITTED[batch_stats] = compiler.jit(
            lambda state, z, labels: generate(state, z, labels, batch_stats=batch_stats)
        )
    return _JITTED[batch_stats]


def sample_images(
    state: GeneratorState,
    label: int,
    num: int,
    *,
    seed: int,
    batch_stats: str = "running",
    batch_size: int = 256,
) -> Iterator[np.ndarray]:
    """Yields uint8 [b, S, S, 1] batches, `num` images of class `label` in total.

    The latents of image i depend only on (seed, label, i // batch_size): the same call gives the
    same images, and two classes never share latents.
    """
    check_batch_stats_mode(batch_stats)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _SAMPLE_STREAM), label)
    generate_fn = jitted_generate(batch_stats)
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        z = jax.random.normal(jax.random.fold_in(key, start), (count, state.nz), jnp.float32)
        labels = np.full((count,), label, np.int32)
        yield pixels.to_uint8(np.asarray(jax.device_get(generate_fn(state, z, labels))))


def make_sample_fn(
    generators: Mapping[int, GeneratorState], *, batch_stats: str = "running"
) -> SampleFn:
    """`sample_fn(label, num, seed) -> uint8 [num, S, S, 1]` over per-label generators.

    Args:
      generators: {label: GeneratorState}; per-class runs map each label to its own GAN, joint
        runs map every label to the one conditional GAN.
      batch_stats: "running" or "batch".
    """
    check_batch_stats_mode(batch_stats)

    def sample_fn(label: int, num: int, seed: int) -> np.ndarray:
        if label not in generators:
            raise KeyError(f"no generator for label {label}; labels: {sorted(generators)}")
        batches = sample_images(generators[label], label, num, seed=seed, batch_stats=batch_stats)
        return np.concatenate(list(batches))

    return sample_fn
