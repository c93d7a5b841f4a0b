"""Classifiers: parameter counts against torchvision, logits, BatchNorm and dropout modes, frozen
backbones, the config factory and its errors.

Variables are drawn with NumPy into `jax.eval_shape`'s tree instead of running `init`: XLA CPU
compiles each random draw of a new shape slowly, and these tests only need plausible weights.
Functions are compiled with XLA's backend optimisation off (`_jit`), which halves the compile
time of the Inception gradients; the numbers do not depend on it.
"""

import functools

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from xraygan_jax import errors, pixels
from xraygan_jax.models import classifier, inception

# torchvision's parameter counts (`sum(p.numel() for p in resnetNN().parameters())`), its
# 1000-class fc layer, and the two input channels conv1 loses on grey images (64 x 7 x 7 each).
TORCHVISION_PARAMS = {18: 11_689_512, 50: 25_557_032, 152: 60_192_808}
TORCHVISION_FC = {18: 512 * 1000 + 1000, 50: 2048 * 1000 + 1000, 152: 2048 * 1000 + 1000}
RGB_TO_GREY_CONV1 = 2 * 64 * 7 * 7
OUR_HEAD = {18: 512 + 1, 50: 2048 + 1, 152: 2048 + 1}


_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


@functools.cache
def _abstract_variables(model, image_size: int, channels: int = 1):
    images = jnp.zeros((2, image_size, image_size, channels), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))


def random_variables(model, image_size: int, seed: int = 0, channels: int = 1) -> dict:
    """Plausible variables without compiling `init`: He-scaled kernels, BatchNorm near identity."""
    rng = np.random.default_rng(seed)
    flat = flax.traverse_util.flatten_dict(_abstract_variables(model, image_size, channels))
    values = {}
    for path, leaf in flat.items():
        shape, name = leaf.shape, path[-1]
        if name == "kernel":
            value = rng.standard_normal(shape, np.float32) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name == "scale":
            value = 0.8 + 0.4 * rng.random(shape, np.float32)
        elif name == "var":
            value = 0.5 + rng.random(shape, np.float32)
        else:  # bias, mean
            value = 0.1 * rng.standard_normal(shape, np.float32)
        values[path] = jnp.asarray(value)
    variables = flax.traverse_util.unflatten_dict(values)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


# The InceptionTransfer variables do not depend on `trainable` or `input_size`: one tree serves
# every Inception test.
_SMALL_INCEPTION = classifier.InceptionTransfer(input_size=classifier.MIN_INCEPTION_INPUT_SIZE)


@functools.cache
def _inception_variables() -> dict:
    return random_variables(_SMALL_INCEPTION, 32)


def _images(batch: int, size: int, seed: int = 1) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 1)), "f4")


def _key(seed: int) -> jax.Array:
    """ "rbg": XLA CPU compiles threefry draws slowly (tests/models/test_gan.py)."""
    return jax.random.key(seed, impl="rbg")


def _config(**fields) -> ml_collections.ConfigDict:
    config = classifier.default_config()
    config.update(fields)
    return config


@pytest.mark.parametrize("depth", [18, 50, 152])
def test_resnet_parameter_count_is_torchvisions_without_fc_on_grey_input(depth):
    model = classifier.resnet(depth)
    params = _abstract_variables(model, 32)["params"]
    expected = (
        TORCHVISION_PARAMS[depth] - TORCHVISION_FC[depth] - RGB_TO_GREY_CONV1 + OUR_HEAD[depth]
    )
    assert classifier.count_params(params) == expected
    assert params["conv1"]["kernel"].shape == (7, 7, 1, 64)
    assert params["head"]["kernel"].shape == (512 if depth == 18 else 2048, 1)


