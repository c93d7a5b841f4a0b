"""GAN modules: parameter shapes and counts, outputs, conditioning, initialisation, errors."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import dcgan as dcgan_config
from experiments.configs import fcgan as fcgan_config
from experiments.configs import sngan as sngan_config
from experiments.configs import sngan_test as sngan_test_config
from experiments.configs import test as test_config
from xraygan_jax.models import gan


def _key(seed: int) -> jax.Array:
    """A test key. "rbg" because XLA CPU compiles each threefry draw of a new shape slowly, which
    dominated these tests (docs/performance.md, section "Test-suite compile times")."""
    return jax.random.key(seed, impl="rbg")


def _count(params) -> int:
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def _abstract_variables(module, *inputs):
    return jax.eval_shape(lambda key: module.init(key, *inputs, train=False), _key(0))


def _tiny_model_config(kind="dcgan", conditioning="plane"):
    config = test_config.get_config().model
    config.kind = kind
    config.conditioning = conditioning
    return config


def test_dcgan_generator_matches_pytorch_tutorial_shapes():
    """64x64, nz=100, ngf=64: PyTorch's weights, transposed to (kH, kW, in, out)."""
    config = dcgan_config.get_config().model
    generator, _ = gan.make_gan(config, image_size=64, num_classes=2)
    variables = _abstract_variables(generator, jnp.zeros((1, 100)), jnp.zeros((1,), jnp.int32))
    params = variables["params"]
    assert params["project"]["kernel"].shape == (100 + 50, 4 * 4 * 512)
    assert [params[f"UpConv2x_{index}"]["kernel"].shape for index in range(4)] == [
        (4, 4, 512, 256),
        (4, 4, 256, 128),
        (4, 4, 128, 64),
        (4, 4, 64, 1),
    ]
    # The tutorial's G with nc=1 has 3,574,656 parameters; conditioning widens the first layer
    # by embed_dim inputs and adds the 2 x 50 embedding.
    tutorial = 3_574_656
    assert _count(params) == tutorial + 50 * 4 * 4 * 512 + 2 * 50
    assert variables["batch_stats"]["BatchNorm_0"]["mean"].shape == (512,)


def test_dcgan_discriminator_matches_pytorch_tutorial_shapes():
    config = dcgan_config.get_config().model
    _, discriminator = gan.make_gan(config, image_size=64, num_classes=2)
    variables = _abstract_variables(
        discriminator, jnp.zeros((1, 64, 64, 1)), jnp.zeros((1,), jnp.int32)
    )
    params = variables["params"]
    assert [params[f"DownConv2x_{index}"]["kernel"].shape for index in range(4)] == [
        (4, 4, 2, 64),  # image + label plane
        (4, 4, 64, 128),
        (4, 4, 128, 256),
        (4, 4, 256, 512),
    ]
    assert params["Conv_0"]["kernel"].shape == (4, 4, 512, 1)  # the logit
    # No BatchNorm after the first convolution, as the tutorial.
    assert sorted(variables["batch_stats"]) == ["BatchNorm_0", "BatchNorm_1", "BatchNorm_2"]
    # The tutorial's D with nc=1 has 2,763,520 parameters; the plane adds 1 input channel to
    # the first convolution and the 2 x 64*64 label embedding.
    assert _count(params) == 2_763_520 + 4 * 4 * 64 + 2 * 64 * 64


@pytest.mark.parametrize(
    ("conditioning", "expected_d_count"),
    [
        # plane 2*32*32, convs 16*(2*8 + 8*16 + 16*32 + 32*1), BatchNorms 2*(16 + 32)
        ("plane", 2048 + 16 * (16 + 128 + 512 + 32) + 96),
        # convs 16*(1*8 + 8*16 + 16*32 + 32*1), BatchNorms, projection embedding 2*32
        ("projection", 16 * (8 + 128 + 512 + 32) + 96 + 64),
    ],
)
def test_tiny_dcgan_parameter_counts(conditioning, expected_d_count):
    config = _tiny_model_config(conditioning=conditioning)
    generator, discriminator = gan.make_gan(config, image_size=32, num_classes=2)
    labels = jnp.zeros((1,), jnp.int32)
    g_params = _abstract_variables(generator, jnp.zeros((1, 8)), labels)["params"]
    d_params = _abstract_variables(discriminator, jnp.zeros((1, 32, 32, 1)), labels)["params"]
    # 32x32 has 3 up-convolutions: 4x4x32 -> 8x8x16 -> 16x16x8 -> 32x32x1.
    expected_g_count = 2 * 4 + 12 * 16 * 32 + 16 * (32 * 16 + 16 * 8 + 8 * 1) + 2 * (32 + 16 + 8)
    assert _count(g_params) == expected_g_count
    assert _count(d_params) == expected_d_count


