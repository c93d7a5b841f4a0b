"""The study's classifiers on the demo setting: do they converge, and how fast do they train?

The data are built exactly as the README's demo study builds them (`pipeline_demo.py`'s phantom
set through `pipeline.study_config` and `study.images.load_data`, 0% synthetic, so no GAN is
needed):
510 train images, 90 validation images carved off by the study, 300 test images, 64 px, the
study config's small CNN, optimiser, schedule and steps.

Section "convergence" trains the baseline once per seed the study's way (`classifier_loop.
train_classifier` with the study's primary metric choosing the weights, the validation
threshold, test prediction, the orbax checkpoint) and prints accuracy, sensitivity, specificity
and AUC at threshold 0.5 per seed with their mean and standard deviation over seeds.

Section "speed" prints classifiers per minute for ways of training an arm's seeds, side by side
in alternating rounds (each round trains `--classifiers` classifiers per lever, after one
untimed warm-up classifier that compiles):

- `sequential`: one seed at a time, the study's way (as in "convergence");
- `one_validation`: the same, validating once at the last step and saving no checkpoint;
- `vmap`: the seeds' states stacked and `jax.vmap`ped through one jitted step (each seed keeps
  its own key and data order; vmapped convolutions become grouped ones on XLA CPU);
- `threads`: two Python threads in this process, each training its share of the seeds one at a
  time the study's way (`study.threads = 2`; XLA runs the two threads' steps concurrently);
- `processes`: one worker process per core (`taskset` and XLA's single-thread flags), each
  training its share of the seeds one at a time;
- `torch`: a PyTorch eager transcription of the same network, optimiser, schedule, batch and
  class balance, one seed at a time, in a process of its own (needs the `torch` extra).

    python -m experiments.benchmarks.study_classifiers                      # both, ~5 minutes
    python -m experiments.benchmarks.study_classifiers --sections=convergence --seeds=0-9
    python -m experiments.benchmarks.study_classifiers --sections=speed --rounds=3 --json=out.json

Results: docs/performance.md, section "Study classifiers".
"""

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from absl import app, flags

_SECTIONS = flags.DEFINE_list("sections", ["convergence", "speed"], "convergence and/or speed.")
_SEEDS = flags.DEFINE_string("seeds", "0-9", "Convergence seeds: a range A-B or a list 0,1,2.")
_LEVERS = flags.DEFINE_list(
    "levers",
    ["sequential", "one_validation", "threads", "vmap", "processes", "torch"],
    "Speed levers to time, in order.",
)
_CLASSIFIERS = flags.DEFINE_integer(
    "classifiers", 2, "Classifiers per lever and round (speed); the workers share them."
)
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Timed rounds per lever (speed).")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 0, "Override config.train.num_steps (0: keep).")
_OVERRIDES = flags.DEFINE_multi_string(
    "set", [], "Study config overrides KEY=VALUE, e.g. --set=train.class_balance=sampling."
)
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_WORKER = flags.DEFINE_string("worker", None, "Internal: run as a worker (jax | torch).")
_WORKER_SEEDS = flags.DEFINE_list("worker_seeds", [], "Internal: the worker's seeds.")

_WARM_UP_SEED = 1000  # the untimed classifier that compiles
# One core per worker process: no Eigen thread pool, one intra-op thread.
_SINGLE_CORE_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(seed) for seed in text.split(",")]


def study_config():
    """The demo pipeline's study config with 0% synthetic and the command line's overrides."""
    from experiments.configs import pipeline_demo
    from xraygan_jax import pipeline

    config = pipeline.study_config(pipeline_demo.get_config(), 0)
    config.study.fractions = (0.0,)
    config.train.log_every_steps = 10**9
    if _NUM_STEPS.value:
        config.train.num_steps = _NUM_STEPS.value
    for override in _OVERRIDES.value:
        key, value = override.split("=", 1)
        section, field = key.rsplit(".", 1)
        node = config
        for part in section.split("."):
            node = node[part]
        old = node[field]
        node[field] = type(old)(value) if not isinstance(old, bool) else value == "True"
    return config


@functools.cache
def demo_data():
    from xraygan_jax import study

    return study.images.load_data(study_config())


def _select_metric(config) -> str:
    return str(config.study.get("primary_metric", "auc"))


