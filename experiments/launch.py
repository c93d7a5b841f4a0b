"""What every launcher does before handing over to the library: distributed set-up and a log line.

Kept out of the library because it reads absl flags (DESIGN.md: no flags parsed in xraygan_jax).
"""

import importlib.util
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() first (multi-host runs; see BUILD.md).",
)


def init_jax() -> None:
    """Initialises multi-host JAX when asked, then logs the process and its devices."""
    quiet_library_logs()
    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    logging.info(
        "JAX process %d of %d; local devices: %s; global device count %d",
        jax.process_index(),
        jax.process_count(),
        jax.local_devices(),
        jax.device_count(),
    )


class _QuietLibraries:
    """Drops INFO lines of libraries that narrate every checkpoint write; warnings pass."""

    _NOISY = ("/orbax/", "/tensorflow_datasets/", "/grain/", "/jax/_src/xla_bridge")

    def filter(self, record) -> bool:
        return record.levelno > 20 or not any(part in record.pathname for part in self._NOISY)


def quiet_library_logs() -> None:
    """Keeps the log readable: our progress lines, the libraries' warnings and errors."""
    # On the handler, not a logger: library loggers (absl's, jax's) all end in this handler.
    logging.get_absl_handler().addFilter(_QuietLibraries())


def unknown_config_override(argv: list[str], default_config: str) -> str | None:
    """The message for the first `--config.a.b=...` naming a key the config does not have, or None.

    ml_collections reports such a key as a bare `AttributeError: "'b'"` deep in flag parsing; this
    names the flag, the config file and the keys that do exist at that level.
    """
    config_path = default_config
    overrides = []
    for arg in argv[1:]:
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            overrides.append(arg[len("--config.") :].split("=", 1)[0])
    if not overrides:
        return None
    spec = importlib.util.spec_from_file_location("_launch_config", config_path)
    if spec is None or not os.path.exists(config_path):
        return f"--config={config_path}: no such config file."
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for override in overrides:
        node, walked = config, []
        for key in override.split("."):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
                where = ".".join(["config", *walked])
                return (
                    f"--config.{override}: {where} has no key {key!r} (config file {config_path}). "
                    f"Keys of {where}: {', '.join(known) or 'none, it is a value'}."
                )
            node, walked = node[key], [*walked, key]
    return None


def run(main, default_config: str = "experiments/configs/dcgan.py") -> None:
    """`absl.app.run(main)`, after checking `--config.*` overrides name existing keys."""
    message = unknown_config_override(sys.argv, default_config)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    app.run(main)
