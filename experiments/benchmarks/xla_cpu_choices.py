"""The measurements behind this library's XLA CPU choices, each alternative side by side in one run.

Sections (`--sections`, default all):
  options      compiler options (xraygan_jax/compiler.py): jaxlib's default (YNNPACK for
               convolutions and matmuls), Eigen for everything, and `compiler.CPU_OPTIONS`
               (Eigen convolutions, YNNPACK matmuls), on the DC-cGAN and FC-cGAN train steps and
               the FID Inception network
  donation     the DC-cGAN step with and without donating its state (the training loops
               donate it)
  transposed   ConvTranspose2d(k4, s2, p1) forms per generator layer: lax.conv_transpose, the
               earlier 3x3 phase form and the 2x2-window form (`layers.transposed_conv`)
  interleave   ways to interleave the 2x2-window outputs (`layers.interleave_phases`)
  inception    the Inception port's stride-2 convolutions as im2col matmuls or plain
               convolutions (`inception._conv`)
  torch        the same compiled DC-cGAN step before and after `import torch` in the process
               (why experiments/benchmarks/processes.py gives every implementation its own)

Every alternative is compiled once; rounds alternate between the alternatives of a section, so
that a busy machine slows them alike, and the table gives the median round. Results agree with
each other (the largest difference from the first alternative is printed).

    python -m experiments.benchmarks.xla_cpu_choices
    python -m experiments.benchmarks.xla_cpu_choices --sections=options,donation --rounds=7
"""

import importlib.util
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.configs import dcgan as dcgan_config
from experiments.configs import fcgan as fcgan_config
from xraygan_jax import compiler
from xraygan_jax.metrics import fid
from xraygan_jax.models import inception, layers
from xraygan_jax.pretrained import inception_weights
from xraygan_jax.train import setup, steps

_SECTIONS = flags.DEFINE_list(
    "sections",
    ["options", "donation", "transposed", "interleave", "inception", "torch"],
    "Sections to run.",
)
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Timed rounds per alternative.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs per round (the round keeps the fastest).")

_YNN = "xla_cpu_experimental_ynn_fusion_type"
_OPTIONS = {
    "jaxlib default (YNNPACK)": {},
    "Eigen for everything": {_YNN: ""},
    "compiler.CPU_OPTIONS": compiler.CPU_OPTIONS,
}


def _compare(title: str, alternatives: dict[str, tuple[Callable, tuple]], images: int = 0):
    """Times `fn(*args)` of each alternative in alternating rounds and prints a table.

    With `images`, the table gives images/s for that many images per call, else ms per call.
    """
    outputs = {name: jax.block_until_ready(fn(*args)) for name, (fn, args) in alternatives.items()}
    first = jax.tree.leaves(next(iter(outputs.values())))
    times = {name: [] for name in alternatives}
    for _ in range(_ROUNDS.value):
        for name, (fn, args) in alternatives.items():
            runs = []
            for _ in range(_REPEATS.value):
                start = time.perf_counter()
                jax.block_until_ready(fn(*args))
                runs.append(time.perf_counter() - start)
            times[name].append(min(runs))
    unit = "images/s" if images else "ms"
    print(f"\n{title}")
    print(f"  {'alternative':<40} {unit:>9} {'rounds (min-max)':>17} {'max diff':>9}")
    for name, seconds in times.items():
        difference = max(
            float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            for a, b in zip(jax.tree.leaves(outputs[name]), first, strict=True)
        )
        values = sorted(images / t if images else 1000 * t for t in seconds)
        spread = f"{values[0]:.1f}-{values[-1]:.1f}"
        print(f"  {name:<40} {statistics.median(values):>9.1f} {spread:>17} {difference:>9.1e}")