def test_fcgan_parameter_counts():
    config = fcgan_config.get_config().model
    generator, discriminator = gan.make_gan(config, image_size=28, num_classes=2)
    labels = jnp.zeros((1,), jnp.int32)
    g_params = _abstract_variables(generator, jnp.zeros((1, 100)), labels)["params"]
    d_params = _abstract_variables(discriminator, jnp.zeros((1, 28, 28, 1)), labels)["params"]
    widths = [150, 256, 512, 1024, 2048, 28 * 28]
    dense = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert _count(g_params) == 2 * 50 + dense + 2 * (256 + 512 + 1024 + 2048)
    widths = [2 * 28 * 28, 1024, 512, 256, 128, 1]
    dense = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert _count(d_params) == 2 * 28 * 28 + dense


def test_dcgan_128_shapes_by_eval_shape():
    config = _tiny_model_config()
    generator, discriminator = gan.make_gan(config, image_size=128, num_classes=2)
    z, labels = jnp.zeros((2, 8)), jnp.zeros((2,), jnp.int32)
    g_variables = _abstract_variables(generator, z, labels)
    # 128x128 has 5 up-convolutions from 4x4 x ngf*16.
    assert g_variables["params"]["project"]["kernel"].shape == (12, 16 * 8 * 16)
    assert "UpConv2x_4" in g_variables["params"]
    images = jax.eval_shape(lambda v: generator.apply(v, z, labels, train=False), g_variables)
    assert images.shape == (2, 128, 128, 1)
    d_variables = _abstract_variables(discriminator, jnp.zeros((2, 128, 128, 1)), labels)
    outputs = jax.eval_shape(
        lambda v: discriminator.apply(v, jnp.zeros((2, 128, 128, 1)), labels, train=False),
        d_variables,
    )
    assert outputs.logits.shape == (2,) and outputs.class_logits is None


@pytest.mark.parametrize(
    ("kind", "conditioning"),
    [
        ("dcgan", "plane"),
        ("dcgan", "projection"),
        ("dcgan", "acgan"),
        ("fcgan", "plane"),
        ("fcgan", "projection"),
        ("fcgan", "acgan"),
        ("sngan", "projection"),
        ("sngan", "acgan"),
    ],
)
def test_every_discriminator_returns_a_d_output(kind, conditioning):
    config = _sngan_model_config() if kind == "sngan" else _tiny_model_config(kind)
    config.conditioning = conditioning
    _, discriminator = gan.make_gan(config, image_size=32, num_classes=3)
    images, labels = jnp.zeros((2, 32, 32, 1)), jnp.array([0, 2], jnp.int32)
    variables = _abstract_variables(discriminator, images, labels)
    outputs = jax.eval_shape(
        lambda v: discriminator.apply(v, images, labels, train=False), variables
    )
    assert isinstance(outputs, gan.DOutput) and outputs.logits.shape == (2,)
    if conditioning == "acgan":
        assert outputs.class_logits.shape == (2, 3)
    else:
        assert outputs.class_logits is None


