"""Training one classifier for a fixed number of steps, choosing its weights on validation data.

    result = classifier_loop.train_classifier(config, train_set, val_set, seed=0, workdir=d)
    probabilities = classifier_loop.predict(result.state, test_images)

Every classifier of the augmentation study trains for exactly `config.train.num_steps` optimiser
steps, whatever its training-set size, so "more images" is never confused with "more updates".
Early stopping is a choice of weights, not of budget: every `eval_every_steps` the validation
loss is computed and the weights with the lowest one are kept (with `patience_evals` > 0 training
also stops after that many evaluations without improvement). The test split is never seen here.

The step runs under `jax.jit` on the ("data",) mesh like the GAN's (state replicated, batch split).
The kept weights are saved with orbax in `workdir` (one checkpoint, numbered by its step).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from xraygan_jax import compiler, errors
from xraygan_jax.data import pipeline
from xraygan_jax.metrics import weights
from xraygan_jax.models import classifier as classifier_lib
from xraygan_jax.models import resnet_weights
from xraygan_jax.train import (
    augment,
    checkpointing,
    classifier_steps,
    optimizers,
    reporting,
    sharding,
)

_EVAL_BATCH = 128
CLASS_BALANCES = ("none", "weights", "sampling")


@dataclasses.dataclass
class ClassifierResult:
    """What training one classifier produced.

    Attributes:
      state: the ClassifierState with the kept (best-validation) weights.
      best_step: the step those weights come from.
      history: one dict per evaluation: step, loss/train (mean since the last), loss/val,
        auc/val.
      seconds: wall time.
    """

    state: Any
    best_step: int
    history: list[dict[str, float]]
    seconds: float


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises errors.ConfigError for a classifier training config that cannot work."""
    train = config.train
    for key in ("num_steps", "batch_size", "eval_every_steps"):
        if int(train[key]) < 1:
            raise errors.ConfigError(f"--config.train.{key}={train[key]} must be at least 1.")
    if train.class_balance not in CLASS_BALANCES:
        raise errors.ConfigError(
            f"--config.train.class_balance={train.class_balance!r} is unknown; use one of: "
            f"{', '.join(CLASS_BALANCES)}."
        )
    augment.make_augment(config.augment)
    classifier_lib.make_classifier(config.model)


def _class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Weights N / (C * N_c) per class (each class carries the same total weight)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, labels.size / (num_classes * np.maximum(counts, 1)), 0.0)


@dataclasses.dataclass(frozen=True)
class _Setup:
    """Model, optimiser and jitted steps shared by every classifier of one config and image size.

    Built once: the state's model and optimiser are static parts of its pytree, so reusing the
    same objects lets every arm and seed reuse one compilation.
    """

    model: Any
    tx: Any
    train_step: Any
    eval_step: Any


_SETUPS: dict[tuple, _Setup] = {}


def _setup(config: ml_collections.ConfigDict, image_size: int, mesh) -> _Setup:
    key = (
        config.model.to_json(),
        config.optim.to_json(),
        config.augment.to_json(),
        image_size,
        tuple(mesh.devices.flat),
    )
    if key not in _SETUPS:
        model = classifier_lib.make_classifier(config.model)
        mask = None
        if config.model.kind == "inception_transfer":
            abstract = jax.eval_shape(
                lambda k: classifier_lib.init_variables(model, k, image_size=image_size),
                jax.random.key(0),
            )
            mask = classifier_lib.trainable_mask(abstract["params"], config.model.trainable)
        tx = optimizers.make_classifier_optimizer(config.optim, mask)
        replicated = sharding.replicated(mesh)
        train_step = compiler.jit(
            functools.partial(
                classifier_steps.classifier_train_step,
                augment_fn=augment.make_augment(config.augment),
            ),
            in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
            reduce_fusion=True,
        )
        _SETUPS[key] = _Setup(model, tx, train_step, _EVAL_STEP())
    return _SETUPS[key]


def initial_variables(config: ml_collections.ConfigDict, key: jax.Array, image_size: int):
    """Initial {"params", "batch_stats"}, with pretrained weights where the config names them."""
    model = classifier_lib.make_classifier(config.model)
    variables = classifier_lib.init_variables(model, key, image_size=image_size)
    if config.model.kind == "inception_transfer":
        variables = classifier_lib.init_from_fid_inception(
            variables, weights.load_params(config.model.get("weights_path", "") or None)
        )
    elif config.model.get("pretrained_path", ""):
        variables = resnet_weights.load_torchvision_resnet(
            config.model.pretrained_path, variables, depth=int(config.model.kind[len("resnet") :])
        )
    return variables


