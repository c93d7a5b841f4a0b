"""Pure GAN steps, state, losses and optimisers on the tiny test config (32x32, ngf=ndf=8).

Keys are "rbg" keys here: XLA CPU takes seconds to compile each threefry draw of a new shape, and
every step jit draws z. The default threefry keys are exercised by test_multidevice.py.
"""

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import sngan_test as sngan_test_config
from experiments.configs import test as test_config
from xraygan_jax.models import gan
from xraygan_jax.train import losses, optimizers, setup, steps
from xraygan_jax.train import state as state_lib

IMAGE_SIZE = 32
BATCH_SIZE = 8
METRIC_NAMES = {"loss/d", "loss/g", "d/real_prob", "d/fake_prob"}


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


@functools.cache
def _initial_state(kind: str = "dcgan", ema_decay: float = 0.5) -> state_lib.GANState:
    # Cached: call with the same spelling of arguments to reuse it.
    config = test_config.get_config()
    config.model.kind = kind
    config.data.image_size = IMAGE_SIZE
    config.train.ema_decay = ema_decay
    return jax.jit(setup.make_init(config, num_classes=2))(_key(0))


@functools.cache
def _batch() -> dict[str, jax.Array]:
    images = jax.random.uniform(
        _key(1), (BATCH_SIZE, IMAGE_SIZE, IMAGE_SIZE, 1), minval=-1.0, maxval=1.0
    )
    # Both labels, so that every label-embedding row gets a gradient.
    return {"image": images, "label": jnp.arange(BATCH_SIZE, dtype=jnp.int32) % 2}


@functools.cache
def _train_step(d_updates_per_step: int = 1, g_updates_per_step: int = 1, ema_decay: float = 0.5):
    """The jitted step for `_initial_state(..., ema_decay)` (the options own the EMA's decay)."""
    return jax.jit(
        functools.partial(
            steps.gan_train_step,
            options=steps.StepOptions(
                d_updates_per_step=d_updates_per_step,
                g_updates_per_step=g_updates_per_step,
                ema_decay=ema_decay,
            ),
        )
    )


def _adam_count(opt_state) -> int:
    """The update count in an optax Adam state."""
    is_adam = lambda node: isinstance(node, optax.ScaleByAdamState)  # noqa: E731
    counts = [
        int(node.count) for node in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(node)
    ]
    assert len(counts) == 1, opt_state
    return counts[0]


def _all_leaves_differ(before, after) -> bool:
    return all(
        float(jnp.max(jnp.abs(a - b))) > 0
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
    )


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_one_step_changes_every_part_and_reports_metrics():
    state = _initial_state()
    new_state, metrics = _train_step()(state, _batch(), _key(2))
    assert set(metrics) == METRIC_NAMES
    for name, value in metrics.items():
        assert value.shape == () and bool(jnp.isfinite(value)), name
    assert 0.0 < float(metrics["d/real_prob"]) < 1.0
    assert 0.0 < float(metrics["d/fake_prob"]) < 1.0
    assert float(metrics["loss/d"]) > 0.0 and float(metrics["loss/g"]) > 0.0
    assert int(new_state.step) == 1
    for part in ("g_params", "d_params", "g_batch_stats", "d_batch_stats"):
        assert _all_leaves_differ(getattr(state, part), getattr(new_state, part)), part
    assert _adam_count(new_state.g_opt_state) == _adam_count(new_state.d_opt_state) == 1


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_step_is_a_function_of_its_key():
    state = _initial_state()
    first, first_metrics = _train_step()(state, _batch(), _key(3))
    again, again_metrics = _train_step()(state, _batch(), _key(3))
    other, _ = _train_step()(state, _batch(), _key(4))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(first_metrics[name], again_metrics[name])
    assert not np.array_equal(
        first.g_params["project"]["kernel"], other.g_params["project"]["kernel"]
    )


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_two_generator_steps_per_discriminator_step():
    new_state, metrics = _train_step(g_updates_per_step=2)(_initial_state(), _batch(), _key(2))
    assert _adam_count(new_state.g_opt_state) == 2
    assert _adam_count(new_state.d_opt_state) == 1
    assert int(new_state.step) == 1
    assert set(metrics) == METRIC_NAMES


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_two_discriminator_steps_per_generator_step():
    new_state, _ = _train_step(d_updates_per_step=2)(_initial_state(), _batch(), _key(2))
    assert _adam_count(new_state.d_opt_state) == 2
    assert _adam_count(new_state.g_opt_state) == 1


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_ema_tracks_generator_params():
    state = _initial_state()  # ema_decay 0.5
    new_state, _ = _train_step()(state, _batch(), _key(2))
    # One G update with decay 0.5: ema = 0.5 * initial + 0.5 * new.
    for ema, initial, new in zip(
        jax.tree.leaves(new_state.ema_g_params),
        jax.tree.leaves(state.g_params),
        jax.tree.leaves(new_state.g_params),
        strict=True,
    ):
        np.testing.assert_allclose(ema, 0.5 * initial + 0.5 * new, rtol=1e-6, atol=1e-9)
    z = steps.sample_latents(_key(5), 4, state.nz)
    labels = jnp.array([0, 1, 0, 1], jnp.int32)
    generate = jax.jit(steps.generate, static_argnames="use_ema")
    with_ema = generate(new_state, z, labels, use_ema=True)
    without_ema = generate(new_state, z, labels, use_ema=False)
    assert with_ema.shape == (4, IMAGE_SIZE, IMAGE_SIZE, 1)
    assert float(jnp.max(jnp.abs(with_ema))) <= 1.0
    expected = jax.jit(functools.partial(new_state.generator.apply, train=False))(
        {"params": new_state.ema_g_params, "batch_stats": new_state.g_batch_stats}, z, labels
    )
    np.testing.assert_allclose(with_ema, expected, atol=1e-6)
    assert float(jnp.max(jnp.abs(with_ema - without_ema))) > 0


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_fcgan_step_with_dropout_and_no_discriminator_batch_norm():
    state = _initial_state(kind="fcgan", ema_decay=0.0)
    assert state.d_batch_stats == {} and state.ema_g_params is None
    new_state, metrics = _train_step(ema_decay=0.0)(state, _batch(), _key(2))
    assert set(metrics) == METRIC_NAMES
    assert all(bool(jnp.isfinite(value)) for value in metrics.values())
    assert _all_leaves_differ(state.d_params, new_state.d_params)
    assert _all_leaves_differ(state.g_batch_stats, new_state.g_batch_stats)


