"""What a run of several processes must agree on before it trains, and one-at-a-time set-up.

Every process of a multi-process run (`experiments.train_gan --distributed`) runs the same
program on its share of each global batch; the collectives of every step assume they all built
the same model, the same optimiser and the same data order. A process started with another
config would not fail: it would compute something else, or hang in a collective whose shapes
differ. `check_same_config` finds that before training, on every process, and names the fields
that differ. With one process each function here returns at once.

The exchanges use JAX's own collectives (`jax.experimental.multihost_utils`), so they need
`jax.distributed.initialize()` to have run, as the launchers do with `--distributed`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from xraygan_jax import errors

T = TypeVar("T")
# How many differing fields the error lists before summarising the rest.
_MAX_LISTED = 10


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted names of a nested config's values."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(configs: list[Mapping[str, Any]]) -> list[str]:
    """One line per field whose value is not the same in every config (process order).

    Args:
      configs: the configs of processes 0, 1, ... as nested dicts (`ConfigDict.to_dict()`, or
        parsed JSON).

    Returns:
      E.g. ["config.train.seed: process 0 has 0, process 1 has 1"], sorted by field; [] when
      all agree. A field missing from a process's config shows as `(missing)`.
    """
    flat = [flatten(config) for config in configs]
    missing = object()
    lines = []
    for name in sorted(set().union(*flat)):
        values = [config.get(name, missing) for config in flat]
        if all(_same(values[0], value) for value in values[1:]):
            continue
        shown = ", ".join(
            f"process {index} has {'(missing)' if value is missing else repr(value)}"
            for index, value in enumerate(values)
        )
        lines.append(f"config.{name}: {shown}")
    return lines


def _same(left: Any, right: Any) -> bool:
    """Equal values; JSON turns tuples into lists, so those compare as equal."""
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(map(_same, left, right))
    return type(left) is type(right) and left == right


def _allgather_bytes(data: bytes) -> list[bytes]:
    """Every process's `data`, in process order (a collective: every process must call it)."""
    lengths = multihost_utils.process_allgather(np.array([len(data)], np.int64))
    lengths = np.asarray(lengths).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: len(data)] = np.frombuffer(data, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [bytes(row[:length]) for row, length in zip(gathered, lengths, strict=True)]


def check_same_config(config: ml_collections.ConfigDict) -> None:
    """Raises on every process unless every process runs with the same config.

    Compares a SHA-256 of each process's config JSON (one small all-gather); only when they
    differ are the configs themselves gathered, to name the fields.

    Raises:
      errors.ConfigError: naming each differing field and its value on every process, and
        saying to start every process with the same --config and --config.* flags.
    """
    if jax.process_count() == 1:
        return
    text = json.dumps(config.to_dict(), sort_keys=True, default=repr)
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
    digests = np.asarray(multihost_utils.process_allgather(digest))
    if (digests == digests[0]).all():
        return
    configs = [json.loads(data) for data in _allgather_bytes(text.encode())]
    lines = config_differences(configs) or ["(the JSON texts differ; no value does)"]
    listed = lines[:_MAX_LISTED]
    if len(lines) > _MAX_LISTED:
        listed.append(f"... and {len(lines) - _MAX_LISTED} more")
    raise errors.ConfigError(
        f"the {jax.process_count()} processes of this run were started with different configs "
        "(nothing was trained):\n"
        + "\n".join(listed)
        + "\nStart every process with the same --config file and --config.* flags."
    )


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier `name` (at once with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"xraygan_jax: {name}")


def in_process_order(make: Callable[[], T]) -> T:
    """Runs `make()` on process 0 first, then on the others, and returns its result.

    For set-up that writes shared files, such as building the data set in the cache: on a shared
    disk the others then find it built; on local disks each builds its own copy; no two
    processes write the same files at once.
    """
    if jax.process_count() == 1:
        return make()
    result = make() if jax.process_index() == 0 else None
    barrier("process 0 set up")
    return result if jax.process_index() == 0 else make()
