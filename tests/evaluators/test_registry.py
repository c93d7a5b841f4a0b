"""config.evals: the registry of evaluator types, the schedule, and each bad entry's message."""

import importlib
import pathlib
import types

import pytest

from experiments.configs import test as test_config
from xraygan_jax import errors, evaluators, gan_loop, pipeline, sweep
from xraygan_jax.evaluators import gan_metrics


def _gan_jobs(config):
    if "sweep" in config:
        return [sweep.point_config(config, point) for point in sweep.points(config)]
    if "evals" in config:
        return [config]
    return [pipeline.gan_config(config, name) for name in ("gan", "fcgan") if name in config]


def _config(name):
    return importlib.import_module(f"experiments.configs.{name}").get_config()


# Every shipped config that trains a GAN (alone, beside a study, or at each sweep point).
GAN_CONFIGS = [
    name
    for name in sorted(path.stem for path in pathlib.Path("experiments/configs").glob("*.py"))
    if name not in ("__init__", "common") and _gan_jobs(_config(name))
]


@pytest.mark.parametrize("name", GAN_CONFIGS)
def test_every_shipped_gan_job_has_valid_evaluators(name):
    for job in _gan_jobs(_config(name)):
        evaluators.check_config(job)
        assert [entry.name for entry in evaluators.from_config(job)] == ["fid"]


def _sampler(label, num, seed):
    raise AssertionError("building an evaluator samples nothing")


def test_the_default_config_schedules_gan_metrics_off_and_builds_them_with_the_runs_config():
    config = test_config.get_config()
    evaluators.check_config(config)
    (entry,) = evaluators.from_config(config)
    assert (entry.name, entry.every_epochs) == ("fid", 0)
    assert not any(entry.due(epoch, 2) for epoch in (1, 2))
    # An extractor of its own, so that no Inception weights are read to build it.
    extractor = types.SimpleNamespace(resize="tf1")
    evaluator = entry.build(_sampler, labels=[1], seed=3, extractor=extractor)
    assert isinstance(evaluator, gan_metrics.GANMetricsEvaluator)
    assert evaluator.config is config and evaluator.labels == [1] and evaluator.seed == 3
    assert evaluator.sample_fn is _sampler and evaluator.extractor is extractor


def test_an_entry_runs_every_n_epochs_and_after_the_last():
    config = test_config.get_config()
    config.evals.fid.every_epochs = 3
    (entry,) = evaluators.from_config(config)
    assert [epoch for epoch in range(1, 11) if entry.due(epoch, 10)] == [3, 6, 9, 10]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "type",
            "inception_score",
            r"--config.evals.fid.type='inception_score' is not an evaluator; use one of: "
            r"gan_metrics\.",
        ),
        ("every_epochs", -1, r"--config.evals.fid.every_epochs=-1 must be a whole number >= 0"),
    ],
)
def test_a_bad_entry_is_named_with_its_flag(field, value, message):
    config = test_config.get_config()
    config.evals.fid[field] = value
    with pytest.raises(errors.ConfigError, match=message):
        evaluators.check_config(config)


def test_keyword_config_the_evaluator_does_not_take_is_named():
    config = test_config.get_config()
    with config.evals.fid.unlocked():
        config.evals.fid.num_samples = 10
    with pytest.raises(errors.ConfigError, match=r"--config.evals.fid: .*'num_samples'"):
        evaluators.check_config(config)


def test_training_refuses_an_unknown_evaluator_before_writing_anything(tmp_path):
    config = test_config.get_config()
    config.evals.fid.type = "is"
    with pytest.raises(errors.ConfigError, match=r"--config.evals.fid.type='is' .* gan_metrics"):
        gan_loop.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