@functools.cache
def _forward(kind: str, conditioning: str, image_size: int) -> dict:
    """Initialises a tiny G and D and runs them, in one compilation (not one per eager op).

    Latents and real images come in pairs, each once with label 0 and once with label 1.
    """
    config = _tiny_model_config(kind=kind, conditioning=conditioning)
    generator, discriminator = gan.make_gan(config, image_size=image_size, num_classes=2)
    labels = jnp.array([0, 1, 0, 1], jnp.int32)

    @jax.jit
    def forward(key):
        z_key, image_key, g_key, d_key = jax.random.split(key, 4)
        z = jnp.repeat(jax.random.normal(z_key, (2, 8)), 2, axis=0)
        g_variables = generator.init(g_key, z, labels, train=False)
        eval_images = generator.apply(g_variables, z, labels, train=False)
        train_images, _ = generator.apply(
            g_variables, z, labels, train=True, mutable=["batch_stats"]
        )
        shape = (2, image_size, image_size, 1)
        real = jnp.repeat(jax.random.uniform(image_key, shape, minval=-1.0), 2, axis=0)
        d_variables = discriminator.init(d_key, real, labels, train=False)
        # The DC discriminator in train mode, as GAN training runs it (at initialisation its
        # running statistics shrink every logit to ~1e-4); the FC one has no BatchNorm and runs
        # without dropout here so that rows compare.
        outputs, _ = discriminator.apply(
            d_variables, real, labels, train=kind == "dcgan", mutable=["batch_stats"]
        )
        return {
            "g_params": g_variables["params"],
            "eval_images": eval_images,
            "train_images": train_images,
            "logits": outputs.logits,
        }

    return forward(_key(0))


VARIANTS = [
    ("dcgan", "plane", 32),
    ("dcgan", "plane", 64),
    ("dcgan", "projection", 32),
    ("fcgan", "plane", 32),
    ("fcgan", "projection", 64),
]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda variant: "-".join(map(str, variant)))
def forward_variant(request):
    return request.param, _forward(*request.param)


def test_outputs_have_shape_and_range(forward_variant):
    (_, _, image_size), outputs = forward_variant
    for images in (outputs["eval_images"], outputs["train_images"]):
        assert images.shape == (4, image_size, image_size, 1)
        assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
    # Train mode normalises by batch statistics: outputs of order one, not shrunk to ~0.
    assert float(jnp.std(outputs["train_images"])) > 0.05
    assert outputs["logits"].shape == (4,)
    assert bool(jnp.all(jnp.isfinite(outputs["logits"])))


def test_labels_change_outputs(forward_variant):
    _, outputs = forward_variant
    # Train mode: at initialisation the eval-mode output is ~1e-6 everywhere.
    images, logits = outputs["train_images"], outputs["logits"]
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) > 1e-3
    assert abs(float(logits[0] - logits[1])) > 1e-3
    assert abs(float(logits[2] - logits[3])) > 1e-3


@pytest.mark.parametrize("conditioning", ["plane", "projection"])
def test_dcgan_initialisation_statistics(conditioning):
    params = _forward("dcgan", conditioning, 32)["g_params"]
    kernels = jnp.concatenate(
        [params["project"]["kernel"].ravel()]
        + [params[name]["kernel"].ravel() for name in params if name.startswith("UpConv2x")]
    )
    assert kernels.size > 10_000
    assert abs(float(jnp.mean(kernels))) < 1e-3
    assert abs(float(jnp.std(kernels)) - 0.02) < 5e-4
    batch_norms = [params[name] for name in params if name.startswith("BatchNorm")]
    scales = jnp.concatenate([layer["scale"] for layer in batch_norms])
    assert abs(float(jnp.mean(scales)) - 1.0) < 0.01
    assert 0.01 < float(jnp.std(scales)) < 0.03
    for layer in batch_norms:
        np.testing.assert_array_equal(layer["bias"], 0.0)


