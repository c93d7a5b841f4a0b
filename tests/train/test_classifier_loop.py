"""The classifier loop: its learning-rate schedule, the choice of kept weights, its bad inputs."""

import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import study_test
from xraygan_jax import errors
from xraygan_jax.data import pipeline
from xraygan_jax.train import classifier_loop, optimizers


def _tiny_config(**train):
    config = study_test.get_config()
    config.model.width = 2
    config.train.num_steps = 4
    config.train.batch_size = 8
    config.train.eval_every_steps = 1
    config.optim.warmup_steps = 1
    config.train.update(train)
    return config


def _images(num: int, seed: int) -> pipeline.ArraySource:
    """Two classes a small CNN can tell apart: dark (0) and bright (1) noise, 16x16."""
    generator = np.random.default_rng(seed)
    labels = np.arange(num) % 2
    images = generator.integers(0, 128, (num, 16, 16, 1)) + 100 * labels[:, None, None, None]
    return pipeline.ArraySource(images.astype(np.uint8), labels.astype(np.int64))


def test_warmup_cosine_rises_to_lr_then_falls_to_zero():
    optim = ml_collections.ConfigDict(
        {"name": "adam", "lr": 1e-3, "schedule": "warmup_cosine", "warmup_steps": 10}
    )
    rate = optimizers.classifier_learning_rate(optim, 110)
    assert [float(rate(s)) for s in (0, 5, 10)] == pytest.approx([0.0, 5e-4, 1e-3])
    assert float(rate(60)) == pytest.approx(5e-4)  # half-way through the cosine
    assert float(rate(110)) == pytest.approx(0.0, abs=1e-12)
    optim.schedule = "constant"
    assert optimizers.classifier_learning_rate(optim, None) == 1e-3


@pytest.mark.parametrize(
    ("fields", "num_steps", "message"),
    [
        ({"schedule": "linear"}, 10, "schedule='linear' is unknown; use one of: constant, warmup"),
        ({"schedule": "warmup_cosine", "warmup_steps": 10}, 10, "warmup_steps=10 must be"),
        ({"schedule": "warmup_cosine"}, None, "needs the run's length: pass num_steps"),
    ],
)
def test_bad_schedules_are_named(fields, num_steps, message):
    optim = ml_collections.ConfigDict({"name": "adam", "lr": 1e-3, **fields})
    with pytest.raises(errors.ConfigError, match=message.replace("(", r"\(")):
        optimizers.make_classifier_optimizer(optim, num_steps=num_steps)


def test_the_scheduled_optimizer_follows_the_schedule():
    optim = ml_collections.ConfigDict(
        {"name": "sgd", "lr": 1.0, "schedule": "warmup_cosine", "warmup_steps": 2}
    )
    tx = optimizers.make_classifier_optimizer(optim, num_steps=4)
    params = np.zeros(1, np.float32)
    state = tx.init(params)
    steps = []
    for _ in range(4):
        updates, state = tx.update(np.ones(1, np.float32), state)
        steps.append(-float(updates[0]))
    # SGD's step is the learning rate: 0, 0.5, 1 (end of warm-up), then cosine to 0 at step 4.
    expected = optax.warmup_cosine_decay_schedule(0.0, 1.0, 2, 4, 0.0)
    assert steps == pytest.approx([float(expected(s)) for s in range(4)])


def test_an_unknown_select_metric_lists_the_valid_ones():
    with pytest.raises(errors.ConfigError) as raised:
        classifier_loop.train_classifier(
            _tiny_config(), _images(16, 0), _images(8, 1), seed=0, select_metric="f1"
        )
    assert str(raised.value) == (
        "select_metric='f1' is unknown; choose the kept weights by one of: val_loss, auc, "
        "accuracy, accuracy_at_val_threshold."
    )


