"""Classifier train step speed: this library (JAX) against PyTorch, side by side in one run.

Two networks of `xraygan_jax.models.classifier`: SmallCNN on 64x64 and ResNet-18 on 128x128
one-channel images, batch 32, dropout 0.4, BCE with logits, Adam(1e-3). The JAX step is the
library's `classifier_steps.classifier_train_step`, compiled with `xraygan_jax.compiler.jit`
(and, as a second row, with XLA's YNNPACK reduce fusions added to the compiler options: the
BatchNorm statistics are reductions over batch, height and width). The PyTorch side is the same
network, `torch_references.torch_small_cnn` / `torch_resnet` (torchvision's ResNet with a
one-channel conv1 and a one-logit fc), in train mode on CPU with 2 threads. Before timing,
PyTorch's initial weights are loaded into the JAX model (the ResNet through `resnet_weights`, as
ImageNet weights would be) and both eval-mode forward passes are compared (max abs difference
printed).

Each implementation runs in a process of its own (experiments/benchmarks/processes.py says why);
rounds alternate between them so that a busy machine slows all alike. Each round times
`--steps_per_round` steps after warm-up; the table gives the median over rounds of each round's
median step time.

    pip install torch==2.13.0        # the PyTorch side only (CPU build)
    python -m experiments.benchmarks.classifier_step
    python -m experiments.benchmarks.classifier_step --models=resnet18:128 --rounds=5
    python -m experiments.benchmarks.classifier_step --omp_wait_policy=PASSIVE  # a busy machine

Without torch installed it times the JAX side alone.
"""

import functools
import io
import os
import statistics

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags

from experiments.benchmarks import processes, torch_references
from xraygan_jax import compiler
from xraygan_jax.models import classifier
from xraygan_jax.pretrained import resnet_weights, torch_free_reader
from xraygan_jax.train import classifier_steps

