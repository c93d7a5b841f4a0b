"""Mixed precision (config.train.compute_dtype = "bfloat16") on the tiny test config, on CPU.

What bf16 must keep float32 is checked where it is decided, not inferred from losses:
  - the state (parameters, optimiser moments, BatchNorm statistics, EMA) is float32 after steps;
  - in the compiled step, every convolution and matmul (forward, backward and the custom VJPs of
    layers.py) takes bf16 operands, and every reduction of the DC-cGAN (BatchNorm statistics and
    their gradients, the losses' means) takes float32 ones;
  - module outputs: convolutions, dense layers and BatchNorm give bf16 activations, G's images and
    D's logits are float32.
The numerics test then runs 20 steps of both and compares the loss curves (tolerance: see
LOSS_TOLERANCE). At this size a bf16 loss or bf16 BatchNorm statistics move the curves by under
0.01 (measured), so the curves alone could not tell where float32 was kept; the checks above do.

Keys are "rbg" keys, as in test_steps.py (threefry draws compile slowly on XLA CPU).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

from experiments.configs import test as test_config
from xraygan_jax import errors, gan_loop
from xraygan_jax.data import phantom
from xraygan_jax.train import setup, steps

IMAGE_SIZE = 32
BATCH_SIZE = 8
NUM_STEPS = 20
# |bf16 loss - float32 loss| allowed at every one of the 20 steps, for losses of order 1.
# bf16 keeps 8 significant bits (relative spacing 2^-8 ~ 0.4%, about 2-3 significant digits), so
# every layer's activations carry errors of ~0.2-0.4%, and 20 Adam updates carry them on (Adam
# normalises small gradients, so a rounding can flip an update's sign). Measured on this config:
# 0.007 (dcgan) and 0.021 (fcgan) at most over the 20 steps. 0.05 leaves a margin for other CPUs
# and XLA versions, and stays well below how far the losses move: over the run the DC-cGAN's
# D loss falls from 1.43 to 0.35 and its G loss rises from 0.73 to 2.0 (0.06 per step on
# average), so a bf16 run that leaves the float32 curve (a wrong gradient in a bf16 path, an
# overflow, a saturated loss) fails.
LOSS_TOLERANCE = 0.05
METRIC_NAMES = ("loss/d", "loss/g", "d/real_prob", "d/fake_prob")


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _config(kind: str, compute_dtype: str):
    config = test_config.get_config()
    config.model.kind = kind
    config.data.image_size = IMAGE_SIZE
    config.train.compute_dtype = compute_dtype
    return config


@functools.cache
def _phantom_batches() -> tuple[dict[str, np.ndarray], ...]:
    """Six batches of the phantom train set, as the test config's GAN would see them."""
    spec = phantom.PhantomSpec(image_size=IMAGE_SIZE, num_train=6 * BATCH_SIZE)
    images, labels = phantom.generate(spec, "train", 0, 6 * BATCH_SIZE)
    images = images.astype(np.float32) / 127.5 - 1.0
    return tuple(
        {
            "image": images[start : start + BATCH_SIZE],
            "label": labels[start : start + BATCH_SIZE].astype(np.int32),
        }
        for start in range(0, len(images), BATCH_SIZE)
    )


@functools.cache
def _run(kind: str, compute_dtype: str):
    """(initial state, final state, {metric: [value per step]}) of NUM_STEPS steps."""
    initial = jax.jit(setup.make_init(_config(kind, compute_dtype), num_classes=2))(_key(0))
    step = jax.jit(steps.gan_train_step)
    batches = _phantom_batches()
    state, curves = initial, {name: [] for name in METRIC_NAMES}
    for index in range(NUM_STEPS):
        state, metrics = step(state, batches[index % len(batches)], _key(100 + index))
        for name in METRIC_NAMES:
            curves[name].append(float(metrics[name]))
    return initial, state, {name: np.array(values) for name, values in curves.items()}


