"""Times implementations side by side, each in a process of its own, in alternating rounds.

Sharing one process can change the timings: the same compiled JAX train step took 747 ms before
and 808 ms after `import torch` in one run, 759 and 725 ms in another (`python -m
experiments.benchmarks.xla_cpu_choices --sections=torch`). Rather than guess which, every
implementation is built in a fresh (spawned) process; the parent then asks each in turn for one
round, so that load from other processes spreads over all of them.

A factory is a module-level function (picklable) that builds an implementation in the child
process and returns a function of no arguments running one timed unit of work.
"""

import multiprocessing
import os
import pathlib
import platform
import re
import time
from collections.abc import Callable
from typing import Any

Factory = tuple[Callable[..., Callable[[], Any]], tuple]


def _serve(factory: Callable[..., Callable[[], Any]], args: tuple, connection) -> None:
    """The child: builds, warms up (reporting the seconds taken), then times rounds on demand."""
    start = time.perf_counter()
    run = factory(*args)
    run()  # compilation
    run()  # warm-up
    connection.send(time.perf_counter() - start)
    while (repeats := connection.recv()) is not None:
        seconds = []
        for _ in range(repeats):
            began = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - began)
        connection.send(seconds)


def time_in_processes(
    factories: dict[str, Factory], rounds: int, repeats: int
) -> dict[str, list[list[float]]]:
    """Seconds per run of every implementation: {name: [round][repeat]}.

    Implementations are built one after another (compilation needs the cores), then timed in
    turns: round r of every implementation before round r + 1 of any.

    Args:
      factories: name -> (factory, args), run as `factory(*args)` in a child process.
      rounds: timed rounds per implementation.
      repeats: runs per round.
    """
    context = multiprocessing.get_context("spawn")
    workers = {}
    try:
        for name, (factory, args) in factories.items():
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_serve, args=(factory, args, child_end), daemon=True)
            process.start()
            child_end.close()  # so that recv() fails, not hangs, if the child dies
            workers[name] = (process, parent_end)
            try:
                seconds = parent_end.recv()
            except EOFError:
                raise RuntimeError(
                    f"{name!r} failed while being built (its traceback is printed above)"
                ) from None
            print(f"{name}: built, compiled and warmed up in {seconds:.1f} s", flush=True)
        times = {name: [] for name in workers}
        for _ in range(rounds):
            for name, (_, connection) in workers.items():
                connection.send(repeats)
                times[name].append(connection.recv())
        for _, connection in workers.values():
            connection.send(None)
        return times
    finally:
        for process, _ in workers.values():
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


def cpu_description() -> dict:
    """The machine's CPU, as timings must name it: model, family, logical and usable CPUs."""
    description = {"machine": platform.machine(), "logical_cpus": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        description["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return description
    for key, field in (("model name", "cpu_model"), ("cpu family", "cpu_family"),
                       ("model", "cpu_model_number")):  # fmt: skip
        match = re.search(rf"^{key}\s*:\s*(.*)$", text, re.MULTILINE)
        if match:
            description[field] = match.group(1).strip()
    return description
