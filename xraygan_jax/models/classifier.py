"""Binary chest X-ray classifiers for the augmentation study, as Flax Linen modules.

Every classifier takes one-channel NHWC images in [-1, 1] and returns ONE float32 logit per image,
shape [B] (class 1 = disease, probability `sigmoid(logit)`), and is called the same way:

    variables = classifier.init_variables(model, jax.random.key(0), image_size=64)
    logits = model.apply(variables, images, train=False)
    logits, updates = model.apply(
        variables, images, train=True, mutable=["batch_stats"], rngs={"dropout": key}
    )  # updates["batch_stats"] holds the new running statistics

`init_variables` always returns both collections, `{"params": ..., "batch_stats": ...}` (the
latter empty for a module without BatchNorm). Every module takes `axis_name`: BatchNorm then
averages its batch statistics over that mapped axis (inside `shard_map` or `pmap`), so they are
those of the global batch.

The networks (`make_classifier` builds one from a config):
- `SmallCNN`: four conv3x3-BatchNorm-ReLU-maxpool blocks (widths w, 2w, 4w, 8w), global average
  pool, dropout, dense: 15 million multiply-adds per 64x64 image, for demos and tests on CPU.
- `ResNet` v1.5 (torchvision's: the stride of a bottleneck sits in its 3x3 convolution), with the
  torchvision stem (7x7 stride-2 convolution, BatchNorm, ReLU, 3x3 stride-2 max pool) on
  `in_channels` = 1 input; `resnet18`, `resnet50`, `resnet152`. Layer names follow torchvision's
  state dict (`layer1_0/conv1` is `layer1.0.conv1`) so that `resnet_weights` maps ImageNet weights
  one to one; the 1000-class `fc` is replaced by our head (dropout, dense to one logit).
- `InceptionTransfer`: the FID Inception-v3 (`inception.py`, weights from
  `xraygan_jax.pretrained.inception_weights.load_params`) as a backbone, its 2048-d pool features
  fed to the second report's head: BatchNorm, Dense(`head_features`) + ReLU, Dropout, Dense(1).
  The backbone is frozen (`trainable="head"`), fine-tuned in its last two blocks `mixed_9` and
  `mixed_10` (`"last_blocks"`), or fully (`"all"`); `param_labels` / `trainable_mask` keep the
  frozen parameters out of the optimiser.

BatchNorm follows PyTorch's defaults: momentum 0.9 in Flax's convention (PyTorch's 0.1) and
epsilon 1e-5. Flax's running variance is the biased batch variance, PyTorch's the unbiased one
(a factor n/(n-1), n = batch x height x width).
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xraygan_jax import errors
from xraygan_jax.models import inception

KINDS = ("small_cnn", "resnet18", "resnet50", "resnet152", "inception_transfer")
TRAINABLE = ("head", "last_blocks", "all")
# The Inception blocks `trainable="last_blocks"` fine-tunes (the two 8x8 InceptionE blocks).
LAST_BLOCKS = ("mixed_9", "mixed_10")
# The smallest input on which the FID Inception's valid convolutions and strided pools leave a
# map: 75 -> 37 -> 35 -> 17 -> 15 -> 7 (35x35 blocks) -> 3 (17x17 blocks) -> 1 (8x8 blocks).
MIN_INCEPTION_INPUT_SIZE = 75

_BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1, in Flax's convention
_BN_EPSILON = 1e-5  # PyTorch's BatchNorm2d default


def _conv_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """torchvision's ResNet initialisation, kaiming_normal_(mode="fan_out", nonlinearity="relu"):
    normal(0, sqrt(2 / fan_out)), untruncated (Flax's variance_scaling "normal" truncates)."""
    kernel_height, kernel_width, _, out_features = shape
    stddev = np.sqrt(2.0 / (kernel_height * kernel_width * out_features))
    return stddev * jax.random.normal(key, shape, dtype)


def default_config() -> ml_collections.ConfigDict:
    """The `model` section of a classifier config, with every field `make_classifier` reads.

    Returns:
      ConfigDict with fields (defaults):
        kind ("small_cnn"): one of KINDS.
        dropout_rate (0.4): dropout before the last dense layer (every kind; the second report's
          head uses 0.4).
        width (16): SmallCNN's first block width; each later block doubles it.
        trainable ("head"): inception_transfer only: "head" (frozen backbone), "last_blocks"
          (fine-tune mixed_9 and mixed_10) or "all".
        head_features (256): inception_transfer only: the hidden Dense layer of the head.
        input_size (299): inception_transfer only: side the images are resized to before the
          backbone (299 is the FID network's; anything >= 75 works, and smaller is faster).
    """
    config = ml_collections.ConfigDict()
    config.kind = "small_cnn"
    config.dropout_rate = 0.4
    config.width = 16
    config.trainable = "head"
    config.head_features = 256
    config.input_size = inception.INPUT_SIZE
    return config


def _batch_norm(train: bool, axis_name: str | None, **kwargs: Any) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=_BN_MOMENTUM,
        epsilon=_BN_EPSILON,
        axis_name=axis_name,
        **kwargs,
    )