def predict(state, images: np.ndarray, *, batch_size: int = _EVAL_BATCH) -> np.ndarray:
    """Probabilities of class 1 for uint8 [N, S, S, 1] images (eval mode), float64 [N].

    Every batch is padded to `batch_size`, so one compilation serves every set.
    """
    eval_step = _EVAL_STEP()
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        valid = len(chunk)
        if valid < batch_size:
            padding = np.zeros((batch_size - valid, *chunk.shape[1:]), chunk.dtype)
            chunk = np.concatenate([chunk, padding])
        batch = {
            "image": chunk.astype(np.float32) / 127.5 - 1.0,
            "label": np.zeros(batch_size, np.int32),
        }
        outputs.append(np.asarray(eval_step(state, batch)["probabilities"])[:valid])
    return np.concatenate(outputs).astype(np.float64)


@functools.cache
def _EVAL_STEP():  # noqa: N802 - a cached constant
    return compiler.jit(classifier_steps.eval_step, reduce_fusion=True)


def _validation_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))


def train_classifier(
    config: ml_collections.ConfigDict,
    train_set: pipeline.ArraySource,
    val_set: pipeline.ArraySource,
    *,
    seed: int,
    workdir: str | os.PathLike | None = None,
    name: str = "classifier",
) -> ClassifierResult:
    """Trains one classifier for `config.train.num_steps` steps and keeps its best weights.

    Args:
      config: the study config (`model`, `optim`, `augment`, `train` sections).
      train_set: uint8 images and 0/1 labels to learn from (real, synthetic or mixed).
      val_set: the validation images that choose the kept weights (never the test split).
      seed: initialisation, data order, dropout and augmentation.
      workdir: where the kept weights are saved (orbax); None saves nothing.
      name: prefix of the progress lines.

    Returns:
      A ClassifierResult.

    Raises:
      errors.DataError: an empty training set.
      errors.TrainingDivergedError: a NaN or Inf training loss (names the step).
    """
    check_config(config)
    if len(train_set) == 0:
        raise errors.DataError(f"{name}: the training set is empty; nothing to learn from.")
    mesh = sharding.make_mesh()
    batch_size = int(config.train.batch_size)
    sharding.check_batch_divisible(batch_size, mesh.size)
    image_size = train_set.images.shape[1]
    key = jax.random.key(seed)
    variables = initial_variables(config, jax.random.fold_in(key, 0), image_size)
    setup = _setup(config, image_size, mesh)
    state = classifier_steps.create_classifier_state(
        setup.model,
        setup.tx,
        jax.random.fold_in(key, 1),
        image_size=image_size,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
    )
    state = jax.device_put(state, sharding.replicated(mesh))
    train_step = setup.train_step

    balance = config.train.class_balance
    dataset = pipeline.make_dataset(
        train_set,
        batch_size=min(batch_size, len(train_set) - len(train_set) % mesh.size) or batch_size,
        seed=seed,
        shuffle=True,
        drop_remainder=True,
        balanced=balance == "sampling",
        process_index=0,
        process_count=1,
    )
    iterator = iter(dataset)
    weights = _class_weights(train_set.labels, 2) if balance == "weights" else None
    step_key = jax.random.fold_in(key, 2)
    num_steps = int(config.train.num_steps)
    eval_every = int(config.train.eval_every_steps)
    patience = int(config.train.get("patience_evals", 0))
    progress = reporting.Progress(
        num_steps, batch_size, f"[{name}]", every_steps=config.train.get("log_every_steps", 50)
    )
    history: list[dict[str, float]] = []
    best = (np.inf, 0, state)
    losses: list[Any] = []
    started = time.perf_counter()
    since_best = 0
    for step in range(1, num_steps + 1):
        batch = next(iterator)
        if weights is not None:
            batch["weight"] = weights[batch["label"]].astype(np.float32)
        state, metrics = train_step(
            state, sharding.shard_batch(batch, mesh), jax.random.fold_in(step_key, step)
        )
        losses.append(metrics["loss"])
        if step % eval_every and step != num_steps:
            progress.update(step)
            continue
        train_loss = float(np.mean(jax.device_get(losses)))
        losses = []
        if not np.isfinite(train_loss):
            raise errors.TrainingDivergedError(
                f"{name}: non-finite training loss at step {step}; lower --config.optim.lr."
            )
        val_probabilities = predict(state, val_set.images)
        val_loss = _validation_loss(val_set.labels, val_probabilities)
        record = {"step": step, "loss/train": train_loss, "loss/val": val_loss}
        history.append(record)
        progress.update(step, f"loss {train_loss:.3f} val loss {val_loss:.3f}")
        if val_loss < best[0]:
            best, since_best = (val_loss, step, jax.tree.map(np.asarray, jax.device_get(state))), 0
        else:
            since_best += 1
            if patience and since_best >= patience:
                break
    progress.finish()
    _, best_step, best_state = best
    best_state = jax.device_put(best_state, sharding.replicated(mesh))
    if workdir is not None:
        checkpoints = checkpointing.Checkpointer(workdir)
        checkpoints.save(best_step, best_state, {"best_step": best_step, "name": name})
        checkpoints.close()
    return ClassifierResult(
        state=best_state,
        best_step=best_step,
        history=history,
        seconds=time.perf_counter() - started,
    )
