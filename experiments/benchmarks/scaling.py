"""Data-parallel scaling of the GAN train step: step time and images/s at a fixed per-device batch.

    python -m experiments.benchmarks.scaling
    python -m experiments.benchmarks.scaling --image_size=64 --ngf=64 --ndf=64 \
        --per_device_batch=64 --device_counts=1,2,4,8 --rounds=5

Each row is the training loop's step (`steps.gan_train_step` under `compiler.jit`, state
replicated, batch split over a ("data",) mesh, as `gan_loop` runs it) with `--per_device_batch`
images per device, so the global batch grows with the device count (weak scaling):
  - N devices, 1 process: on CPU, N fake devices in one process
    (XLA_FLAGS=--xla_force_host_platform_device_count=N, fixed when JAX starts, so each count
    runs in a process of its own); on GPUs, the first N GPUs. Counts above the GPUs present are
    skipped.
  - P processes x 1 device (`--processes`, default 2): JAX's distributed runtime on this machine,
    `jax.distributed.initialize` with a coordinator on 127.0.0.1 at a free port, gloo collectives
    on CPU; each process loads its share of the global batch
    (`sharding.shard_batch` = `make_array_from_process_local_data`), as a multi-host run does.

Efficiency is images/s against linear scaling: images/s(N) / (N x images/s(1 device)). On CPU the
fake devices share the same cores, so the ideal there is the same images/s at every count
(speed-up 1.0, efficiency 1/N): the table then measures what splitting the step costs (the
partitioned program, the all-reduces of the gradients and of the BatchNorm statistics), not a
speed-up. On N GPUs it is the real thing.

The 8-device row also reports the collectives XLA put in the compiled step (count and bytes of
all-reduce), and the parameter sizes, for the on-paper estimate in docs/performance.md ("Scaling
over devices").

As in processes.py, every setup is built (compiled, warmed up) first, one after another, then
timed in alternating rounds, so that load from other work on the machine spreads over all rows.
The table is printed and saved with the machine's description (CPU model, cores, jax version,
devices) as JSON (`--out`).
"""

import json
import os
import pathlib
import platform
import queue
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

from absl import app, flags

from experiments.benchmarks import processes