@pytest.mark.slow  # trains classifiers: about 10 s on 2 cores
def test_one_se_keeps_the_latest_weights_within_one_standard_error_of_the_best():
    result = classifier_loop.train_classifier(
        _tiny_config(select_rule="one_se"), _images(32, 0), _images(16, 1), seed=0,
        select_metric="val_loss",
    )  # fmt: skip
    values = [record["select/val"] for record in result.history]
    errors_of = [record["select_se/val"] for record in result.history]
    best = int(np.argmin(values))
    within = [i for i, v in enumerate(values) if v <= values[best] + errors_of[best]]
    assert result.best_step == result.history[max(within)]["step"]
    labels = _images(16, 1).labels
    kept = classifier_loop.predict(result.state, _images(16, 1).images)
    np.testing.assert_array_equal(result.val_probabilities, kept)
    clipped = np.clip(kept, 1e-7, 1 - 1e-7)
    losses = -(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped))
    assert errors_of[max(within)] == pytest.approx(losses.std(ddof=1) / 4.0)  # sqrt(16)


@pytest.mark.parametrize(
    ("metric", "values", "errors", "rule", "kept"),
    [
        ("auc", [0.80, 0.90, 0.88], [0.05, 0.04, 0.04], "best", 1),
        ("auc", [0.80, 0.90, 0.88], [0.05, 0.04, 0.04], "one_se", 2),
        ("auc", [0.80, 0.90, 0.85], [0.05, 0.04, 0.04], "one_se", 1),  # 0.85 is beyond 1 SE
        ("auc", [0.90, 0.80, 0.87], [0.04, 0.05, 0.04], "one_se", 2),
        ("val_loss", [0.60, 0.40, 0.43], [0.1, 0.05, 0.05], "one_se", 2),
        ("val_loss", [0.60, 0.40, 0.46], [0.1, 0.05, 0.05], "one_se", 1),
        ("auc", [float("nan"), 0.7, 0.6], [float("nan"), 0.2, 0.2], "one_se", 2),
        ("auc", [0.7, 0.6], [float("nan"), float("nan")], "one_se", 0),  # no SE: the best
        ("auc", [float("nan"), float("nan")], [float("nan")] * 2, "one_se", 0),
    ],
)
def test_choose_kept(metric, values, errors, rule, kept):
    assert classifier_loop.choose_kept(metric, values, errors, rule) == kept


def test_an_unknown_select_rule_lists_the_valid_ones():
    with pytest.raises(errors.ConfigError) as raised:
        classifier_loop.train_classifier(
            _tiny_config(select_rule="last"), _images(16, 0), _images(8, 1), seed=0
        )
    assert str(raised.value) == (
        "--config.train.select_rule='last' is unknown; use one of: best, one_se."
    )


@pytest.mark.parametrize(
    ("select_metric", "key", "best"),
    [("val_loss", "loss/val", np.argmin), ("auc", "auc/val", np.argmax)],
)
@pytest.mark.slow  # trains classifiers: about 10 s on 2 cores
def test_the_kept_weights_are_the_best_by_the_select_metric(select_metric, key, best):
    result = classifier_loop.train_classifier(
        _tiny_config(select_rule="best"),
        _images(32, 0),
        _images(16, 1),
        seed=0,
        select_metric=select_metric,
    )
    values = [record[key] for record in result.history]
    assert [record["step"] for record in result.history] == [1, 2, 3, 4]
    assert [record["select/val"] for record in result.history] == values
    assert result.best_step == result.history[int(best(values))]["step"]
    kept = classifier_loop.predict(result.state, _images(16, 1).images)
    scores = classifier_loop.validation_scores(_images(16, 1).labels, kept)
    assert scores[key] == pytest.approx(values[int(best(values))], abs=1e-6)
    # The kept weights' validation probabilities come back with them, as predict gives them.
    np.testing.assert_array_equal(result.val_probabilities, kept)
    assert set(scores) == {"loss/val", "auc/val", "accuracy/val", "accuracy_at_val_threshold/val"}
