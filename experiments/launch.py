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
import threading
import traceback

import jax
import ml_collections
from absl import app, flags, logging

from xraygan_jax import errors

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Join a multi-process run: call jax.distributed.initialize() before anything else. The "
    "coordinator, process count and id come from --coordinator_address, --num_processes and "
    "--process_id, else from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, else "
    "from SLURM / Open MPI (BUILD.md).",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "With --distributed: HOST:PORT of process 0, where it serves the coordinator (every process "
    "gives the same).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed: how many processes the run has.", lower_bound=1
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id",
    None,
    "With --distributed: this process's number, 0 to num_processes - 1.",
    lower_bound=0,
)
_JOIN_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout_s",
    300,
    "With --distributed: seconds to wait for every process to join the coordinator before "
    "stopping with an error.",
    lower_bound=1,
)
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout_s",
    100,
    "With --distributed: seconds without a sign of life from a process after which the others "
    "count it as dead and stop (JAX's heartbeat timeout).",
    lower_bound=1,
)
_DISTRIBUTED_FLAGS = ("coordinator_address", "num_processes", "process_id")
# Environment variables read when the flags above are not given (JAX itself reads only the
# first), so plain hosts can be configured without editing the command.
_ENVIRONMENT = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
}


def init_jax(*, multi_process: bool = False) -> None:
    """Initialises multi-process JAX when asked, then logs the process and its devices.

    Args:
      multi_process: whether the launcher can run as several processes (only training can);
        the others refuse `--distributed` with a message saying they are single-process.

    Raises:
      errors.ConfigError: `--distributed` given to a single-process launcher, or a distributed
        flag given without `--distributed`, or a bad process count or id.
    """
    quiet_library_logs()
    given = [name for name in _DISTRIBUTED_FLAGS if flags.FLAGS[name].present]
    if given and not _DISTRIBUTED.value:
        raise errors.ConfigError(
            f"--{given[0]} only applies with --distributed; add --distributed to join a "
            "multi-process run, or drop it."
        )
    if _DISTRIBUTED.value:
        if not multi_process:
            launcher = os.path.splitext(os.path.basename(sys.argv[0]))[0]
            raise errors.ConfigError(
                f"--distributed: experiments.{launcher} is single-process; run it as one process "
                "on one host, without --distributed (only experiments.train_gan runs as several "
                "processes)."
            )
        _initialize_distributed()
    logging.info(
        "JAX process %d of %d; local devices: %s; global device count %d",
        jax.process_index(),
        jax.process_count(),
        jax.local_devices(),
        jax.device_count(),
    )


def _distributed_setting(name: str):
    """A distributed flag's value, else its environment variable's, else None (auto-detect)."""
    value = flags.FLAGS[name].value
    if value is not None:
        return value
    text = os.environ.get(_ENVIRONMENT[name])
    if text is None or name == "coordinator_address":
        return text
    try:
        return int(text)
    except ValueError:
        raise errors.ConfigError(
            f"{_ENVIRONMENT[name]}={text!r} is not an integer; set it to the "
            f"{name.replace('_', ' ')} or pass --{name}."
        ) from None


def _initialize_distributed() -> None:
    """`jax.distributed.initialize` with the flags' settings and a clear error on a timeout.

    JAX ends a process whose coordinator never answers (or whose peers never join) with a fatal
    log line after its own timeout; a watchdog thread prints which address and how long instead,
    and exits with status 1, a little before JAX's own deadline.
    """
    address = _distributed_setting("coordinator_address")
    num_processes = _distributed_setting("num_processes")
    process_id = _distributed_setting("process_id")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise errors.ConfigError(
            f"--process_id={process_id} must be below --num_processes={num_processes} "
            f"(processes are numbered 0 to {num_processes - 1})."
        )
    timeout = _JOIN_TIMEOUT.value
    joined = threading.Event()

    def watchdog() -> None:
        if joined.wait(timeout):
            return
        where = address or "the auto-detected coordinator (SLURM / Open MPI)"
        who = (
            f"process {process_id} of {num_processes}" if process_id is not None else "this process"
        )
        print(
            f"error: {who} could not join the multi-process run at {where} within "
            f"{timeout} s (--distributed_timeout_s): the coordinator (process 0) did not answer "
            "or not every process started. Check that the same command runs on every host with "
            "the same --coordinator_address and --num_processes, a distinct --process_id, and "
            "that the port is reachable from every host.",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    threading.Thread(target=watchdog, name="distributed-join-watchdog", daemon=True).start()
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=num_processes,
        process_id=process_id,
        # JAX's own deadline comes later than the watchdog's, so that the clearer message wins.
        initialization_timeout=timeout + 30,
        heartbeat_timeout_seconds=_HEARTBEAT_TIMEOUT.value,
    )
    joined.set()


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
    """Wraps a launcher's main: quiet logs by default, user errors as one line.

    In a multi-process run a process that fails ends at once (`os._exit`) instead of waiting in
    JAX's shutdown barrier for the others: they are waiting for it in their next collective, which
    then fails fast, and they stop too with a line saying another process stopped, instead of
    each waiting for a timeout.
    """

    def wrapper(argv):
        verbose = _verbosity_given(sys.argv)
        if not verbose:
            logging.set_verbosity(logging.WARNING)
        try:
            return main(argv)
        except USER_ERRORS as error:
            if verbose and logging.get_verbosity() >= 1:
                if not jax.distributed.is_initialized():
                    raise
                traceback.print_exc()
            else:
                print(
                    f"error: {_who()}{one_line(error)} (--verbosity=1 shows the traceback)",
                    file=sys.stderr,
                )
            _exit(1)
        except Exception as error:
            if not jax.distributed.is_initialized():
                raise
            if not _peer_lost(error) or verbose:
                traceback.print_exc()
            if _peer_lost(error):
                print(
                    f"error: {_who()}another process of this run stopped or cannot be reached, "
                    f"so this one stops too (JAX: {_first_line(error)}). The other processes' "
                    "logs say why; rerun every process with the same command to resume from the "
                    "latest checkpoint.",
                    file=sys.stderr,
                )
            _exit(1)

    return wrapper


# Words of the runtime errors a collective raises when a peer process is gone (CPU collectives
# over gloo, GPU ones over NCCL, the coordination service).
_PEER_LOST_WORDS = ("closed by peer", "connection reset", "heartbeat", "unavailable", "unhealthy")


def _peer_lost(error: BaseException) -> bool:
    """Whether a JAX runtime error says another process of the run is gone."""
    text = str(error).lower()
    return isinstance(error, jax.errors.JaxRuntimeError) and any(
        word in text for word in _PEER_LOST_WORDS
    )


def _who() -> str:
    """'process 1 of 2: ' in a multi-process run, else ''."""
    if not jax.distributed.is_initialized():
        return ""
    return f"process {jax.process_index()} of {jax.process_count()}: "


def _first_line(error: BaseException, limit: int = 300) -> str:
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _exit(status: int) -> None:
    """sys.exit, except in a multi-process run: there, end now (see `guarded`)."""
    if not jax.distributed.is_initialized():
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(main, default_config: str = "experiments/configs/dcgan.py") -> None:
    """`absl.app.run(main)`, after checking `--config.*` overrides name existing keys."""
    message = unknown_config_override(sys.argv, default_config)
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    app.run(guarded(main))
