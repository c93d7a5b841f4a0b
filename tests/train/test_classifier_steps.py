"""Classifier state, train and eval steps and optimiser, on a tiny module of the classifier API.

`TinyClassifier` (conv + BatchNorm + dropout + dense -> one logit per image) stands in for
xraygan_jax.models.classifier: one-channel NHWC in, [B] logits out, `train=`, an `axis_name` for
its BatchNorm. Images are 16x16, batches 8. Keys are "rbg" keys (XLA CPU compiles threefry draws
slowly); the 8-device comparison uses a default key for the step.

The 8-device test runs this file as a script in a child process started with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (JAX fixes its device count at import), as
tests/train/test_multidevice.py does for the GAN step.
"""

import functools
import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from xraygan_jax import errors
from xraygan_jax.train import augment, classifier_steps, optimizers

IMAGE_SIZE = 16
BATCH_SIZE = 8
NUM_DEVICES = 8
TOLERANCE = 1e-5
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


class TinyClassifier(nn.Module):
    """conv + BatchNorm + dropout + dense -> [B] logits, with the classifier's interface."""

    use_batch_norm: bool = True
    dropout_rate: float = 0.25
    axis_name: str | None = None

    @nn.compact
    def __call__(self, images, *, train: bool):
        # No conv bias before BatchNorm: its gradient is zero up to rounding, which Adam's
        # first step turns into +-lr, so runs that differ only in rounding would disagree.
        features = nn.Conv(
            8, (3, 3), strides=(2, 2), use_bias=not self.use_batch_norm, name="conv"
        )(images)
        if self.use_batch_norm:
            features = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, axis_name=self.axis_name, name="norm"
            )(features)
        features = jnp.mean(nn.relu(features), axis=(1, 2))
        features = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
        return nn.Dense(1, name="head")(features)[:, 0]


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _optimizer(name: str = "adam", lr: float = 1e-2, **fields) -> optax.GradientTransformation:
    return optimizers.make_classifier_optimizer(
        ml_collections.ConfigDict({"name": name, "lr": lr, **fields})
    )


# One jit object per step variant, shared by the tests: each model and batch layout compiles once.
_train_step = jax.jit(classifier_steps.classifier_train_step)
_augmented_train_step = jax.jit(
    functools.partial(
        classifier_steps.classifier_train_step,
        augment_fn=augment.make_augment(
            ml_collections.ConfigDict({"flip": True, "shear_degrees": 10.0, "zoom_range": 0.1})
        ),
    )
)


@functools.cache
def _default_state() -> classifier_steps.ClassifierState:
    return _initial_state()


def _initial_state(model=None, tx=None, seed: int = 0) -> classifier_steps.ClassifierState:
    init = functools.partial(
        classifier_steps.create_classifier_state,
        TinyClassifier() if model is None else model,
        _optimizer() if tx is None else tx,
        image_size=IMAGE_SIZE,
    )
    return jax.jit(init)(_key(seed))


def _separable_batch(batch_size: int = BATCH_SIZE) -> dict[str, np.ndarray]:
    """Class 1 brighter than class 0, plus noise: separable by mean intensity."""
    rng = np.random.default_rng(0)
    labels = np.arange(batch_size, dtype=np.int32) % 2
    noise = rng.normal(0.0, 0.2, (batch_size, IMAGE_SIZE, IMAGE_SIZE, 1))
    images = np.where(labels[:, None, None, None] == 1, 0.4, -0.4) + noise
    return {"image": np.clip(images, -1.0, 1.0).astype(np.float32), "label": labels}


def _max_difference(left, right) -> float:
    left_leaves = jax.tree.leaves(jax.device_get(left))
    right_leaves = jax.tree.leaves(jax.device_get(right))
    assert len(left_leaves) == len(right_leaves) > 0
    return max(
        float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        for a, b in zip(left_leaves, right_leaves, strict=True)
    )