_MODELS = flags.DEFINE_list(
    "models", ["small_cnn:64", "resnet18:128"], "kind:image_size pairs to time, in order."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per step.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per implementation.")
_STEPS_PER_ROUND = flags.DEFINE_integer("steps_per_round", 3, "Steps timed per round.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch reference (needs torch).")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", False, "Also time torch.compile'd networks.")
_OMP_WAIT_POLICY = flags.DEFINE_enum(
    "omp_wait_policy",
    None,
    ["ACTIVE", "PASSIVE"],
    "OMP_WAIT_POLICY for the PyTorch processes (default: OpenMP's). On a machine other work "
    "keeps busy, PASSIVE stops PyTorch's spinning OpenMP threads from slowing each step several "
    "times over (docs/performance.md).",
)
_REDUCE_FUSION = flags.DEFINE_bool(
    "reduce_fusion", True, "Also time JAX with YNNPACK reduce fusions added to compiler.jit's."
)

DROPOUT_RATE = 0.4
LEARNING_RATE = 1e-3
_REDUCE_FUSION_TYPE = "LIBRARY_FUSION_TYPE_REDUCE"


def _torch_model(torch, kind: str):
    if kind == "small_cnn":
        return torch_references.torch_small_cnn(torch, dropout_rate=DROPOUT_RATE)
    return torch_references.torch_resnet(
        torch, int(kind[len("resnet") :]), in_channels=1, num_outputs=1, dropout_rate=DROPOUT_RATE
    )


def _jax_model(kind: str):
    return classifier.make_classifier(
        ml_collections.ConfigDict({"kind": kind, "dropout_rate": DROPOUT_RATE})
    )


def _flax_variables(kind: str, state_dict: dict[str, np.ndarray], image_size: int) -> dict:
    """The PyTorch weights (NumPy state dict) as the JAX model's variables."""
    model = _jax_model(kind)
    images = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    if kind == "small_cnn":
        params, batch_stats = {}, {}
        for index in range(4):
            kernel = state_dict[f"conv{index}.weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO
            params[f"conv{index}"] = {"kernel": kernel}
            params[f"bn{index}"] = {
                "scale": state_dict[f"bn{index}.weight"],
                "bias": state_dict[f"bn{index}.bias"],
            }
            batch_stats[f"bn{index}"] = {
                "mean": state_dict[f"bn{index}.running_mean"],
                "var": state_dict[f"bn{index}.running_var"],
            }
        head = {"kernel": state_dict["head.weight"].T, "bias": state_dict["head.bias"]}
        variables = {"params": {**params, "head": head}, "batch_stats": batch_stats}
    else:
        variables = resnet_weights.convert_state_dict(
            state_dict, abstract, depth=int(kind[len("resnet") :])
        )
        variables["params"]["head"] = {
            "kernel": state_dict["fc.weight"].T,
            "bias": state_dict["fc.bias"],
        }
    variables = jax.tree.map(lambda value: jnp.asarray(value, jnp.float32), variables)
    if jax.tree.structure(variables) != jax.tree.structure(abstract):
        raise AssertionError(f"{kind}: the converted variables do not match the JAX model")
    return variables


def _batch(batch_size: int, image_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.uniform(-1, 1, (batch_size, image_size, image_size, 1)).astype(np.float32),
        "label": rng.integers(0, 2, batch_size).astype(np.int32),
    }


def _jax_state(kind: str, image_size: int, state_dict):
    model = _jax_model(kind)
    tx = optax.adam(LEARNING_RATE)
    if state_dict is None:
        init = functools.partial(
            classifier_steps.create_classifier_state, model, tx, image_size=image_size
        )
        return jax.jit(init)(jax.random.key(0))
    variables = _flax_variables(kind, state_dict, image_size)

    def init(key, params, batch_stats):
        return classifier_steps.create_classifier_state(
            model, tx, key, image_size=image_size, params=params, batch_stats=batch_stats
        )

    return jax.jit(init)(jax.random.key(0), variables["params"], variables["batch_stats"])


def _compiler_options(reduce_fusion: bool) -> dict[str, str]:
    options = compiler.compiler_options()
    if reduce_fusion and jax.default_backend() == "cpu":
        fusion_types = options.get("xla_cpu_experimental_ynn_fusion_type", "")
        options["xla_cpu_experimental_ynn_fusion_type"] = ",".join(
            filter(None, [fusion_types, _REDUCE_FUSION_TYPE])
        )
    return options


def _jax_runner(kind: str, image_size: int, batch_size: int, state_dict, reduce_fusion: bool):
    """Builds the JAX step in this process: a function running one step."""
    state = _jax_state(kind, image_size, state_dict)
    batch = jax.tree.map(jnp.asarray, _batch(batch_size, image_size))
    if reduce_fusion:
        options = _compiler_options(reduce_fusion=True)
        train_step = jax.jit(
            classifier_steps.classifier_train_step, donate_argnums=0, compiler_options=options
        )
    else:
        train_step = compiler.jit(classifier_steps.classifier_train_step, donate_argnums=0)
    base_key = jax.random.key(1)
    holder = {"state": state, "step": 0}

    def run_step():
        key = jax.random.fold_in(base_key, holder["step"])
        holder["state"], metrics = train_step(holder["state"], batch, key)
        jax.block_until_ready(metrics)
        holder["step"] += 1

    return run_step


def _torch_runner(
    kind, image_size, batch_size, state_dict, threads: int, compile_model: bool, wait_policy
):
    """Builds the PyTorch step in this process from the shared initial weights."""
    if wait_policy:
        os.environ["OMP_WAIT_POLICY"] = wait_policy  # read when torch loads OpenMP, just below
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _torch_model(torch, kind)
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state_dict.items()})
    model.train()
    if compile_model:
        model = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    batch = _batch(batch_size, image_size)
    images = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(batch["label"]).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _torch_weights(kind: str, batch_size: int, image_size: int):
    """The PyTorch model's initial state dict (NumPy), after a same-weights forward check.

    The ResNet's weights reach JAX the way ImageNet weights would: `torch.save`, then
    `resnet_weights` (torch-free). Returns None when torch is not installed.
    """
    try:
        import torch
    except ImportError:
        print("torch is not installed: timing the JAX side only")
        return None
    torch.manual_seed(0)
    model = _torch_model(torch, kind).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state_dict = torch_free_reader.read_state_dict(buffer)
    variables = _flax_variables(kind, state_dict, image_size)
    batch = _batch(batch_size, image_size)
    jax_logits = jax.jit(lambda v, x: _jax_model(kind).apply(v, x, train=False))(
        variables, batch["image"]
    )
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy()))
    difference = np.max(np.abs(np.asarray(jax_logits) - torch_logits.numpy()))
    print(f"{kind}: same weights, eval-mode logits: max |JAX - PyTorch| {difference:.1e}")
    return state_dict


