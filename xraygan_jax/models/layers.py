"""Layers the GANs need that XLA CPU runs slowly in their textbook form.

`UpConv2x` is PyTorch's `ConvTranspose2d(C, F, kernel_size=4, stride=2, padding=1, bias=False)`,
the DCGAN generator's up-sampling layer, written in the phase-decomposed form: ONE stride-1 3x3
convolution to 4*F channels (one group of F per output phase), then depth-to-space. XLA lowers the
gradient of `flax.linen.ConvTranspose` to a window-dilated convolution that has no fast CPU path
(FACTS.md: 2,800 ms against 148 ms for this form, 16x16 -> 32x32, 128 -> 64 channels, batch 64).

Why it is exact: output row y = 2m + r of the transposed convolution only sees input rows m - 1,
m, m + 1, and which 4x4 tap meets which of them depends only on the phase r. PyTorch's definition
`out[2*iy - 1 + i] += x[iy] * w[i]` gives, per phase r and 3x3 tap t (input row m + t - 1):
    r = 0: t = 0 <- i = 3, t = 1 <- i = 1 (t = 2 unused)
    r = 1: t = 1 <- i = 2, t = 2 <- i = 0 (t = 0 unused)
and the same along columns. `_PHASE_TAPS` holds this table as a constant 0/1 tensor, so the 3x3
kernel is a gather (an einsum) of the 4x4 one and the layer keeps PyTorch's parameter: "kernel" of
shape (4, 4, C, F), `kernel[i, j, c, f] == torch_weight[c, f, i, j]`.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# DCGAN initialisation (Radford et al. 2015; the PyTorch DCGAN tutorial's `weights_init`).
dcgan_kernel_init = nn.initializers.normal(stddev=0.02)


def dcgan_scale_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """BatchNorm scale ~ normal(1, 0.02), as the PyTorch DCGAN tutorial initialises it."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _phase_taps() -> np.ndarray:
    """[phase r, 3x3 tap t, 4x4 tap i] = 1 where tap i of the 4x4 kernel lands on tap t."""
    taps = np.zeros((2, 3, 4), np.float32)
    taps[0, 0, 3] = taps[0, 1, 1] = 1.0
    taps[1, 1, 2] = taps[1, 2, 0] = 1.0
    return taps


_PHASE_TAPS = _phase_taps()


def phase_kernel(kernel: jax.Array) -> jax.Array:
    """The 3x3 stride-1 kernel (3, 3, C, 4*F) of `UpConv2x` gathered from its (4, 4, C, F) kernel.

    Output channel (ry * 2 + rx) * F + f produces phase (ry, rx) of feature f.

    Args:
        kernel: (4, 4, C, F), `kernel[i, j, c, f] == torch ConvTranspose2d weight[c, f, i, j]`.

    Returns:
        (3, 3, C, 4 * F) kernel for a SAME-padded stride-1 convolution.
    """
    taps = jnp.asarray(_PHASE_TAPS, kernel.dtype)
    gathered = jnp.einsum("ati,buj,ijcf->tucabf", taps, taps, kernel)
    in_features, out_features = kernel.shape[2], kernel.shape[3]
    return gathered.reshape(3, 3, in_features, 4 * out_features)


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """(B, H, W, block*block*F) -> (B, block*H, block*W, F); channel (ry*block + rx)*F + f."""
    batch, height, width, channels = x.shape
    features = channels // (block * block)
    x = x.reshape(batch, height, width, block, block, features)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, height * block, width * block, features)


def up_conv_2x_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1, no bias) as one 3x3 conv plus depth-to-space.

    Args:
        x: (B, H, W, C) float.
        kernel: (4, 4, C, F), PyTorch's weight transposed as (kH, kW, in, out).

    Returns:
        (B, 2H, 2W, F).
    """
    phases = jax.lax.conv_general_dilated(
        x,
        phase_kernel(kernel),
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return depth_to_space(phases)


# Per output phase r, the (4x4 tap, input offset) pairs that meet in output row 2m + r:
# out[2m] = Y[m, tap 1] + Y[m - 1, tap 3], out[2m + 1] = Y[m, tap 2] + Y[m + 1, tap 0].
_PHASE_SOURCES = (((1, 0), (3, -1)), ((2, 0), (0, 1)))


def up_conv_2x_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1, no bias) as one matmul plus a 16-tap col2im.

    Every input pixel times every tap, Y = x @ kernel (B*H*W, C) x (C, 16*F), then each output
    phase sums its four shifted taps of Y: PyTorch's own CPU algorithm (gemm + col2im), with no
    multiplications wasted and a gradient made of two matmuls and shifted slices.

    Args:
        x: (B, H, W, C) float.
        kernel: (4, 4, C, F), PyTorch's weight transposed as (kH, kW, in, out).

    Returns:
        (B, 2H, 2W, F).
    """
    batch, height, width, channels = x.shape
    features = kernel.shape[-1]
    taps = x.reshape(-1, channels) @ kernel.transpose(2, 0, 1, 3).reshape(channels, 16 * features)
    taps = taps.reshape(batch, height, width, 4, 4, features)
    padded = jnp.pad(taps, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
    rows = []
    for row_sources in _PHASE_SOURCES:
        columns = []
        for column_sources in _PHASE_SOURCES:
            columns.append(
                sum(
                    padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width, i, j]
                    for i, dy in row_sources
                    for j, dx in column_sources
                )
            )
        rows.append(jnp.stack(columns, axis=3))  # (B, H, W, 2 column phases, F)
    return jnp.stack(rows, axis=2).reshape(batch, 2 * height, 2 * width, features)


up_conv_2x = up_conv_2x_matmul


def conv_transpose_reference(
    x: jax.Array, kernel: jax.Array, *, stride: int = 2, padding: int = 1
) -> jax.Array:
    """PyTorch ConvTranspose2d(k, stride, padding, no bias) by `jax.lax.conv_transpose`.

    The slow, obviously-right form that `UpConv2x` is tested against: a transposed convolution
    is a convolution of the stride-dilated input, padded by k - 1 - padding, with the spatially
    flipped kernel.

    Args:
        x: (B, H, W, C).
        kernel: (k, k, C, F), `kernel[i, j, c, f] == torch weight[c, f, i, j]`.
        stride: PyTorch's stride.
        padding: PyTorch's padding.

    Returns:
        (B, (H - 1) * stride - 2 * padding + k, ..., F).
    """
    size = kernel.shape[0]
    edge = size - 1 - padding
    return jax.lax.conv_transpose(
        x,
        jnp.flip(kernel, axis=(0, 1)),
        strides=(stride, stride),
        padding=((edge, edge), (edge, edge)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


class UpConv2x(nn.Module):
    """PyTorch `ConvTranspose2d(C, features, 4, 2, 1, bias=False)`: (B,H,W,C) -> (B,2H,2W,features).

    Attributes:
        features: output channels.
        kernel_init: initialiser of "kernel" (4, 4, C, features); DCGAN's normal(0, 0.02).
    """

    features: int
    kernel_init: Callable = dcgan_kernel_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        return up_conv_2x(x, kernel.astype(x.dtype))