def test_loss_falls_on_a_separable_batch_with_augmentation():
    step = _augmented_train_step
    state, batch = _default_state(), _separable_batch()
    losses, accuracies = [], []
    for index in range(20):
        state, metrics = step(state, batch, jax.random.fold_in(_key(1), index))
        losses.append(float(metrics["loss"]))
        accuracies.append(float(metrics["accuracy"]))
    assert int(state.step) == 20
    assert losses[-1] < 0.5 * losses[0], losses
    assert accuracies[-1] == 1.0, accuracies


def test_train_step_moves_params_and_batch_statistics():
    state = _default_state()
    new_state, metrics = _augmented_train_step(state, _separable_batch(), _key(2))
    assert set(metrics) == {"loss", "accuracy"}
    assert all(np.shape(value) == () for value in metrics.values())
    assert int(new_state.step) == 1
    for before, after in [
        (state.params, new_state.params),
        (state.batch_stats["norm"]["mean"], new_state.batch_stats["norm"]["mean"]),
        (state.batch_stats["norm"]["var"], new_state.batch_stats["norm"]["var"]),
    ]:
        for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
            assert float(jnp.max(jnp.abs(new - old))) > 0


def test_eval_step_is_deterministic_per_image_and_uses_running_statistics():
    # Move the running statistics away from their initial values first.
    state, _ = _augmented_train_step(_default_state(), _separable_batch(), _key(3))
    batch = _separable_batch()
    batch["mask"] = np.arange(BATCH_SIZE) < 6
    predict = jax.jit(classifier_steps.eval_step)
    outputs = predict(state, batch)
    assert set(outputs) == {"logits", "probabilities", "mask"}
    assert outputs["logits"].shape == (BATCH_SIZE,)
    np.testing.assert_array_equal(outputs["mask"], batch["mask"])
    again = predict(state, batch)
    np.testing.assert_array_equal(again["logits"], outputs["logits"])
    np.testing.assert_allclose(outputs["probabilities"], jax.nn.sigmoid(outputs["logits"]))
    expected = state.model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-6, atol=1e-6)
    # Each image alone: padding rows cannot change the others.
    alone = predict(state, {"image": batch["image"][:3]})
    assert set(alone) == {"logits", "probabilities"}
    np.testing.assert_allclose(alone["logits"], outputs["logits"][:3], rtol=1e-5, atol=1e-6)


def test_example_weights_act_as_removing_or_repeating_examples():
    # No BatchNorm (it normalises over every row, whatever its weight) and no dropout (masks
    # depend on the batch size): what is left is the loss weighting. Plain SGD shows any change
    # of gradient scale.
    model = TinyClassifier(use_batch_norm=False, dropout_rate=0.0)
    state = _initial_state(model, _optimizer("sgd", lr=0.5))
    step = _train_step
    batch = _separable_batch()
    weights = np.array([1, 1, 0, 1, 0, 1, 1, 1], np.float32)
    kept = weights > 0

    weighted_state, weighted_metrics = step(state, {**batch, "weight": weights}, _key(4))
    subset = {name: value[kept] for name, value in batch.items()}
    subset_state, subset_metrics = step(state, subset, _key(4))
    assert _max_difference(weighted_state.params, subset_state.params) < 1e-6
    np.testing.assert_allclose(weighted_metrics["loss"], subset_metrics["loss"], rtol=1e-6)
    assert float(weighted_metrics["accuracy"]) == float(subset_metrics["accuracy"])
    # A mask (False = padding) is weight 0.
    masked_state, _ = step(state, {**batch, "mask": kept}, _key(4))
    assert _max_difference(masked_state.params, weighted_state.params) < 1e-6

    # Weight 2 counts an example twice; the loss is sum(w * BCE) / sum(w).
    doubled = np.array([2, 1, 1, 1, 1, 1, 1, 1], np.float32)
    doubled_state, doubled_metrics = step(state, {**batch, "weight": doubled}, _key(4))
    repeated = {name: np.concatenate([value[:1], value]) for name, value in batch.items()}
    repeated_state, repeated_metrics = step(state, repeated, _key(4))
    assert _max_difference(doubled_state.params, repeated_state.params) < 1e-6
    # The weights did something: other weights, other params.
    assert _max_difference(doubled_state.params, weighted_state.params) > 1e-4
    logits = model.apply({"params": state.params}, batch["image"], train=False)
    losses = optax.sigmoid_binary_cross_entropy(logits, batch["label"].astype(np.float32))
    np.testing.assert_allclose(
        doubled_metrics["loss"], np.sum(doubled * losses) / np.sum(doubled), rtol=1e-5
    )
    np.testing.assert_allclose(doubled_metrics["loss"], repeated_metrics["loss"], rtol=1e-6)


