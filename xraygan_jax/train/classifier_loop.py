"""Training one classifier for a fixed number of steps, choosing its weights on validation data.

    result = classifier_loop.train_classifier(config, train_set, val_set, seed=0, workdir=d)
    probabilities = classifier_loop.predict(result.state, test_images)

Every classifier of the augmentation study trains for exactly `config.train.num_steps` optimiser
steps, whatever its training-set size, so "more images" is never confused with "more updates".
Early stopping is a choice of weights, not of budget: every `eval_every_steps` (and at the last
step) the validation split is scored by `select_metric` (one of `SELECT_METRICS`; the study passes
its primary metric), and at the end `config.train.select_rule` picks the kept weights among the
evaluated ones: "best" keeps the best score; "one_se" keeps the latest weights scoring within one
standard error of the best (the one-standard-error rule: an earlier checkpoint must beat the
trained-out one by more than validation noise to replace it). With `patience_evals` > 0 training
also stops after that many evaluations without improvement. The test split is never seen here.

The step runs under `jax.jit` on the ("data",) mesh like the GAN's (state replicated, batch split).
The study trains its classifiers one at a time by default: seeds vmapped together, one worker
process per core, or two threads (`study.threads`; this function is thread-safe) were not
faster on the 2-core CPU (docs/performance.md, "Study classifiers").
The kept weights are saved with orbax in `workdir` (one checkpoint, numbered by its step).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from typing import Any

import jax
import ml_collections
import numpy as np

from xraygan_jax import errors
from xraygan_jax.data import pipeline
from xraygan_jax.metrics import classification
from xraygan_jax.models import classifier as classifier_lib
from xraygan_jax.train import (
    augment,
    checkpointing,
    optimizers,
    reporting,
    setup,
    sharding,
)

_EVAL_BATCH = 128
CLASS_BALANCES = ("none", "weights", "sampling")
# Validation scores that can choose the kept weights: the validation BCE (smaller is better), ROC
# AUC, accuracy at threshold 0.5, and accuracy at the threshold `classification.choose_threshold`
# picks on the same validation split (larger is better for these three).
SELECT_METRICS = ("val_loss", "auc", "accuracy", "accuracy_at_val_threshold")
# How the kept weights are picked among the evaluated ones (see the module docstring).
SELECT_RULES = ("best", "one_se")
_HISTORY_KEYS = {
    "val_loss": "loss/val",
    "auc": "auc/val",
    "accuracy": "accuracy/val",
    "accuracy_at_val_threshold": "accuracy_at_val_threshold/val",
}


@dataclasses.dataclass
class ClassifierResult:
    """What training one classifier produced.

    Attributes:
      state: the ClassifierState with the kept (best-validation) weights.
      best_step: the step those weights come from.
      history: one dict per evaluation: step, loss/train (mean since the last), loss/val,
        auc/val, accuracy/val, accuracy_at_val_threshold/val, and "select/val", the value of the
        metric that chose the weights, and "select_se/val", its standard error
        (`selection_standard_error`).
      seconds: wall time.
      val_probabilities: the kept weights' probabilities of class 1 on the validation split,
        float64 [N], as `predict` gives them (so callers need not score it again).
    """

    state: Any
    best_step: int
    history: list[dict[str, float]]
    seconds: float
    val_probabilities: np.ndarray


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
    rule = train.get("select_rule", "best")
    if rule not in SELECT_RULES:
        raise errors.ConfigError(
            f"--config.train.select_rule={rule!r} is unknown; use one of: "
            f"{', '.join(SELECT_RULES)}."
        )
    optimizers.classifier_learning_rate(config.optim, int(train.num_steps))
    augment.make_augment(config.augment)
    classifier_lib.make_classifier(config.model)


def check_select_metric(select_metric: str) -> None:
    """Raises errors.ConfigError unless `select_metric` is one of SELECT_METRICS."""
    if select_metric not in SELECT_METRICS:
        raise errors.ConfigError(
            f"select_metric={select_metric!r} is unknown; choose the kept weights by one of: "
            f"{', '.join(SELECT_METRICS)}."
        )


def _class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Weights N / (C * N_c) per class (each class carries the same total weight)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.where(counts > 0, labels.size / (num_classes * np.maximum(counts, 1)), 0.0)


def predict(state, images: np.ndarray, *, batch_size: int = _EVAL_BATCH) -> np.ndarray:
    """Probabilities of class 1 for uint8 [N, S, S, 1] images (eval mode), float64 [N].

    Every batch is padded to `batch_size`, so one compilation serves every set.
    """
    eval_step = setup.classifier_eval_step()
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


def _image_losses(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]."""
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))


def _validation_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean(_image_losses(labels, probabilities)))