@functools.cache
def _sngan_state() -> state_lib.GANState:
    """The tiny SN-ResNet cGAN of sngan_test.py (sngan.py's design at 32x32, ngf = ndf = 8)."""
    config = sngan_test_config.get_config()
    return jax.jit(setup.make_init(config, num_classes=2))(_key(0))


def _sngan_options(**fields) -> steps.StepOptions:
    """sngan.py's step: hinge, two D updates, DiffAugment translation and cutout."""
    options = steps.StepOptions.from_config(sngan_test_config.get_config().train)
    assert (options.loss, options.d_updates_per_step) == ("hinge", 2) and options.diffaugment
    return dataclasses.replace(options, **fields)


def _without(tree, name: str):
    return {path: leaf for path, leaf in tree.items() if path != name}


@pytest.mark.slow  # compiles sngan's init and its two-D-update step: 15-60 s on 2 cores
def test_sngan_step_with_its_config_changes_every_part():
    state = _sngan_state()
    step = jax.jit(functools.partial(steps.gan_train_step, options=_sngan_options()))
    new_state, metrics = step(state, _batch(), _key(2))
    assert set(metrics) == METRIC_NAMES
    for name, value in metrics.items():
        assert value.shape == () and bool(jnp.isfinite(value)), name
    assert _adam_count(new_state.d_opt_state) == 2 and _adam_count(new_state.g_opt_state) == 1
    for part in ("g_params", "g_batch_stats", "ema_g_params"):
        assert _all_leaves_differ(getattr(state, part), getattr(new_state, part)), part
    # Every weight of D moves but the logit's bias: while every logit lies inside the hinge's
    # margin (as at initialisation), its gradient is -1 (real) + 1 (fake) = 0.
    d_before = flax.traverse_util.flatten_dict(state.d_params, sep="/")
    d_after = flax.traverse_util.flatten_dict(new_state.d_params, sep="/")
    assert _all_leaves_differ(_without(d_before, "logit/bias"), _without(d_after, "logit/bias"))
    # D's "batch_stats" are spectral norm's power-iteration state: every sigma moves, and every
    # u vector longer than one element (a unit vector of one element is +-1 for good).
    before = flax.traverse_util.flatten_dict(state.d_batch_stats)
    after = flax.traverse_util.flatten_dict(new_state.d_batch_stats)
    assert any(path[-1].endswith("sigma") for path in before)
    for path, leaf in before.items():
        if path[-1].endswith("sigma") or leaf.size > 1:
            assert float(jnp.max(jnp.abs(leaf - after[path]))) > 0, path


@pytest.mark.slow  # 7-22 s of compilation: the fast tier's heaviest
def test_sngan_discriminator_updates_lower_its_hinge_loss_on_a_fixed_batch():
    """Four D updates on one real batch and the same fakes (same key): the loss before each
    update falls, and by more than noise. Adam at lr 1e-3 so that four steps move it clearly."""
    options = _sngan_options(diffaugment="")
    d_step = jax.jit(functools.partial(steps.discriminator_step, options=options))
    config = sngan_test_config.get_config()
    config.optim.d_lr = 1e-3
    d_tx = optimizers.make_optimizer(config.optim, "d")
    state = _sngan_state()
    state = state.replace(d_tx=d_tx, d_opt_state=d_tx.init(state.d_params))
    losses_seen = []
    for _ in range(4):
        state, metrics = d_step(state, _batch(), _key(2))
        losses_seen.append(float(metrics["loss/d"]))  # before this update
    assert all(b < a for a, b in zip(losses_seen[:-1], losses_seen[1:], strict=True)), losses_seen
    assert losses_seen[-1] < losses_seen[0] - 0.05, losses_seen