def test_fcgan_batch_norm_follows_keras_momentum_and_epsilon():
    """Keras' momentum 0.8 means running = 0.8 * running + 0.2 * batch here too; eps 1e-3."""
    config = fcgan_config.get_config().model
    config.g_features = (6,)
    generator, _ = gan.make_gan(config, image_size=4, num_classes=2)
    z = jax.random.normal(_key(0), (5, 100))
    labels = jnp.array([0, 1, 0, 1, 1], jnp.int32)
    variables = jax.jit(lambda key: generator.init(key, z, labels, train=False))(_key(1))
    params = variables["params"]
    _, updated = jax.jit(
        lambda variables: generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])
    )(variables)
    embedded = params["label_embedding"]["embedding"][labels]
    hidden = jnp.concatenate([z, embedded], -1) @ params["Dense_0"]["kernel"]
    hidden = jax.nn.leaky_relu(hidden + params["Dense_0"]["bias"], 0.2)
    stats = updated["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], 0.2 * jnp.mean(hidden, 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.8 + 0.2 * jnp.var(hidden, 0), rtol=1e-4)
    assert generator.bn_momentum == 0.8
    dc_generator, _ = gan.make_gan(dcgan_config.get_config().model, image_size=64, num_classes=2)
    assert dc_generator.bn_momentum == 0.9  # PyTorch's momentum 0.1


def test_fc_discriminator_dropout_is_random_in_training_only():
    config = _tiny_model_config(kind="fcgan")
    _, discriminator = gan.make_gan(config, image_size=32, num_classes=2)
    images = jax.random.uniform(_key(0), (4, 32, 32, 1), minval=-1, maxval=1)
    labels = jnp.zeros((4,), jnp.int32)
    variables = jax.jit(lambda key: discriminator.init(key, images, labels, train=False))(_key(1))

    @functools.partial(jax.jit, static_argnames="train")
    def logits(key, train):
        outputs = discriminator.apply(variables, images, labels, train=train, rngs={"dropout": key})
        return outputs.logits

    assert float(jnp.max(jnp.abs(logits(_key(0), True) - logits(_key(1), True)))) > 1e-6
    np.testing.assert_array_equal(logits(_key(0), True), logits(_key(0), True))
    np.testing.assert_array_equal(logits(_key(0), False), logits(_key(1), False))


def test_fcgan_takes_any_image_size():
    config = _tiny_model_config(kind="fcgan")
    generator, _ = gan.make_gan(config, image_size=48, num_classes=3)
    z, labels = jnp.zeros((2, 8)), jnp.array([0, 2], jnp.int32)
    images = jax.eval_shape(
        lambda key: generator.apply(
            generator.init(key, z, labels, train=False), z, labels, train=False
        ),
        _key(0),
    )
    assert images.shape == (2, 48, 48, 1)


def test_unsupported_image_size_is_refused():
    with pytest.raises(
        ValueError,
        match="image_size 48 is not supported by the dcgan architecture; supported: 32, 64, 128",
    ):
        gan.make_gan(_tiny_model_config(), image_size=48, num_classes=2)


def test_unknown_kind_is_refused():
    config = _tiny_model_config(kind="resgan")
    with pytest.raises(
        ValueError,
        match=r"model kind 'resgan' is unknown; use one of: dcgan, fcgan, sngan "
        r"\(--config.model.kind\)",
    ):
        gan.make_gan(config, image_size=32, num_classes=2)


def test_unknown_conditioning_is_refused():
    config = _tiny_model_config(conditioning="concat")
    with pytest.raises(
        ValueError, match="conditioning 'concat' is unknown; use one of: plane, projection"
    ):
        gan.make_gan(config, image_size=32, num_classes=2)


# The minibatch standard deviation channel (model.minibatch_std).


def _minibatch_stddev_reference(x: np.ndarray, group: int) -> np.ndarray:
    """Karras et al.'s channel written out in NumPy: consecutive groups of `group` images."""
    channel = np.empty(x.shape[:3] + (1,), np.float64)
    for start in range(0, x.shape[0], group):
        members = x[start : start + group].astype(np.float64)
        channel[start : start + group] = np.sqrt(members.var(axis=0) + 1e-8).mean()
    return np.concatenate([x, channel], axis=-1)


@pytest.mark.parametrize(("batch", "group_size", "group"), [(8, 4, 4), (6, 4, 3), (7, 4, 1)])
def test_minibatch_stddev_is_the_groups_mean_feature_spread(batch, group_size, group):
    x = np.random.default_rng(0).normal(size=(batch, 4, 4, 3)).astype(np.float32)
    x[: min(group, batch)] *= 3.0  # the first group spreads more: its channel must be larger
    got = np.asarray(gan.minibatch_stddev(jnp.asarray(x), group_size))
    np.testing.assert_allclose(got, _minibatch_stddev_reference(x, group), rtol=1e-5, atol=1e-6)
    if group > 1:
        assert got[0, 0, 0, -1] > got[-1, 0, 0, -1]


def test_minibatch_std_makes_each_logit_see_its_group_only():
    """With the channel, changing image 1 moves image 0's logit (same group) and not image 4's
    (the next group); without it, D scores every image by itself (d_norm none)."""
    images = jax.random.uniform(_key(1), (8, 32, 32, 1), minval=-1.0, maxval=1.0)
    labels = jnp.zeros(8, jnp.int32)
    changed = images.at[1].set(-images[1])
    moved = {}
    for group in (0, 4):
        config = _tiny_model_config()
        config.d_norm = "none"
        config.minibatch_std = group
        _, discriminator = gan.make_gan(config, image_size=32, num_classes=2)
        variables = discriminator.init(_key(0), images, labels, train=False)
        before = discriminator.apply(variables, images, labels, train=False).logits
        after = discriminator.apply(variables, changed, labels, train=False).logits
        moved[group] = np.abs(np.asarray(after - before))
    assert moved[0][0] == 0 and moved[0][4] == 0
    assert moved[4][0] > 0 and moved[4][4] == 0  # exactly: other groups do not enter


# The output noise of the DC generator (model.output_noise).


def _noisy_generator():
    config = _tiny_model_config()
    config.output_noise = True
    generator, _ = gan.make_gan(config, image_size=32, num_classes=2)
    z = jax.random.normal(_key(0), (4, config.nz))
    labels = jnp.array([0, 1, 0, 1])
    return generator, generator.init(_key(1), z, labels, train=False), z, labels


def test_latent_noise_is_a_function_of_each_images_own_latent():
    z = jax.random.normal(_key(0), (6, 100))
    noise = np.asarray(gan.latent_noise(z, (16, 16, 1)))
    assert noise.shape == (6, 16, 16, 1)
    # The same latent gives the same noise in any batch; another latent other noise.
    np.testing.assert_array_equal(noise[2:4], np.asarray(gan.latent_noise(z[2:4], (16, 16, 1))))
    assert not np.allclose(noise[0], noise[1])
    # Standard normal: 1,536 draws, mean within 0.1 and standard deviation within 0.1 of 0 and 1.
    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 1.0) < 0.1


