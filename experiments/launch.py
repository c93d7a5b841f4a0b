"""What every launcher does around the library: flags checks, logs, distributed set-up, errors.

Kept out of the library because it reads absl flags (the library parses none).

User errors (a bad path or config value, data too small for the batch, missing weights, ...) are
printed as one line that names what to fix, with exit status 1 and no traceback;
`--verbosity=1` shows the traceback (and debug logs). By default the libraries' INFO logs are
hidden; the progress lines (standard error) and warnings stay.
"""

import errno
import importlib.util
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging

from xraygan_jax import errors

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


# What a user can fix from the message alone. OSError covers a missing or unwritable path and a
# full disk; ValueError covers config values the library rejects by name.
USER_ERRORS = (errors.UserError, ValueError, OSError, FloatingPointError, flags.ValidationError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (multi-line messages are joined with '; ')."""
    message = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        message = f"disk full: {message}"
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _verbosity_given(argv: list[str]) -> bool:
    return any(arg.split("=")[0] in ("--verbosity", "-v", "--v") for arg in argv[1:])


def guarded(main):
    """Wraps a launcher's main: quiet logs by default, user errors as one line."""

    def wrapper(argv):
        verbose = _verbosity_given(sys.argv)
        if not verbose:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except USER_ERRORS as error:
            if verbose and logging.get_verbosity() >= 1:
                raise
            print(f"error: {one_line(error)} (--verbosity=1 shows the traceback)", file=sys.stderr)
            sys.exit(1)

    return wrapper


def run(main, default_config: str = "experiments/configs/dcgan.py") -> None:
    """`absl.app.run(main)`, after checking `--config.*` overrides name existing keys."""
    message = unknown_config_override(sys.argv, default_config)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    app.run(guarded(main))