@pytest.mark.slow  # trains each GAN in both precisions
@pytest.mark.parametrize("kind", ["dcgan", "fcgan"])
def test_bfloat16_loss_curves_stay_close_to_float32(kind):
    initial32, _, curves32 = _run(kind, "float32")
    initial16, _, curves16 = _run(kind, "bfloat16")
    # Same float32 initial parameters: only the compute dtype differs.
    for a, b in zip(jax.tree.leaves(initial32), jax.tree.leaves(initial16), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in METRIC_NAMES:
        assert np.all(np.isfinite(curves16[name])), name
        difference = np.abs(curves16[name] - curves32[name])
        assert difference.max() <= LOSS_TOLERANCE, (name, difference.max(), curves16[name])
    # bf16 did run: the curves are close, not equal.
    assert np.abs(curves16["loss/g"] - curves32["loss/g"]).max() > 0
    # And the run moved the losses far more than the tolerance.
    assert np.ptp(curves32["loss/d"]) > 5 * LOSS_TOLERANCE


@pytest.mark.parametrize("kind", ["dcgan", "fcgan"])
@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_bfloat16_keeps_the_state_in_float32(kind):
    _, final, _ = _run(kind, "bfloat16")
    for part in ("g_params", "d_params", "g_batch_stats", "d_batch_stats"):
        dtypes = {leaf.dtype for leaf in jax.tree.leaves(getattr(final, part))}
        assert dtypes <= {jnp.dtype(jnp.float32)}, (part, dtypes)
    for part in ("g_opt_state", "d_opt_state"):
        floats = {
            leaf.dtype
            for leaf in jax.tree.leaves(getattr(final, part))
            if jnp.issubdtype(leaf.dtype, jnp.floating)
        }
        assert floats == {jnp.dtype(jnp.float32)}, (part, floats)


def _equations(jaxpr) -> list:
    """Every equation of a jaxpr and of the jaxprs nested in it (jit, custom VJPs, ...)."""
    found = []
    for equation in jaxpr.eqns:
        found.append(equation)
        for param in equation.params.values():
            for sub in param if isinstance(param, list | tuple) else (param,):
                if isinstance(sub, jax_core.ClosedJaxpr):
                    found += _equations(sub.jaxpr)
                elif isinstance(sub, jax_core.Jaxpr):
                    found += _equations(sub)
    return found


def _operand_dtypes(kind: str, compute_dtype: str) -> dict[str, set[str]]:
    """{"conv_general_dilated" | "dot_general" | "reduce_*": operand dtypes} in one train step."""
    init = setup.make_init(_config(kind, compute_dtype), num_classes=2)
    state = jax.eval_shape(init, _key(0))
    batch = {
        "image": jax.ShapeDtypeStruct((BATCH_SIZE, IMAGE_SIZE, IMAGE_SIZE, 1), jnp.float32),
        "label": jax.ShapeDtypeStruct((BATCH_SIZE,), jnp.int32),
    }
    jaxpr = jax.make_jaxpr(steps.gan_train_step)(state, batch, _key(1))
    found: dict[str, set[str]] = {}
    for equation in _equations(jaxpr.jaxpr):
        name = equation.primitive.name
        if name in ("conv_general_dilated", "dot_general") or name.startswith("reduce_"):
            key = "reduce" if name.startswith("reduce_") else name
            found.setdefault(key, set()).update(str(v.aval.dtype) for v in equation.invars)
    return found


def test_bfloat16_step_convolves_in_bfloat16_and_reduces_in_float32():
    found = _operand_dtypes("dcgan", "bfloat16")
    assert found["conv_general_dilated"] == {"bfloat16"}, found
    assert found["dot_general"] == {"bfloat16"}, found
    assert found["reduce"] == {"float32"}, found
    assert _operand_dtypes("dcgan", "float32")["conv_general_dilated"] == {"float32"}


@pytest.mark.slow  # compiles every module in two dtypes: about 10 s on 2 cores
def test_bfloat16_module_outputs():
    config = _config("dcgan", "bfloat16")
    state = _run("dcgan", "bfloat16")[1]
    batch = _phantom_batches()[0]
    z = steps.sample_latents(_key(2), BATCH_SIZE, config.model.nz)
    images, g_state = state.generator.apply(
        {"params": state.g_params, "batch_stats": state.g_batch_stats},
        z,
        batch["label"],
        train=True,
        mutable=["batch_stats", "intermediates"],
        capture_intermediates=True,
    )
    outputs, d_state = state.discriminator.apply(
        {"params": state.d_params, "batch_stats": state.d_batch_stats},
        images,
        batch["label"],
        train=True,
        mutable=["batch_stats", "intermediates"],
        capture_intermediates=True,
    )
    assert images.dtype == outputs.logits.dtype == jnp.float32
    for variables, network in ((g_state, "G"), (d_state, "D")):
        layers_seen = 0
        for name, value in variables["intermediates"].items():
            if name == "__call__":
                continue
            (output,) = value["__call__"]
            if name.split("_")[0] in ("UpConv2x", "DownConv2x", "BatchNorm", "Conv", "project"):
                assert output.dtype == jnp.bfloat16, (network, name, output.dtype)
                layers_seen += 1
        assert layers_seen >= 5, (network, sorted(variables["intermediates"]))
        stats = jax.tree.leaves(variables["batch_stats"])
        assert stats and {leaf.dtype for leaf in stats} == {jnp.dtype(jnp.float32)}


@pytest.mark.slow  # 7-22 s of compilation: the fast tier's heaviest
def test_bfloat16_with_the_discriminator_options_and_penalties():
    """LayerNorm, spectral norm and the ACGAN head in D, and WGAN-GP (a gradient of gradients
    through the custom VJPs, as R1's), in bf16: finite, state float32, convolutions in bf16."""
    config = _config("dcgan", "bfloat16")
    config.model.d_norm = "layer"
    config.model.spectral_norm = True
    config.model.conditioning = "acgan"
    options = steps.StepOptions(loss="wgan_gp")
    state = jax.jit(setup.make_init(config, num_classes=2))(_key(0))
    step = functools.partial(steps.gan_train_step, options=options)
    batch = _phantom_batches()[0]
    jaxpr = jax.make_jaxpr(step)(state, batch, _key(1))
    convolutions = [
        equation
        for equation in _equations(jaxpr.jaxpr)
        if equation.primitive.name == "conv_general_dilated"
    ]
    assert convolutions
    assert {str(v.aval.dtype) for e in convolutions for v in e.invars} == {"bfloat16"}
    state, metrics = jax.jit(step)(state, batch, _key(1))
    assert all(bool(jnp.isfinite(value)) for value in metrics.values()), metrics
    for part in ("g_params", "d_params", "d_batch_stats", "d_opt_state"):
        floats = {
            leaf.dtype
            for leaf in jax.tree.leaves(getattr(state, part))
            if jnp.issubdtype(leaf.dtype, jnp.floating)
        }
        assert floats == {jnp.dtype(jnp.float32)}, (part, floats)


def test_unknown_compute_dtype_is_refused_before_training(tmp_path):
    config = _config("dcgan", "float16")
    config.data.data_dir = str(tmp_path / "tfds")
    with pytest.raises(
        errors.ConfigError,
        match=(
            r"compute_dtype 'float16' is unknown; use one of: float32, bfloat16 "
            r"\(--config.train.compute_dtype\)"
        ),
    ):
        gan_loop.validate(config)
    assert not (tmp_path / "tfds").exists()
