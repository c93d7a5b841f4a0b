"""The FID Inception-v3 (TF `inception-2015-12-05`) as a Flax module, and its input pipeline.

FID, KID and precision/recall are only comparable across papers when they use this exact network
and preprocessing, so both follow the standard (TTUR / pytorch-fid / NVIDIA) to the letter
(docs/design_notes.md, sections "FID Inception network and weights" and "FID preprocessing"):

- every convolution is conv (no bias) -> BatchNorm (running statistics, no scale, eps 1e-3) -> ReLU;
- average pools inside the blocks exclude padding from the count; the pool tower of the last
  block (`mixed_10`) is a 3x3 stride-1 MAX pool; the features are the global mean of the final
  8x8x2048 map;
- images enter as uint8, are resized to 299x299 with TF1's bilinear resize (no half-pixel centres,
  no antialiasing), mapped by (x - 128) / 128, and grayscale is repeated to three channels;
  generator output in [-1, 1] is first quantised to uint8 as NVIDIA's metrics do
  (`pixels.quantize`).

Layer names mirror the TorchScript file's (`mixed_4`, `tower_1_conv_2`, ...), so that
`xraygan_jax.pretrained.inception_weights` maps its 376 tensors one to one.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

INPUT_SIZE = 299
FEATURE_DIM = 2048
BATCH_NORM_EPSILON = 1e-3


def _conv(x: jax.Array, kernel: jax.Array, strides: int, padding: tuple[int, int]) -> jax.Array:
    """NHWC x HWIO convolution, each case in the form XLA CPU runs fastest.

    With `xraygan_jax.compiler`'s options (Eigen convolutions) the plain stride-2 convolution is
    as fast as a matmul over gathered patches (im2col), so the simpler form is kept. Timings of
    every case: docs/performance.md, section "FID Inception convolutions and pools".
    """
    kernel_height, kernel_width, in_features, out_features = kernel.shape
    if (kernel_height, kernel_width, strides) == (1, 1, 1):
        # A 1x1 convolution is a matmul, and XLA CPU runs it faster as `dot`.
        flat = x.reshape(-1, in_features) @ kernel.reshape(in_features, out_features)
        return flat.reshape(*x.shape[:-1], out_features)
    crop = (0, 0)
    if strides == 1:
        # XLA CPU runs an unpadded ("VALID") stride-1 3x3 convolution much slower than the
        # padded ("SAME") one, so compute the padded one and crop its border: the same numbers,
        # bit for bit.
        same = ((kernel_height - 1) // 2, (kernel_width - 1) // 2)
        crop = (same[0] - padding[0], same[1] - padding[1])
        padding = same
    x = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(strides, strides),
        padding=((padding[0], padding[0]), (padding[1], padding[1])),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    if crop != (0, 0):
        x = x[:, crop[0] : x.shape[1] - crop[0], crop[1] : x.shape[2] - crop[1]]
    return x


class ConvBNReLU(nn.Module):
    """Convolution without bias, inference BatchNorm without scale (eps 1e-3), ReLU.

    Variables: `params/kernel` (HWIO), `params/bias` (the BatchNorm's beta),
    `batch_stats/mean` and `batch_stats/var` (its running statistics).

    Attributes:
      features: output channels.
      kernel_size: (height, width) of the kernel.
      strides: stride in both dimensions.
      padding: symmetric zero padding (rows, columns).
    """

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel_shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), kernel_shape)
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mean = self.variable("batch_stats", "mean", jnp.zeros, (self.features,)).value
        var = self.variable("batch_stats", "var", jnp.ones, (self.features,)).value
        x = _conv(x, kernel, self.strides, self.padding)
        x = (x - mean) * jax.lax.rsqrt(var + BATCH_NORM_EPSILON) + bias
        return nn.relu(x)


# The 3x3 pools are written as maxima and sums of shifted slices, which XLA fuses into one loop,
# much faster than `lax.reduce_window` (flax's max_pool / avg_pool); timings in
# docs/performance.md, section "FID Inception convolutions and pools".


def _max_pool_3x3_stride_2(x: jax.Array) -> jax.Array:
    """3x3 max pool, stride 2, no padding."""
    out_height, out_width = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    rows = [x[:, i : i + 2 * out_height - 1 : 2] for i in range(3)]
    x = jnp.maximum(jnp.maximum(rows[0], rows[1]), rows[2])
    columns = [x[:, :, j : j + 2 * out_width - 1 : 2] for j in range(3)]
    return jnp.maximum(jnp.maximum(columns[0], columns[1]), columns[2])


def _max_pool_3x3_same(x: jax.Array) -> jax.Array:
    """3x3 max pool, stride 1, padding 1 (padding never wins: it is -inf)."""
    height, width = x.shape[1], x.shape[2]
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    x = jnp.maximum(jnp.maximum(x[:, 0:height], x[:, 1 : height + 1]), x[:, 2 : height + 2])
    return jnp.maximum(
        jnp.maximum(x[:, :, 0:width], x[:, :, 1 : width + 1]), x[:, :, 2 : width + 2]
    )


def _avg_pool_3x3_same(x: jax.Array) -> jax.Array:
    """3x3 average pool, stride 1, padding 1, dividing by the number of unpadded pixels.

    The TF graph's average pools exclude padding from the count (9 inside, 6 on edges, 4 in
    corners).
    """
    height, width = x.shape[1], x.shape[2]
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = x[:, 0:height] + x[:, 1 : height + 1] + x[:, 2 : height + 2]
    x = x[:, :, 0:width] + x[:, :, 1 : width + 1] + x[:, :, 2 : width + 2]
    rows = np.minimum(np.arange(height) + 1, height - 1) - np.maximum(np.arange(height) - 1, 0) + 1
    columns = np.minimum(np.arange(width) + 1, width - 1) - np.maximum(np.arange(width) - 1, 0) + 1
    counts = np.outer(rows, columns).astype(np.float32)
    return x / counts[None, :, :, None]


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pool towers (`mixed`, `mixed_1`, `mixed_2`)."""

    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch_1x1 = ConvBNReLU(64, (1, 1), name="conv")(x)
        branch_5x5 = ConvBNReLU(48, (1, 1), name="tower_conv")(x)
        branch_5x5 = ConvBNReLU(64, (5, 5), padding=(2, 2), name="tower_conv_1")(branch_5x5)
        branch_3x3 = ConvBNReLU(64, (1, 1), name="tower_1_conv")(x)
        branch_3x3 = ConvBNReLU(96, (3, 3), padding=(1, 1), name="tower_1_conv_1")(branch_3x3)
        branch_3x3 = ConvBNReLU(96, (3, 3), padding=(1, 1), name="tower_1_conv_2")(branch_3x3)
        branch_pool = ConvBNReLU(self.pool_features, (1, 1), name="tower_2_conv")(
            _avg_pool_3x3_same(x)
        )
        return jnp.concatenate([branch_1x1, branch_5x5, branch_3x3, branch_pool], axis=-1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (`mixed_3`)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch_3x3 = ConvBNReLU(384, (3, 3), strides=2, name="conv")(x)
        branch_double = ConvBNReLU(64, (1, 1), name="tower_conv")(x)
        branch_double = ConvBNReLU(96, (3, 3), padding=(1, 1), name="tower_conv_1")(branch_double)
        branch_double = ConvBNReLU(96, (3, 3), strides=2, name="tower_conv_2")(branch_double)
        return jnp.concatenate([branch_3x3, branch_double, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 towers (`mixed_4` ... `mixed_7`)."""

    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        row = {"kernel_size": (1, 7), "padding": (0, 3)}
        column = {"kernel_size": (7, 1), "padding": (3, 0)}
        branch_1x1 = ConvBNReLU(192, (1, 1), name="conv")(x)
        branch_7x7 = ConvBNReLU(c7, (1, 1), name="tower_conv")(x)
        branch_7x7 = ConvBNReLU(c7, **row, name="tower_conv_1")(branch_7x7)
        branch_7x7 = ConvBNReLU(192, **column, name="tower_conv_2")(branch_7x7)
        branch_double = ConvBNReLU(c7, (1, 1), name="tower_1_conv")(x)
        branch_double = ConvBNReLU(c7, **column, name="tower_1_conv_1")(branch_double)
        branch_double = ConvBNReLU(c7, **row, name="tower_1_conv_2")(branch_double)
        branch_double = ConvBNReLU(c7, **column, name="tower_1_conv_3")(branch_double)
        branch_double = ConvBNReLU(192, **row, name="tower_1_conv_4")(branch_double)
        branch_pool = ConvBNReLU(192, (1, 1), name="tower_2_conv")(_avg_pool_3x3_same(x))
        return jnp.concatenate([branch_1x1, branch_7x7, branch_double, branch_pool], axis=-1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (`mixed_8`)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch_3x3 = ConvBNReLU(192, (1, 1), name="tower_conv")(x)
        branch_3x3 = ConvBNReLU(320, (3, 3), strides=2, name="tower_conv_1")(branch_3x3)
        branch_7x7 = ConvBNReLU(192, (1, 1), name="tower_1_conv")(x)
        branch_7x7 = ConvBNReLU(192, (1, 7), padding=(0, 3), name="tower_1_conv_1")(branch_7x7)
        branch_7x7 = ConvBNReLU(192, (7, 1), padding=(3, 0), name="tower_1_conv_2")(branch_7x7)
        branch_7x7 = ConvBNReLU(192, (3, 3), strides=2, name="tower_1_conv_3")(branch_7x7)
        return jnp.concatenate([branch_3x3, branch_7x7, _max_pool_3x3_stride_2(x)], axis=-1)


class InceptionE(nn.Module):
    """8x8 block with expanded 1x3 / 3x1 towers (`mixed_9`, `mixed_10`).

    Attributes:
      max_pool: the pool tower takes a 3x3 stride-1 max instead of an average. The TF graph has
        this quirk in its last block (`mixed_10`) only.
    """

    max_pool: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        branch_1x1 = ConvBNReLU(320, (1, 1), name="conv")(x)
        a = ConvBNReLU(384, (1, 1), name="tower_conv")(x)
        a_row = ConvBNReLU(384, (1, 3), padding=(0, 1), name="tower_mixed_conv")(a)
        a_column = ConvBNReLU(384, (3, 1), padding=(1, 0), name="tower_mixed_conv_1")(a)
        b = ConvBNReLU(448, (1, 1), name="tower_1_conv")(x)
        b = ConvBNReLU(384, (3, 3), padding=(1, 1), name="tower_1_conv_1")(b)
        b_row = ConvBNReLU(384, (1, 3), padding=(0, 1), name="tower_1_mixed_conv")(b)
        b_column = ConvBNReLU(384, (3, 1), padding=(1, 0), name="tower_1_mixed_conv_1")(b)
        if self.max_pool:
            pooled = _max_pool_3x3_same(x)
        else:
            pooled = _avg_pool_3x3_same(x)
        branch_pool = ConvBNReLU(192, (1, 1), name="tower_2_conv")(pooled)
        return jnp.concatenate([branch_1x1, a_row, a_column, b_row, b_column, branch_pool], axis=-1)


class FIDInception(nn.Module):
    """The FID Inception-v3 up to its 2048-d pool features.

    Call with variables from `xraygan_jax.pretrained.inception_weights.load_params()` on images
    already preprocessed by `preprocess` (float32, NHWC, 299x299x3, values (x - 128) / 128).
    """

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps preprocessed images [N, 299, 299, 3] to pool features [N, 2048]."""
        if x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"FIDInception expects preprocessed images of shape [N, {INPUT_SIZE}, "
                f"{INPUT_SIZE}, 3], got {x.shape}; run inception.preprocess first"
            )
        x = ConvBNReLU(32, (3, 3), strides=2, name="conv")(x)
        x = ConvBNReLU(32, (3, 3), name="conv_1")(x)
        x = ConvBNReLU(64, (3, 3), padding=(1, 1), name="conv_2")(x)
        x = _max_pool_3x3_stride_2(x)
        x = ConvBNReLU(80, (1, 1), name="conv_3")(x)
        x = ConvBNReLU(192, (3, 3), name="conv_4")(x)
        x = _max_pool_3x3_stride_2(x)
        x = InceptionA(32, name="mixed")(x)
        x = InceptionA(64, name="mixed_1")(x)
        x = InceptionA(64, name="mixed_2")(x)
        x = InceptionB(name="mixed_3")(x)
        x = InceptionC(128, name="mixed_4")(x)
        x = InceptionC(160, name="mixed_5")(x)
        x = InceptionC(160, name="mixed_6")(x)
        x = InceptionC(192, name="mixed_7")(x)
        x = InceptionD(name="mixed_8")(x)
        x = InceptionE(max_pool=False, name="mixed_9")(x)
        x = InceptionE(max_pool=True, name="mixed_10")(x)
        # AvgPool(8) on the final 8x8 map: the global mean.
        return jnp.mean(x, axis=(1, 2))


def _tf1_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF1 `resize_bilinear` source taps (align_corners=False, half_pixel_centers=False).

    Mirrors `compute_interpolation_weights` in TensorFlow's resize_bilinear_op.cc, in float32 as
    TF computes it: src = dst * (in / out), lower = floor(src), upper = min(ceil(src), in - 1),
    lerp = src - lower.
    """
    scale = np.float32(in_size / out_size)
    source = np.arange(out_size, dtype=np.float32) * scale
    lower = np.floor(source)
    upper = np.minimum(np.ceil(source), in_size - 1)
    return lower.astype(np.int32), upper.astype(np.int32), (source - lower).astype(np.float32)


def resize_bilinear_tf1(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """Resizes NHWC images to `size` x `size` exactly as TF1's `tf.image.resize_bilinear`.

    Not `jax.image.resize`: that one uses half-pixel centres (and antialiasing when shrinking),
    which changes FID values. The order of operations follows TF's kernel (rows of the two
    neighbouring source rows interpolated along x first, then along y) so the result matches it to
    float32 rounding.

    Args:
      images: [N, H, W, C] array, any real dtype (cast to float32).
      size: output height and width.

    Returns:
      float32 [N, size, size, C].
    """
    x = images.astype(jnp.float32)
    in_height, in_width = x.shape[1], x.shape[2]
    if (in_height, in_width) == (size, size):
        return x
    left, right, x_lerp = _tf1_bilinear_taps(in_width, size)
    top, bottom, y_lerp = _tf1_bilinear_taps(in_height, size)
    x_lerp = jnp.asarray(x_lerp)[None, None, :, None]
    y_lerp = jnp.asarray(y_lerp)[None, :, None, None]
    x_left, x_right = x[:, :, left], x[:, :, right]
    rows = x_left + (x_right - x_left) * x_lerp
    rows_top, rows_bottom = rows[:, top], rows[:, bottom]
    return rows_top + (rows_bottom - rows_top) * y_lerp


def preprocess(images: jax.Array) -> jax.Array:
    """The standard FID input pipeline: uint8 NHWC (1 or 3 channels, any size) -> network input.

    Args:
      images: [N, H, W, C] holding integer values 0..255 (uint8, or float after
        `pixels.quantize`), C = 1 (grayscale, repeated) or 3 (RGB).

    Returns:
      float32 [N, 299, 299, 3] with values (x - 128) / 128.
    """
    x = resize_bilinear_tf1(images, INPUT_SIZE)
    x = (x - 128.0) / 128.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    return x