def test_output_noise_changes_each_image_by_its_own_noise_only():
    """G with output noise is still a function of (z, label): a batch's images are those of
    each latent alone; the noise's learned offset moves the images, so G does add it."""
    generator, variables, z, labels = _noisy_generator()
    whole = generator.apply(variables, z, labels, train=False)
    alone = generator.apply(variables, z[1:2], labels[1:2], train=False)
    np.testing.assert_allclose(np.asarray(whole[1:2]), np.asarray(alone), atol=1e-6)
    assert float(jnp.min(whole)) >= -1.0 and float(jnp.max(whole)) <= 1.0
    louder = jax.tree.map(lambda x: x, variables)  # a copy of the dicts, leaves shared
    louder["params"]["output_noise"]["offset"] = jnp.asarray(1.0)
    changed = generator.apply(louder, z, labels, train=False)
    assert float(jnp.max(jnp.abs(changed - whole))) > 0.05


def test_output_noise_adds_two_parameters_and_one_output_channel():
    generator, variables, _, _ = _noisy_generator()
    config = _tiny_model_config()
    plain, _ = gan.make_gan(config, image_size=32, num_classes=2)
    plain_variables = _abstract_variables(plain, jnp.zeros((2, config.nz)), jnp.zeros(2, jnp.int32))
    last_layer_channels = 4 * 4 * config.ngf  # the 4x4 up-convolution's kernel per output channel
    assert _count(variables["params"]) - _count(plain_variables["params"]) == (
        last_layer_channels + 3 * 3 + 1
    )


# The DC generator's upsampling (model.g_upsample).