def validation_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Every SELECT_METRICS score of validation probabilities, keyed by its history name.

    AUC is NaN for a validation split with one class (`select_metric="auc"` then keeps the first
    evaluated weights, since NaN never compares better).
    """
    labels = np.asarray(labels)
    at_half = classification.binary_metrics(labels, probabilities)
    if len(np.unique(labels)) == 2:
        threshold = classification.choose_threshold(labels, probabilities)
        at_val = classification.binary_metrics(labels, probabilities, threshold)["accuracy"]
    else:
        at_val = at_half["accuracy"]
    return {
        "loss/val": _validation_loss(labels, probabilities),
        "auc/val": float(at_half["auc"]),
        "accuracy/val": float(at_half["accuracy"]),
        "accuracy_at_val_threshold/val": float(at_val),
    }


def selection_standard_error(
    select_metric: str, labels: np.ndarray, probabilities: np.ndarray, score: float
) -> float:
    """The standard error of a validation score over resamples of the validation images.

    `score` is the score itself (`validation_scores`' value of `select_metric`).

    AUC: DeLong's (`classification.auc_standard_error`); accuracy at 0.5 or at the validation
    threshold: the binomial sqrt(p (1 - p) / n); validation loss: the per-image losses' standard
    deviation / sqrt(n). NaN where it is undefined (one class; fewer than 2 images).
    """
    labels = np.asarray(labels)
    n = labels.size
    if select_metric == "auc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
            return classification.auc_standard_error(labels, probabilities)
    if n < 2:
        return float("nan")
    if select_metric == "val_loss":
        return float(_image_losses(labels, probabilities).std(ddof=1) / np.sqrt(n))
    return float(np.sqrt(score * (1 - score) / n))  # an accuracy


def choose_kept(
    select_metric: str, values: list[float], standard_errors: list[float], rule: str
) -> int:
    """The index of the evaluation whose weights are kept (values in evaluation order).

    "best": the best value (the earliest of ties; NaN never wins). "one_se": the latest
    evaluation within one standard error (`standard_errors`, that of the best) of the best; with an
    undefined standard error, the best.
    """
    sign = 1.0 if select_metric == "val_loss" else -1.0  # minimise sign * value
    finite = [i for i, v in enumerate(values) if np.isfinite(v)]
    if not finite:
        return 0
    best = min(finite, key=lambda i: (sign * values[i], i))
    if rule == "best" or not np.isfinite(standard_errors[best]):
        return best
    limit = sign * values[best] + standard_errors[best]
    return max(i for i in finite if sign * values[i] <= limit)


def _better(select_metric: str, value: float, best: float) -> bool:
    """Whether `value` beats `best` (None: nothing kept yet); ties keep the earlier weights."""
    if best is None:
        return True
    return value < best if select_metric == "val_loss" else value > best


def train_classifier(
    config: ml_collections.ConfigDict,
    train_set: pipeline.ArraySource,
    val_set: pipeline.ArraySource,
    *,
    seed: int,
    workdir: str | os.PathLike | None = None,
    name: str = "classifier",
    select_metric: str = "val_loss",
) -> ClassifierResult:
    """Trains one classifier for `config.train.num_steps` steps and keeps its best weights.

    Args:
      config: the study config (`model`, `optim`, `augment`, `train` sections).
      train_set: uint8 images and 0/1 labels to learn from (real, synthetic or mixed).
      val_set: the validation images that choose the kept weights (never the test split).
      seed: initialisation, data order, dropout and augmentation.
      workdir: where the kept weights are saved (orbax); None saves nothing.
      name: prefix of the progress lines.
      select_metric: the validation score that chooses the kept weights, one of SELECT_METRICS.

    Returns:
      A ClassifierResult.

    Raises:
      errors.ConfigError: a config `check_config` rejects, or an unknown select_metric.
      errors.DataError: an empty training set.
      errors.TrainingDivergedError: a NaN or Inf training loss (names the step).
    """
    check_config(config)
    check_select_metric(select_metric)
    if len(train_set) == 0:
        raise errors.DataError(f"{name}: the training set is empty; nothing to learn from.")
    mesh = sharding.make_mesh()
    batch_size = int(config.train.batch_size)
    sharding.check_batch_divisible(batch_size, mesh.size)
    image_size = train_set.images.shape[1]
    key = jax.random.key(seed)
    built = setup.classifier_setup(config, image_size, mesh)
    state = setup.classifier_state(config, built, key, image_size)
    state = jax.device_put(state, sharding.replicated(mesh))
    train_step = built.train_step

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
    candidates = []  # per evaluation: (step, weights on the host, validation probabilities)
    best = None
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
            val_probabilities = predict(state, val_set.images)
            scores = validation_scores(val_set.labels, val_probabilities)
        selected = scores[_HISTORY_KEYS[select_metric]]
        record = {
            "step": step,
            "loss/train": train_loss,
            **scores,
            "select/val": selected,
            "select_se/val": selection_standard_error(
                select_metric, val_set.labels, val_probabilities, selected
            ),
        }
        history.append(record)
        progress.update(
            step,
            f"loss {train_loss:.3f} val loss {scores['loss/val']:.3f} {select_metric} "
            f"{selected:.3f}",
        )
        candidates.append(
            (step, jax.tree.map(np.asarray, jax.device_get(state)), val_probabilities)
        )
        if _better(select_metric, selected, best):
            best, since_best = selected, 0
        else:
            since_best += 1
            if patience and since_best >= patience:
                break
    progress.finish()
    kept = choose_kept(
        select_metric,
        [record["select/val"] for record in history],
        [record["select_se/val"] for record in history],
        config.train.get("select_rule", "best"),
    )
    best_step, best_state, best_val_probabilities = candidates[kept]
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
        val_probabilities=best_val_probabilities,
    )
