"""The classifier's state and pure steps: `classifier_train_step`, `eval_step`.

The classifier of the augmentation study decides NORMAL (0) against PNEUMONIA (1) from one
logit per image. Any Linen module works that takes one-channel NHWC images in [-1, 1], returns
logits of shape [B], is called as `model.apply({"params": ..., "batch_stats": ...}, images,
train=..., mutable=["batch_stats"] if train else False, rngs={"dropout": key})`, and has an
`axis_name` attribute that its BatchNorm layers reduce over (xraygan_jax.models.classifier).

A batch is {"image": float32 [B, S, S, 1] in [-1, 1], "label": int [B] of 0/1} plus, for
training, optional per-example weights. Per-example weights are the one weighting mechanism:
class weights (`batch["weight"] = class_weight[batch["label"]]`), importance weights and padding
(weight 0) are all special cases, and balanced sampling needs none. The loss is the weighted mean
sum(w * BCE) / sum(w), so scaling every weight by the same factor changes nothing and an example
of weight 0 leaves the loss and its gradients as if it were not in the batch. It still enters the
batch statistics of BatchNorm in train mode, so training loops drop incomplete batches rather
than pad them.

Data parallelism works as in xraygan_jax.train.steps: jit with the state replicated and the batch
split (global view, no axis_name), or call the step inside `jax.shard_map` / `pmap` with
`axis_name=`; gradients, weights, metrics and BatchNorm statistics are then reduced over the
axis, so without dropout and augmentation the result equals the global view. Dropout masks and
augmentations are drawn per device (the key is folded with the device index) and so differ from
the global view's.

NaN losses are not checked here; the loop that calls the step does it.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from xraygan_jax.train import augment, sharding

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# fold_in indices that split a step's key into independent streams.
_AUGMENT_STREAM = 0
_DROPOUT_STREAM = 1


@flax.struct.dataclass
class ClassifierState:
    """Parameters, BatchNorm statistics and optimiser state of a classifier.

    Attributes:
        step: int32 scalar, the number of `classifier_train_step`s taken.
        params: the model's "params" collection.
        batch_stats: its "batch_stats" collection ({} without BatchNorm).
        opt_state: the optax state of tx.
        model: the Linen module (static).
        tx: the optax optimiser (static), e.g. optimizers.make_classifier_optimizer.
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    model: nn.Module = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def _check_same_layout(what: str, given: Any, expected: Any) -> None:
    """Raises ValueError unless `given` has the tree structure and leaf shapes of `expected`."""
    given_leaves = dict(jax.tree_util.tree_flatten_with_path(given)[0])
    expected_leaves = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    missing = sorted(set(expected_leaves) - set(given_leaves), key=str)
    extra = sorted(set(given_leaves) - set(expected_leaves), key=str)
    if missing or extra:
        raise ValueError(
            f"the given {what} do not fit the model: missing "
            f"{[jax.tree_util.keystr(path) for path in missing][:5]}, unexpected "
            f"{[jax.tree_util.keystr(path) for path in extra][:5]}; pass {what} made for this "
            "model (same module names), or None to initialise them"
        )
    for path, leaf in expected_leaves.items():
        if jnp.shape(given_leaves[path]) != jnp.shape(leaf):
            raise ValueError(
                f"the given {what} do not fit the model: {jax.tree_util.keystr(path)} has shape "
                f"{jnp.shape(given_leaves[path])}, the model needs {jnp.shape(leaf)}"
            )


def create_classifier_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    key: jax.Array,
    *,
    image_size: int,
    params: Any = None,
    batch_stats: Any = None,
) -> ClassifierState:
    """Initialises the classifier and its optimiser. Pure: jit it, or `jax.eval_shape` it.

    Example:
        init = functools.partial(
            classifier_steps.create_classifier_state, model,
            optimizers.make_classifier_optimizer(config.optim), image_size=64)
        abstract = jax.eval_shape(init, key)            # shapes only
        classifier_state = jax.jit(init, out_shardings=replicated)(key)

    Args:
        model: the Linen classifier (see the module docstring for its interface).
        tx: its optimiser (xraygan_jax.train.optimizers.make_classifier_optimizer).
        key: a typed PRNG key (`jax.random.key`) for the initial weights.
        image_size: side of the square one-channel images.
        params: start from these weights (e.g. pretrained) instead of fresh ones; they must have
            the model's structure and shapes.
        batch_stats: start from these BatchNorm statistics (pretrained weights come with theirs).

    Returns:
        A ClassifierState at step 0.

    Raises:
        ValueError: params or batch_stats that do not fit the model, naming the first mismatch.
    """
    params_key, dropout_key = jax.random.split(key)
    images = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    variables = model.init({"params": params_key, "dropout": dropout_key}, images, train=False)
    initial_params = variables["params"]
    initial_batch_stats = variables.get("batch_stats", {})
    if params is None:
        params = initial_params
    else:
        _check_same_layout("params", params, initial_params)
    if batch_stats is None:
        batch_stats = initial_batch_stats
    else:
        _check_same_layout("batch_stats", batch_stats, initial_batch_stats)
    return ClassifierState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        model=model,
        tx=tx,
    )


