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


def compiler_options(platform: str | None = None) -> dict[str, str]:
    """Compiler options for `jax.jit(..., compiler_options=...)` on `platform`.

    Args:
      platform: "cpu", "gpu", ...; None for JAX's default backend.

    Returns:
      `CPU_OPTIONS` on CPU, else an empty dict.
    """
    platform = platform or jax.default_backend()
    return dict(CPU_OPTIONS) if platform == "cpu" else {}


def jit(fun: Callable, **jit_kwargs: Any) -> Callable:
    """`jax.jit(fun, **jit_kwargs)` with `compiler_options()` for the default backend.

    The backend is queried when this is called, so call it after JAX is set up (not at import).
    """
    return jax.jit(fun, compiler_options=compiler_options(), **jit_kwargs)
