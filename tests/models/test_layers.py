"""The phase-decomposed up-convolution equals PyTorch's ConvTranspose2d(k4, s2, p1).

Three implementations are compared: `layers.up_conv_2x` (the fast one), the
`jax.lax.conv_transpose` reference, and a NumPy scatter written from PyTorch's definition
    out[b, iy*s - p + i, ix*s - p + j, f] += x[b, iy, ix, c] * w[c, f, i, j]
in float64, so the reference is itself checked. Gradients are compared through a random
cotangent against the NumPy adjoints of that definition.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xraygan_jax.models import layers

TOLERANCE = 1e-5


def _full_size(height: int, stride: int, size: int) -> int:
    return (height - 1) * stride + size


def torch_conv_transpose(x: np.ndarray, kernel: np.ndarray, stride: int, padding: int):
    """PyTorch's ConvTranspose2d by its definition (scatter, then crop the padding)."""
    batch, height, width, _ = x.shape
    size, features = kernel.shape[0], kernel.shape[3]
    full = np.zeros(
        (batch, _full_size(height, stride, size), _full_size(width, stride, size), features)
    )
    for row in range(height):
        for column in range(width):
            full[
                :, row * stride : row * stride + size, column * stride : column * stride + size
            ] += np.einsum("bc,ijcf->bijf", x[:, row, column], kernel)
    return full[:, padding : full.shape[1] - padding, padding : full.shape[2] - padding]


def torch_conv_transpose_vjp(x, kernel, cotangent, stride: int, padding: int):
    """Adjoints of `torch_conv_transpose` w.r.t. x and kernel for an output cotangent."""
    batch, height, width, _ = x.shape
    size = kernel.shape[0]
    full = np.zeros(
        (batch, _full_size(height, stride, size), _full_size(width, stride, size), kernel.shape[3])
    )
    full[:, padding : full.shape[1] - padding, padding : full.shape[2] - padding] = cotangent
    x_grad = np.zeros_like(x)
    kernel_grad = np.zeros_like(kernel)
    for row in range(height):
        for column in range(width):
            window = full[
                :, row * stride : row * stride + size, column * stride : column * stride + size
            ]
            x_grad[:, row, column] = np.einsum("bijf,ijcf->bc", window, kernel)
            kernel_grad += np.einsum("bc,bijf->ijcf", x[:, row, column], window)
    return x_grad, kernel_grad


@pytest.fixture(scope="module")
def operands():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3))
    kernel = rng.normal(size=(4, 4, 3, 4))
    cotangent = rng.normal(size=(2, 10, 12, 4))
    return x, kernel, cotangent


def _vjp(function, x, kernel, cotangent):
    output, pullback = jax.vjp(
        function, jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32)
    )
    return np.asarray(output), *(
        np.asarray(grad) for grad in pullback(jnp.asarray(cotangent, jnp.float32))
    )


def test_reference_follows_pytorch_definition(operands):
    x, kernel, cotangent = operands
    expected = torch_conv_transpose(x, kernel, stride=2, padding=1)
    output, x_grad, kernel_grad = _vjp(layers.conv_transpose_reference, x, kernel, cotangent)
    expected_x_grad, expected_kernel_grad = torch_conv_transpose_vjp(x, kernel, cotangent, 2, 1)
    assert output.shape == expected.shape == (2, 10, 12, 4)
    np.testing.assert_allclose(output, expected, atol=TOLERANCE)
    np.testing.assert_allclose(x_grad, expected_x_grad, atol=TOLERANCE)
    np.testing.assert_allclose(kernel_grad, expected_kernel_grad, atol=5 * TOLERANCE)


def test_up_conv_equals_reference_in_values_and_gradients(operands):
    x, kernel, cotangent = operands
    output, x_grad, kernel_grad = _vjp(layers.up_conv_2x, x, kernel, cotangent)
    reference = _vjp(layers.conv_transpose_reference, x, kernel, cotangent)
    np.testing.assert_allclose(output, reference[0], atol=TOLERANCE)
    np.testing.assert_allclose(x_grad, reference[1], atol=TOLERANCE)
    np.testing.assert_allclose(kernel_grad, reference[2], atol=TOLERANCE)
    expected_x_grad, expected_kernel_grad = torch_conv_transpose_vjp(x, kernel, cotangent, 2, 1)
    np.testing.assert_allclose(output, torch_conv_transpose(x, kernel, 2, 1), atol=TOLERANCE)
    np.testing.assert_allclose(x_grad, expected_x_grad, atol=TOLERANCE)
    np.testing.assert_allclose(kernel_grad, expected_kernel_grad, atol=5 * TOLERANCE)