_DEVICE_COUNTS = flags.DEFINE_list("device_counts", ["1", "2", "4", "8"], "Devices per row.")
_PROCESSES = flags.DEFINE_integer(
    "processes", 2, "The multi-process row: this many processes x 1 device (0 or 1: no such row)."
)
_PER_DEVICE_BATCH = flags.DEFINE_integer("per_device_batch", 16, "Images per device per step.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 32, "Image side (32, 64 or 128).")
_NGF = flags.DEFINE_integer("ngf", 32, "config.model.ngf (the dcgan config: 64).")
_NDF = flags.DEFINE_integer("ndf", 32, "config.model.ndf (the dcgan config: 64).")
_COMPUTE_DTYPE = flags.DEFINE_string("compute_dtype", "float32", "config.train.compute_dtype.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per row.")
_STEPS = flags.DEFINE_integer("steps", 3, "Steps per round.")
_OUT = flags.DEFINE_string("out", "runs/benchmarks/scaling.json", "Where the JSON goes.")
_TIMEOUT = flags.DEFINE_integer(
    "timeout", 600, "Seconds a child may take to build or to run a round before it counts as hung."
)
# The child side (set by the parent; not for users).
_CHILD = flags.DEFINE_enum("child", None, ["probe", "run"], "Internal: run as a child.")
_NUM_DEVICES = flags.DEFINE_integer("num_devices", 1, "Internal: devices of the mesh.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Internal: processes of the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "Internal: this process's index.")
_COORDINATOR = flags.DEFINE_string("coordinator", "", "Internal: host:port of process 0.")
_PLATFORM = flags.DEFINE_string("platform", "cpu", "Internal: the backend the probe found.")

_TAG = "SCALING "  # prefix of the protocol lines on a child's stdout
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_BYTES = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2,
          "s8": 1, "u8": 1, "pred": 1}  # fmt: skip


# The child side.


def _say(kind: str, payload) -> None:
    print(f"{_TAG}{kind} {json.dumps(payload)}", flush=True)


_SMALL_BYTES = 64 * 1024  # an all-reduce under this is latency-bound (BatchNorm statistics)


def _all_reduces(hlo: str) -> dict[str, int]:
    """The all-reduce ops of compiled HLO text (async starts count): how many, of how many arrays,
    how many bytes, and how many of them (and their bytes) are small (under _SMALL_BYTES).

    XLA combines the all-reduces of several arrays into one op of a tuple.
    """
    found = {"ops": 0, "arrays": 0, "bytes": 0, "small_ops": 0, "small_bytes": 0}
    for line in hlo.splitlines():
        match = re.search(r"=\s*(.*?)\s+all-reduce(?:-start)?\(", line)
        if not match:
            continue
        op_bytes = 0
        for dtype, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", match.group(1)):
            size = 1
            for dim in filter(None, dims.split(",")):
                size *= int(dim)
            found["arrays"] += 1
            op_bytes += size * _BYTES.get(dtype, 4)
        found["ops"] += 1
        found["bytes"] += op_bytes
        if op_bytes < _SMALL_BYTES:
            found["small_ops"] += 1
            found["small_bytes"] += op_bytes
    return found


def _all_reduce_ms(mesh, shapes: list[tuple[int, ...]], repeats: int = 5) -> float:
    """Median ms of one all-reduce (psum over the mesh) of float32 arrays of `shapes` per device.

    One psum of all the arrays, as the step all-reduces a gradient tree: XLA may combine them
    into one op, but the collective library still handles them array by array.
    """
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec

    from xraygan_jax.train import sharding

    local = sum(device.process_index == jax.process_index() for device in mesh.devices.flat)
    values = [
        jax.make_array_from_process_local_data(
            sharding.batch_sharding(mesh), np.ones((local, *shape), np.float32)
        )
        for shape in shapes
    ]
    spec = PartitionSpec(sharding.DATA_AXIS)
    reduce = jax.jit(
        jax.shard_map(
            lambda *parts: jax.lax.psum(parts, sharding.DATA_AXIS),
            mesh=mesh,
            in_specs=spec,
            out_specs=spec,
        )
    )
    jax.block_until_ready(reduce(*values))
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(reduce(*values))
        seconds.append(time.perf_counter() - began)
    return 1000 * statistics.median(seconds)


def _probe() -> None:
    import jax

    devices = jax.devices()
    _say(
        "probe",
        {
            "platform": jax.default_backend(),
            "device_count": len(devices),
            "device_kind": devices[0].device_kind,
            "jax": jax.__version__,
            "jaxlib": __import__("jaxlib").__version__,
        },
    )


def _config():
    from experiments.configs import dcgan

    config = dcgan.get_config()
    config.data.image_size = _IMAGE_SIZE.value
    config.model.ngf = _NGF.value
    config.model.ndf = _NDF.value
    config.train.compute_dtype = _COMPUTE_DTYPE.value
    return config


def _run_child() -> None:
    """Builds one setup, reports READY, then times a round per "round" line on stdin."""
    import jax

    if _NUM_PROCESSES.value > 1:
        local_ids = None
        if _PLATFORM.value == "cpu":
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        else:
            local_ids = [_PROCESS_ID.value]
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
            local_device_ids=local_ids,
            initialization_timeout=120,
        )
    import jax.numpy as jnp
    import numpy as np

    from xraygan_jax import compiler
    from xraygan_jax.train import setup, sharding, steps

    began = time.perf_counter()
    devices = jax.devices()[: _NUM_DEVICES.value]
    if len(devices) != _NUM_DEVICES.value:
        raise SystemExit(f"asked for {_NUM_DEVICES.value} devices, JAX has {jax.devices()}")
    mesh = sharding.make_mesh(devices)
    replicated = sharding.replicated(mesh)
    config = _config()
    # An "rbg" key for the initial values, which do not matter here: XLA CPU compiles threefry
    # draws of every parameter shape slowly. The step keeps the loop's threefry keys.
    init = jax.jit(setup.make_init(config, 2), out_shardings=replicated)
    state = init(jax.random.key(0, impl="rbg"))
    local = sum(device.process_index == jax.process_index() for device in devices)
    rng = np.random.default_rng(jax.process_index())
    size, per_process = config.data.image_size, _PER_DEVICE_BATCH.value * local
    batch = sharding.shard_batch(
        {
            "image": rng.uniform(-1, 1, (per_process, size, size, 1)).astype(np.float32),
            "label": rng.integers(0, 2, per_process).astype(np.int32),
        },
        mesh,
    )

    def step_fn(state, batch, step):
        # The loop's key, fold_in(base_key, step), made inside the step: a step number is the
        # same on every process, a key array would need placing on the global mesh.
        return steps.gan_train_step(state, batch, jax.random.fold_in(jax.random.key(1), step))

    train_step = compiler.jit(
        step_fn,
        in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    train_step = train_step.lower(state, batch, np.int32(0)).compile()
    all_reduces = _all_reduces(train_step.as_text())
    costs = train_step.cost_analysis()
    costs = costs[0] if isinstance(costs, list) else costs
    holder = {"state": state, "step": 0}

    def run(num_steps: int) -> None:
        for _ in range(num_steps):
            holder["state"], metrics = train_step(holder["state"], batch, np.int32(holder["step"]))
            holder["step"] += 1
        jax.block_until_ready((holder["state"], metrics))

    run(2)  # compilation, warm-up
    count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))  # noqa: E731
    # What one collective costs here: a tiny one (latency, as each BatchNorm's statistics) and one
    # of arrays shaped as all of G's and D's parameters (their gradients' all-reduce).
    small_ms = _all_reduce_ms(mesh, [(1,)])
    gradient_shapes = [leaf.shape for leaf in jax.tree.leaves((state.g_params, state.d_params))]
    gradients_ms = _all_reduce_ms(mesh, gradient_shapes)
    _say(
        "ready",
        {
            "build_seconds": time.perf_counter() - began,
            "g_params": count(state.g_params),
            "d_params": count(state.d_params),
            "g_batch_stats": count(state.g_batch_stats),
            "d_batch_stats": count(state.d_batch_stats),
            **{f"all_reduce_{key}": value for key, value in all_reduces.items()},
            # XLA's count for one device's share of the step (the global step / devices).
            "gflop_per_device_step": float(costs.get("flops", float("nan"))) / 1e9,
            "all_reduce_4_bytes_ms": small_ms,
            "all_reduce_gradients_ms": gradients_ms,
            "gradient_arrays": len(gradient_shapes),
            "devices": [str(device) for device in devices],
            "dtype": str(jnp.dtype(config.train.compute_dtype)),
        },
    )
    for line in sys.stdin:
        if line.strip() != "round":
            break
        began = time.perf_counter()
        run(_STEPS.value)
        _say("round", (time.perf_counter() - began) / _STEPS.value)
    if _NUM_PROCESSES.value > 1:
        jax.distributed.shutdown()