def test_create_gan_state_is_shape_only_under_eval_shape():
    config = test_config.get_config()
    generator, discriminator = gan.make_gan(config.model, image_size=64, num_classes=2)
    abstract = jax.eval_shape(
        lambda key: state_lib.create_gan_state(
            generator,
            discriminator,
            optax.adam(1e-3),
            optax.adam(1e-3),
            key,
            image_size=64,
            nz=8,
        ),
        jax.random.key(0),
    )
    assert isinstance(abstract.step, jax.ShapeDtypeStruct) and abstract.step.dtype == jnp.int32
    assert abstract.ema_g_params is None
    assert abstract.g_params["UpConv2x_3"]["kernel"].shape == (4, 4, 8, 1)
    assert abstract.nz == 8


def test_the_state_is_created_from_the_step_options_of_its_config():
    config = test_config.get_config()
    config.train.ada = True
    config.train.ema_decay = 0.9
    options = steps.StepOptions.from_config(config.train)
    assert (options.ada, options.ema_decay) == (True, 0.9)
    abstract = jax.eval_shape(setup.make_init(config, num_classes=2), _key(0))
    assert abstract.ada_p.shape == abstract.ada_signs.shape == ()
    assert jax.tree.structure(abstract.ema_g_params) == jax.tree.structure(abstract.g_params)


@pytest.mark.parametrize(
    ("state_options", "step_options", "message"),
    [
        (
            {},
            {"ada": True},
            r"StepOptions\(ada=True\) needs ADA's p in the state, which keeps none: .*ada=True",
        ),
        (
            {"ada": True},
            {},
            r"The state keeps ADA's p but StepOptions\(ada=False\) would leave it unused",
        ),
        (
            {},
            {"ema_decay": 0.5},
            r"StepOptions\(ema_decay=0.5\) needs the EMA of G's params in the state, .*ema=True",
        ),
        (
            {"ema_decay": 0.5},
            {},
            r"keeps an EMA of G's params but StepOptions\(ema_decay=0.0\) would leave it frozen",
        ),
    ],
)
def test_a_state_made_for_other_options_is_refused(state_options, step_options, message):
    config = test_config.get_config()
    for name, value in state_options.items():
        config.train[name] = value
    state = jax.eval_shape(setup.make_init(config, num_classes=2), _key(0))
    options = steps.StepOptions(**step_options)
    for step in (steps.gan_train_step, steps.discriminator_step, steps.generator_step):
        with pytest.raises(ValueError, match=message):
            step(state, _batch(), _key(2), options=options)


def test_package_exports_the_steps():
    from xraygan_jax import train

    assert train.gan_train_step is steps.gan_train_step
    assert train.create_gan_state is state_lib.create_gan_state


def test_losses_are_binary_cross_entropy_on_logits():
    np.testing.assert_allclose(
        losses.discriminator_loss(jnp.zeros(3), jnp.zeros(3)), 2 * np.log(2), rtol=1e-6
    )
    logits = jnp.array([-3.0, 0.5, 4.0])
    expected = -np.mean(np.log(1 / (1 + np.exp(-np.asarray(logits)))))
    np.testing.assert_allclose(losses.generator_loss(logits), expected, rtol=1e-6)
    real = jnp.array([2.0, -1.0])
    fake = jnp.array([0.3, -2.0])
    sigmoid = lambda x: 1 / (1 + np.exp(-np.asarray(x)))  # noqa: E731
    expected = -np.mean(np.log(sigmoid(real))) - np.mean(np.log(1 - sigmoid(fake)))
    np.testing.assert_allclose(losses.discriminator_loss(real, fake), expected, rtol=1e-6)


@pytest.mark.parametrize("name", optimizers.NAMES)
def test_every_optimizer_uses_its_own_learning_rate(name):
    config = test_config.get_config().optim
    config.name = name
    config.g_lr, config.d_lr = 1e-2, 1e-4
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    first_updates = {}
    for which in ("g", "d"):
        optimizer = optimizers.make_optimizer(config, which)
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        first_updates[which] = np.asarray(updates["w"])
    # The same optimiser, learning rates 100x apart.
    np.testing.assert_allclose(first_updates["g"], 100 * first_updates["d"], rtol=1e-5)
    assert np.all(np.sign(first_updates["g"]) == -np.sign(grads["w"]))


def test_unknown_optimizer_is_refused():
    config = test_config.get_config().optim
    config.name = "adagrad"
    with pytest.raises(
        ValueError, match="optimizer 'adagrad' is unknown; use one of: adam, adamw, rmsprop, sgd"
    ):
        optimizers.make_optimizer(config, "g")


def test_optimizer_for_neither_network_is_refused():
    with pytest.raises(ValueError, match="which must be 'g' .* or 'd' .*, got 'x'"):
        optimizers.make_optimizer(test_config.get_config().optim, "x")