def test_resnet50_uses_bottlenecks_with_the_stride_in_the_3x3():
    params = _abstract_variables(classifier.resnet50(), 64)["params"]
    block = params["layer2_0"]
    assert block["conv1"]["kernel"].shape == (1, 1, 256, 128)
    assert block["conv2"]["kernel"].shape == (3, 3, 128, 128)
    assert block["conv3"]["kernel"].shape == (1, 1, 128, 512)
    assert block["downsample_conv"]["kernel"].shape == (1, 1, 256, 512)
    assert "downsample_conv" not in params["layer2_1"]


def test_small_cnn_parameter_count():
    params = _abstract_variables(classifier.SmallCNN(width=16), 64)["params"]
    widths = [1, 16, 32, 64, 128]
    convs = sum(9 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    batch_norms = 2 * sum(widths[1:])
    assert classifier.count_params(params) == convs + batch_norms + 128 + 1


@pytest.mark.parametrize(
    "model, image_size",
    [
        (classifier.SmallCNN(width=8), 64),
        (classifier.SmallCNN(width=8), 37),  # odd sizes pool like PyTorch's MaxPool2d(2)
        # One block per stage: the block types and strides, compiled in a few seconds.
        (classifier.ResNet((1, 1, 1, 1), classifier.BasicBlock, num_filters=8), 32),
        (classifier.ResNet((1, 1, 1, 1), classifier.Bottleneck, num_filters=4), 32),
    ],
)
def test_logits_are_one_float32_per_image(model, image_size):
    variables = random_variables(model, image_size)
    images = _images(3, image_size)
    logits = _jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))


def test_batch_statistics_change_in_train_mode_only():
    model = classifier.SmallCNN(width=8, dropout_rate=0.0)
    variables = random_variables(model, 16)
    images = _images(4, 16)

    @functools.partial(_jit, static_argnums=2)
    def run(variables, images, train):
        return model.apply(variables, images, train=train, mutable=["batch_stats"])

    train_logits, train_updates = run(variables, images, True)
    eval_logits, eval_updates = run(variables, images, False)
    stats_before = jax.tree.leaves(variables["batch_stats"])
    for before, after in zip(stats_before, jax.tree.leaves(train_updates), strict=True):
        assert not np.allclose(before, after)
    for before, after in zip(stats_before, jax.tree.leaves(eval_updates), strict=True):
        np.testing.assert_array_equal(before, after)
    # Momentum 0.9 (PyTorch's 0.1): new mean = 0.9 old + 0.1 batch mean of the first conv.
    first_conv = jax.lax.conv_general_dilated(
        images,
        variables["params"]["conv0"]["kernel"],
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(
        train_updates["batch_stats"]["bn0"]["mean"],
        0.9 * variables["batch_stats"]["bn0"]["mean"] + 0.1 * first_conv.mean(axis=(0, 1, 2)),
        rtol=1e-5,
        atol=1e-6,
    )
    # Eval mode normalises each image alone, train mode by its batch: change the other images.
    others = images.at[1:].set(_images(3, 16, seed=2))
    np.testing.assert_allclose(run(variables, others, False)[0][0], eval_logits[0], rtol=1e-5)
    assert not np.allclose(run(variables, others, True)[0][0], train_logits[0], atol=1e-3)


def test_dropout_draws_from_the_dropout_rng():
    model = classifier.SmallCNN(width=8, dropout_rate=0.5)
    variables = random_variables(model, 16)
    images = _images(4, 16)

    @_jit
    def run(key):
        logits, _ = model.apply(
            variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": key}
        )
        return logits

    first, again, other = run(_key(0)), run(_key(0)), run(_key(1))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_axis_name_gives_the_global_batch_statistics():
    """Two shards under vmap(axis_name) give the single-device batch's logits and statistics."""
    images = _images(8, 16)
    single = classifier.SmallCNN(width=8, dropout_rate=0.0)
    sharded = classifier.SmallCNN(width=8, dropout_rate=0.0, axis_name="batch")
    variables = random_variables(single, 16)

    def train(model, images):
        return model.apply(variables, images, train=True, mutable=["batch_stats"])

    logits, updates = _jit(lambda x: train(single, x))(images)
    shard_logits, shard_updates = _jit(jax.vmap(lambda x: train(sharded, x), axis_name="batch"))(
        images.reshape(2, 4, 16, 16, 1)
    )
    np.testing.assert_allclose(shard_logits.reshape(-1), logits, rtol=1e-4, atol=1e-5)
    for whole, shards in zip(jax.tree.leaves(updates), jax.tree.leaves(shard_updates), strict=True):
        np.testing.assert_allclose(shards[0], whole, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(shards[1], whole, rtol=1e-4, atol=1e-6)


def test_max_pools_match_reduce_window():
    @_jit
    def pools(x):
        ours = [classifier.max_pool_3x3_stride_2(x, p) for p in (0, 1)]
        ours.append(classifier.max_pool_2x2(x))
        reference = [flax.linen.max_pool(x, (3, 3), (2, 2), ((p, p), (p, p))) for p in (0, 1)]
        reference.append(flax.linen.max_pool(x, (2, 2), (2, 2)))
        return ours, reference

    for size in (7, 8):  # odd and even
        x = jnp.asarray(np.random.default_rng(size).normal(size=(2, size, size, 3)), jnp.float32)
        ours, reference = pools(x)
        for got, want in zip(ours, reference, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("channels", [1, 3])
def test_patch_conv_is_flaxs_conv_with_the_same_variable_and_initial_weights(channels):
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 8, channels)), jnp.float32)
    fast = classifier.PatchConv3x3(5, name="conv0")
    reference = flax.linen.Conv(5, (3, 3), padding="SAME", use_bias=False, name="conv0")
    key = jax.random.key(3)
    fast_variables = fast.init(key, images)
    reference_variables = reference.init(key, images)
    np.testing.assert_array_equal(
        fast_variables["params"]["kernel"], reference_variables["params"]["kernel"]
    )
    np.testing.assert_allclose(
        fast.apply(fast_variables, images),
        reference.apply(reference_variables, images),
        atol=1e-5,
    )


