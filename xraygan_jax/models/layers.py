"""The DCGAN's 4x4 stride-2 convolutions, written so that XLA CPU runs their gradients fast.

`UpConv2x` is PyTorch's `ConvTranspose2d(C, F, 4, 2, 1, bias=False)` (the generator's
up-sampling) and `DownConv2x` PyTorch's `Conv2d(C, F, 4, 2, 1, bias=False)` (the
discriminator's down-sampling). Both keep PyTorch's parameter as "kernel" of shape (4, 4, C, F),
`kernel[i, j, c, f] == torch_weight[c, f, i, j]` (ConvTranspose2d) or `torch_weight[f, c, i, j]`
(Conv2d).

Why not `flax.linen.ConvTranspose`: XLA differentiates a transposed convolution into a
window-dilated convolution with no fast CPU path (docs/performance.md, section "Transposed
convolutions"). A transposed convolution is the adjoint of the strided convolution with the
kernel's in/out axes swapped, so `up_conv_2x` has a custom VJP made of strided convolutions,
which XLA runs fast: input gradient = strided_conv(dy, kernel^T), kernel gradient = that
convolution's own kernel gradient. Symmetrically `down_conv_2x` takes its
input gradient from `transposed_conv`. The forward transposed convolution (`transposed_conv`)
is either `lax.conv_transpose` or the phase-decomposed form (below), whichever is faster for
the shape.

The phase-decomposed form (`up_conv_2x_phases`): output row y = 2m + r only sees two input
rows, and which 4x4 tap meets which of them depends only on the phase r. PyTorch's definition
`out[2*iy - 1 + i] += x[iy] * w[i]` gives, per phase r and 2x2 window tap t:
    r = 0: rows m - 1 (t = 0) <- i = 3, m (t = 1) <- i = 1
    r = 1: rows m (t = 0) <- i = 2, m + 1 (t = 1) <- i = 0
and the same along columns. `_PHASE_TAPS` holds this table as a constant 0/1 tensor. The layer is
ONE stride-1 2x2 convolution of the input padded by 1, to 4*F channels with the kernel gathered
from the 4x4 one: window (m, n) holds all four phases' sums for windows starting there, and
`interleave_phases` takes phase (ry, rx) of output pixel (2m + ry, 2n + rx) from window
(m + ry, n + rx). It computes (H+1)(W+1)/(HW) of the transposed convolution's multiply-adds
(1.27x at 8x8); the earlier 3x3 form computed 2.25x (it wasted 5 of every 9 taps).

Timings of each form per layer, and of the rewrites tried and dropped: docs/performance.md,
sections "Transposed convolutions" and "The DC-cGAN step: rewrites measured on earlier code".
"""

from collections.abc import Callable
from typing import Any

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
    """[phase r, 2x2 window tap t, 4x4 tap i] = 1 where tap i of the 4x4 kernel lands on tap t."""
    taps = np.zeros((2, 2, 4), np.float32)
    taps[0, 0, 3] = taps[0, 1, 1] = 1.0  # phase 0: input rows m - 1 and m
    taps[1, 0, 2] = taps[1, 1, 0] = 1.0  # phase 1: input rows m and m + 1
    return taps


_PHASE_TAPS = _phase_taps()


def phase_kernel(kernel: jax.Array) -> jax.Array:
    """The 2x2 stride-1 kernel (2, 2, C, 4*F) of `UpConv2x` gathered from its (4, 4, C, F) kernel.

    Output channel (ry * 2 + rx) * F + f produces phase (ry, rx) of feature f.

    Args:
        kernel: (4, 4, C, F), `kernel[i, j, c, f] == torch ConvTranspose2d weight[c, f, i, j]`.

    Returns:
        (2, 2, C, 4 * F) kernel for a stride-1 convolution of the input padded by 1.
    """
    taps = jnp.asarray(_PHASE_TAPS, kernel.dtype)
    gathered = jnp.einsum("ati,buj,ijcf->tucabf", taps, taps, kernel)
    in_features, out_features = kernel.shape[2], kernel.shape[3]
    return gathered.reshape(2, 2, in_features, 4 * out_features)


def interleave_phases(windows: jax.Array) -> jax.Array:
    """(B, H+1, W+1, 4*F) 2x2-window outputs -> (B, 2H, 2W, F) image, phase by phase.

    Pixel (2m + ry, 2n + rx) is window (m + ry, n + rx), channel (ry*2 + rx)*F + f: phase 0
    of a row reads input rows m - 1 and m (window m of the padded input), phase 1 rows m and
    m + 1 (window m + 1). Written as a sum of the four phases, each zero-padded into its place,
    which XLA CPU fuses into one loop, faster than `jnp.stack` of the phases (docs/performance.md,
    section "Phase interleave").
    """
    batch, rows, columns, channels = windows.shape
    height, width, features = rows - 1, columns - 1, channels // 4
    windows = windows.reshape(batch, rows, columns, 2, 2, features)
    image = jnp.zeros((batch, height, 2, width, 2, features), windows.dtype)
    for ry, rx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        phase = windows[:, ry : ry + height, None, rx : rx + width, None, ry, rx]
        image += jnp.pad(phase, ((0, 0), (0, 0), (ry, 1 - ry), (0, 0), (rx, 1 - rx), (0, 0)))
    return image.reshape(batch, 2 * height, 2 * width, features)