@pytest.mark.parametrize(
    "shape",
    [
        (2, 8, 10, 3, 8),  # the phase form of transposed_conv
        (2, 4, 6, 3, 8),  # small images: lax.conv_transpose
        (2, 16, 16, 3, 1),  # one output channel: lax.conv_transpose
    ],
)
def test_both_forms_of_transposed_conv_equal_the_definition(shape):
    batch, height, width, channels, features = shape
    rng = np.random.default_rng(2)
    x = rng.normal(size=(batch, height, width, channels))
    kernel = rng.normal(size=(4, 4, channels, features))
    cotangent = rng.normal(size=(batch, 2 * height, 2 * width, features))
    output, x_grad, kernel_grad = _vjp(layers.up_conv_2x, x, kernel, cotangent)
    expected_x_grad, expected_kernel_grad = torch_conv_transpose_vjp(x, kernel, cotangent, 2, 1)
    np.testing.assert_allclose(output, torch_conv_transpose(x, kernel, 2, 1), atol=TOLERANCE)
    np.testing.assert_allclose(x_grad, expected_x_grad, atol=TOLERANCE)
    np.testing.assert_allclose(kernel_grad, expected_kernel_grad, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("size", [8, 32])  # lax and phase forms of the input gradient
def test_down_conv_equals_strided_conv_in_values_and_gradients(size):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, size, size, 3))
    kernel = rng.normal(size=(4, 4, 3, 8))
    cotangent = rng.normal(size=(2, size // 2, size // 2, 8))
    output, x_grad, kernel_grad = _vjp(layers.down_conv_2x, x, kernel, cotangent)
    reference = _vjp(layers.strided_conv, x, kernel, cotangent)
    for got, expected in zip((output, x_grad, kernel_grad), reference, strict=True):
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=1e-6)
    # The strided convolution is PyTorch's Conv2d(k4, s2, p1): the adjoint of its
    # ConvTranspose2d, <conv(x), y> == <x, conv_transpose(y)>.
    y = rng.normal(size=cotangent.shape)
    flipped = kernel.transpose(0, 1, 3, 2)
    np.testing.assert_allclose(
        np.sum(output * y),
        np.sum(x * torch_conv_transpose(y, flipped, stride=2, padding=1)),
        rtol=1e-5,
    )


def test_up_conv_module_keeps_pytorch_parameter_layout():
    module = layers.UpConv2x(16)
    x = jnp.ones((2, 4, 4, 32))
    variables = module.init(jax.random.key(0), x)
    kernel = variables["params"]["kernel"]
    assert kernel.shape == (4, 4, 32, 16)
    # DCGAN initialisation: normal(0, 0.02) over 8,192 draws.
    assert abs(float(jnp.std(kernel)) - 0.02) < 0.001
    assert abs(float(jnp.mean(kernel))) < 0.001
    output = module.apply(variables, x)
    assert output.shape == (2, 8, 8, 16)
    np.testing.assert_allclose(output, layers.conv_transpose_reference(x, kernel), atol=TOLERANCE)


def test_first_generator_layer_is_a_dense_layer():
    """ConvTranspose2d(k4, s1, p0) on a 1x1 input == Dense to 16*F reshaped to 4x4xF."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 7)).astype(np.float32)
    dense_kernel = rng.normal(size=(7, 4 * 4 * 5)).astype(np.float32)
    dense = (z @ dense_kernel).reshape(3, 4, 4, 5)
    # Dense column (i*4 + j)*F + f is tap (i, j) of feature f.
    conv_kernel = dense_kernel.reshape(7, 4, 4, 5).transpose(1, 2, 0, 3)
    x = z.reshape(3, 1, 1, 7)
    np.testing.assert_allclose(
        layers.conv_transpose_reference(x, conv_kernel, stride=1, padding=0), dense, atol=TOLERANCE
    )
    np.testing.assert_allclose(
        torch_conv_transpose(x.astype(np.float64), conv_kernel, stride=1, padding=0),
        dense,
        atol=TOLERANCE,
    )


def test_phase_kernel_uses_each_tap_once():
    """Every 4x4 tap lands on exactly one (phase, 2x2 window tap) pair, per axis."""
    taps = layers._PHASE_TAPS
    assert taps.shape == (2, 2, 4)
    np.testing.assert_array_equal(taps.sum(axis=(0, 1)), np.ones(4))
    np.testing.assert_array_equal(taps.sum(axis=2), np.ones((2, 2)))


def test_interleave_phases_places_windows():
    windows = jnp.arange(3 * 3 * 4, dtype=jnp.float32).reshape(1, 3, 3, 4)
    out = np.asarray(layers.interleave_phases(windows))
    assert out.shape == (1, 4, 4, 1)
    # Pixel (2m + ry, 2n + rx) is window (m + ry, n + rx), channel ry*2 + rx.
    for m, n, ry, rx in np.ndindex(2, 2, 2, 2):
        assert out[0, 2 * m + ry, 2 * n + rx, 0] == windows[0, m + ry, n + rx, ry * 2 + rx]


# bfloat16 keeps 8 significant bits (relative spacing 2^-8 ~ 0.4%); a sum of K products of
# rounded inputs has a random-sign error of about 2^-8 of the output's scale. 2% of the largest
# |expected| value leaves a margin of about 5x, and is far below any wrong tap or phase.
BF16_TOLERANCE = 0.02


@pytest.mark.parametrize(
    ("module", "shape", "features"),
    [
        (layers.UpConv2x, (2, 8, 8, 3), 8),  # the phase form
        (layers.UpConv2x, (2, 4, 4, 3), 8),  # lax.conv_transpose
        (layers.DownConv2x, (2, 8, 8, 3), 8),  # input gradient by lax.conv_transpose
        (layers.DownConv2x, (2, 32, 32, 3), 8),  # input gradient by the phase form
    ],
)
def test_bfloat16_layers_compute_in_bfloat16_and_keep_float32_gradients(module, shape, features):
    """Mixed precision: a bf16 layer's kernel is float32, its convolutions (custom VJPs
    included) run in bf16, and the gradients reaching the float32 kernel and input are float32
    and match float32's within bf16's precision."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=shape), jnp.float32)
    mixed, full = module(features, dtype=jnp.bfloat16), module(features)
    variables = mixed.init(jax.random.key(0), x)
    assert variables["params"]["kernel"].dtype == jnp.float32
    output, pullback = jax.vjp(lambda v, x: mixed.apply(v, x), variables, x)
    reference, reference_pullback = jax.vjp(lambda v, x: full.apply(v, x), variables, x)
    assert output.dtype == jnp.bfloat16 and reference.dtype == jnp.float32
    cotangent = jnp.asarray(rng.normal(size=reference.shape), jnp.float32)
    kernel_grad, x_grad = pullback(cotangent.astype(jnp.bfloat16))
    reference_kernel_grad, reference_x_grad = reference_pullback(cotangent)
    pairs = {
        "output": (output, reference),
        "kernel gradient": (
            kernel_grad["params"]["kernel"],
            reference_kernel_grad["params"]["kernel"],
        ),
        "input gradient": (x_grad, reference_x_grad),
    }
    for name, (got, expected) in pairs.items():
        if name != "output":
            assert got.dtype == jnp.float32, name
        error = float(jnp.max(jnp.abs(got.astype(jnp.float32) - expected)))
        scale = float(jnp.max(jnp.abs(expected)))
        assert 0 < error <= BF16_TOLERANCE * scale, (name, error, scale)