def test_resize_upsampling_is_nearest_neighbour_then_a_3x3_convolution():
    """With g_upsample=resize every up layer is a 3x3 kernel (C_in, C_out) where the transposed
    form has a 4x4 one, and a constant feature map stays constant away from the border: there
    is no stride-2 overlap to leave a checkerboard."""
    config = _tiny_model_config()
    config.g_upsample = "resize"
    generator, _ = gan.make_gan(config, image_size=32, num_classes=2)
    z, labels = jnp.zeros((2, config.nz)), jnp.zeros(2, jnp.int32)
    shapes = {
        k: v.shape for k, v in _flat(_abstract_variables(generator, z, labels)["params"]).items()
    }
    up_kernels = sorted(shape for name, shape in shapes.items() if name.startswith("Conv_"))
    assert up_kernels == [(3, 3, 8, 1), (3, 3, 16, 8), (3, 3, 32, 16)]
    assert not any(name.startswith("UpConv2x") for name in shapes)
    images = generator.apply(
        generator.init(_key(0), z, labels, train=False), z, labels, train=False
    )
    assert images.shape == (2, 32, 32, 1)
    # The building block itself: constant in, constant out (interior), unlike the 4x4 stride-2
    # transposed convolution of the same input.
    constant = jnp.ones((1, 8, 8, 4))
    conv = flax.linen.Conv(3, (3, 3), padding="SAME", use_bias=False)
    resized = conv.apply(conv.init(_key(1), constant), gan._upsample_nearest(constant))
    interior = np.asarray(resized[0, 1:-1, 1:-1])
    np.testing.assert_allclose(interior, np.broadcast_to(interior[0, 0], interior.shape), rtol=1e-5)


# The DC-only options, refused with a message naming the flag.


@pytest.mark.parametrize(
    ("kind", "key", "value", "message"),
    [
        ("dcgan", "minibatch_std", -1, r"--config.model.minibatch_std=-1 must be a whole number "
         r"of images, at least 0 \(0 leaves the channel out; StyleGAN uses 4\)"),
        ("sngan", "minibatch_std", 4, r"--config.model.minibatch_std=4 is built for "
         r"--config.model.kind=dcgan only, not sngan: .* set --config.model.minibatch_std=0\."),
        ("fcgan", "minibatch_std", 4, r"--config.model.minibatch_std=4 is built for "
         r"--config.model.kind=dcgan only, not fcgan"),
        ("sngan", "output_noise", True, r"--config.model.output_noise=True is built for "
         r"--config.model.kind=dcgan only, not sngan: .* set --config.model.output_noise=False\."),
        ("fcgan", "output_noise", True, r"--config.model.output_noise=True is built for "
         r"--config.model.kind=dcgan only, not fcgan"),
        ("dcgan", "g_upsample", "bilinear", r"--config.model.g_upsample='bilinear' is unknown; "
         r"use one of: transposed, resize"),
        ("sngan", "g_upsample", "resize", r"--config.model.g_upsample=resize is built for "
         r"--config.model.kind=dcgan only, not sngan: .* set --config.model.g_upsample="
         r"transposed\."),
        ("fcgan", "g_upsample", "resize", r"--config.model.g_upsample=resize is built for "
         r"--config.model.kind=dcgan only, not fcgan"),
    ],
)  # fmt: skip
def test_an_option_the_model_cannot_take_is_refused(kind, key, value, message):
    config = _sngan_model_config() if kind == "sngan" else _tiny_model_config(kind=kind)
    config[key] = value
    with pytest.raises(ValueError, match=message):
        gan.check_model_options(config)


# The SN-ResNet cGAN (kind "sngan").


def _sngan_model_config(**fields):
    config = sngan_test_config.get_config().model
    for name, value in fields.items():
        config[name] = value
    return config


def _flat(tree) -> dict:
    return {"/".join(path): leaf for path, leaf in flax.traverse_util.flatten_dict(tree).items()}