def _gan_step_inputs(config, batch_size: int):
    config.data.image_size = 64
    config.train.batch_size = batch_size
    state = jax.jit(setup.make_init(config, 2))(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(rng.uniform(-1, 1, (batch_size, 64, 64, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 2, batch_size), jnp.int32),
    }
    return state, batch, jax.random.key(1)


def _step_runner(options: dict, state, donate: bool = False) -> Callable:
    """A fresh jitted step (jax.jit caches by function) that carries its own state forward."""
    jitted = jax.jit(
        lambda s, b, k: steps.gan_train_step(s, b, k),
        compiler_options=options,
        donate_argnums=(0,) if donate else (),
    )
    holder = [jax.tree.map(jnp.copy, state)]

    def run(batch, key):
        holder[0], metrics = jitted(holder[0], batch, key)
        return metrics

    return run


def section_options():
    for name, config in (("DC", dcgan_config.get_config()), ("FC", fcgan_config.get_config())):
        batch_size = config.train.batch_size
        state, batch, key = _gan_step_inputs(config, batch_size)
        _compare(
            f"{name}-cGAN train step ({name.lower()}gan config, batch {batch_size}, 64x64), ms",
            {
                option: (_step_runner(options, state), (batch, key))
                for option, options in _OPTIONS.items()
            },
        )
    variables = jax.device_put(inception_weights.load_params(None))
    images = np.random.default_rng(0).integers(0, 256, (4, 299, 299, 3), dtype=np.uint8)
    inputs = fid._preprocess(jnp.asarray(images))
    _compare(
        "FID Inception network (batch 4, 299x299), images/s",
        {
            option: (
                jax.jit(lambda v, x: fid._network_features(v, x), compiler_options=options),
                (variables, inputs),
            )
            for option, options in _OPTIONS.items()
        },
        images=len(images),
    )


def section_donation():
    state, batch, key = _gan_step_inputs(dcgan_config.get_config(), 64)
    options = compiler.compiler_options()
    _compare(
        "DC-cGAN train step (batch 64) with the compiler options, ms",
        {
            "state not donated": (_step_runner(options, state), (batch, key)),
            "state donated": (_step_runner(options, state, donate=True), (batch, key)),
        },
    )


def _phase_kernel_3x3(kernel):
    """The earlier 3x3 phase form's kernel: (4, 4, C, F) -> (3, 3, C, 4F)."""
    taps = np.zeros((2, 3, 4), np.float32)
    taps[0, 0, 3] = taps[0, 1, 1] = taps[1, 1, 2] = taps[1, 2, 0] = 1.0
    gathered = jnp.einsum("ati,buj,ijcf->tucabf", taps, taps, kernel)
    return gathered.reshape(3, 3, kernel.shape[2], 4 * kernel.shape[3])


def _up_conv_3x3_phases(x, kernel):
    """The earlier form: one 3x3 convolution to 4F channels, then depth-to-space."""
    phases = jax.lax.conv_general_dilated(
        x,
        _phase_kernel_3x3(kernel),
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    batch, height, width, channels = phases.shape
    phases = phases.reshape(batch, height, width, 2, 2, channels // 4).transpose(0, 1, 3, 2, 4, 5)
    return phases.reshape(batch, 2 * height, 2 * width, channels // 4)


def section_transposed():
    options = compiler.compiler_options()
    forms = {
        "lax.conv_transpose": layers.conv_transpose_reference,
        "3x3 phase form (earlier)": _up_conv_3x3_phases,
        "2x2-window phase form": layers.up_conv_2x_phases,
    }
    rng = np.random.default_rng(0)
    for size, channels, features in ((4, 512, 256), (8, 256, 128), (16, 128, 64), (32, 64, 1)):
        x = jnp.asarray(rng.normal(size=(64, size, size, channels)), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(4, 4, channels, features)) * 0.02, jnp.float32)
        _compare(
            f"ConvTranspose2d {size}x{size}x{channels} -> {2 * size}x{2 * size}x{features}, "
            "batch 64, ms",
            {
                name: (jax.jit(lambda x, k, f=form: f(x, k), compiler_options=options), (x, kernel))
                for name, form in forms.items()
            },
        )


def _interleave_stack(windows):
    batch, rows, columns, channels = windows.shape
    height, width, features = rows - 1, columns - 1, channels // 4
    windows = windows.reshape(batch, rows, columns, 2, 2, features)
    phase_rows = [
        jnp.stack([windows[:, ry : ry + height, rx : rx + width, ry, rx] for rx in (0, 1)], 3)
        for ry in (0, 1)
    ]
    return jnp.stack(phase_rows, axis=2).reshape(batch, 2 * height, 2 * width, features)


def _interleave_stack_transpose(windows):
    batch, rows, columns, channels = windows.shape
    height, width, features = rows - 1, columns - 1, channels // 4
    windows = windows.reshape(batch, rows, columns, 2, 2, features)
    phases = jnp.stack(
        [windows[:, ry : ry + height, rx : rx + width, ry, rx] for ry in (0, 1) for rx in (0, 1)],
        axis=3,
    )
    phases = phases.reshape(batch, height, width, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
    return phases.reshape(batch, 2 * height, 2 * width, features)


def section_interleave():
    options = compiler.compiler_options()
    windows = jnp.asarray(np.random.default_rng(0).normal(size=(64, 17, 17, 256)), jnp.float32)
    forms = {
        "pad-and-add (layers.interleave_phases)": layers.interleave_phases,
        "jnp.stack of the phases": _interleave_stack,
        "stack, then transpose": _interleave_stack_transpose,
    }
    _compare(
        "Interleave (64, 17, 17, 256) -> (64, 32, 32, 64), ms",
        {
            name: (jax.jit(lambda w, f=form: f(w), compiler_options=options), (windows,))
            for name, form in forms.items()
        },
    )


def _conv_im2col(x, kernel, strides, padding):
    """The port's earlier form: unpadded strided convolutions as one matmul over patches."""
    if strides == 1 or padding != (0, 0):
        return plain_conv(x, kernel, strides, padding)
    kernel_height, kernel_width, _, out_features = kernel.shape
    out_height = (x.shape[1] - kernel_height) // strides + 1
    out_width = (x.shape[2] - kernel_width) // strides + 1
    patches = jnp.concatenate(
        [
            x[
                :,
                i : i + strides * (out_height - 1) + 1 : strides,
                j : j + strides * (out_width - 1) + 1 : strides,
            ]
            for i in range(kernel_height)
            for j in range(kernel_width)
        ],
        axis=-1,
    )
    return patches @ kernel.reshape(-1, out_features)


plain_conv = inception._conv


def section_inception():
    variables = jax.device_put(inception_weights.load_params(None))
    images = np.random.default_rng(0).integers(0, 256, (4, 299, 299, 3), dtype=np.uint8)
    inputs = fid._preprocess(jnp.asarray(images))
    alternatives = {}
    for name, conv in (("plain convolutions (current)", plain_conv), ("im2col", _conv_im2col)):
        inception._conv = conv
        network = compiler.jit(lambda v, x: fid._network_features(v, x))
        alternatives[name] = (network.lower(variables, inputs).compile(), (variables, inputs))
    inception._conv = plain_conv
    _compare(
        "FID Inception network, its stride-2 convolutions (batch 4), images/s",
        alternatives,
        images=len(images),
    )


def section_torch():
    if importlib.util.find_spec("torch") is None:
        print("\ntorch is not installed: section torch skipped")
        return
    state, batch, key = _gan_step_inputs(dcgan_config.get_config(), 64)
    step = compiler.jit(lambda s, b, k: steps.gan_train_step(s, b, k))
    jax.block_until_ready(step(state, batch, key))

    def median_ms():
        runs = []
        for _ in range(_ROUNDS.value):
            start = time.perf_counter()
            jax.block_until_ready(step(state, batch, key))
            runs.append(time.perf_counter() - start)
        return 1000 * statistics.median(runs)

    before = median_ms()
    import torch  # noqa: F401 - the import is what is measured

    after = median_ms()
    print("\nThe same compiled DC-cGAN step in one process, ms (median)")
    print(f"  before import torch {before:.0f}, after {after:.0f}")


def main(argv):
    del argv
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    for section in _SECTIONS.value:
        globals()[f"section_{section}"]()


if __name__ == "__main__":
    app.run(main)