@pytest.mark.parametrize("size", [8, 32])  # lax and phase forms of the input gradient
def test_down_conv_second_derivatives_equal_strided_convs(size):
    """R1 and WGAN-GP differentiate D's input gradient: the custom VJP must be twice right."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(4, 4, 3, 8)), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(2, size // 2, size // 2, 8)), jnp.float32)

    def penalty(conv, x, kernel):
        # A nonlinearity between the convolution and the sum, as in D, so that the input
        # gradient depends on x as well as on the kernel.
        input_grad = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, kernel)) * weights))(x)
        return jnp.sum(jnp.square(input_grad))

    got = jax.grad(functools.partial(penalty, layers.down_conv_2x), argnums=(0, 1))(x, kernel)
    expected = jax.grad(functools.partial(penalty, layers.strided_conv), argnums=(0, 1))(x, kernel)
    for name, got_grad, expected_grad in zip(("x", "kernel"), got, expected, strict=True):
        scale = float(jnp.max(jnp.abs(expected_grad)))
        assert scale > 0, name
        np.testing.assert_allclose(got_grad, expected_grad, atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("function", [layers.up_conv_2x, layers.down_conv_2x])
def test_custom_vjps_take_bfloat16_and_return_cotangents_in_its_dtype(function):
    """`jax.custom_vjp` wants cotangents in the primal's dtype: bf16 in, bf16 out, no upcast."""
    x = jnp.ones((2, 8, 8, 8), jnp.bfloat16)
    kernel = jnp.full((4, 4, 8, 8), 0.5, jnp.bfloat16)
    output, pullback = jax.vjp(function, x, kernel)
    x_grad, kernel_grad = pullback(jnp.ones_like(output))
    assert output.dtype == x_grad.dtype == kernel_grad.dtype == jnp.bfloat16
