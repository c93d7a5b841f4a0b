"""Multi-process training on one machine: `experiments.train_gan --distributed` as 2 processes.

Each process is a child started with 2 fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=2), joined over JAX's distributed runtime on
127.0.0.1 and a free port; the collectives run over gloo. The reference is one process with 4
devices. What is checked:

- 2 processes x 2 devices end with the parameters, optimiser states, BatchNorm statistics and
  per-step metrics of 1 process x 4 devices (to 1e-6: the same batches, summed in another
  order);
- only process 0 writes the run's files; orbax writes each checkpoint jointly;
- a run saved by 2 processes resumes on 1 and the other way round (the latter configured by
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID instead of flags), ending where
  the uninterrupted run ends (so its data continued from the same global position);
- a killed process makes the other stop with a clear message within seconds;
- bad set-ups stop with a message naming what to fix: a coordinator that never answers,
  processes with different configs, a global batch that does not divide over all devices,
  `--distributed` given to a single-process launcher.

Run as a script (`python test_multiprocess.py AUDIT_FILE WORKDIR MODULE ARGS...`) this file runs
MODULE as `python -m` would, recording every file the process writes under WORKDIR (Python's
audit hooks); the test reads the record to tell which process wrote what.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
TOLERANCE = 1e-6
CONFIG = "--config=experiments/configs/test.py"
GANS = ("NORMAL", "PNEUMONIA")  # The test config trains one GAN per class.
# Seconds a healthy child run may take on a slow, shared CPU (compilation dominates).
RUN_TIMEOUT = 600


def _environment(devices: int) -> dict[str, str]:
    environment = dict(os.environ)
    environment["XLA_FLAGS"] = (
        environment.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    )
    environment["JAX_PLATFORMS"] = "cpu"
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), environment.get("PYTHONPATH", "")])
    return environment


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Processes:
    """The children of one multi-process run (all, or `only` some ids), each with its log file."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *args: str,
        module: str = "experiments.train_gan",
        num_processes: int = 2,
        devices: int = 2,
        per_process: dict[int, list[str]] | None = None,
        audit: bool = False,
        only: tuple[int, ...] | None = None,
        environment_variables: bool = False,
    ):
        self.workdir = workdir
        self.port = _free_port()
        self.logs = [
            workdir.parent / f"{workdir.name}.process{i}.log" for i in range(num_processes)
        ]
        self.audits = [
            workdir.parent / f"{workdir.name}.process{i}.writes" for i in range(num_processes)
        ]
        self.children: dict[int, subprocess.Popen] = {}
        for index in range(num_processes) if only is None else only:
            settings = {
                "coordinator_address": f"127.0.0.1:{self.port}",
                "num_processes": num_processes,
                "process_id": index,
            }
            environment = _environment(devices)
            if environment_variables:  # JAX_COORDINATOR_ADDRESS=... instead of the flags.
                environment.update({f"JAX_{k.upper()}": str(v) for k, v in settings.items()})
            flags = [
                CONFIG,
                f"--workdir={workdir}",
                "--distributed",
                *([] if environment_variables else [f"--{k}={v}" for k, v in settings.items()]),
                *args,
                *(per_process or {}).get(index, []),
            ]
            if audit:
                command = [sys.executable, __file__, str(self.audits[index]), str(workdir), module]
            else:
                command = [sys.executable, "-m", module]
            with open(self.logs[index], "w") as log:
                self.children[index] = subprocess.Popen(
                    [*command, *flags],
                    cwd=REPO_ROOT,
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )

    def wait(self, timeout: float = RUN_TIMEOUT) -> list[int]:
        """Every child's exit status; kills them all and fails the test if one is not done."""
        deadline = time.monotonic() + timeout
        try:
            return [
                child.wait(max(deadline - time.monotonic(), 0.1))
                for child in self.children.values()
            ]
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the processes ran past {timeout} s:\n{self.tail()}")

    def kill(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
                child.wait()

    def log(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def tail(self) -> str:
        return "\n".join(f"--- process {i}:\n{self.log(i)[-3000:]}" for i in self.children)

    def written(self, index: int) -> set[str]:
        """Paths (relative to the workdir) process `index` created, wrote, moved or removed."""
        return set(self.audits[index].read_text().splitlines())


def _run_one_process(workdir: pathlib.Path, *args: str, devices: int = 4):
    child = subprocess.run(
        [sys.executable, "-m", "experiments.train_gan", CONFIG, f"--workdir={workdir}", *args],
        cwd=REPO_ROOT,
        env=_environment(devices),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert child.returncode == 0, child.stderr[-4000:]
    return child


def _final_state(workdir: pathlib.Path, gan: str):
    """(state of the latest checkpoint as NumPy, its meta), restored in this 1-device process."""
    import jax

    from xraygan_jax import runs
    from xraygan_jax.train import setup, sharding

    run = runs.Run(workdir)
    abstract, _ = setup.abstract_state(
        run.load_config(), len(run.class_names), sharding.make_mesh()
    )
    checkpoints = run.checkpointer(gan)
    try:
        epoch = checkpoints.latest_epoch()
        return jax.device_get(checkpoints.restore(epoch, abstract)), checkpoints.read_meta(epoch)
    finally:
        checkpoints.close()


def _assert_same_training(workdir: pathlib.Path, reference: pathlib.Path) -> None:
    """Final states and per-step metrics of every GAN equal the reference run's to TOLERANCE."""
    import jax
    import numpy as np

    from xraygan_jax.train import reporting

    for gan in GANS:
        state, meta = _final_state(workdir, gan)
        expected, expected_meta = _final_state(reference, gan)
        assert meta["step"] == expected_meta["step"] > 0
        assert meta["data_position"] == expected_meta["data_position"]
        for field in ("g_params", "d_params", "g_batch_stats", "d_batch_stats", "g_opt_state",
                      "d_opt_state", "ema_g_params", "step"):  # fmt: skip
            leaves = jax.tree.leaves(getattr(state, field))
            expected_leaves = jax.tree.leaves(getattr(expected, field))
            assert len(leaves) == len(expected_leaves), (gan, field)
            for have, want in zip(leaves, expected_leaves, strict=True):
                np.testing.assert_allclose(
                    have, want, rtol=0, atol=TOLERANCE, err_msg=f"{gan} {field}"
                )
        records = reporting.read_metrics(workdir / "metrics.jsonl", gan=gan)
        expected_records = reporting.read_metrics(reference / "metrics.jsonl", gan=gan)
        assert [r["step"] for r in records] == [r["step"] for r in expected_records]
        assert len(records) == meta["step"]
        for have, want in zip(records, expected_records, strict=True):
            for key, value in want.items():
                if key != "images_per_s" and isinstance(value, float):
                    assert abs(have[key] - value) <= TOLERANCE, (gan, have["step"], key)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory) -> pathlib.Path:
    """The reference: the test config trained by 1 process with 4 devices."""
    workdir = tmp_path_factory.mktemp("one_process") / "run"
    _run_one_process(workdir)
    return workdir


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> _Processes:
    """The same config trained by 2 processes with 2 devices each, recording their writes."""
    workdir = tmp_path_factory.mktemp("two_processes") / "run"
    processes = _Processes(workdir, audit=True)
    statuses = processes.wait()
    assert statuses == [0, 0], processes.tail()
    return processes


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_as_many_devices(two_process_run, one_process_run):
    _assert_same_training(two_process_run.workdir, one_process_run)


@pytest.mark.slow
def test_only_process_0_writes_the_run_files_and_both_write_the_checkpoint(two_process_run):
    workdir = two_process_run.workdir
    first, second = two_process_run.written(0), two_process_run.written(1)
    run_files = {"config.json", "metrics.jsonl", "summary.md"}
    run_files |= {f"plots/losses_{gan}.png" for gan in GANS}
    run_files |= {f"samples/{gan}/epoch_{epoch:04d}.png" for gan in GANS for epoch in (1, 2)}
    assert run_files <= first, sorted(run_files - first)
    for gan in GANS:  # TensorBoard events too: process 0's alone.
        assert any(path.startswith(f"tensorboard/{gan}/events.out.tfevents.") for path in first)
    assert all(path.startswith("checkpoints/") for path in second), sorted(second)
    assert any(path.startswith("checkpoints/") for path in second)
    # Orbax writes jointly: every checkpoint's state holds both processes' parts.
    for gan in GANS:
        for epoch in (1, 2):
            state = workdir / "checkpoints" / gan / str(epoch) / "state"
            assert (state / "ocdbt.process_0").is_dir() and (state / "ocdbt.process_1").is_dir()
    # One record per step, not one per process.
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    steps = [(record["gan"], record["step"]) for record in map(json.loads, lines)]
    assert len(steps) == len(set(steps))


def _drop_last_epoch(source: pathlib.Path, destination: pathlib.Path) -> pathlib.Path:
    """A copy of a finished 2-epoch run as if it had stopped after epoch 1."""
    shutil.copytree(source, destination)
    for gan in GANS:
        shutil.rmtree(destination / "checkpoints" / gan / "2")
    return destination


@pytest.mark.slow
def test_a_run_saved_by_two_processes_resumes_on_one(two_process_run, one_process_run, tmp_path):
    workdir = _drop_last_epoch(two_process_run.workdir, tmp_path / "run")
    _run_one_process(workdir)
    _assert_same_training(workdir, one_process_run)


@pytest.mark.slow
def test_a_run_saved_by_one_process_resumes_on_two(one_process_run, tmp_path):
    workdir = _drop_last_epoch(one_process_run, tmp_path / "run")
    processes = _Processes(workdir, environment_variables=True)
    assert processes.wait() == [0, 0], processes.tail()
    _assert_same_training(workdir, one_process_run)


@pytest.mark.slow
def test_a_killed_process_stops_the_other_with_a_clear_error(tmp_path):
    workdir = tmp_path / "run"
    processes = _Processes(workdir, "--config.train.num_epochs=100", "--heartbeat_timeout_s=10")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        metrics = workdir / "metrics.jsonl"
        while not (metrics.exists() and metrics.read_text().strip()):
            assert time.monotonic() < deadline, processes.tail()
            assert all(c.poll() is None for c in processes.children.values()), processes.tail()
            time.sleep(0.2)
        processes.children[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        status = processes.children[0].wait(timeout=120)
        stopped_after = time.monotonic() - killed
    finally:
        processes.kill()
    assert status != 0
    # Our line when a collective fails; JAX's own when the heartbeat notices first.
    assert re.search(
        r"process 0 of 2: another process of this run stopped or cannot be reached"
        r"|another task died",
        processes.log(0),
    ), processes.tail()
    # The heartbeat timeout bounds it; in practice the next collective fails at once.
    assert stopped_after < 60, stopped_after


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_a_coordinator_that_never_answers_is_an_error_naming_it(tmp_path):
    workdir = tmp_path / "run"
    started = time.monotonic()
    # Process 1 alone: nobody serves the coordinator at this port.
    processes = _Processes(workdir, "--distributed_timeout_s=3", only=(1,))
    status = processes.children[1].wait(timeout=120)
    log = processes.log(1)
    assert status == 1, log
    assert (
        f"error: process 1 of 2 could not join the multi-process run at 127.0.0.1:{processes.port} "
        "within 3 s (--distributed_timeout_s)"
    ) in log
    assert time.monotonic() - started < 90
    assert not workdir.exists()


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_processes_started_with_different_configs_stop_before_training(tmp_path):
    workdir = tmp_path / "run"
    processes = _Processes(
        workdir, per_process={1: ["--config.train.seed=1", "--config.optim.g_lr=0.001"]}
    )
    assert processes.wait() == [1, 1], processes.tail()
    for index in (0, 1):
        log = processes.log(index)
        assert (
            f"error: process {index} of 2: the 2 processes of this run were started with "
            "different configs"
        ) in log
        assert "config.optim.g_lr: process 0 has 0.0002, process 1 has 0.001" in log
        assert "config.train.seed: process 0 has 0, process 1 has 1" in log
        assert "Start every process with the same --config file and --config.* flags" in log
    assert not workdir.exists()  # Stopped before anything was written.


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_a_global_batch_that_does_not_divide_over_all_devices_is_refused(tmp_path):
    workdir = tmp_path / "run"
    processes = _Processes(workdir, "--config.train.batch_size=6")
    assert processes.wait() == [1, 1], processes.tail()
    for index in (0, 1):
        assert (
            "--config.train.batch_size: batch_size 6 does not divide over 4 devices; use a "
            "multiple of 4 (e.g. 8) (2 processes x 2 devices each)"
        ) in processes.log(index)
    assert not workdir.exists()


def _launch_one(module: str, *args: str) -> subprocess.CompletedProcess:
    """One process of a launcher with one fake device, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=_environment(1),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "module", ["evaluate_gan", "augmentation_study", "pipeline", "sweep", "generate"]
)
@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_single_process_launchers_refuse_distributed(module, tmp_path):
    child = _launch_one(f"experiments.{module}", f"--workdir={tmp_path}", "--distributed")
    assert child.returncode == 1, child.stderr
    assert (
        f"error: --distributed: experiments.{module} is single-process; run it as one process on "
        "one host, without --distributed (only experiments.train_gan runs as several processes)."
    ) in child.stderr


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_distributed_settings_need_distributed(tmp_path):
    child = _launch_one(
        "experiments.train_gan", CONFIG, f"--workdir={tmp_path / 'run'}", "--process_id=1"
    )
    assert child.returncode == 1, child.stderr
    assert "error: --process_id only applies with --distributed" in child.stderr


def test_config_differences_name_every_field_and_value():
    from xraygan_jax.train import multihost

    base = {"train": {"seed": 0, "batch_size": 8}, "model": {"g_features": (32, 64)}}
    same_as_json = {"train": {"seed": 0, "batch_size": 8}, "model": {"g_features": [32, 64]}}
    other = {"train": {"seed": 1, "batch_size": 8}, "model": {"g_features": (32, 64), "nz": 8}}
    assert multihost.config_differences([base, same_as_json]) == []
    assert multihost.config_differences([base, same_as_json, other]) == [
        "config.model.nz: process 0 has (missing), process 1 has (missing), process 2 has 8",
        "config.train.seed: process 0 has 0, process 1 has 0, process 2 has 1",
    ]
    assert multihost.flatten(base) == {
        "train.seed": 0,
        "train.batch_size": 8,
        "model.g_features": (32, 64),
    }


def test_one_process_needs_no_agreement(tmp_path):
    from experiments.configs import test as test_config
    from xraygan_jax.train import multihost

    multihost.check_same_config(test_config.get_config())  # No collective with one process.
    multihost.barrier("nothing to wait for")
    assert multihost.in_process_order(lambda: 42) == 42


def _run_recording_writes(audit_path: str, workdir: str, module: str, *args: str) -> None:
    """Runs `python -m module args`, appending to `audit_path` each path written under workdir."""
    import runpy

    root = os.path.abspath(workdir)
    record = open(audit_path, "w")  # noqa: SIM115 - open until the process ends.
    writing = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    changes = {
        "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.truncate",
        "os.symlink", "os.link", "shutil.rmtree", "shutil.copyfile", "shutil.move",
    }  # fmt: skip

    def note(path) -> None:
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not isinstance(path, (str, os.PathLike)):
            return
        path = os.path.abspath(os.fspath(path))
        if path.startswith(root + os.sep):
            record.write(os.path.relpath(path, root) + "\n")
            record.flush()

    def hook(event: str, arguments: tuple) -> None:
        if event == "open":
            path, mode, flags = arguments
            if (isinstance(mode, str) and set(mode) & set("wax+")) or (
                isinstance(flags, int) and flags & writing
            ):
                note(path)
        elif event in changes:
            for argument in arguments[:2]:
                note(argument)

    sys.addaudithook(hook)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _run_recording_writes(*sys.argv[1:])