# The parent side.


class _Child:
    """A child process speaking the line protocol; its stdout is read by a thread."""

    def __init__(self, name: str, arguments: list[str], environment: dict[str, str]):
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "experiments.benchmarks.scaling", *arguments],
            cwd=_REPO_ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.startswith(_TAG):
                kind, payload = line[len(_TAG) :].split(" ", 1)
                self.lines.put((kind, json.loads(payload)))
        self.lines.put((None, None))

    def _read_errors(self) -> None:
        for line in self.process.stderr:
            self.errors = (self.errors + [line])[-40:]

    def expect(self, kind: str, timeout: float):
        try:
            got, payload = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no {kind!r} within {timeout:.0f} s") from None
        if got != kind:
            raise RuntimeError(
                f"{self.name} exited (code {self.process.wait()}) before {kind!r}:\n"
                + "".join(self.errors[-20:])
            )
        return payload

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(platform_name: str | None, num_devices: int) -> dict[str, str]:
    """A child's environment: this repository importable; N fake devices on CPU; on GPUs, memory
    taken as needed (the rows' processes are alive at the same time)."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(_REPO_ROOT), environment.get("PYTHONPATH", "")])
    )
    if platform_name not in ("cpu", None):
        environment.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if platform_name == "cpu":
        environment["JAX_PLATFORMS"] = "cpu"
        environment["XLA_FLAGS"] = (
            environment.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={num_devices}"
        ).strip()
    return environment


def _common_arguments() -> list[str]:
    return [
        f"--per_device_batch={_PER_DEVICE_BATCH.value}",
        f"--image_size={_IMAGE_SIZE.value}",
        f"--ngf={_NGF.value}",
        f"--ndf={_NDF.value}",
        f"--compute_dtype={_COMPUTE_DTYPE.value}",
        f"--steps={_STEPS.value}",
    ]


def _setups(probe: dict) -> tuple[list[dict], list[str]]:
    """The rows to run, and notes on those skipped."""
    rows, skipped = [], []
    for count in sorted({int(value) for value in _DEVICE_COUNTS.value}):
        if probe["platform"] != "cpu" and count > probe["device_count"]:
            skipped.append(f"{count} devices: only {probe['device_count']} present")
            continue
        rows.append({"name": f"1 process x {count}", "processes": 1, "devices": count})
    processes = _PROCESSES.value
    if processes > 1:
        if probe["platform"] != "cpu" and processes > probe["device_count"]:
            skipped.append(f"{processes} processes x 1 device: {probe['device_count']} present")
        else:
            rows.append(
                {"name": f"{processes} processes x 1", "processes": processes, "devices": processes}
            )
    return rows, skipped


def _start(row: dict, platform_name: str) -> list[_Child]:
    if row["processes"] == 1:
        arguments = [
            "--child=run",
            f"--num_devices={row['devices']}",
            f"--platform={platform_name}",
        ]
        environment = _environment(platform_name, row["devices"])
        return [_Child(row["name"], arguments + _common_arguments(), environment)]
    coordinator = f"127.0.0.1:{_free_port()}"
    children = []
    for process_id in range(row["processes"]):
        arguments = [
            "--child=run",
            f"--num_devices={row['devices']}",
            f"--num_processes={row['processes']}",
            f"--process_id={process_id}",
            f"--coordinator={coordinator}",
            f"--platform={platform_name}",
        ]
        environment = _environment(platform_name, 1)
        name = f"{row['name']} (process {process_id})"
        children.append(_Child(name, arguments + _common_arguments(), environment))
    return children


def _print_table(results: list[dict], per_device_batch: int) -> None:
    base = next((r for r in results if r["processes"] == 1 and r["devices"] == 1), None)
    header = (
        f"{'setup':<22} {'global batch':>12} {'ms/step':>8} {'rounds (min-max)':>17} "
        f"{'images/s':>9} {'speed-up':>9} {'efficiency':>11}"
    )
    print(header)
    for row in results:
        speedup = row["images_per_second"] / base["images_per_second"] if base else None
        row["speed_up"] = speedup
        row["efficiency"] = speedup / row["devices"] if speedup else None
        spread = f"{min(row['round_ms']):.0f}-{max(row['round_ms']):.0f}"
        speedup_text = f"{speedup:.2f}x" if speedup else "-"
        efficiency_text = f"{row['efficiency']:.0%}" if speedup else "-"
        print(
            f"{row['name']:<22} {row['devices'] * per_device_batch:>12} {row['ms_per_step']:>8.0f} "
            f"{spread:>17} {row['images_per_second']:>9.1f} {speedup_text:>9} "
            f"{efficiency_text:>11}"
        )
    print(
        "(speed-up: images/s against 1 device; efficiency: speed-up / devices, 100% = linear; "
        "median over rounds of the mean step time per round)"
    )
    print()
    print(f"{'setup':<22} {'all-reduces in the step':>48} {'one all-reduce of 4 B':>22} ", end="")
    gradients_header = f"of the gradients ({results[0]['gradient_arrays']} arrays)"
    print(f"{gradients_header:>30}")
    for row in results:
        in_step = (
            f"{row['all_reduce_ops']} ops ({row['all_reduce_small_ops']} small: "
            f"{row['all_reduce_small_bytes'] / 1e3:.0f} kB), {row['all_reduce_arrays']} arrays, "
            f"{row['all_reduce_bytes'] / 1e6:.1f} MB"
        )
        gradients = f"{row['all_reduce_gradients_ms']:.1f} ms"
        print(
            f"{row['name']:<22} {in_step:>48} {row['all_reduce_4_bytes_ms']:>19.2f} ms "
            f"{gradients:>30}"
        )


def _parent() -> None:
    probe_child = _Child("probe", ["--child=probe"], _environment(None, 1))
    probe_child.process.stdin.close()
    probe = probe_child.expect("probe", _TIMEOUT.value)
    probe_child.close()
    platform_name = probe["platform"]
    machine = {"cpu": processes.cpu_description(), "python": platform.python_version(), **probe}
    if platform_name == "cpu":
        machine["note"] = "fake CPU devices: all of them share the CPUs above"
    rows, skipped = _setups(probe)
    print(
        f"jax {probe['jax']} on {platform_name} ({probe['device_count']} x "
        f"{probe['device_kind']}); CPU: {machine['cpu'].get('cpu_model', '?')}, "
        f"{machine['cpu'].get('usable_cpus', machine['cpu']['logical_cpus'])} usable cores"
    )
    print(
        f"DC-cGAN {_IMAGE_SIZE.value}x{_IMAGE_SIZE.value}, ngf {_NGF.value}, ndf {_NDF.value}, "
        f"{_PER_DEVICE_BATCH.value} images per device, {_COMPUTE_DTYPE.value}"
    )
    for note in skipped:
        print(f"skipped: {note}")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    running: dict[str, list[_Child]] = {}
    ready: dict[str, dict] = {}
    try:
        for row in rows:
            children = _start(row, platform_name)
            running[row["name"]] = children
            reports = [child.expect("ready", _TIMEOUT.value) for child in children]
            ready[row["name"]] = reports[0]
            print(f"{row['name']}: built in {reports[0]['build_seconds']:.1f} s", flush=True)
        times = {row["name"]: [] for row in rows}
        for _ in range(_ROUNDS.value):
            for row in rows:
                for child in running[row["name"]]:
                    child.send("round")
                # Process 0 times the joint step (the collectives keep the processes in step).
                seconds = [child.expect("round", _TIMEOUT.value) for child in running[row["name"]]]
                times[row["name"]].append(seconds[0])
    finally:
        for children in running.values():
            for child in children:
                child.close()
    results = []
    for row in rows:
        seconds = statistics.median(times[row["name"]])
        results.append(
            {
                **row,
                "global_batch": row["devices"] * _PER_DEVICE_BATCH.value,
                "ms_per_step": 1000 * seconds,
                "round_ms": [1000 * value for value in times[row["name"]]],
                "images_per_second": row["devices"] * _PER_DEVICE_BATCH.value / seconds,
                **{key: value for key, value in ready[row["name"]].items() if key != "devices"},
                "device_names": ready[row["name"]]["devices"],
            }
        )
    print()
    _print_table(results, _PER_DEVICE_BATCH.value)
    first = results[0]
    print(
        f"parameters: G {first['g_params']:,}, D {first['d_params']:,} (float32: "
        f"{4 * (first['g_params'] + first['d_params']) / 1e6:.1f} MB of gradients per step); "
        f"XLA counts {first['gflop_per_device_step']:.2f} GFLOP per device per step "
        f"({_PER_DEVICE_BATCH.value} images); the all-reduces are counted in the compiled step "
        f"(small: under {_SMALL_BYTES // 1024} kB, latency-bound)"
    )
    if platform_name == "cpu":
        print(
            "On CPU the devices are fake and share the cores: the ideal is speed-up 1.00x "
            "(same images/s), not linear."
        )
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
    output = pathlib.Path(_OUT.value)
    output.parent.mkdir(parents=True, exist_ok=True)
    command = ["python", "-m", "experiments.benchmarks.scaling", *sys.argv[1:]]
    record = {
        "command": " ".join(command),
        "machine": machine,
        "load_average_before_after": [load_before, load_after],
        "settings": {
            "image_size": _IMAGE_SIZE.value,
            "ngf": _NGF.value,
            "ndf": _NDF.value,
            "per_device_batch": _PER_DEVICE_BATCH.value,
            "compute_dtype": _COMPUTE_DTYPE.value,
            "rounds": _ROUNDS.value,
            "steps_per_round": _STEPS.value,
        },
        "skipped": skipped,
        "results": results,
    }
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {output}")


def main(argv):
    del argv
    if _CHILD.value == "probe":
        _probe()
    elif _CHILD.value == "run":
        _run_child()
    else:
        _parent()


if __name__ == "__main__":
    app.run(main)