def test_inception_backbone_has_fid_inceptions_variables():
    """So that init_from_fid_inception, and thus the real weights, fit name for name."""
    images = jnp.zeros((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3))
    fid = jax.eval_shape(lambda: inception.FIDInception().init(jax.random.key(0), images))
    ours = _abstract_variables(_SMALL_INCEPTION, 32)
    for collection in ("params", "batch_stats"):
        assert jax.tree.structure(ours[collection]["backbone"]) == jax.tree.structure(
            fid[collection]
        )
        assert jax.tree.map(lambda a: a.shape, ours[collection]["backbone"]) == jax.tree.map(
            lambda a: a.shape, fid[collection]
        )
    head = ours["params"]
    assert head["head_hidden"]["kernel"].shape == (inception.FEATURE_DIM, 256)
    assert head["head"]["kernel"].shape == (256, 1)


def test_init_from_fid_inception_places_the_backbone_and_keeps_the_head():
    abstract = _abstract_variables(_SMALL_INCEPTION, 32)
    variables = jax.tree.map(lambda leaf: np.zeros(leaf.shape, np.float32), abstract)
    counter = iter(range(1, 10**6))
    fid = {
        name: jax.tree.map(lambda leaf: np.full(leaf.shape, next(counter), "f4"), tree["backbone"])
        for name, tree in abstract.items()
    }
    loaded = classifier.init_from_fid_inception(variables, fid)
    for collection in ("params", "batch_stats"):
        for got, want in zip(jax.tree.leaves(loaded[collection]["backbone"]),
                             jax.tree.leaves(fid[collection]), strict=True):  # fmt: skip
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        loaded["params"]["head"]["kernel"], variables["params"]["head"]["kernel"]
    )
    fid["params"]["mixed_9"]["conv"]["kernel"] = jnp.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"misshapen: \['mixed_9/conv/kernel'\]"):
        classifier.init_from_fid_inception(variables, fid)