def study_classifier(config, seed: int, workdir, *, validate_every: bool = True) -> dict:
    """One baseline classifier the study's way; test metrics at 0.5 and the seconds it took."""
    from xraygan_jax.evaluators import classifier_metrics
    from xraygan_jax.metrics import classification
    from xraygan_jax.train import classifier_loop

    data = demo_data()
    if not validate_every:
        config = config.copy_and_resolve_references()
        config.train.eval_every_steps = config.train.num_steps
    started = time.perf_counter()
    trained = classifier_loop.train_classifier(
        config,
        data.train,
        data.val,
        seed=seed,
        workdir=workdir,
        name=f"seed {seed}",
        select_metric=_select_metric(config),
    )
    classification.choose_threshold(data.val.labels, trained.val_probabilities)
    evaluator = classifier_metrics.ClassifierEvaluator(
        functools.partial(classifier_loop.predict, trained.state),
        images=data.test.images,
        labels=data.test.labels,
    )
    test_probabilities = evaluator.predict()
    seconds = time.perf_counter() - started
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
        metrics = evaluator.score(test_probabilities)
    return {
        "seed": seed,
        "best_step": trained.best_step,
        "seconds": seconds,
        **{k: float(metrics[k]) for k in ("accuracy", "sensitivity", "specificity", "auc")},
        "test_probabilities": test_probabilities,
    }


