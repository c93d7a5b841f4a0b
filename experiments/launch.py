"""What every launcher does before handing over to the library: distributed set-up and a log line.

Kept out of the library because it reads absl flags (DESIGN.md: no flags parsed in xraygan_jax).
"""

import jax
from absl import flags, logging

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() first (multi-host runs; see BUILD.md).",
)


def init_jax() -> None:
    """Initialises multi-host JAX when asked, then logs the process and its devices."""
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    logging.info(
        "JAX process %d of %d; local devices: %s; global device count %d",
        jax.process_index(),
        jax.process_count(),
        jax.local_devices(),
        jax.device_count(),
    )