@pytest.mark.slow  # differentiates the Inception backbone: about 10 s on 2 cores
def test_frozen_backbone_gets_zero_gradient_and_a_false_mask():
    trained_blocks = {"head": (), "last_blocks": ("mixed_9", "mixed_10")}
    variables = _inception_variables()
    images, labels = _images(2, 32), jnp.array([0.0, 1.0])

    def gradients(trainable, params):
        model = _SMALL_INCEPTION.clone(trainable=trainable, dropout_rate=0.0)

        def loss(params):
            logits, _ = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                images,
                train=True,
                mutable=["batch_stats"],
            )
            return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

        return jax.grad(loss)(params)

    # Both modes in one program: XLA shares their forward pass, so it compiles once.
    all_grads = _jit(lambda params: {mode: gradients(mode, params) for mode in trained_blocks})(
        variables["params"]
    )
    all_grads = jax.device_get(all_grads)  # NumPy: no eager jax ops below
    for trainable, trained in trained_blocks.items():
        grads = all_grads[trainable]
        mask = classifier.trainable_mask(variables["params"], trainable)
        for block, block_grads in grads["backbone"].items():
            nonzero = any(np.any(leaf != 0) for leaf in jax.tree.leaves(block_grads))
            assert nonzero == (block in trained), (trainable, block)
            assert all(jax.tree.leaves(mask["backbone"][block])) == (block in trained)
        for name in ("head_bn", "head_hidden", "head"):
            assert all(np.any(leaf != 0) for leaf in jax.tree.leaves(grads[name])), name
            assert all(jax.tree.leaves(mask[name]))


def _toy_transfer_params():
    def layer(value):
        return {"kernel": jnp.full((2, 2), value), "bias": jnp.full((2,), value)}

    backbone = {name: layer(1.0) for name in ("conv", "mixed_8", "mixed_9", "mixed_10")}
    return {"backbone": backbone, "head_hidden": layer(1.0), "head": layer(1.0)}


@pytest.mark.parametrize(
    "trainable, trained",
    [
        ("head", {"head_hidden", "head"}),
        ("last_blocks", {"mixed_9", "mixed_10", "head_hidden", "head"}),
        ("all", {"conv", "mixed_8", "mixed_9", "mixed_10", "head_hidden", "head"}),
    ],
)
def test_param_labels_keep_frozen_parameters_out_of_the_optimiser(trainable, trained):
    params = _toy_transfer_params()
    optimizer = optax.multi_transform(
        {"trainable": optax.adam(0.1), "frozen": optax.set_to_zero()},
        classifier.param_labels(params, trainable),
    )
    state = optimizer.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, state = optimizer.update(grads, state, params)
    new_params = optax.apply_updates(params, updates)
    flat_new = flax.traverse_util.flatten_dict(new_params)
    for path, value in flat_new.items():
        moved = not np.array_equal(value, flax.traverse_util.flatten_dict(params)[path])
        assert moved == (path[-2] in trained), path
    # Adam keeps moments for the trained leaves only: no memory for a frozen backbone.
    moments = state.inner_states["trainable"].inner_state[0].mu
    assert len(jax.tree.leaves(moments)) == 2 * len(trained)
    mask = classifier.trainable_mask(params, trainable)
    assert sum(jax.tree.leaves(mask)) == 2 * len(trained)


