"""optax optimisers from a config's `optim` section: G and D, and the classifier.

The GAN default is the DCGAN paper's and both reports': Adam, lr 2e-4, b1 0.5 (b2 0.999, eps 1e-8
as PyTorch's). G and D get their own learning rates (`g_lr`, `d_lr`). The classifier has one
learning rate (`lr`), optionally on a schedule (`schedule`: constant, or a linear warm-up from 0
then a cosine decay to 0 over the run), and can freeze part of its parameters
(`make_classifier_optimizer`).
"""

from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from xraygan_jax import errors

NAMES = ("adam", "adamw", "rmsprop", "sgd")
CLASSIFIER_NAMES = ("adam", "sgd")
SCHEDULES = ("constant", "warmup_cosine")


def classifier_learning_rate(
    optim_config: ml_collections.ConfigDict, num_steps: int | None
) -> float | optax.Schedule:
    """The classifier's learning rate: `lr`, or the schedule `optim_config.schedule` names.

    "warmup_cosine" rises linearly from 0 to `lr` over `warmup_steps`, then follows a cosine to 0
    at `num_steps` (`optax.warmup_cosine_decay_schedule`, whose decay_steps count the warm-up).

    Raises:
        xraygan_jax.errors.ConfigError: an unknown schedule, a warm-up that is negative or not
            shorter than the run, or "warmup_cosine" without num_steps.
    """
    learning_rate = optim_config.get("lr")
    schedule = optim_config.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise errors.ConfigError(
            f"classifier optim.schedule={schedule!r} is unknown; use one of: {', '.join(SCHEDULES)}"
        )
    if schedule == "constant":
        return learning_rate
    warmup_steps = int(optim_config.get("warmup_steps", 0))
    if num_steps is None:
        raise errors.ConfigError(
            "classifier optim.schedule='warmup_cosine' needs the run's length: pass num_steps"
        )
    if not 0 <= warmup_steps < num_steps:
        raise errors.ConfigError(
            f"classifier optim.warmup_steps={warmup_steps} must be at least 0 and below the "
            f"{num_steps} training steps"
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=num_steps,
        end_value=0.0,
    )


def make_optimizer(
    optim_config: ml_collections.ConfigDict, which: str
) -> optax.GradientTransformation:
    """The optimiser of the generator (`which="g"`) or the discriminator (`which="d"`).

    Args:
        optim_config: name (adam | adamw | rmsprop | sgd), g_lr, d_lr, b1, b2 (adam, adamw),
            weight_decay (adamw), momentum (sgd, rmsprop; 0 = none).
        which: "g" or "d": picks g_lr or d_lr.

    Returns:
        An optax.GradientTransformation.

    Raises:
        ValueError: an unknown optimiser name or `which`.
    """
    if which not in ("g", "d"):
        raise ValueError(f"which must be 'g' (generator) or 'd' (discriminator), got {which!r}")
    learning_rate = optim_config.g_lr if which == "g" else optim_config.d_lr
    name = optim_config.name
    momentum = optim_config.get("momentum", 0.0)
    if name == "adam":
        return optax.adam(learning_rate, b1=optim_config.b1, b2=optim_config.b2)
    if name == "adamw":
        return optax.adamw(
            learning_rate,
            b1=optim_config.b1,
            b2=optim_config.b2,
            weight_decay=optim_config.weight_decay,
        )
    if name == "rmsprop":
        return optax.rmsprop(learning_rate, momentum=momentum or None)
    if name == "sgd":
        return optax.sgd(learning_rate, momentum=momentum or None)
    raise ValueError(f"optimizer {name!r} is unknown; use one of: {', '.join(NAMES)}")


def make_classifier_optimizer(
    optim_config: ml_collections.ConfigDict,
    trainable_mask: Any = None,
    *,
    num_steps: int | None = None,
) -> optax.GradientTransformation:
    """The classifier's optimiser, optionally updating only the parameters a mask marks trainable.

    The second report's classifier: SGD, lr 1e-3, batch 25, Keras's default momentum 0 (the
    report names none). Frozen parameters get `optax.set_to_zero()` updates and keep no optimiser
    state (`optax.partition`). Freezing a backbone this way leaves its BatchNorm running
    statistics to the model: they still move whenever it runs in train mode.

    Example:
        optim_config = ml_collections.ConfigDict({"name": "sgd", "lr": 1e-3, "momentum": 0.0})
        # Train only the head of {"backbone": ..., "head": ...} params (a mask prefix is enough).
        tx = optimizers.make_classifier_optimizer(
            optim_config, trainable_mask={"backbone": False, "head": True})

    Args:
        optim_config: name (adam | sgd), lr; b1, b2 for adam (default 0.9, 0.999, optax's);
            momentum for sgd (default 0 = plain SGD); schedule (constant | warmup_cosine,
            default constant) and warmup_steps (see `classifier_learning_rate`).
        trainable_mask: None (everything trains) or a pytree of bools with the structure of the
            params, or a prefix of it (a bool for a whole subtree); False freezes.
        num_steps: the run's length in optimiser steps; needed by the warmup_cosine schedule.

    Returns:
        An optax.GradientTransformation.

    Raises:
        xraygan_jax.errors.ConfigError (a ValueError): an unknown name or schedule, a missing or
            non-positive learning rate, a bad warm-up, a mask leaf that is not a bool.
    """
    name = optim_config.get("name")
    learning_rate = optim_config.get("lr")
    if name not in CLASSIFIER_NAMES:
        raise errors.ConfigError(
            f"classifier optimizer {name!r} is unknown; use one of: {', '.join(CLASSIFIER_NAMES)}"
        )
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float):
        raise errors.ConfigError(
            f"classifier optim.lr={learning_rate!r}: set a learning rate, e.g. 1e-3"
        )
    if learning_rate <= 0:
        raise errors.ConfigError(f"classifier optim.lr={learning_rate!r} must be positive")
    learning_rate = classifier_learning_rate(optim_config, num_steps)
    if name == "adam":
        tx = optax.adam(
            learning_rate, b1=optim_config.get("b1", 0.9), b2=optim_config.get("b2", 0.999)
        )
    else:
        tx = optax.sgd(learning_rate, momentum=optim_config.get("momentum", 0.0) or None)
    if trainable_mask is None:
        return tx

    def label(trainable):
        if not isinstance(trainable, bool | np.bool_):
            raise errors.ConfigError(
                f"trainable_mask leaf {trainable!r} must be True (train) or False (freeze)"
            )
        return "trainable" if trainable else "frozen"

    labels = jax.tree.map(label, trainable_mask)
    return optax.partition({"trainable": tx, "frozen": optax.set_to_zero()}, labels)