def _head(x: jax.Array, dropout_rate: float, train: bool) -> jax.Array:
    """Dropout, then a dense layer to one logit per image: [B, F] -> [B]."""
    x = nn.Dropout(dropout_rate, deterministic=not train)(x)
    return nn.Dense(1, name="head")(x)[:, 0].astype(jnp.float32)


def _check_channels(images: jax.Array, channels: int, name: str) -> None:
    if images.ndim != 4 or images.shape[-1] != channels:
        raise ValueError(
            f"{name} expects NHWC images with {channels} channel(s), got shape {images.shape}"
        )


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2 (an odd last row or column is dropped, as PyTorch's MaxPool2d(2)).

    Written as a reshape and a maximum: XLA CPU ran `lax.reduce_window` (flax's max_pool) several
    times slower than such fused forms (inception.py, its 3x3 pools).
    """
    batch, height, width, channels = x.shape
    x = x[:, : height // 2 * 2, : width // 2 * 2]
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).max(axis=(2, 4))


def max_pool_3x3_stride_2(x: jax.Array, padding: int = 0) -> jax.Array:
    """3x3 max pool, stride 2, `padding` pixels of -inf on every side (PyTorch's MaxPool2d(3, 2,
    padding)), as maxima of strided slices (fused by XLA; see `max_pool_2x2`)."""
    if padding:
        pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
        x = jnp.pad(x, pad, constant_values=-jnp.inf)
    out_height, out_width = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    rows = [x[:, i : i + 2 * out_height - 1 : 2] for i in range(3)]
    x = jnp.maximum(jnp.maximum(rows[0], rows[1]), rows[2])
    columns = [x[:, :, j : j + 2 * out_width - 1 : 2] for j in range(3)]
    return jnp.maximum(jnp.maximum(columns[0], columns[1]), columns[2])


class PatchConv3x3(nn.Module):
    """`nn.Conv(features, (3, 3), padding="SAME", use_bias=False)` computed as one matmul of the
    nine shifted copies of the input (im2col): the same variable (`params/kernel`, HWIO), the same
    initial weights from the same key, the same outputs up to float rounding. Worth it only for few
    input channels: for 16 and more XLA's own convolution was faster here.
    """

    features: int
    padding: str = "SAME"
    use_bias: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.padding != "SAME" or self.use_bias:
            raise ValueError("PatchConv3x3 supports padding='SAME' without bias only")
        batch, height, width, channels = x.shape
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (3, 3, channels, self.features)
        )
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate(
            [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)], -1
        )
        flat = patches.reshape(-1, 9 * channels) @ kernel.reshape(9 * channels, self.features)
        return flat.reshape(batch, height, width, self.features)


class SmallCNN(nn.Module):
    """Four conv3x3(no bias)-BatchNorm-ReLU-maxpool2x2 blocks, global mean, dropout, dense.

    Attributes:
      width: channels of the first block; blocks have width, 2 width, 4 width, 8 width.
      dropout_rate: dropout before the dense layer.
      axis_name: mapped axis BatchNorm averages its statistics over (None: this batch only).
    """

    width: int = 16
    dropout_rate: float = 0.4
    axis_name: str | None = None

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        """Maps images [B, H, W, 1] in [-1, 1] to logits [B]."""
        _check_channels(images, 1, "SmallCNN")
        x = images.astype(jnp.float32)
        for index in range(4):
            # The one-channel first layer as a matmul of 3x3 patches: XLA CPU's convolution with
            # one input channel is the slow kind (docs/performance.md, "Study classifiers").
            conv = PatchConv3x3 if index == 0 else functools.partial(nn.Conv, kernel_size=(3, 3))
            x = conv(self.width * 2**index, padding="SAME", use_bias=False, name=f"conv{index}")(x)
            x = _batch_norm(train, self.axis_name, name=f"bn{index}")(x)
            x = max_pool_2x2(nn.relu(x))
        return _head(jnp.mean(x, axis=(1, 2)), self.dropout_rate, train)


def _conv(x: jax.Array, kernel: jax.Array, strides: int, padding: int) -> jax.Array:
    """PyTorch's Conv2d(bias=False) with symmetric zero `padding`: NHWC x HWIO.

    A 1x1 convolution is computed as a matmul (on the strided pixels when strides > 1), the form
    XLA CPU ran faster for the FID Inception's 1x1 convolutions (inception.py, `_conv`).
    """
    kernel_height, kernel_width, in_features, out_features = kernel.shape
    if (kernel_height, kernel_width, padding) == (1, 1, 0):
        x = x[:, ::strides, ::strides]
        flat = x.reshape(-1, in_features) @ kernel.reshape(in_features, out_features)
        return flat.reshape(*x.shape[:-1], out_features)
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(strides, strides),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


class Conv(nn.Module):
    """PyTorch's `Conv2d(in, features, kernel_size, strides, padding, bias=False)`.

    Unlike `nn.Conv(padding="SAME")`, a stride-2 convolution pads both sides alike, as PyTorch does
    (SAME pads an even input by 0 before and 1 after), so ImageNet weights give PyTorch's output.
    Variable: `params/kernel`, HWIO.
    """

    features: int
    kernel_size: int
    strides: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", _conv_init, shape)
        return _conv(x, kernel, self.strides, self.padding)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: 3x3 (stride) - BN - ReLU - 3x3 - BN, plus the shortcut, ReLU.

    Attributes:
      features: output channels.
      strides: stride of the first convolution (and of the projection shortcut).
      zero_init_residual: start the last BatchNorm's scale at 0, so the block starts as identity.
      axis_name: see `SmallCNN`.
    """

    features: int
    strides: int = 1
    zero_init_residual: bool = False
    axis_name: str | None = None
    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = functools.partial(_batch_norm, train, self.axis_name)
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        y = Conv(self.features, 3, self.strides, 1, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = Conv(self.features, 3, 1, 1, name="conv2")(y)
        y = norm(name="bn2", scale_init=last_scale)(y)
        return nn.relu(y + _shortcut(x, self.features, self.strides, norm))


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5): 1x1 - BN - ReLU - 3x3 (stride) - BN - ReLU -
    1x1 to 4 x features - BN, plus the shortcut, ReLU.

    Attributes: as `BasicBlock`; the output has 4 x `features` channels.
    """

    features: int
    strides: int = 1
    zero_init_residual: bool = False
    axis_name: str | None = None
    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        norm = functools.partial(_batch_norm, train, self.axis_name)
        last_scale = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
        out_features = self.features * self.expansion
        y = Conv(self.features, 1, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = Conv(self.features, 3, self.strides, 1, name="conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = Conv(out_features, 1, name="conv3")(y)
        y = norm(name="bn3", scale_init=last_scale)(y)
        return nn.relu(y + _shortcut(x, out_features, self.strides, norm))


def _shortcut(x: jax.Array, features: int, strides: int, norm) -> jax.Array:
    """Identity, or torchvision's `downsample` (1x1 strided convolution, BN) when shapes change."""
    if strides == 1 and x.shape[-1] == features:
        return x
    x = Conv(features, 1, strides, name="downsample_conv")(x)
    return norm(name="downsample_bn")(x)


class ResNet(nn.Module):
    """torchvision's ResNet (v1.5) with our one-logit head.

    Attributes:
      stage_sizes: blocks per stage (ResNet-18: 2, 2, 2, 2; -50: 3, 4, 6, 3; -152: 3, 8, 36, 3).
      block: `BasicBlock` or `Bottleneck`.
      num_filters: first stage width (64 in torchvision; smaller for tests).
      in_channels: image channels the stem's 7x7 convolution takes.
      dropout_rate: dropout before the dense head.
      zero_init_residual: see `BasicBlock` (torchvision's default: False).
      axis_name: see `SmallCNN`.
    """

    stage_sizes: Sequence[int]
    block: type[nn.Module]
    num_filters: int = 64
    in_channels: int = 1
    dropout_rate: float = 0.4
    zero_init_residual: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        """Maps images [B, H, W, in_channels] in [-1, 1] to logits [B]."""
        _check_channels(images, self.in_channels, "ResNet")
        x = Conv(self.num_filters, 7, 2, 3, name="conv1")(images.astype(jnp.float32))
        x = nn.relu(_batch_norm(train, self.axis_name, name="bn1")(x))
        x = max_pool_3x3_stride_2(x, padding=1)
        for stage, num_blocks in enumerate(self.stage_sizes):
            for index in range(num_blocks):
                x = self.block(
                    features=self.num_filters * 2**stage,
                    strides=2 if stage > 0 and index == 0 else 1,
                    zero_init_residual=self.zero_init_residual,
                    axis_name=self.axis_name,
                    name=f"layer{stage + 1}_{index}",
                )(x, train=train)
        return _head(jnp.mean(x, axis=(1, 2)), self.dropout_rate, train)


# depth -> (stage sizes, block): torchvision's resnet18 / resnet50 / resnet152.
RESNET_ARCHITECTURES = {
    18: ((2, 2, 2, 2), BasicBlock),
    50: ((3, 4, 6, 3), Bottleneck),
    152: ((3, 8, 36, 3), Bottleneck),
}


def resnet(depth: int, **kwargs: Any) -> ResNet:
    """`ResNet` of torchvision's depth 18, 50 or 152; kwargs set the other attributes."""
    if depth not in RESNET_ARCHITECTURES:
        raise ValueError(f"ResNet depth {depth} is not one of {sorted(RESNET_ARCHITECTURES)}")
    stage_sizes, block = RESNET_ARCHITECTURES[depth]
    return ResNet(stage_sizes=stage_sizes, block=block, **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """torchvision's ResNet-18 (BasicBlock, 2-2-2-2) with our head; kwargs as `ResNet`."""
    return resnet(18, **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """torchvision's ResNet-50 (Bottleneck, 3-4-6-3) with our head; kwargs as `ResNet`."""
    return resnet(50, **kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    """torchvision's ResNet-152 (Bottleneck, 3-8-36-3) with our head; kwargs as `ResNet`."""
    return resnet(152, **kwargs)


class InceptionBackbone(nn.Module):
    """`inception.FIDInception`'s layers under the same names, on any input side >= 75.

    Its variables are FIDInception's, so `init_from_fid_inception` copies them over unchanged.
    BatchNorm inside the backbone always uses the file's running statistics (as in the FID
    network, which has no batch-statistics mode), also when its last blocks are fine-tuned.

    Attributes:
      trainable: "head": no gradient leaves the features; "last_blocks": gradients reach mixed_9
        and mixed_10 only; "all": every layer.
    """

    trainable: str = "head"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps preprocessed images [B, S, S, 3] (values (v - 128) / 128) to features [B, 2048]."""
        x = inception.ConvBNReLU(32, (3, 3), strides=2, name="conv")(x)
        x = inception.ConvBNReLU(32, (3, 3), name="conv_1")(x)
        x = inception.ConvBNReLU(64, (3, 3), padding=(1, 1), name="conv_2")(x)
        x = max_pool_3x3_stride_2(x)
        x = inception.ConvBNReLU(80, (1, 1), name="conv_3")(x)
        x = inception.ConvBNReLU(192, (3, 3), name="conv_4")(x)
        x = max_pool_3x3_stride_2(x)
        x = inception.InceptionA(32, name="mixed")(x)
        x = inception.InceptionA(64, name="mixed_1")(x)
        x = inception.InceptionA(64, name="mixed_2")(x)
        x = inception.InceptionB(name="mixed_3")(x)
        x = inception.InceptionC(128, name="mixed_4")(x)
        x = inception.InceptionC(160, name="mixed_5")(x)
        x = inception.InceptionC(160, name="mixed_6")(x)
        x = inception.InceptionC(192, name="mixed_7")(x)
        x = inception.InceptionD(name="mixed_8")(x)
        if self.trainable == "last_blocks":
            # No backward pass through the frozen blocks: it would only produce zeros.
            x = jax.lax.stop_gradient(x)
        x = inception.InceptionE(max_pool=False, name="mixed_9")(x)
        x = inception.InceptionE(max_pool=True, name="mixed_10")(x)
        x = jnp.mean(x, axis=(1, 2))
        if self.trainable == "head":
            x = jax.lax.stop_gradient(x)
        return x


class InceptionTransfer(nn.Module):
    """FID Inception-v3 backbone + the second report's head, for one-channel images in [-1, 1].

    The images are mapped to the FID network's input scale ((v - 128) / 128 of the uint8 value
    v = 127.5 x + 127.5, without quantising), resized with TF1's bilinear resize as the FID
    preprocessing does (`inception.resize_bilinear_tf1`) to `input_size`, and repeated to three
    channels. Head: BatchNorm on the 2048 pool features, Dense(head_features) + ReLU, Dropout,
    Dense(1).

    Attributes:
      trainable: "head", "last_blocks" or "all" (see `InceptionBackbone`); pass the same value to
        `param_labels` for the optimiser.
      head_features: width of the head's hidden layer.
      dropout_rate: the head's dropout (0.4 in the second report).
      input_size: side of the backbone's input; 299 as in FID, at least 75.
      axis_name: see `SmallCNN` (the head's BatchNorm).
    """

    trainable: str = "head"
    head_features: int = 256
    dropout_rate: float = 0.4
    input_size: int = inception.INPUT_SIZE
    axis_name: str | None = None

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool) -> jax.Array:
        """Maps images [B, H, W, 1] in [-1, 1] to logits [B]."""
        _check_channels(images, 1, "InceptionTransfer")
        _check_trainable(self.trainable)
        _check_input_size(self.input_size)
        x = (images.astype(jnp.float32) * 127.5 + 127.5 - 128.0) / 128.0
        x = inception.resize_bilinear_tf1(x, self.input_size)
        x = jnp.repeat(x, 3, axis=-1)
        x = InceptionBackbone(trainable=self.trainable, name="backbone")(x)
        x = _batch_norm(train, self.axis_name, name="head_bn")(x)
        x = nn.relu(nn.Dense(self.head_features, name="head_hidden")(x))
        return _head(x, self.dropout_rate, train)


def _check_trainable(trainable: str) -> None:
    if trainable not in TRAINABLE:
        raise errors.ConfigError(
            f"trainable={trainable!r} is not one of {TRAINABLE} (--config.model.trainable)"
        )


def _check_input_size(input_size: int) -> None:
    if input_size < MIN_INCEPTION_INPUT_SIZE:
        raise errors.ConfigError(
            f"input_size={input_size} is below the Inception backbone's minimum "
            f"{MIN_INCEPTION_INPUT_SIZE} (--config.model.input_size)"
        )


def init_from_fid_inception(variables: dict[str, Any], fid_variables: dict[str, Any]) -> dict:
    """Places FID Inception weights into an `InceptionTransfer`'s backbone.

    Args:
      variables: the model's variables, `{"params": ..., "batch_stats": ...}` (from
        `init_variables`); the head is kept.
      fid_variables: `xraygan_jax.pretrained.inception_weights.load_params()` (FIDInception
        variables).

    Returns:
      A copy of `variables` whose `params/backbone` and `batch_stats/backbone` are the FID ones.

    Raises:
      ValueError: the two trees differ (names or shapes); the message lists the differences.
    """
    new_variables = {name: dict(tree) for name, tree in variables.items()}
    for collection in ("params", "batch_stats"):
        have = flax.traverse_util.flatten_dict(variables[collection]["backbone"])
        given = flax.traverse_util.flatten_dict(fid_variables[collection])
        wrong = sorted(
            "/".join(key)
            for key in have.keys() | given.keys()
            if key not in have or key not in given or have[key].shape != given[key].shape
        )
        if wrong:
            raise ValueError(
                f"the FID Inception {collection} do not fit the backbone (missing, extra or "
                f"misshapen: {wrong[:5]}); pass "
                "xraygan_jax.pretrained.inception_weights.load_params()"
            )
        new_variables[collection]["backbone"] = jax.tree.map(
            lambda value, like: jnp.asarray(value, like.dtype),
            fid_variables[collection],
            variables[collection]["backbone"],
        )
    return new_variables


def trainable_mask(params: Any, trainable: str = "all") -> Any:
    """True for each parameter the optimiser updates, False for a frozen one.

    Args:
      params: the model's `params` tree.
      trainable: "all" (every kind but a frozen InceptionTransfer), or the model's `trainable`.

    Returns:
      A tree of bools shaped like `params`, e.g. the `trainable_mask` of
      `xraygan_jax.train.optimizers.make_classifier_optimizer`.

    Raises:
      errors.ConfigError: an unknown mode, or "head" / "last_blocks" for params without a
        `backbone` (only inception_transfer has one).
    """
    _check_trainable(trainable)
    if trainable != "all" and "backbone" not in params:
        raise errors.ConfigError(
            f"trainable={trainable!r} freezes a pretrained backbone, and these params have none "
            f"(top level: {sorted(params)[:5]}); use kind=inception_transfer or trainable='all'"
        )

    def is_trainable(path: tuple, _) -> bool:
        names = [getattr(entry, "key", None) for entry in path]
        if trainable == "all" or names[0] != "backbone":
            return True
        return trainable == "last_blocks" and names[1] in LAST_BLOCKS

    return jax.tree_util.tree_map_with_path(is_trainable, params)


def param_labels(params: Any, trainable: str = "all") -> Any:
    """`trainable_mask` as optax labels, "trainable" or "frozen", for `optax.multi_transform`:

        tx = optax.multi_transform(
            {"trainable": optax.adam(1e-3), "frozen": optax.set_to_zero()},
            classifier.param_labels(params, model.trainable),
        )

    The optimiser then keeps no state (Adam moments) for the frozen parameters and never moves
    them (`optax.masked` would instead pass their raw gradients through).
    """
    return jax.tree.map(
        lambda keep: "trainable" if keep else "frozen", trainable_mask(params, trainable)
    )


def init_variables(
    model: nn.Module, key: jax.Array, *, image_size: int, batch_size: int = 1
) -> dict[str, Any]:
    """Initial variables of a classifier, jitted: `{"params": ..., "batch_stats": ...}`.

    Args:
      model: a module from this file (or any taking `(images, train=...)`).
      key: PRNG key for the initialisation.
      image_size: side of the square one-channel images it will see.
      batch_size: batch of the dummy input (BatchNorm shapes do not depend on it).

    Returns:
      Both collections; `batch_stats` is `{}` for a module without BatchNorm.
    """
    variables = _jitted_init(model, key, (batch_size, image_size, image_size, 1))
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_init(model: nn.Module, key: jax.Array, shape: tuple[int, ...]) -> Any:
    # Module-level, so a second model equal to the first (same fields) reuses the compilation.
    return model.init(key, jnp.zeros(shape, jnp.float32), train=False)


def count_params(params: Any) -> int:
    """Number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
    return int(sum(np.prod(leaf.shape, dtype=np.int64) for leaf in jax.tree.leaves(params)))


def make_classifier(config: ml_collections.ConfigDict, *, axis_name: str | None = None):
    """The classifier that `config` (the `model` section, `default_config()`'s fields) describes.

    Fields read (others are ignored; a missing one takes `default_config()`'s value):
      kind: "small_cnn" | "resnet18" | "resnet50" | "resnet152" | "inception_transfer".
      dropout_rate: dropout before the last dense layer.
      width: small_cnn's first block width.
      trainable, head_features, input_size: inception_transfer's (see `InceptionTransfer`).

    Pretrained weights are loaded by the caller, after `init_variables`: for resnet*,
    `resnet_weights.load_torchvision_resnet(path, variables, depth=...)` with a torchvision
    ImageNet `.pth`; for inception_transfer, `init_from_fid_inception(variables,
    xraygan_jax.pretrained.inception_weights.load_params())`.

    Args:
      config: the model config.
      axis_name: mapped axis BatchNorm averages its batch statistics over.

    Returns:
      An unbound Linen module; `apply(variables, images, train=...)` gives logits [B].

    Raises:
      errors.ConfigError (a ValueError): unknown kind or trainable, input_size below 75.
    """
    defaults = default_config()

    def field(name: str):
        return config.get(name, defaults[name])

    kind = field("kind")
    dropout_rate = float(field("dropout_rate"))
    if kind == "small_cnn":
        return SmallCNN(width=field("width"), dropout_rate=dropout_rate, axis_name=axis_name)
    if kind in ("resnet18", "resnet50", "resnet152"):
        return resnet(int(kind[len("resnet") :]), dropout_rate=dropout_rate, axis_name=axis_name)
    if kind == "inception_transfer":
        _check_trainable(field("trainable"))
        _check_input_size(field("input_size"))
        return InceptionTransfer(
            trainable=field("trainable"),
            head_features=field("head_features"),
            dropout_rate=dropout_rate,
            input_size=field("input_size"),
            axis_name=axis_name,
        )
    raise errors.ConfigError(
        f"unknown classifier kind {kind!r} (--config.model.kind); valid kinds: {', '.join(KINDS)}"
    )
