"""Models and training states built from a config: the one place that turns a config into them.

GANs:

    setup.check_gan_config(config)  # errors.ConfigError naming the flags, before anything is built
    generator, discriminator = setup.make_models(config, num_classes=2)
    state = jax.jit(setup.make_init(config, num_classes=2))(jax.random.key(0))
    abstract, init = setup.abstract_state(config, num_classes=2, mesh=mesh)

Classifiers (the augmentation study's):

    built = setup.classifier_setup(config, image_size=64, mesh=mesh)
    state = setup.classifier_state(config, built, jax.random.key(seed), image_size=64)

The GAN training loop (`xraygan_jax.gan_loop`), the run folder (`xraygan_jax.runs`, which
restores a generator for sampling), the classifier loop the study trains with, the benchmarks
and the tests all build through these functions, so a model or a state is made the same way
wherever it is made. Nothing here trains or reads data; only pretrained weights a config names
are read.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any

import jax
import ml_collections

from xraygan_jax import compiler, errors
from xraygan_jax.models import classifier as classifier_lib
from xraygan_jax.models import gan
from xraygan_jax.pretrained import inception_weights, resnet_weights
from xraygan_jax.train import augment, classifier_steps, optimizers, sharding, steps
from xraygan_jax.train import state as state_lib


def check_gan_config(config: ml_collections.ConfigDict) -> None:
    """Refuses the options of a GAN config that cannot work, alone or together; builds nothing.

    Each section's own rules live beside what they configure and run from here:
    config.model's in `gan.check_model_options`, config.train's step options in
    `steps.StepOptions.check`. The rules that span sections live here, the lowest layer that
    sees them all:
      - config.data.image_size: a size config.model.kind can build, and one that
        config.train.mode_seeking_size divides;
      - config.train.compute_dtype: a dtype the models can run in;
      - a loss that needs per-image logits (`losses.Loss.needs_per_image_logits`, WGAN-GP's
        gradient penalty) with BatchNorm in D (config.model.d_norm=batch);
      - an ACGAN discriminator (config.model.conditioning=acgan) in a per-class GAN
        (config.train.per_class), whose class head would have one class to learn.
    Data, devices and evaluation are the training loop's to check (`gan_loop.validate`, which
    calls this first).

    Args:
      config: a GAN config (`model`, `data.image_size`, `train`).

    Raises:
      errors.ConfigError: the first rule broken; the message names the flags and the fix.
    """
    model, train = config.model, config.train
    try:
        gan.check_model_options(model)
        compute_dtype(config)
        options = steps.StepOptions.from_config(train)
        options.check()
    except ValueError as error:
        raise errors.ConfigError(str(error)) from error
    try:
        gan.check_image_size(model.kind, config.data.image_size)
    except ValueError as error:
        raise errors.ConfigError(
            f"{error} (--config.model.kind / --config.data.image_size)"
        ) from error
    try:
        steps.check_mode_seeking_size(options.mode_seeking_size, config.data.image_size)
    except ValueError as error:
        raise errors.ConfigError(f"{error} (--config.data.image_size)") from error
    if options.gan_loss.needs_per_image_logits and gan.discriminator_has_batch_norm(model):
        raise errors.ConfigError(
            f"--config.train.loss={options.loss} cannot be combined with "
            f"--config.model.d_norm=batch: {options.gan_loss.per_image_reason}; set "
            "--config.model.d_norm=layer or none."
        )
    if model.conditioning == "acgan" and train.per_class:
        raise errors.ConfigError(
            "--config.model.conditioning=acgan needs both classes in one GAN: its auxiliary "
            "classifier has nothing to tell apart in a per-class GAN; set "
            "--config.train.per_class=false."
        )


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """The modules' `dtype` for `config.train.compute_dtype` (default "float32": no casts).

    Raises:
      ValueError: an unknown name (the message names `--config.train.compute_dtype`).
    """
    return gan.compute_dtype(config.train.get("compute_dtype", "float32"))


def make_models(config: ml_collections.ConfigDict, num_classes: int) -> tuple[Any, Any]:
    """The (generator, discriminator) Linen modules of a config.

    Args:
      config: a GAN config (`model`, `data.image_size`, `train.compute_dtype`).
      num_classes: the number of labels the models are conditioned on.

    Returns:
      (generator, discriminator), unbound modules.
    """
    return gan.make_gan(
        config.model,
        image_size=config.data.image_size,
        num_classes=num_classes,
        dtype=compute_dtype(config),
    )


def make_init(config: ml_collections.ConfigDict, num_classes: int) -> functools.partial:
    """`key -> GANState` for a config: its models, optimisers, image size and nz.

    The state keeps ADA's p and the EMA of G's params where the config's step options,
    `steps.StepOptions.from_config(config.train)`, turn them on; the steps are given those
    options. Pure: jit it, or `jax.eval_shape` it.

    Example:
        state = jax.jit(setup.make_init(config, num_classes=2))(jax.random.key(0))
    """
    generator, discriminator = make_models(config, num_classes)
    options = steps.StepOptions.from_config(config.train)
    return functools.partial(
        state_lib.create_gan_state,
        generator,
        discriminator,
        optimizers.make_optimizer(config.optim, "g"),
        optimizers.make_optimizer(config.optim, "d"),
        image_size=config.data.image_size,
        nz=config.model.nz,
        ema=options.ema_decay > 0,
        ada=bool(options.ada),
    )


def abstract_state(config: ml_collections.ConfigDict, num_classes: int, mesh: jax.sharding.Mesh):
    """Returns (abstract state with replicated shardings, jitted init `key -> state`).

    The state is built shape-first (`jax.eval_shape`), then materialised directly replicated on
    the mesh by a jitted init, never on one device first (big_vision's pattern).
    """
    init = make_init(config, num_classes)
    replicated = sharding.replicated(mesh)
    abstract = jax.eval_shape(init, jax.random.key(0))
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated), abstract
    )
    return abstract, jax.jit(init, out_shardings=replicated)


@dataclasses.dataclass(frozen=True)
class ClassifierSetup:
    """Model, optimiser, jitted steps and state creation shared by every classifier of one config
    and image size.

    Built once: the state's model and optimiser are static parts of its pytree, so reusing the
    same objects lets every arm and seed reuse one compilation.
    """

    model: Any
    tx: Any
    train_step: Any
    eval_step: Any
    create_state: Any


_CLASSIFIER_SETUPS: dict[tuple, ClassifierSetup] = {}
_CLASSIFIER_SETUPS_LOCK = threading.Lock()  # classifiers trained in threads build each setup once


def classifier_setup(
    config: ml_collections.ConfigDict, image_size: int, mesh: jax.sharding.Mesh
) -> ClassifierSetup:
    """The classifier, its optimiser and its jitted train step for a config, built once per
    (model, optim, augment, num_steps, image size, devices) and reused after.

    Args:
      config: a study config (`model`, `optim`, `augment`, `train.num_steps`).
      image_size: the training images' side.
      mesh: the ("data",) mesh the train step shards its batch over.
    """
    key = (
        config.model.to_json(),
        config.optim.to_json(),
        config.augment.to_json(),
        int(config.train.num_steps),  # the learning-rate schedule's length
        image_size,
        tuple(mesh.devices.flat),
    )
    with _CLASSIFIER_SETUPS_LOCK:
        if key not in _CLASSIFIER_SETUPS:
            _CLASSIFIER_SETUPS[key] = _new_classifier_setup(config, image_size, mesh)
        return _CLASSIFIER_SETUPS[key]


def _new_classifier_setup(
    config: ml_collections.ConfigDict, image_size: int, mesh: jax.sharding.Mesh
) -> ClassifierSetup:
    """A ClassifierSetup built from scratch (`classifier_setup` caches them)."""
    model = classifier_lib.make_classifier(config.model)
    mask = None
    if config.model.kind == "inception_transfer":
        abstract = jax.eval_shape(
            lambda k: classifier_lib.init_variables(model, k, image_size=image_size),
            jax.random.key(0),
        )
        mask = classifier_lib.trainable_mask(abstract["params"], config.model.trainable)
    tx = optimizers.make_classifier_optimizer(
        config.optim, mask, num_steps=int(config.train.num_steps)
    )
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
    # Jitted: run eagerly, the state's creation (a second model.init, whose weights are
    # discarded when given, and the optimiser's init) cost about a second per classifier.
    create_state = jax.jit(
        functools.partial(
            classifier_steps.create_classifier_state, model, tx, image_size=image_size
        )
    )
    return ClassifierSetup(model, tx, train_step, classifier_eval_step(), create_state)


@functools.cache
def classifier_eval_step():
    """The jitted `classifier_steps.eval_step`, one for every classifier (compiled per shape)."""
    return compiler.jit(classifier_steps.eval_step, reduce_fusion=True)


def classifier_variables(config: ml_collections.ConfigDict, key: jax.Array, image_size: int):
    """Initial {"params", "batch_stats"}, with pretrained weights where the config names them."""
    model = classifier_lib.make_classifier(config.model)
    variables = classifier_lib.init_variables(model, key, image_size=image_size)
    if config.model.kind == "inception_transfer":
        variables = classifier_lib.init_from_fid_inception(
            variables, inception_weights.load_params(config.model.get("weights_path", "") or None)
        )
    elif config.model.get("pretrained_path", ""):
        variables = resnet_weights.load_torchvision_resnet(
            config.model.pretrained_path, variables, depth=int(config.model.kind[len("resnet") :])
        )
    return variables


def classifier_state(
    config: ml_collections.ConfigDict, built: ClassifierSetup, key: jax.Array, image_size: int
) -> classifier_steps.ClassifierState:
    """The ClassifierState a seed's training starts from: `classifier_variables` under
    fold_in(key, 0), the state's own randomness under fold_in(key, 1).

    Args:
      config: the study config.
      built: `classifier_setup(config, image_size, mesh)`, whose model and optimiser the state
        holds.
      key: the seed's key.
      image_size: the training images' side.
    """
    variables = classifier_variables(config, jax.random.fold_in(key, 0), image_size)
    return built.create_state(
        jax.random.fold_in(key, 1),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
    )
