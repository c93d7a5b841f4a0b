"""Gradient-penalty steps of the small-data comparison: lazy R1 by host turns against lax.cond.

The step is experiments/configs/small_data.py's: the reports' DC-cGAN, 64x64x1 images, batch 64,
BCE, one D and one G update. Rows:

  - no penalty: the plain step;
  - R1 turn / R1 skipped, host: `StepOptions.at_step` picks the step's options on the host
    (r1_now True or False), one compiled step each; what the training loop does;
  - R1 turn / R1 skipped, lax.cond: r1_now None, the step decides from state.step inside a
    `lax.cond` (what the library did before, and what a caller that never calls at_step gets);
  - R1 turn, earlier down-conv VJP: the host's R1 turn with D's down-convolutions taking their
    input gradient from `layers.transposed_conv` (what `layers.down_conv_2x` did before), whose
    own derivative, which R1 needs, is autodiff of lax.conv_transpose;
  - WGAN-GP: the interpolate penalty on every step (no laziness).

Each row runs in a process of its own, in alternating rounds (experiments/benchmarks/processes.py).
The table gives the median step time and, for lazy R1, the mean per step over one period of
r1_every steps (one turn, r1_every - 1 skipped), the figure a run's speed follows.

    python -m experiments.benchmarks.gradient_penalties
    python -m experiments.benchmarks.gradient_penalties --cond=false   # skip the slow cond rows
"""

import dataclasses
import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.benchmarks import processes
from experiments.configs import small_data
from xraygan_jax import compiler
from xraygan_jax.models import layers
from xraygan_jax.train import setup, steps

_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed rounds per row.")
_STEPS_PER_ROUND = flags.DEFINE_integer("steps_per_round", 1, "Steps timed per round.")
_R1_EVERY = flags.DEFINE_integer("r1_every", 16, "Lazy R1's period (StyleGAN2's 16).")
_COND = flags.DEFINE_bool(
    "cond", True, "Also time the lax.cond form (its R1 turn takes over a minute on a 2-core CPU)."
)

NUM_CLASSES = 2


def _config():
    config = small_data.get_config()
    job = config.gan
    job.data = config.data
    return job


@jax.custom_vjp
def _earlier_down_conv_2x(x, kernel):
    return layers.strided_conv(x, kernel)


def _earlier_forward(x, kernel):
    return layers.strided_conv(x, kernel), (x, kernel)


def _earlier_backward(residuals, output_grad):
    x, kernel = residuals
    x_grad = layers.transposed_conv(output_grad, kernel.transpose(0, 1, 3, 2))
    _, pullback = jax.vjp(lambda k: layers.strided_conv(x, k), kernel)
    return x_grad, pullback(output_grad)[0]


_earlier_down_conv_2x.defvjp(_earlier_forward, _earlier_backward)


def _runner(
    train_overrides: dict, step_number: int, r1_now: bool | None, earlier_down_conv: bool = False
):
    """One step of the small-data DC-cGAN at state.step == step_number, with `r1_now`."""
    if earlier_down_conv:  # This row's process only.
        layers.DownConv2x._apply = staticmethod(_earlier_down_conv_2x)
    config = _config()
    config.train.update(train_overrides)
    state = jax.jit(setup.make_init(config, NUM_CLASSES))(jax.random.key(0))
    state = state.replace(step=jnp.asarray(step_number, state.step.dtype))
    options = steps.StepOptions.from_config(config.train)
    if r1_now is not None:
        options = dataclasses.replace(options, r1_now=r1_now)
    rng = np.random.default_rng(0)
    size, batch_size = config.data.image_size, config.train.batch_size
    batch = {
        "image": jnp.asarray(rng.uniform(-1, 1, (batch_size, size, size, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, NUM_CLASSES, batch_size), jnp.int32),
    }
    train_step = compiler.jit(functools.partial(steps.gan_train_step, options=options))

    def run_step():
        # The same state every time: the step's number (R1's turn) must not move.
        _, metrics = train_step(state, batch, jax.random.key(1))
        jax.block_until_ready(metrics)

    return run_step


def main(argv):
    del argv
    every = _R1_EVERY.value
    r1 = {"r1_weight": 1.0, "r1_every": every}
    rows = {
        "no penalty": ({}, 1, None),
        "R1 turn, host": (r1, 0, True),
        "R1 skipped, host": (r1, 1, False),
    }
    if _COND.value:
        rows["R1 turn, lax.cond"] = (r1, 0, None)
        rows["R1 skipped, lax.cond"] = (r1, 1, None)
    rows["R1 turn, host, earlier down-conv VJP"] = (r1, 0, True, True)
    rows["WGAN-GP"] = ({"loss": "wgan_gp"}, 1, None)
    factories = {name: (_runner, args) for name, args in rows.items()}
    times = processes.time_in_processes(factories, _ROUNDS.value, _STEPS_PER_ROUND.value)
    median = {
        name: statistics.median(statistics.median(round_) for round_ in rounds)
        for name, rounds in times.items()
    }
    base = median["no penalty"]
    cpu = processes.cpu_description()
    print(
        f"\nDC-cGAN 64x64, batch 64; jax {jax.__version__} on {jax.devices()[0].device_kind} "
        f"({cpu.get('cpu_model', cpu['machine'])}, {cpu.get('usable_cpus')} usable CPUs)"
    )
    print("| row | step ms | vs no penalty |\n|---|---:|---:|")
    for name, seconds in median.items():
        print(f"| {name} | {1000 * seconds:,.0f} | {seconds / base:.2f}x |")
    for form in ("host", "lax.cond"):
        turn, skipped = median.get(f"R1 turn, {form}"), median.get(f"R1 skipped, {form}")
        if turn is not None:
            mean = (turn + (every - 1) * skipped) / every
            print(
                f"| lazy R1 ({form}), mean over {every} steps | {1000 * mean:,.0f} "
                f"| {mean / base:.2f}x |"
            )


if __name__ == "__main__":
    app.run(main)
