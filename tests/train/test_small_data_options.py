"""The small-data options of GAN training: penalties, spectral norm, ADA, ACGAN, image budget.

Gradient penalties are checked against central finite differences in float64 on the real
discriminator; spectral norm against numpy's SVD; ADA's controller against its formula and in a
run that stops and resumes.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import test as test_config
from xraygan_jax import errors, gan_loop, runs
from xraygan_jax.models import gan
from xraygan_jax.train import losses, setup, sharding, steps

SIZE = 32


def _model_config(**model):
    config = test_config.get_config()
    config.model.ndf = 4
    for key, value in model.items():
        config.model[key] = value
    return config


def _finite_difference_gradients(d, images, eps=1e-5):
    """d(sum of logits)/d(pixel) by central differences, float64, one pixel at a time."""
    flat = images.reshape(-1)

    def total(offset):
        return jnp.sum(d((flat + offset).reshape(images.shape)))

    eye = jnp.eye(flat.size, dtype=flat.dtype) * eps
    plus = jax.lax.map(total, eye, batch_size=256)
    minus = jax.lax.map(total, -eye, batch_size=256)
    return ((plus - minus) / (2 * eps)).reshape(images.shape)


@pytest.fixture(scope="module")
def float64_discriminator():
    """(logits function of images, images): a DC discriminator with LayerNorm, in float64.

    The arrays are made float64 inside the context; each test calls the function inside its own
    `jax.enable_x64` context, so x64 does not leak into the module's other tests.
    """
    with jax.enable_x64(True):
        _, discriminator = gan.make_gan(
            _model_config(d_norm="layer").model, image_size=SIZE, num_classes=2
        )
        images = jax.random.uniform(
            jax.random.key(0), (2, SIZE, SIZE, 1), jnp.float64, minval=-1, maxval=1
        )
        labels = jnp.array([0, 1])
        variables = discriminator.init(jax.random.key(1), images, labels, train=False)
        variables = jax.tree.map(lambda leaf: leaf.astype(jnp.float64), variables)

    def d(x):
        return discriminator.apply(variables, x, labels, train=False).logits

    return d, images


@pytest.mark.slow  # compiles a float64 D and its input gradient: 15-25 s on 2 cores
def test_r1_equals_a_finite_difference_estimate(float64_discriminator):
    d, images = float64_discriminator
    with jax.enable_x64(True):
        grads = _finite_difference_gradients(d, images)
        expected = jnp.mean(jnp.sum(grads.reshape(2, -1) ** 2, axis=-1))
        penalty = losses.r1_penalty(d, images)
    assert penalty.dtype == jnp.float64 and float(expected) > 0
    np.testing.assert_allclose(float(penalty), float(expected), rtol=1e-6)


@pytest.mark.slow  # shares the float64 D of the R1 test: 15-25 s on 2 cores
def test_gradient_penalty_equals_a_finite_difference_estimate(float64_discriminator):
    d, real = float64_discriminator
    with jax.enable_x64(True):
        fake = -real[::-1]
        key = jax.random.key(3)
        weights = jax.random.uniform(key, (2, 1, 1, 1), jnp.float64)
        interpolates = weights * real + (1 - weights) * fake
        grads = _finite_difference_gradients(d, interpolates)
        norms = jnp.sqrt(jnp.sum(grads.reshape(2, -1) ** 2, axis=-1))
        expected = jnp.mean((norms - 1) ** 2)
        penalty = losses.gradient_penalty(d, real, fake, key)
    np.testing.assert_allclose(float(penalty), float(expected), rtol=1e-6)


def _spectral_norm_variables(kind, steps_taken):
    config = _model_config(kind=kind, d_norm="none", spectral_norm=True)
    _, discriminator = gan.make_gan(config.model, image_size=SIZE, num_classes=2)
    images = jnp.zeros((2, SIZE, SIZE, 1))
    labels = jnp.array([0, 1])
    variables = discriminator.init(jax.random.key(0), images, labels, train=False)

    @jax.jit
    def power_iteration(variables):
        _, updated = discriminator.apply(
            variables,
            images,
            labels,
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": jax.random.key(1)},
        )
        return {**variables, **updated}

    for _ in range(steps_taken):
        variables = power_iteration(variables)
    return variables


@pytest.mark.slow  # 7-22 s of compilation: the fast tier's heaviest
@pytest.mark.parametrize("kind", ["dcgan", "fcgan"])
def test_spectral_norm_of_each_weight_is_one_after_power_iterations(kind):
    variables = _spectral_norm_variables(kind, steps_taken=30)
    stats = jax.device_get(variables["batch_stats"])
    params = jax.device_get(variables["params"])
    checked = 0
    for entries in stats.values():
        for key, sigma in entries.items():
            if not key.endswith("/sigma"):
                continue
            layer_name, param_name = key[: -len("/sigma")].rsplit("/", 1)
            kernel = params[layer_name][param_name]
            matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1])
            true_norm = np.linalg.svd(matrix, compute_uv=False)[0]
            # The layer's weight is kernel / sigma; its largest singular value should be 1.
            np.testing.assert_allclose(true_norm / float(sigma), 1.0, rtol=2e-2, err_msg=key)
            checked += 1
    assert checked >= 3  # every weighted layer of D


def test_spectral_norm_state_is_part_of_the_training_state():
    config = _model_config(d_norm="none", spectral_norm=True)
    state = jax.eval_shape(setup.make_init(config, num_classes=2), jax.random.key(0))
    names = {key for entries in state.d_batch_stats.values() for key in entries}
    assert any(name.endswith("/u") for name in names)
    assert any(name.endswith("/sigma") for name in names)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"model.spectral_norm": True},
            r"spectral_norm=True cannot be combined with --config.model.d_norm=batch: BatchNorm",
        ),
        (
            {"train.loss": "wgan_gp"},
            r"loss=wgan_gp cannot be combined with --config.model.d_norm=batch",
        ),
        (
            {"model.conditioning": "acgan"},
            r"conditioning=acgan needs both classes in one GAN.*per_class=false",
        ),
        ({"train.r1_weight": -1.0}, r"--config.train.r1_weight=-1.0 must be >= 0"),
        ({"train.mode_seeking": -0.5}, r"--config.train.mode_seeking=-0.5 must be >= 0"),
        ({"train.mode_seeking_size": -1}, r"--config.train.mode_seeking_size=-1 must be >= 0"),
        (
            {"train.mode_seeking_size": 12},
            r"mode_seeking_size=12 must divide the image size 32 \(e.g. 8 for 4 x 4 blocks\)",
        ),
        ({"train.mode_seeking_size": 64}, r"mode_seeking_size=64 must divide the image size 32"),
        ({"train.ada_target": 0.0}, r"--config.train.ada_target=0.0 must lie in \(0, 1\)"),
        ({"train.ada_target": 1.5}, r"--config.train.ada_target=1.5 must lie in \(0, 1\)"),
        (
            {"train.ada_augment": "color,rotate"},
            r"'rotate' does not exist; valid: color, translation, cutout .*ada_augment",
        ),
        ({"model.d_norm": "group"}, r"d_norm='group' is unknown; use one of: batch, layer"),
        ({"train.num_images": -1.0}, r"num_images=-1.0 must be >= 0"),
    ],
)
def test_options_that_cannot_work_are_refused_by_name(tmp_path, settings, message):
    config = test_config.get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    for path, value in settings.items():
        section, key = path.split(".")
        config[section][key] = value
    with pytest.raises(errors.ConfigError, match=message):
        gan_loop.validate(config)
    assert not (tmp_path / "run").exists()


def test_ada_controller_moves_p_by_its_formula_every_interval():
    options = steps.StepOptions(ada_target=0.6, ada_interval=2, ada_kimg=0.1)
    state = _state(ada=True)
    assert float(state.ada_p) == 0.0
    # batch 8, interval 2: each adjustment moves p by 8 * 2 / 100 = 0.16.
    adapt = functools.partial(steps._adapt_augmentation, global_batch=8, options=options)
    state = adapt(state.replace(step=jnp.int32(0)), jnp.float32(1.0))  # not yet adjusted
    assert float(state.ada_p) == 0.0 and float(state.ada_signs) == 1.0
    state = adapt(state.replace(step=jnp.int32(1)), jnp.float32(0.8))  # r_t 0.9 > 0.6: up
    np.testing.assert_allclose(float(state.ada_p), 0.16, rtol=1e-6)
    assert float(state.ada_signs) == 0.0
    state = adapt(state.replace(step=jnp.int32(2)), jnp.float32(0.0))
    state = adapt(state.replace(step=jnp.int32(3)), jnp.float32(0.2))  # r_t 0.1 < 0.6: down
    np.testing.assert_allclose(float(state.ada_p), 0.0, atol=1e-6)
    state = adapt(state.replace(step=jnp.int32(4)), jnp.float32(-1.0))
    state = adapt(state.replace(step=jnp.int32(5)), jnp.float32(-1.0))  # p stays in [0, 1]
    assert float(state.ada_p) == 0.0


@functools.cache
def _state(ada=False, **model):
    config = _model_config(**model)
    config.train.ada = ada
    config.optim.d_lr = 2e-3
    return jax.jit(setup.make_init(config, num_classes=2))(jax.random.key(0, impl="rbg"))


def _real_batch():
    images = jax.random.uniform(jax.random.key(5, impl="rbg"), (8, SIZE, SIZE, 1), minval=-1.0)
    return {"image": images, "label": jnp.arange(8, dtype=jnp.int32) % 2}


@pytest.mark.slow  # compiles a GAN or classifier train step: 5-15 s on 2 cores
def test_ada_p_rises_while_d_overfits_a_fixed_real_batch():
    options = steps.StepOptions(ada=True, ada_interval=1, ada_kimg=0.2)  # up to 0.04 per step
    train_step = jax.jit(functools.partial(steps.gan_train_step, options=options))
    state, batch = _state(ada=True), _real_batch()
    history = []
    for step in range(12):
        state, metrics = train_step(state, batch, jax.random.key(step, impl="rbg"))
        history.append((float(metrics["d/real_sign"]), float(metrics["ada/p"])))
    signs, ps = np.array(history).T
    # Each step p moves 0.04 towards more augmentation while D calls the reals real more often
    # than the target, and back otherwise (augmenting is what makes D's sign fall again).
    expected = np.clip(np.concatenate([[0.0], ps[:-1]]) + 0.04 * np.sign(signs - 0.6), 0, 1)
    np.testing.assert_allclose(ps, expected, atol=1e-6, err_msg=str(history))
    # D learns to call the fixed batch real, so p rises.
    assert (signs > 0.6).sum() >= 8 and ps[-1] >= 0.12, history


@pytest.mark.slow
def test_ada_p_survives_stop_and_resume(tmp_path_factory, data_dir):
    def config(num_epochs):
        job = test_config.get_config()
        job.data.data_dir = data_dir
        job.train.per_class = False
        job.train.num_epochs = num_epochs
        job.train.ada = True
        job.train.ada_interval = 1
        job.train.ada_kimg = 0.5
        return job

    def final_state(workdir):
        run = runs.Run(workdir)
        abstract, _ = setup.abstract_state(run.load_config(), 2, sharding.make_mesh())
        checkpoints = run.checkpointer("conditional")
        state = checkpoints.restore(checkpoints.latest_epoch(), abstract)
        checkpoints.close()
        return jax.device_get(state)

    straight = tmp_path_factory.mktemp("ada_straight")
    gan_loop.train_and_evaluate(config(2), straight)
    resumed = tmp_path_factory.mktemp("ada_resumed")
    gan_loop.train_and_evaluate(config(1), resumed)
    saved_p = float(final_state(resumed).ada_p)
    gan_loop.train_and_evaluate(config(2), resumed)

    expected, actual = final_state(straight), final_state(resumed)
    assert saved_p > 0  # p had moved before the stop, so a reset to 0 would show
    assert float(actual.ada_p) == float(expected.ada_p) and float(expected.ada_p) != saved_p
    jax.tree.map(np.testing.assert_array_equal, expected.d_params, actual.d_params)


@pytest.mark.slow  # 7-22 s of compilation: the fast tier's heaviest
def test_lazy_r1_turns_chosen_on_the_host_equal_the_in_step_cond():
    options = steps.StepOptions(r1_weight=1.0, r1_every=2)
    assert [options.at_step(step).r1_now for step in range(5)] == [True, False, True, False, True]
    assert steps.StepOptions().at_step(3) == steps.StepOptions()  # no R1: one compiled step
    train_step = jax.jit(steps.gan_train_step, static_argnames="options")
    batch, key = _real_batch(), jax.random.key(3, impl="rbg")
    r1_values = []
    for step in (0, 1):
        state = _state().replace(step=jnp.int32(step))
        by_cond, cond_metrics = train_step(state, batch, key, options=options)
        by_host, host_metrics = train_step(state, batch, key, options=options.at_step(step))
        jax.tree.map(
            functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
            (by_cond.d_params, cond_metrics),
            (by_host.d_params, host_metrics),
        )
        r1_values.append(float(host_metrics["d/r1"]))
    assert r1_values[0] > 0 and r1_values[1] == 0.0, r1_values
    # R1's turn changes D's update; the skipped turn is the step without R1.
    without, _ = train_step(_state().replace(step=jnp.int32(1)), batch, key)
    jax.tree.map(np.testing.assert_array_equal, without.d_params, by_host.d_params)


@pytest.mark.slow  # 7-22 s of compilation: the fast tier's heaviest
def test_acgan_adds_the_class_cross_entropy_to_both_losses():
    state, batch = _state(conditioning="acgan"), _real_batch()
    key = jax.random.key(7, impl="rbg")

    def g_loss(weight):
        options = steps.StepOptions(acgan_weight=weight)
        _, metrics = jax.jit(functools.partial(steps.generator_step, options=options))(
            state, batch, key
        )
        return float(metrics["loss/g"])

    # The fakes and D's outputs on them, as the G step computes them.
    fakes, _, _ = steps._generate_for_training(state, batch["label"], key, None)
    _, dropout_key = steps._step_keys(key, None)
    logits, class_logits, _ = steps._d_outputs(
        state.discriminator,
        state.d_params,
        state.d_batch_stats,
        fakes,
        batch["label"],
        dropout_key,
    )
    cross_entropy = -jnp.mean(
        jnp.take_along_axis(jax.nn.log_softmax(class_logits), batch["label"][:, None], axis=1)
    )
    np.testing.assert_allclose(g_loss(0.0), float(losses.generator_loss(logits)), rtol=1e-5)
    np.testing.assert_allclose(
        g_loss(2.0), float(losses.generator_loss(logits) + 2 * cross_entropy), rtol=1e-5
    )

    # D's class head learns from real and fake labels: trained, it tells the classes apart.
    d_step = jax.jit(steps.discriminator_step)
    trained = state
    for step in range(15):
        trained, _ = d_step(trained, batch, jax.random.key(step, impl="rbg"))
    before = state.d_params["classifier"]["kernel"]
    assert not np.allclose(before, trained.d_params["classifier"]["kernel"])


def test_mode_seeking_ratio_counts_pairs_of_one_class():
    # Pairs (0, 1), (2, 3), (4, 5): the middle one mixes classes and does not count.
    fakes = jnp.zeros((6, 2, 2, 1)).at[1].set(0.5).at[3].set(9.0).at[5].set(-0.25)
    z = jnp.zeros((6, 4)).at[1].set(1.0).at[3].set(7.0).at[5].set(0.25)
    labels = jnp.array([0, 0, 0, 1, 1, 1])
    # (0.5 + 0.25) / (1.0 + 0.25)
    np.testing.assert_allclose(float(steps.mode_seeking_ratio(fakes, z, labels)), 0.6, rtol=1e-6)
    # One film whatever z is: ratio 0, so the term lambda / (ratio + 1e-5) is at its largest.
    assert float(steps.mode_seeking_ratio(jnp.zeros_like(fakes), z, labels)) == 0.0
    # No pair of one class (and an odd last image, left out): 0, not a division by zero.
    assert float(steps.mode_seeking_ratio(fakes[:5], z[:5], jnp.array([0, 1, 0, 1, 0]))) == 0.0


def test_mode_seeking_at_a_coarse_size_ignores_noise_and_sees_layout():
    rng = np.random.default_rng(0)
    z = jnp.asarray(rng.normal(size=(2, 8)), jnp.float32)
    labels = jnp.zeros(2, jnp.int32)
    # Two films of one layout whose pixels differ by a +-1 checkerboard: far apart pixel by
    # pixel, equal in 2 x 2 blocks.
    checker = np.indices((4, 4)).sum(axis=0) % 2 * 2.0 - 1.0
    noisy = jnp.asarray(np.stack([checker, -checker])[..., None], jnp.float32)
    assert float(steps.mode_seeking_ratio(noisy, z, labels)) > 0.5
    assert float(steps.mode_seeking_ratio(noisy, z, labels, size=2)) == 0.0
    # Two layouts (left half bright against right half bright, every pixel 1 apart): as far
    # apart at either size.
    halves = np.zeros((2, 4, 4, 1), np.float32)
    halves[0, :, :2], halves[1, :, 2:] = 1.0, 1.0
    distance = float(jnp.mean(jnp.abs(z[0] - z[1])))
    for size in (0, 2):
        np.testing.assert_allclose(
            float(steps.mode_seeking_ratio(jnp.asarray(halves), z, labels, size=size)),
            1.0 / distance,
            rtol=1e-6,
        )


@pytest.mark.slow  # compiles two G steps: 5-15 s on 2 cores
def test_mode_seeking_adds_its_term_to_gs_loss_and_moves_g_apart():
    state, batch = _state(), _real_batch()
    batch["label"] = jnp.zeros(8, jnp.int32)  # one class: every pair counts
    key = jax.random.key(3, impl="rbg")

    def g_step(weight):
        options = steps.StepOptions(mode_seeking=weight)
        return jax.jit(functools.partial(steps.generator_step, options=options))(state, batch, key)

    plain_state, plain = g_step(0.0)
    seeking_state, seeking = g_step(0.01)
    assert "g/mode_seeking_ratio" not in plain
    fakes, _, _ = steps._generate_for_training(state, batch["label"], key, None)
    latent_key, _ = steps._step_keys(key, None)
    z = steps._step_latents(latent_key, 8, state.nz, None)
    ratio = float(steps.mode_seeking_ratio(fakes, z, batch["label"]))
    assert ratio > 0
    np.testing.assert_allclose(float(seeking["g/mode_seeking_ratio"]), ratio, rtol=1e-5)
    np.testing.assert_allclose(
        float(seeking["loss/g"]), float(plain["loss/g"]) + 0.01 / (ratio + 1e-5), rtol=1e-5
    )

    # Its gradient alone spreads the fakes: with D's term equal in both, the step with the
    # term leaves the same z's films further apart.
    def spread(new_state):
        moved, _, _ = steps._generate_for_training(new_state, batch["label"], key, None)
        return float(steps.mode_seeking_ratio(moved, z, batch["label"]))

    assert spread(seeking_state) > spread(plain_state)


@pytest.mark.parametrize(
    ("kimg", "per_epoch", "expected"), [(0, 100, 2), (10, 100, 100), (10, 200, 50), (1, 64, 16)]
)
def test_image_budget_is_rounded_up_to_whole_epochs(kimg, per_epoch, expected):
    config = test_config.get_config()  # num_epochs 2
    config.train.num_images = kimg
    assert gan_loop.num_epochs_for(config, per_epoch) == expected


@pytest.mark.slow
def test_a_subset_per_class_trains_on_that_many_images_and_reports_images_shown(
    tmp_path_factory, data_dir
):
    """Also the training loop's lazy R1: R1 on steps 0, r1_every, 2 * r1_every, ..."""
    config = test_config.get_config()
    config.data.data_dir = data_dir
    config.data.train_images_per_class = 8
    config.train.num_images = 0.04  # 40 images = 5 epochs of 8
    config.train.r1_weight = 1.0
    config.train.r1_every = 2
    workdir = tmp_path_factory.mktemp("subset")
    results = gan_loop.train_and_evaluate(config, workdir)
    for result in results.values():
        assert result.epochs == 5 and result.steps == 5 and result.kimg == 0.04
    records = [
        json.loads(line)
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if '"NORMAL"' in line
    ]
    assert records and records[-1]["kimg"] == 0.04
    # metrics.jsonl's "step" counts steps done: step s + 1 ran as state.step == s.
    assert [record["step"] - 1 for record in records if record["d/r1"] > 0] == [0, 2, 4], records
    config.data.train_images_per_class = 10_000
    with pytest.raises(errors.DataError, match=r"train_images_per_class=10000: Class 0 has \d+"):
        gan_loop.validate(config)
