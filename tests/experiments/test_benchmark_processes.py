"""The benchmarks' process runner: one process per implementation, rounds in turns."""

import os
import time

import pytest

from experiments.benchmarks import processes


def _sleeper(seconds: float):
    """A factory: runs in the child and returns a runner that sleeps."""
    return lambda: time.sleep(seconds)


def _reports_parent(parent_pid: int):
    """A factory that fails unless it runs in a process other than the parent."""
    if os.getpid() == parent_pid:
        raise AssertionError("the factory ran in the parent process")
    return lambda: None


def test_each_implementation_is_timed_in_rounds_in_its_own_process():
    times = processes.time_in_processes(
        {
            "short": (_sleeper, (0.01,)),
            "long": (_sleeper, (0.05,)),
            "child": (_reports_parent, (os.getpid(),)),
        },
        rounds=2,
        repeats=3,
    )
    assert list(times) == ["short", "long", "child"]
    for rounds in times.values():
        assert len(rounds) == 2 and all(len(runs) == 3 for runs in rounds)
    short = [t for runs in times["short"] for t in runs]
    long = [t for runs in times["long"] for t in runs]
    assert min(short) >= 0.01 and min(long) >= 0.05 and max(short) < min(long)


def _broken():
    raise ValueError("no such implementation")


def test_an_implementation_that_fails_to_build_is_named():
    with pytest.raises(RuntimeError, match="'broken' failed while being built"):
        processes.time_in_processes({"broken": (_broken, ())}, rounds=1, repeats=1)
