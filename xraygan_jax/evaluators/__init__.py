"""Evaluators: each built from a function it calls plus keyword config, each returning flat metrics.

    evaluator = gan_metrics.GANMetricsEvaluator(sample_fn, config=config)  # (label, num, seed)
    metrics = evaluator.run()              # {"NORMAL/fid": ..., "NORMAL/fid_floor": ..., ...}
    evaluator = classifier_metrics.ClassifierEvaluator(predict_fn, images=x, labels=y)
    metrics = evaluator.run()              # {"accuracy": ..., "auc": ..., "sensitivity": ...}

The contract: `Evaluator(fn, **config).run() -> dict[str, float]`. An evaluator never imports a
training loop: the trainer (or a script) hands it the function that makes what is judged, a
sampler of uint8 images for GAN metrics, a `predict_fn` of probabilities for a classifier (the
study builds one per arm from `functools.partial(classifier_loop.predict, state)`). Compiled
functions (the Inception network) and real-image features are cached at module level, so an
evaluator built every few epochs compiles once and reads the real images once.

Which evaluators a GAN run's training runs, and how often, is `config.evals`, one entry per name:

    config.evals.fid.type = "gan_metrics"   # a key of REGISTRY
    config.evals.fid.every_epochs = 20      # and after the last epoch; 0 = never during training

`from_config(config)` turns it into the list the GAN loop is handed: each entry's class from
`REGISTRY`, built at every due epoch as `cls(sample_fn, config=<the run's config>, labels=<the
GAN's classes>, seed=<config.train.seed>, **<the entry's other keys>)`. `check_config` refuses a
bad entry before training starts, naming its `--config.evals.<name>.` flag.

Modules:
  gan_metrics         FID, KID and precision/recall per class with a real-vs-real floor: the
                      evaluator, the features it compares and the checks of `config.eval`.
  records             its records, one per (GAN, epoch, class): eval.jsonl, the log line, the
                      collapse warnings and the evaluation part of a run's summary.md.
  drivers             what is on disk: every checkpoint of a run (`evaluate_run`), a folder of
                      images from any tool (`evaluate_folder`); the FID-against-epoch plot.
  classifier_metrics  a binary classifier's metrics at 0.5 and at a validation threshold.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from xraygan_jax import errors
from xraygan_jax.evaluators import gan_metrics

# What `config.evals.<name>.type` may name: evaluators of a GAN's samples (training hands them a
# sampler; the classifier evaluator needs a trained classifier, which the study builds itself).
REGISTRY: dict[str, type] = {"gan_metrics": gan_metrics.GANMetricsEvaluator}
# Keys of an entry that say when it runs; every other key is the evaluator's keyword config.
_SCHEDULE_KEYS = ("type", "every_epochs")


@dataclasses.dataclass(frozen=True)
class Scheduled:
    """One entry of `config.evals`: its name, how often it runs and how its evaluator is built.

    Attributes:
      name: the entry's name (`config.evals.<name>`).
      every_epochs: runs after every `every_epochs`-th epoch and after the last; 0 = never.
      build: `build(sample_fn, labels=..., seed=...)` -> an evaluator with `run()`.
    """

    name: str
    every_epochs: int
    build: Callable[..., Any]

    def due(self, epoch: int, num_epochs: int) -> bool:
        """Whether the evaluator runs after `epoch` of a GAN that trains `num_epochs`."""
        every = self.every_epochs
        return bool(every) and (epoch % every == 0 or epoch == num_epochs)


def evaluator_class(name: str, type_name: str) -> type:
    """The class `config.evals.<name>.type` names.

    Raises:
      errors.ConfigError: an unknown type (names the flag and the valid types).
    """
    if type_name not in REGISTRY:
        raise errors.ConfigError(
            f"--config.evals.{name}.type={type_name!r} is not an evaluator; use one of: "
            f"{', '.join(REGISTRY)}."
        )
    return REGISTRY[type_name]


def _entries(config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
    evals = config.get("evals") or {}
    return {name: dict(entry) for name, entry in evals.items()}


def check_config(config: ml_collections.ConfigDict) -> None:
    """Checks `config.evals` and the GAN-metrics protocol `config.eval`; nothing is built.

    Raises:
      errors.ConfigError: an entry without a known `type`, an `every_epochs` that is not a
        whole number >= 0, evaluation during training in several processes, keyword config the
        evaluator does not take, or an eval setting that cannot work (each names the flag).
    """
    for name, entry in _entries(config).items():
        cls = evaluator_class(name, entry.get("type"))
        every = entry.get("every_epochs", 0)
        if not isinstance(every, int) or isinstance(every, bool) or every < 0:
            raise errors.ConfigError(
                f"--config.evals.{name}.every_epochs={every!r} must be a whole number >= 0 "
                "(0 = never during training)."
            )
        if every and jax.process_count() > 1:
            raise errors.ConfigError(
                f"--config.evals.{name}.every_epochs={every}: evaluation during training runs "
                f"in one process, not {jax.process_count()}; set it to 0 and score the "
                "checkpoints afterwards with python -m experiments.evaluate_gan --workdir=..."
            )
        keywords = {k: v for k, v in entry.items() if k not in _SCHEDULE_KEYS}
        try:
            inspect.signature(cls).bind(None, config=config, labels=None, seed=0, **keywords)
        except TypeError as error:
            raise errors.ConfigError(f"--config.evals.{name}: {error}") from error
    gan_metrics.check_eval_config(config)


def from_config(config: ml_collections.ConfigDict) -> list[Scheduled]:
    """The evaluators of `config.evals`, in the config's order (check them with check_config).

    Args:
      config: a GAN job config; its `evals` entries are {type, every_epochs, **keyword config}.

    Returns:
      One `Scheduled` per entry, its `build` bound to the entry's class, the run's config and
      the entry's keyword config.
    """
    scheduled = []
    for name, entry in _entries(config).items():
        keywords = {k: v for k, v in entry.items() if k not in _SCHEDULE_KEYS}
        cls = evaluator_class(name, entry.get("type"))
        build = functools.partial(cls, config=config, **keywords)
        scheduled.append(Scheduled(name, int(entry.get("every_epochs", 0)), build))
    return scheduled