def up_conv_2x_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1, no bias) as one 2x2 conv plus a phase interleave.

    Args:
        x: (B, H, W, C) float.
        kernel: (4, 4, C, F), PyTorch's weight transposed as (kH, kW, in, out).

    Returns:
        (B, 2H, 2W, F).
    """
    windows = jax.lax.conv_general_dilated(
        x,
        phase_kernel(kernel),
        window_strides=(1, 1),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return interleave_phases(windows)


def strided_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch Conv2d(k=4, s=2, p=1, no bias): (B, H, W, C) x (4, 4, C, F) -> (B, H/2, W/2, F)."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(2, 2),
        padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def transposed_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """ConvTranspose2d(k=4, s=2, p=1) values by whichever exact form is faster for the shape.

    Not for differentiation (its autodiff is XLA's slow one): `up_conv_2x` is this with a fast VJP.
    The phase form wins from 8x8 inputs with 8 or more output channels and loses on 4x4 inputs
    and few output channels (docs/performance.md, section "Transposed convolutions").
    """
    if x.shape[1] >= 8 and kernel.shape[-1] >= 8:
        return up_conv_2x_phases(x, kernel)
    return conv_transpose_reference(x, kernel)


@jax.custom_vjp
def up_conv_2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch ConvTranspose2d(k=4, s=2, p=1, no bias), with a gradient XLA CPU runs fast.

    Args:
        x: (B, H, W, C) float.
        kernel: (4, 4, C, F), PyTorch's weight transposed as (kH, kW, in, out).

    Returns:
        (B, 2H, 2W, F).
    """
    return transposed_conv(x, kernel)


def _up_conv_2x_forward(x, kernel):
    return transposed_conv(x, kernel), (x, kernel)


def _up_conv_2x_backward(residuals, output_grad):
    # The transposed convolution is the adjoint of the strided convolution with the kernel's
    # in/out swapped, so its input gradient IS that strided convolution of output_grad, and its
    # kernel gradient is that convolution's kernel gradient with cotangent x. Both are XLA's
    # fast strided-convolution kernels; autodiff of lax.conv_transpose gives a window-dilated
    # convolution instead, which XLA CPU runs slowly (docs/performance.md, section "Transposed
    # convolutions").
    x, kernel = residuals
    x_grad, pullback = jax.vjp(
        lambda swapped: strided_conv(output_grad, swapped), kernel.transpose(0, 1, 3, 2)
    )
    (swapped_grad,) = pullback(x)
    return x_grad, swapped_grad.transpose(0, 1, 3, 2)


up_conv_2x.defvjp(_up_conv_2x_forward, _up_conv_2x_backward)


@jax.custom_vjp
def down_conv_2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """PyTorch Conv2d(k=4, s=2, p=1, no bias), with its input gradient by `transposed_conv`.

    Args:
        x: (B, H, W, C) float.
        kernel: (4, 4, C, F).

    Returns:
        (B, H/2, W/2, F).
    """
    return strided_conv(x, kernel)


def _down_conv_2x_forward(x, kernel):
    return strided_conv(x, kernel), (x, kernel)


def _down_conv_2x_backward(residuals, output_grad):
    x, kernel = residuals
    # The input gradient is the transposed convolution with the in/out-swapped kernel, faster than
    # XLA's own lhs-dilated convolution (docs/performance.md, section "Transposed convolutions").
    # It is `up_conv_2x`, not `transposed_conv`, so that a second derivative (R1 and WGAN-GP
    # differentiate this input gradient) takes up_conv_2x's strided-convolution VJP too, not
    # autodiff of lax.conv_transpose (docs/performance.md, section "Gradient penalties", has the
    # R1 step both ways). The kernel gradient stays XLA's (fastest of those measured).
    x_grad = up_conv_2x(output_grad, kernel.transpose(0, 1, 3, 2))
    _, pullback = jax.vjp(lambda k: strided_conv(x, k), kernel)
    (kernel_grad,) = pullback(output_grad)
    return x_grad, kernel_grad


down_conv_2x.defvjp(_down_conv_2x_forward, _down_conv_2x_backward)


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


class _FourByFourStrideTwo(nn.Module):
    """A bias-free 4x4, stride-2, padding-1 layer with PyTorch's kernel layout (see subclasses).

    Attributes:
        features: output channels.
        kernel_init: initialiser of "kernel" (4, 4, C, features); DCGAN's normal(0, 0.02).
        dtype: the dtype the convolution runs in (input and kernel are cast to it), e.g.
            jnp.bfloat16 for mixed precision; None = the input's. The kernel is stored as
            kernel_init makes it (float32), so its gradient arrives in float32 through the cast,
            while the custom VJPs run in `dtype` and return cotangents in their inputs' dtype (as
            `jax.custom_vjp` requires).
    """

    features: int
    kernel_init: Callable = dcgan_kernel_init
    dtype: Any = None

    @staticmethod
    def _apply(x: jax.Array, kernel: jax.Array) -> jax.Array:
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        if self.dtype is not None:
            x = x.astype(self.dtype)
        return self._apply(x, kernel.astype(x.dtype))


class DownConv2x(_FourByFourStrideTwo):
    """PyTorch `Conv2d(C, features, 4, 2, 1, bias=False)`: (B,H,W,C) -> (B,H/2,W/2,F)."""

    _apply = staticmethod(down_conv_2x)


class UpConv2x(_FourByFourStrideTwo):
    """PyTorch `ConvTranspose2d(C, features, 4, 2, 1, bias=False)`: (B,H,W,C) -> (B,2H,2W,F)."""

    _apply = staticmethod(up_conv_2x)
