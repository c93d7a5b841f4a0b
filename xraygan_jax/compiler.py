"""XLA compiler options under which this library's networks run fastest, and a `jit` that uses them.

On CPU, jaxlib 0.10 hands convolutions and matmuls to YNNPACK ("ynn fusions"). For convolutions,
XLA's Eigen kernels are faster on the project's 2-core CPU (AVX-512); for matmuls YNNPACK is. So
`compiler_options()` keeps YNNPACK for matmuls only (`xla_cpu_experimental_ynn_fusion_type` =
individual dots). Timings of each choice: docs/performance.md, section "XLA CPU compiler options".

Other backends get no options. To use them in your own code:

    from xraygan_jax import compiler
    step = compiler.jit(steps.gan_train_step, donate_argnums=0)

or, for a whole program, `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot` before
JAX starts.
"""

from collections.abc import Callable
from typing import Any

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
# BatchNorm's reductions (over batch, height and width) are slow in XLA's own CPU loops;
# YNNPACK's reduce fusions bring the classifier step to about PyTorch's speed and the GAN step
# to 1.2-1.4x its speed without them (docs/performance.md, "Classifier step" and "DC-cGAN train
# step against PyTorch"). The loops that were measured ask for them; opt-in elsewhere.
REDUCE_FUSION = "LIBRARY_FUSION_TYPE_REDUCE"


def compiler_options(platform: str | None = None, *, reduce_fusion: bool = False) -> dict[str, str]:
    """Compiler options for `jax.jit(..., compiler_options=...)` on `platform`.

    Args:
      platform: "cpu", "gpu", ...; None for JAX's default backend.
      reduce_fusion: also hand reductions to YNNPACK on CPU (BatchNorm's statistics).

    Returns:
      `CPU_OPTIONS` (plus the reduce fusion when asked) on CPU, else an empty dict.
    """
    platform = platform or jax.default_backend()
    if platform != "cpu":
        return {}
    options = dict(CPU_OPTIONS)
    if reduce_fusion:
        key = "xla_cpu_experimental_ynn_fusion_type"
        options[key] = f"{options[key]},{REDUCE_FUSION}"
    return options


def jit(fun: Callable, *, reduce_fusion: bool = False, **jit_kwargs: Any) -> Callable:
    """`jax.jit(fun, **jit_kwargs)` with `compiler_options()` for the default backend.

    The backend is queried when this is called, so call it after JAX is set up (not at import).
    """
    return jax.jit(
        fun, compiler_options=compiler_options(reduce_fusion=reduce_fusion), **jit_kwargs
    )
