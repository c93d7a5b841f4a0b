"""compiler.jit turns XLA CPU's YNNPACK fusions off and computes the same values."""

import jax
import jax.numpy as jnp
import numpy as np

from xraygan_jax import compiler
from xraygan_jax.models import layers


def test_options_are_for_cpu_only():
    assert compiler.compiler_options("cpu") == {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert compiler.compiler_options("gpu") == {}
    assert compiler.compiler_options() == compiler.compiler_options(jax.default_backend())


def test_state_is_donated_except_on_cpu():
    assert compiler.donated(0, platform="cpu") == ()
    assert compiler.donated(0, platform="gpu") == (0,)


def test_jit_compiles_without_ynn_fusions_and_agrees_with_jax_jit():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 16, 16, 16)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(4, 4, 16, 32)), jnp.float32)
    default = jax.jit(layers.strided_conv).lower(x, kernel).compile()
    ours = compiler.jit(layers.strided_conv).lower(x, kernel).compile()
    # jaxlib 0.10 hands this convolution to YNNPACK by default (smaller ones stay with Eigen);
    # ours must not.
    assert "__ynn_fusion" in default.as_text()
    assert "__ynn_fusion" not in ours.as_text()
    # Sums of 256 products, outputs of size ~10: float32 rounding differs by ~1e-5.
    np.testing.assert_allclose(ours(x, kernel), default(x, kernel), atol=1e-4)