def convergence(seeds: list[int]) -> dict:
    config = study_config()
    data = demo_data()
    print(
        f"train {np.bincount(data.train.labels).tolist()} val {np.bincount(data.val.labels)}"
        f" test {np.bincount(data.test.labels).tolist()} (NORMAL, PNEUMONIA); steps "
        f"{config.train.num_steps}, batch {config.train.batch_size}, lr {config.optim.lr} "
        f"{config.optim.get('schedule', 'constant')}, balance {config.train.class_balance}, "
        f"select {_select_metric(config)}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in seeds:
            row = study_classifier(config, seed, os.path.join(workdir, str(seed)))
            row.pop("test_probabilities")
            rows.append(row)
            print(
                f"seed {seed}: accuracy {row['accuracy']:.3f} sensitivity "
                f"{row['sensitivity']:.3f} specificity {row['specificity']:.3f} auc "
                f"{row['auc']:.3f} best step {row['best_step']} ({row['seconds']:.1f} s)",
                flush=True,
            )
    return {"rows": rows, "summary": summarise_seeds(rows)}


def summarise_seeds(rows: list[dict]) -> dict:
    """Prints and returns mean, sd (with its 95% interval), min and max of each metric."""
    from xraygan_jax.metrics import statistics as stats

    summary = {}
    print(
        "| metric (threshold 0.5) | mean | sd over seeds [95% CI] | min | max |\n"
        "|---|---|---|---|---|"
    )
    for key in ("accuracy", "sensitivity", "specificity", "auc", "seconds"):
        values = [row[key] for row in rows]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        low, high = stats.sd_interval(sd, len(values))
        summary[key] = {"mean": statistics.mean(values), "sd": sd, "sd_low": low, "sd_high": high}
        scale = 1 if key == "seconds" else 100
        print(
            f"| {key} | {statistics.mean(values) * scale:.1f} | {sd * scale:.2f} "
            f"[{low * scale:.2f}, {high * scale:.2f}] | {min(values) * scale:.1f} | "
            f"{max(values) * scale:.1f} |"
        )
    return summary


# Speed levers. Each trains `seeds` and returns the seconds it took.


def _sequential(seeds, *, validate_every=True, save=True):
    config = study_config()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        for seed in seeds:
            path = os.path.join(workdir, str(seed)) if save else None
            study_classifier(config, seed, path, validate_every=validate_every)
    return time.perf_counter() - started


def _threads(seeds, *, num_threads=2):
    """`num_threads` threads, each training seeds[i::num_threads] one at a time the study's way."""
    import concurrent.futures

    config = study_config()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:

        def share(index):
            for seed in seeds[index::num_threads]:
                study_classifier(config, seed, os.path.join(workdir, str(seed)))

        with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
            list(pool.map(share, range(num_threads)))
    return time.perf_counter() - started


@functools.cache
def _vmapped_step(config_json: str):
    import jax

    from xraygan_jax import compiler
    from xraygan_jax.train import augment, classifier_steps

    config = study_config()
    step = functools.partial(
        classifier_steps.classifier_train_step, augment_fn=augment.make_augment(config.augment)
    )
    return compiler.jit(jax.vmap(step), donate_argnums=0, reduce_fusion=True)


def _vmap(seeds):
    """The seeds' states stacked on a leading axis through one vmapped step; same data per seed
    as the study (its own order), validation at the last step only, test prediction per seed."""
    import jax

    from xraygan_jax.data import pipeline
    from xraygan_jax.train import classifier_loop, setup

    config = study_config()
    data = demo_data()
    started = time.perf_counter()
    image_size = data.train.images.shape[1]
    built = setup.classifier_setup(config, image_size, _mesh())  # the study's model and tx
    states, iterators, keys = [], [], []
    weights = classifier_loop._class_weights(data.train.labels, 2)  # noqa: SLF001
    for seed in seeds:
        key = jax.random.key(seed)
        states.append(setup.classifier_state(config, built, key, image_size))
        dataset = pipeline.make_dataset(
            data.train,
            batch_size=int(config.train.batch_size),
            seed=seed,
            shuffle=True,
            drop_remainder=True,
            balanced=config.train.class_balance == "sampling",
            process_index=0,
            process_count=1,
        )
        iterators.append(iter(dataset))
        keys.append(jax.random.fold_in(key, 2))
    state = jax.tree.map(lambda *leaves: np.stack(leaves), *states)
    step_fn = _vmapped_step(config.to_json())
    for step in range(1, int(config.train.num_steps) + 1):
        batches = [next(iterator) for iterator in iterators]
        if config.train.class_balance == "weights":
            for batch in batches:
                batch["weight"] = weights[batch["label"]].astype(np.float32)
        batch = jax.tree.map(lambda *leaves: np.stack(leaves), *batches)
        step_keys = jax.numpy.stack([jax.random.fold_in(k, step) for k in keys])
        state, _ = step_fn(state, batch, step_keys)
    for index in range(len(seeds)):
        member = jax.tree.map(lambda leaf, i=index: leaf[i], state)
        classifier_loop.predict(member, data.val.images)
        classifier_loop.predict(member, data.test.images)
    jax.block_until_ready(state)
    return time.perf_counter() - started


@functools.cache
def _mesh():
    from xraygan_jax.train import sharding

    return sharding.make_mesh()


def _start_worker(kind: str, seeds, core: int | None, env_extra: dict):
    env = dict(os.environ, **env_extra)
    command = [sys.executable, "-m", "experiments.benchmarks.study_classifiers"]
    command += [f"--worker={kind}", f"--worker_seeds={','.join(map(str, seeds))}"]
    command += [f"--num_steps={_NUM_STEPS.value}"] + [f"--set={o}" for o in _OVERRIDES.value]
    if core is not None:
        command = ["taskset", "-c", str(core)] + command
    return subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _run_workers(workers) -> float:
    """Waits until every worker has compiled, starts them together; the wall seconds to the last."""
    for worker in workers:
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("a worker failed while warming up (its traceback is above)")
    started = time.perf_counter()
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    for worker in workers:
        if worker.stdout.readline().strip() != "done":
            raise RuntimeError("a worker failed (its traceback is above)")
        worker.wait()
    return time.perf_counter() - started


def _processes(seeds):
    cores = sorted(os.sched_getaffinity(0))
    shares = [seeds[index :: len(cores)] for index in range(len(cores))]  # one per core
    env = {"XLA_FLAGS": _SINGLE_CORE_XLA_FLAGS, "OMP_NUM_THREADS": "1"}
    workers = [
        _start_worker("jax", share, core, env)
        for share, core in zip(shares, cores, strict=True)
        if share
    ]
    return _run_workers(workers)


def _torch(seeds):
    env = {"OMP_WAIT_POLICY": "PASSIVE"}
    return _run_workers([_start_worker("torch", seeds, None, env)])


def _torch_classifier(config, seed: int, workdir: str) -> None:
    """The study's classifier in PyTorch eager: same network, Adam, schedule, batch, flips, class
    balance, validation passes, test prediction and a saved state dict."""
    import torch

    from experiments.benchmarks import torch_references
    from xraygan_jax.data import pipeline
    from xraygan_jax.metrics import classification
    from xraygan_jax.train import classifier_loop, optimizers

    data = demo_data()
    torch.manual_seed(seed)
    model = torch_references.torch_small_cnn(
        torch, width=int(config.model.width), dropout_rate=float(config.model.dropout_rate)
    )
    num_steps = int(config.train.num_steps)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=float(config.optim.lr), betas=(config.optim.b1, config.optim.b2)
    )
    rate = optimizers.classifier_learning_rate(config.optim, num_steps)
    peak = float(config.optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (float(rate(step)) / peak) if callable(rate) else 1.0
    )
    balance = config.train.class_balance
    weights = classifier_loop._class_weights(data.train.labels, 2)  # noqa: SLF001
    iterator = iter(
        pipeline.make_dataset(
            data.train,
            batch_size=int(config.train.batch_size),
            seed=seed,
            shuffle=True,
            drop_remainder=True,
            balanced=balance == "sampling",
            process_index=0,
            process_count=1,
        )
    )

    def to_tensor(images):
        return torch.from_numpy(
            (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()
        )

    def predict(images):
        model.eval()
        with torch.no_grad():
            return torch.sigmoid(model(to_tensor(images))).numpy().astype(np.float64)

    generator = np.random.default_rng(seed)
    for step in range(1, num_steps + 1):
        model.train()
        batch = next(iterator)
        images = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
        if config.augment.flip:
            flip = torch.from_numpy(generator.random(len(images)) < 0.5)
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        labels = torch.from_numpy(np.asarray(batch["label"], np.float32))
        example_weights = torch.from_numpy(
            weights[batch["label"]].astype(np.float32)
            if balance == "weights"
            else np.ones(len(labels), np.float32)
        )
        losses = torch.nn.functional.binary_cross_entropy_with_logits(
            model(images), labels, reduction="none"
        )
        loss = (losses * example_weights).sum() / example_weights.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % int(config.train.eval_every_steps) == 0 or step == num_steps:
            classifier_loop.validation_scores(data.val.labels, predict(data.val.images))
    classification.choose_threshold(data.val.labels, predict(data.val.images))
    predict(data.test.images)
    torch.save(model.state_dict(), os.path.join(workdir, f"seed{seed}.pt"))


def worker(kind: str, seeds: list[int]) -> None:
    """A worker process: one untimed warm-up classifier, "ready", then on "go" its seeds."""
    config = study_config()
    with tempfile.TemporaryDirectory() as workdir:
        if kind == "jax":
            warm = config.copy_and_resolve_references()
            study_classifier(warm, _WARM_UP_SEED, None)
        else:
            _torch_classifier(config, _WARM_UP_SEED, workdir)
        print("ready", flush=True)
        sys.stdin.readline()
        for seed in seeds:
            if kind == "jax":
                study_classifier(config, seed, os.path.join(workdir, str(seed)))
            else:
                _torch_classifier(config, seed, workdir)
        print("done", flush=True)


_LEVER_FUNCTIONS = {
    "sequential": _sequential,
    "one_validation": functools.partial(_sequential, validate_every=False, save=False),
    "threads": _threads,
    "vmap": _vmap,
    "processes": _processes,
    "torch": _torch,
}


def speed() -> dict:
    from experiments.benchmarks import processes

    levers = list(_LEVERS.value)
    if "torch" in levers:
        try:
            import importlib.util

            if importlib.util.find_spec("torch") is None:
                raise ImportError
        except ImportError:
            print("torch is not installed (pip install -e '.[torch]'): no torch row")
            levers.remove("torch")
    config = study_config()
    print(
        f"CPU: {processes.cpu_description()}; {config.train.num_steps} steps, batch "
        f"{config.train.batch_size}, {_CLASSIFIERS.value} classifiers per lever and round",
        flush=True,
    )
    # Warm-up: compile the in-process levers' steps once before any timing.
    for lever in levers:
        if lever in ("sequential", "one_validation", "threads"):
            _sequential([_WARM_UP_SEED], save=False)
        elif lever == "vmap":
            _vmap([_WARM_UP_SEED + i for i in range(_CLASSIFIERS.value)])
    seeds = list(range(_CLASSIFIERS.value))
    seconds = {lever: [] for lever in levers}
    for _ in range(_ROUNDS.value):
        for lever in levers:
            seconds[lever].append(_LEVER_FUNCTIONS[lever](seeds))
            print(f"{lever}: {seconds[lever][-1]:.1f} s for {len(seeds)} classifiers", flush=True)
    print("| lever | s per classifier (median) | classifiers per minute | vs sequential |")
    print("|---|---|---|---|")
    base = statistics.median(seconds[levers[0]]) / len(seeds)
    table = {}
    for lever in levers:
        per_classifier = statistics.median(seconds[lever]) / len(seeds)
        table[lever] = {"seconds_per_classifier": per_classifier, "rounds": seconds[lever]}
        print(
            f"| {lever} | {per_classifier:.2f} | {60 / per_classifier:.1f} | "
            f"{base / per_classifier:.2f}x |"
        )
    return {"cpu": processes.cpu_description(), "levers": table}


def main(argv):
    del argv
    if _WORKER.value:
        worker(_WORKER.value, [int(seed) for seed in _WORKER_SEEDS.value])
        return
    results = {}
    if "convergence" in _SECTIONS.value:
        results["convergence"] = convergence(_parse_seeds(_SEEDS.value))
    if "speed" in _SECTIONS.value:
        results["speed"] = speed()
    if _JSON.value:
        with open(_JSON.value, "w") as file:
            json.dump(results, file, indent=2, default=float)


if __name__ == "__main__":
    app.run(main)