def test_frozen_parameters_do_not_move():
    frozen_tx = optimizers.make_classifier_optimizer(
        ml_collections.ConfigDict({"name": "adam", "lr": 1e-2}),
        # A prefix of the params: one bool per layer.
        trainable_mask={"conv": False, "norm": False, "head": True},
    )
    params = _default_state().params
    state = _default_state().replace(tx=frozen_tx, opt_state=frozen_tx.init(params))
    new_state, _ = _train_step(state, _separable_batch(), _key(5))
    for layer in ("conv", "norm"):
        before, after = state.params[layer], new_state.params[layer]
        for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
            np.testing.assert_array_equal(old, new)
    assert _max_difference(state.params["head"], new_state.params["head"]) > 1e-4


def test_create_state_starts_from_given_weights_and_rejects_misfits():
    pretrained = jax.tree.map(lambda leaf: leaf + 1.0, _default_state().params)
    init = functools.partial(
        classifier_steps.create_classifier_state,
        TinyClassifier(),
        _optimizer(),
        image_size=IMAGE_SIZE,
    )
    state = jax.jit(functools.partial(init, params=pretrained))(_key(1))
    assert _max_difference(state.params, pretrained) == 0.0
    abstract = jax.eval_shape(functools.partial(init, params=pretrained), _key(1))
    assert abstract.params["head"]["kernel"].shape == (8, 1)
    assert int(state.step) == 0

    wrong_shape = {**pretrained, "head": {**pretrained["head"], "kernel": jnp.zeros((4, 1))}}
    # The check runs while tracing: eval_shape, jit and eager calls all raise it.
    with pytest.raises(ValueError, match=r"\['head'\]\['kernel'\] has shape \(4, 1\), the model"):
        jax.eval_shape(functools.partial(init, params=wrong_shape), _key(1))
    missing = {name: value for name, value in pretrained.items() if name != "head"}
    with pytest.raises(ValueError, match=r"missing \[\"\['head'\]\['bias'\]\""):
        jax.eval_shape(functools.partial(init, params=missing), _key(1))


def test_classifier_optimizer_updates():
    params = {"w": jnp.array(1.0)}
    grads = {"w": jnp.array(2.0)}

    def two_updates(tx):
        opt_state = tx.init(params)
        first, opt_state = tx.update(grads, opt_state, params)
        second, _ = tx.update(grads, opt_state, params)
        return float(first["w"]), float(second["w"])

    np.testing.assert_allclose(two_updates(_optimizer("sgd", lr=0.1)), (-0.2, -0.2))
    # Momentum 0.9: the second update adds 0.9 of the first.
    np.testing.assert_allclose(two_updates(_optimizer("sgd", lr=0.1, momentum=0.9)), (-0.2, -0.38))
    # Adam's first step is lr times the gradient's sign.
    np.testing.assert_allclose(two_updates(_optimizer("adam", lr=0.1))[0], -0.1, rtol=1e-4)