def test_sngan_has_sngan_widths_at_64_and_128():
    """Miyato & Koyama's widths at base 64: G 1024 -> 512 -> ... -> 64 at 64 px (1024 twice at
    128), D 64 -> 1024, by eval_shape (nothing allocated)."""
    config = sngan_config.get_config().model
    config.ngf = config.ndf = 64
    for image_size, g_widths, d_widths in (
        (64, [1024, 512, 256, 128, 64], [64, 128, 256, 512, 1024]),
        (128, [1024, 1024, 512, 256, 128, 64], [64, 128, 256, 512, 1024, 1024]),
    ):
        generator, discriminator = gan.make_gan(config, image_size=image_size, num_classes=2)
        labels = jnp.zeros((1,), jnp.int32)
        g = _flat(_abstract_variables(generator, jnp.zeros((1, 100)), labels)["params"])
        images = jnp.zeros((1, image_size, image_size, 1))
        d = _flat(_abstract_variables(discriminator, images, labels)["params"])
        assert g["project/kernel"].shape == (100, 16 * g_widths[0])
        blocks = len(g_widths) - 1
        assert [g[f"ResidualUpBlock_{i}/Conv_0/kernel"].shape for i in range(blocks)] == [
            (3, 3, g_widths[i], g_widths[i + 1]) for i in range(blocks)
        ]
        assert g["to_image/kernel"].shape == (3, 3, 64, 1)
        assert [d[f"ResidualDownBlock_{i}/Conv_1/kernel"].shape[-1] for i in range(blocks + 1)] == (
            d_widths
        )
        assert d["label_projection/embedding"].shape == (2, d_widths[-1])
        # The last block keeps its width at 128 px: an identity shortcut, no 1x1 convolution.
        assert (f"ResidualDownBlock_{blocks}/shortcut/kernel" in d) == (image_size == 64)


@functools.cache
def _sngan_forward(image_size: int = 32) -> dict:
    """A tiny sngan G and D initialised and run in train mode in one compilation.

    Latents and real images come in pairs, each once with label 0 and once with label 1.
    Returns G's images with its initial class-conditional BatchNorm (scale 1, shift 0 for every
    class) and with random per-class scales and shifts; D's logits, and D's logits with the
    projection embedding set to zero.
    """
    generator, discriminator = gan.make_gan(
        _sngan_model_config(), image_size=image_size, num_classes=2
    )
    labels = jnp.array([0, 1, 0, 1], jnp.int32)

    @jax.jit
    def forward(key):
        z_key, image_key, g_key, d_key, embedding_key = jax.random.split(key, 5)
        z = jnp.repeat(jax.random.normal(z_key, (2, 8)), 2, axis=0)
        g_variables = generator.init(g_key, z, labels, train=False)

        def generate(params):
            variables = {**g_variables, "params": params}
            return generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])[0]

        flat = flax.traverse_util.flatten_dict(g_variables["params"])
        keys = jax.random.split(embedding_key, len(flat))
        conditioned = {
            path: leaf + jax.random.normal(keys[index], leaf.shape)
            if path[-1] == "embedding"
            else leaf
            for index, (path, leaf) in enumerate(flat.items())
        }
        real = jnp.repeat(
            jax.random.uniform(image_key, (2, image_size, image_size, 1), minval=-1.0), 2, axis=0
        )
        d_variables = discriminator.init(d_key, real, labels, train=False)

        def logits_of(params):
            variables = {**d_variables, "params": params}
            outputs, _ = discriminator.apply(
                variables, real, labels, train=True, mutable=["batch_stats"]
            )
            return outputs.logits

        projection = d_variables["params"]["label_projection"]["embedding"]
        unprojected = {
            **d_variables["params"],
            "label_projection": {"embedding": jnp.zeros_like(projection)},
        }
        return {
            "images": generate(g_variables["params"]),
            "conditioned_images": generate(flax.traverse_util.unflatten_dict(conditioned)),
            "logits": logits_of(d_variables["params"]),
            "unprojected_logits": logits_of(unprojected),
        }

    return forward(_key(0))


@pytest.mark.slow  # _sngan_forward compiles two inits and four passes: 15-110 s on 2 cores
def test_sngan_outputs_have_shape_and_range():
    outputs = _sngan_forward()
    for images in (outputs["images"], outputs["conditioned_images"]):
        assert images.shape == (4, 32, 32, 1) and images.dtype == jnp.float32
        assert float(jnp.min(images)) >= -1.0 and float(jnp.max(images)) <= 1.0
        assert float(jnp.std(images)) > 0.05  # train mode: batch statistics, outputs of order one
    assert outputs["logits"].shape == (4,)
    assert bool(jnp.all(jnp.isfinite(outputs["logits"])))