@pytest.mark.parametrize(
    "fields, expected_type, attributes",
    [
        ({"kind": "small_cnn", "width": 8}, classifier.SmallCNN, {"width": 8}),
        ({"kind": "resnet18"}, classifier.ResNet, {"block": classifier.BasicBlock}),
        ({"kind": "resnet50"}, classifier.ResNet, {"stage_sizes": (3, 4, 6, 3)}),
        ({"kind": "resnet152"}, classifier.ResNet, {"stage_sizes": (3, 8, 36, 3)}),
        (
            {"kind": "inception_transfer", "trainable": "last_blocks", "input_size": 139},
            classifier.InceptionTransfer,
            {"trainable": "last_blocks", "input_size": 139, "head_features": 256},
        ),
    ],
)
def test_make_classifier_builds_each_kind(fields, expected_type, attributes):
    model = classifier.make_classifier(_config(dropout_rate=0.25, **fields), axis_name="data")
    assert isinstance(model, expected_type)
    assert model.dropout_rate == 0.25 and model.axis_name == "data"
    for name, value in attributes.items():
        assert getattr(model, name) == value


def test_trainable_head_needs_a_backbone():
    params = _abstract_variables(classifier.SmallCNN(width=8), 16)["params"]
    assert all(jax.tree.leaves(classifier.trainable_mask(params, "all")))
    with pytest.raises(errors.ConfigError, match="trainable='head' freezes a pretrained backbone"):
        classifier.trainable_mask(params, "head")


class _NoBatchNorm(flax.linen.Module):
    @flax.linen.compact
    def __call__(self, images, *, train):
        return flax.linen.Dense(1)(images.reshape(images.shape[0], -1))[:, 0]


def test_init_variables_gives_an_empty_batch_stats_without_batch_norm():
    model = _NoBatchNorm()
    variables = classifier.init_variables(model, _key(0), image_size=4)
    assert variables["batch_stats"] == {}
    assert variables["params"]["Dense_0"]["kernel"].shape == (16, 1)
    logits, updates = model.apply(
        variables, jnp.ones((2, 4, 4, 1)), train=True, mutable=["batch_stats"]
    )
    assert logits.shape == (2,) and updates.get("batch_stats", {}) == {}


def test_make_classifier_fills_missing_fields_with_defaults():
    model = classifier.make_classifier(ml_collections.ConfigDict({"kind": "small_cnn"}))
    assert (model.width, model.dropout_rate) == (16, 0.4)


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"kind": "vgg16"},
            "unknown classifier kind 'vgg16'.*small_cnn, resnet18, resnet50, resnet152, "
            "inception_transfer",
        ),
        (
            {"kind": "inception_transfer", "trainable": "everything"},
            r"trainable='everything' is not one of \('head', 'last_blocks', 'all'\)",
        ),
        ({"kind": "inception_transfer", "input_size": 64}, "input_size=64 is below.*minimum 75"),
    ],
)
def test_make_classifier_rejects_bad_config(fields, message):
    with pytest.raises(errors.ConfigError, match=message):
        classifier.make_classifier(_config(**fields))


def test_wrong_channel_count_is_named():
    with pytest.raises(ValueError, match=r"1 channel\(s\), got shape \(2, 32, 32, 3\)"):
        _abstract_variables(classifier.resnet18(num_filters=8), 32, channels=3)


def test_backbone_with_the_fid_weights_gives_the_fid_features(fid_params):
    """InceptionTransfer's preprocessing and backbone against FIDInception on its own pipeline,
    on images of exact uint8 levels (where skipping the quantisation changes nothing)."""
    fid_variables = fid_params
    model = classifier.InceptionTransfer(input_size=inception.INPUT_SIZE)
    variables = classifier.init_from_fid_inception(_inception_variables(), fid_variables)
    levels = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 1))
    images = jnp.asarray((levels - 127.5) / 127.5, jnp.float32)

    @_jit
    def features(variables, fid_variables, images):
        _, state = model.apply(
            variables,
            images,
            train=False,
            capture_intermediates=lambda module, _: module.name == "backbone",
            mutable=["intermediates"],
        )
        quantized = pixels.quantize(images)
        expected = inception.FIDInception().apply(fid_variables, inception.preprocess(quantized))
        return state["intermediates"]["backbone"]["__call__"][0], expected

    ours, expected = features(variables, fid_variables, images)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