@pytest.mark.parametrize(
    "fields, mask, message",
    [
        ({"name": "rmsprop", "lr": 1e-3}, None, r"'rmsprop' is unknown; use one of: adam, sgd"),
        ({"name": "sgd"}, None, r"optim.lr=None: set a learning rate"),
        ({"name": "sgd", "lr": 0.0}, None, r"optim.lr=0.0 must be positive"),
        ({"name": "sgd", "lr": 1e-3}, {"head": "yes"}, r"leaf 'yes' must be True .* or False"),
    ],
)
def test_classifier_optimizer_rejects_bad_configs(fields, mask, message):
    with pytest.raises(errors.ConfigError, match=message):
        optimizers.make_classifier_optimizer(ml_collections.ConfigDict(fields), mask)


def _compare_on_devices() -> dict[str, dict[str, float]]:
    """One step on 1 device, jit over 8, and shard_map over 8; differences to the 1-device run."""
    from jax.sharding import PartitionSpec

    from xraygan_jax.train import sharding

    assert jax.device_count() == NUM_DEVICES, jax.devices()
    # Dropout off: its masks are drawn per device under axis_name.
    state = _initial_state(TinyClassifier(dropout_rate=0.0))
    batch = _separable_batch(2 * NUM_DEVICES)
    # Uneven weights, so that the global weighted mean differs from a mean of device means.
    batch["weight"] = np.random.default_rng(1).uniform(0.0, 3.0, 2 * NUM_DEVICES).astype(np.float32)
    batch["weight"][:3] = 0.0
    step_key = jax.random.key(2)
    one_device = _train_step(state, batch, step_key)

    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    sharded_batch = sharding.shard_batch(batch, mesh)
    jit_result = jax.jit(
        classifier_steps.classifier_train_step,
        in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
        out_shardings=(replicated, replicated),
    )(jax.device_put(state, replicated), sharded_batch, step_key)

    def shard_map_result(check_vma: bool):
        per_device_step = functools.partial(
            classifier_steps.classifier_train_step, axis_name=sharding.DATA_AXIS
        )
        step = jax.jit(
            jax.shard_map(
                per_device_step,
                mesh=mesh,
                in_specs=(PartitionSpec(), PartitionSpec(sharding.DATA_AXIS), PartitionSpec()),
                out_specs=(PartitionSpec(), PartitionSpec()),
                check_vma=check_vma,
            )
        )
        return step(jax.device_put(state, replicated), sharded_batch, step_key)

    def differences(reference, other):
        (state_a, metrics_a), (state_b, metrics_b) = reference, other
        return {
            part: _max_difference(getattr(state_a, part), getattr(state_b, part))
            for part in ("step", "params", "batch_stats", "opt_state")
        } | {"metrics": _max_difference(metrics_a, metrics_b)}

    return {
        "jit": differences(one_device, jit_result),
        "shard_map": differences(one_device, shard_map_result(check_vma=True)),
        "shard_map_no_vma": differences(one_device, shard_map_result(check_vma=False)),
        "moved": differences((state, one_device[1]), one_device),
    }


@pytest.mark.slow  # compiles the classifier step for 1 and 8 devices: about 10 s on 2 cores
def test_eight_devices_match_one_device():
    environment = dict(os.environ)
    environment["XLA_FLAGS"] = (
        environment.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={NUM_DEVICES}"
    )
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), environment.get("PYTHONPATH", "")])
    environment["JAX_PLATFORMS"] = "cpu"
    child = subprocess.run(
        [sys.executable, __file__],
        env=environment,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if child.returncode != 0:
        pytest.fail(f"the 8-device child process failed:\n{child.stderr[-4000:]}")
    differences = json.loads(child.stdout.strip().splitlines()[-1])
    for part in ("params", "batch_stats", "opt_state"):
        assert differences["moved"][part] > 1e-4, (part, differences["moved"])
    for form in ("jit", "shard_map", "shard_map_no_vma"):
        for part, difference in differences[form].items():
            assert difference < TOLERANCE, (form, part, differences[form])


if __name__ == "__main__":
    print(json.dumps(_compare_on_devices()))