@pytest.mark.slow  # _sngan_forward compiles two inits and four passes: 15-110 s on 2 cores
def test_sngan_generator_sees_the_label_through_conditional_batch_norm_only():
    outputs = _sngan_forward()
    # At initialisation every class has scale 1 and shift 0: the label changes nothing...
    np.testing.assert_array_equal(outputs["images"][0], outputs["images"][1])
    # ...and once the classes' scales and shifts differ, the same z gives different images.
    images = outputs["conditioned_images"]
    assert float(jnp.max(jnp.abs(images[0] - images[1]))) > 1e-2
    assert float(jnp.max(jnp.abs(images[2] - images[3]))) > 1e-2


@pytest.mark.slow  # _sngan_forward compiles two inits and four passes: 15-110 s on 2 cores
def test_sngan_discriminator_sees_the_label_through_the_projection():
    outputs = _sngan_forward()
    logits, unprojected = outputs["logits"], outputs["unprojected_logits"]
    assert abs(float(logits[0] - logits[1])) > 1e-3
    assert abs(float(logits[2] - logits[3])) > 1e-3
    # Without the projection term the label is not seen at all.
    assert bool(jnp.all(jnp.isfinite(unprojected)))
    assert float(unprojected[0]) == float(unprojected[1])
    assert float(unprojected[2]) == float(unprojected[3])


def test_sngan_in_bfloat16_keeps_float32_params_and_outputs():
    generator, discriminator = gan.make_gan(
        _sngan_model_config(), image_size=32, num_classes=2, dtype=jnp.bfloat16
    )
    z, labels = jnp.zeros((2, 8)), jnp.array([0, 1], jnp.int32)
    images = jnp.zeros((2, 32, 32, 1))
    g_variables = _abstract_variables(generator, z, labels)
    d_variables = _abstract_variables(discriminator, images, labels)
    for leaf in jax.tree.leaves((g_variables, d_variables)):
        assert leaf.dtype == jnp.float32
    fakes = jax.eval_shape(lambda v: generator.apply(v, z, labels, train=False), g_variables)
    outputs = jax.eval_shape(
        lambda v: discriminator.apply(v, images, labels, train=False), d_variables
    )
    assert fakes.dtype == outputs.logits.dtype == jnp.float32
    jaxpr = jax.make_jaxpr(lambda v: generator.apply(v, z, labels, train=False))(g_variables)
    convolutions = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert convolutions and all(e.outvars[0].aval.dtype == jnp.bfloat16 for e in convolutions)


def test_sngan_unsupported_image_size_is_refused():
    with pytest.raises(
        ValueError,
        match="image_size 48 is not supported by the sngan architecture; supported: 32, 64, 128",
    ):
        gan.make_gan(_sngan_model_config(), image_size=48, num_classes=2)


def test_sngan_refuses_the_label_plane():
    with pytest.raises(
        ValueError,
        match=r"--config.model.conditioning=plane cannot be used with --config.model.kind=sngan: "
        r"its D is conditioned by projection .*set --config.model.conditioning=projection",
    ):
        gan.make_gan(_sngan_model_config(conditioning="plane"), image_size=32, num_classes=2)


@pytest.mark.parametrize("d_norm", ["batch", "layer"])
def test_sngan_refuses_a_discriminator_normalisation(d_norm):
    with pytest.raises(
        ValueError,
        match=rf"--config.model.d_norm={d_norm} cannot be used with --config.model.kind=sngan: "
        r"its D has no normalisation layer .*undoes the Lipschitz bound.*"
        r"set --config.model.d_norm=none",
    ):
        gan.make_gan(_sngan_model_config(d_norm=d_norm), image_size=32, num_classes=2)


def test_sngan_takes_an_acgan_head():
    _, discriminator = gan.make_gan(
        _sngan_model_config(conditioning="acgan"), image_size=32, num_classes=3
    )
    images, labels = jnp.zeros((2, 32, 32, 1)), jnp.array([0, 2], jnp.int32)
    variables = _abstract_variables(discriminator, images, labels)
    outputs = jax.eval_shape(
        lambda v: discriminator.apply(v, images, labels, train=False), variables
    )
    assert isinstance(outputs, gan.DOutput)
    assert outputs.logits.shape == (2,) and outputs.class_logits.shape == (2, 3)