def _example_weights(batch: Batch) -> jax.Array:
    """float32 [B]: batch["weight"] times batch["mask"], each 1 where absent."""
    weights = jnp.ones(batch["label"].shape, jnp.float32)
    if "weight" in batch:
        weights = weights * batch["weight"].astype(jnp.float32)
    if "mask" in batch:
        weights = weights * batch["mask"].astype(jnp.float32)
    return weights


def classifier_train_step(
    state: ClassifierState,
    batch: Batch,
    key: jax.Array,
    *,
    augment_fn: augment.AugmentFn | None = None,
    axis_name: str | None = None,
) -> tuple[ClassifierState, Metrics]:
    """One optimiser update on the weighted binary cross-entropy of a batch; state.step += 1.

    The model runs in train mode: dropout on, BatchNorm on batch statistics, its running
    statistics updated.

    Example (global view, data parallel over every device):
        train_step = jax.jit(
            functools.partial(classifier_steps.classifier_train_step,
                              augment_fn=augment.make_augment(config.augment)),
            in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh),
                          sharding.replicated(mesh)),
            donate_argnums=0)
        for step, batch in enumerate(batches):
            key = jax.random.fold_in(base_key, step)
            classifier_state, metrics = train_step(
                classifier_state, sharding.shard_batch(batch, mesh), key)

    Args:
        state: the ClassifierState.
        batch: {"image": float32 [B, S, S, 1] in [-1, 1], "label": int [B] of 0/1}, optionally
            "weight": float [B] (per-example loss weights; default 1) and "mask": bool [B]
            (False = padding, counted as weight 0). This device's share under axis_name.
        key: PRNG key of this step, e.g. fold_in(base_key, step); augmentation and dropout draw
            from fold_in(key, 0) and fold_in(key, 1).
        augment_fn: `augment_fn(key, images) -> images` applied to the batch first, e.g.
            augment.make_augment(config); None = no augmentation.
        axis_name: the mapped axis under shard_map/pmap, or None (see the module docstring).

    Returns:
        (new state, metrics): "loss" (the weighted mean BCE the update minimised, before the
        update) and "accuracy" (unweighted: the fraction of examples with weight > 0 whose logit
        is > 0 exactly when their label is 1), scalars over the global batch. A batch whose
        weights are all 0 gives loss 0 and zero gradients.
    """
    model = state.model if axis_name is None else state.model.clone(axis_name=axis_name)
    augment_key = jax.random.fold_in(key, _AUGMENT_STREAM)
    dropout_key = jax.random.fold_in(key, _DROPOUT_STREAM)
    if axis_name is not None:
        device_index = jax.lax.axis_index(axis_name)
        augment_key = jax.random.fold_in(augment_key, device_index)
        dropout_key = jax.random.fold_in(dropout_key, device_index)
    images = batch["image"]
    if augment_fn is not None:
        images = augment_fn(augment_key, images)
    labels = batch["label"].astype(jnp.float32)
    weights = _example_weights(batch)
    # Means of per-device sums: their ratio is the global weighted mean.
    total_weight = jnp.maximum(sharding.mean_over(jnp.sum(weights), axis_name), 1e-12)

    def loss_fn(params):
        logits, updated = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
        )
        losses = optax.sigmoid_binary_cross_entropy(logits, labels)
        loss = sharding.mean_over(jnp.sum(weights * losses), axis_name) / total_weight
        return loss, (logits, updated.get("batch_stats", {}))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = sharding.mean_over(grads, axis_name)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    counted = (weights > 0).astype(jnp.float32)
    correct = ((logits > 0) == (labels > 0.5)).astype(jnp.float32)
    num_correct, num_counted = sharding.mean_over(
        (jnp.sum(correct * counted), jnp.sum(counted)), axis_name
    )
    metrics = {"loss": loss, "accuracy": num_correct / jnp.maximum(num_counted, 1e-12)}
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
    )
    return new_state, metrics


def eval_step(state: ClassifierState, batch: Batch) -> dict[str, jax.Array]:
    """Per-image predictions in eval mode: no dropout, running BatchNorm statistics.

    Every image's output depends on that image alone, so padding rows do not change the others;
    the caller drops them, e.g. with the "mask" this returns. Deterministic: no key.

    Example:
        predict = jax.jit(classifier_steps.eval_step)
        outputs = jax.device_get(predict(classifier_state, {"image": x, "mask": valid}))
        probabilities = outputs["probabilities"][outputs["mask"]]

    Args:
        state: the ClassifierState.
        batch: {"image": float32 [B, S, S, 1] in [-1, 1]}, optionally "mask": bool [B]
            (False = padding); other entries ("label", ...) are ignored.

    Returns:
        {"logits": float32 [B], "probabilities": float32 [B] (sigmoid of the logits, the
        probability of class 1)}, plus "mask": bool [B] when the batch has one.
    """
    logits = state.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    outputs = {"logits": logits, "probabilities": jax.nn.sigmoid(logits)}
    if "mask" in batch:
        outputs["mask"] = batch["mask"].astype(bool)
    return outputs
