"""XLA compiler options under which this library's networks run fastest, and a `jit` that uses them.

On CPU, jaxlib 0.10 hands most convolutions and matmuls to YNNPACK ("ynn fusions"). For the
networks here, XLA's Eigen convolutions are faster on the project's 2-core CPU (AVX-512), so
`compiler_options()` turns the YNNPACK fusions off (`xla_cpu_experimental_ynn_fusion_type` = "",
the empty list). Measured, each pair in one process, same inputs, results equal to 6e-6:
    DC-cGAN train step (batch 64, 64x64):   704-752 ms with YNNPACK, 608-618 ms without
    FID Inception features (batch 4, 299):  23.1 images/s with YNNPACK, 29.5 without
(experiments/benchmarks/gan_step.py and inception_features.py print both side by side.)

Other backends get no options. To use them in your own code:

    from xraygan_jax import compiler
    step = compiler.jit(steps.gan_train_step, donate_argnums=compiler.donated(0))

or, for a whole program, `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=` before JAX starts.
"""

from collections.abc import Callable
from typing import Any

import jax

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options(platform: str | None = None) -> dict[str, str]:
    """Compiler options for `jax.jit(..., compiler_options=...)` on `platform`.

    Args:
      platform: "cpu", "gpu", ...; None for JAX's default backend.

    Returns:
      `CPU_OPTIONS` on CPU, else an empty dict.
    """
    platform = platform or jax.default_backend()
    return dict(CPU_OPTIONS) if platform == "cpu" else {}


def donated(*argnums: int, platform: str | None = None) -> tuple[int, ...]:
    """`donate_argnums` for a train step's state: `argnums`, except none on CPU.

    On CPU, donating the state made the DC-cGAN step slower (652 against 625 ms per step, 7
    alternating rounds): XLA adds 47 copies to honour the aliasing. The memory donation saves,
    one copy of the state, matters on accelerators, not in a CPU's RAM.

    Args:
      *argnums: positions of the arguments to donate.
      platform: "cpu", "gpu", ...; None for JAX's default backend.
    """
    platform = platform or jax.default_backend()
    return () if platform == "cpu" else argnums


def jit(fun: Callable, **jit_kwargs: Any) -> Callable:
    """`jax.jit(fun, **jit_kwargs)` with `compiler_options()` for the default backend.

    The backend is queried when this is called, so call it after JAX is set up (not at import).
    """
    return jax.jit(fun, compiler_options=compiler_options(), **jit_kwargs)