def _step_gflop(kind: str, image_size: int, batch_size: int) -> float | None:
    """XLA's count of floating-point operations in one JAX train step, in GFLOP."""
    state = jax.eval_shape(lambda: _jax_state(kind, image_size, None))
    batch = jax.tree.map(jnp.asarray, _batch(batch_size, image_size))
    lowered = jax.jit(classifier_steps.classifier_train_step).lower(state, batch, jax.random.key(0))
    analysis = lowered.cost_analysis()
    flops = analysis.get("flops") if isinstance(analysis, dict) else None
    return None if flops is None else flops / 1e9


def _time_model(kind: str, image_size: int, batch_size: int):
    """({implementation: median seconds per step}, {implementation: per-round medians})."""
    state_dict = _torch_weights(kind, batch_size, image_size) if _TORCH.value else None
    factories = {
        "JAX (compiler.jit)": (
            _jax_runner,
            (kind, image_size, batch_size, state_dict, False),
        )
    }
    if _REDUCE_FUSION.value:
        factories["JAX (+ reduce fusion)"] = (
            _jax_runner,
            (kind, image_size, batch_size, state_dict, True),
        )
    if state_dict is not None:
        for name, compile_model in (("PyTorch eager", False), ("PyTorch torch.compile", True)):
            if compile_model and not _TORCH_COMPILE.value:
                continue
            args = (
                kind,
                image_size,
                batch_size,
                state_dict,
                _TORCH_THREADS.value,
                compile_model,
                _OMP_WAIT_POLICY.value,
            )
            factories[name] = (_torch_runner, args)
    times = processes.time_in_processes(factories, _ROUNDS.value, _STEPS_PER_ROUND.value)
    rounds = {name: [statistics.median(round_) for round_ in runs] for name, runs in times.items()}
    return {name: statistics.median(seconds) for name, seconds in rounds.items()}, rounds


def main(argv):
    del argv
    batch_size = _BATCH_SIZE.value
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; batch {batch_size}")
    results = []
    for entry in _MODELS.value:
        kind, image_size = entry.split(":")
        image_size = int(image_size)
        gflop = _step_gflop(kind, image_size, batch_size)
        if gflop is not None:
            print(f"{kind} {image_size}x{image_size}: XLA counts {gflop:.1f} GFLOP per step")
        medians, rounds = _time_model(kind, image_size, batch_size)
        results.append((f"{kind} {image_size}px", medians, rounds))

    print()
    header = f"{'model':<18} {'implementation':<24} {'ms/step':>8} {'rounds (min-max)':>17}"
    print(f"{header} {'images/s':>9} {'vs PyTorch eager':>17}")
    for model_name, medians, rounds in results:
        eager = medians.get("PyTorch eager")
        for name, seconds in medians.items():
            spread = f"{1000 * min(rounds[name]):.0f}-{1000 * max(rounds[name]):.0f}"
            ratio = f"{eager / seconds:.2f}x" if eager else "-"
            print(
                f"{model_name:<18} {name:<24} {1000 * seconds:>8.0f} {spread:>17} "
                f"{batch_size / seconds:>9.1f} {ratio:>17}"
            )
    print(
        "(ratio > 1: faster than PyTorch eager; median over rounds of per-round medians; "
        "each implementation in its own process)"
    )


if __name__ == "__main__":
    app.run(main)
