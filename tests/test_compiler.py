"""compiler.jit: jax.jit's values, with `compiler.CPU_OPTIONS` handed to XLA on CPU only.

The options only choose which CPU kernels run (docs/performance.md, section "XLA CPU compiler
options"), so what is tested is public behaviour: the values equal plain `jax.jit`'s, XLA accepts
the options, and `compiler.jit` passes them to XLA. No public JAX API reports the options a
`Compiled` was built with, so the last is shown by XLA refusing an unknown option in their place.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xraygan_jax import compiler
from xraygan_jax.models import layers

_ON_CPU = jax.default_backend() == "cpu"


def test_options_are_for_cpu_only():
    assert compiler.compiler_options("cpu") == compiler.CPU_OPTIONS
    assert compiler.compiler_options("gpu") == {}
    assert compiler.compiler_options() == compiler.compiler_options(jax.default_backend())


def test_options_are_copies():
    compiler.compiler_options("cpu")["extra"] = "1"
    assert "extra" not in compiler.CPU_OPTIONS


def test_xla_accepts_the_cpu_options():
    # XLA rejects an unknown option name or enum value, so a rename in jaxlib fails here.
    x = jax.device_put(jnp.ones((4, 4), jnp.float32), jax.devices("cpu")[0])
    compiled = jax.jit(jnp.matmul).lower(x, x).compile(compiler_options=compiler.CPU_OPTIONS)
    np.testing.assert_allclose(compiled(x, x), np.full((4, 4), 4.0))


@pytest.mark.skipif(not _ON_CPU, reason="compiler.jit sets options on CPU only")
def test_jit_passes_the_cpu_options_to_xla(monkeypatch):
    monkeypatch.setattr(compiler, "CPU_OPTIONS", {"xla_cpu_no_such_option": "1"})
    # A function of its own, so that no earlier compilation is reused from jax.jit's cache.
    with pytest.raises(
        jax.errors.JaxRuntimeError, match="compile option: 'xla_cpu_no_such_option'"
    ):
        compiler.jit(lambda x: x + 1)(jnp.ones(3))


def test_convolution_equals_jax_jit():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 16, 16, 16)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(4, 4, 16, 32)), jnp.float32)
    ours = compiler.jit(layers.strided_conv)(x, kernel)
    # Sums of 256 products, outputs of size ~10: the two kernels round float32 differently, ~1e-5.
    np.testing.assert_allclose(ours, jax.jit(layers.strided_conv)(x, kernel), atol=1e-4)


def test_matmul_equals_numpy():
    a = jnp.asarray(np.random.default_rng(1).normal(size=(256, 256)), jnp.float32)
    ours = compiler.jit(jnp.matmul)(a, a)
    np.testing.assert_allclose(ours, np.asarray(a) @ np.asarray(a), rtol=1e-4, atol=1e-3)


def test_jit_forwards_jax_jit_arguments():
    # `reps` must be a Python int: traced, jnp.tile would raise.
    tile = compiler.jit(jnp.tile, static_argnames="reps")
    np.testing.assert_array_equal(tile(jnp.arange(2.0), reps=2), [0.0, 1.0, 0.0, 1.0])
    double = compiler.jit(lambda v: 2 * v, donate_argnums=0)
    x = jnp.arange(3.0)
    assert double.lower(x).compile().donate_argnums == (0,)
    np.testing.assert_array_equal(double(x), [0.0, 2.0, 4.0])
    assert x.is_deleted()


def test_the_reduce_fusion_option_is_accepted_and_changes_no_value():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 16, 4)), jnp.float32)

    def batch_norm_statistics(x):
        return jnp.mean(x, axis=(0, 1, 2)), jnp.var(x, axis=(0, 1, 2))

    fused = compiler.jit(batch_norm_statistics, reduce_fusion=True)(x)
    plain = jax.jit(batch_norm_statistics)(x)
    for a, b in zip(fused, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if jax.default_backend() == "cpu":
        options = compiler.compiler_options(reduce_fusion=True)
        assert options["xla_cpu_experimental_ynn_fusion_type"].endswith(compiler.REDUCE_FUSION)
