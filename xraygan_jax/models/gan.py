"""Conditional GANs of the two reports, as Flax Linen modules (NHWC, one channel, [-1, 1]).

DC-cGAN (the first report; the PyTorch DCGAN tutorial made conditional):
  G: [z, embed(label)] -> dense to 4x4 x ngf*2^(n-1), BatchNorm, ReLU -> n up-convolutions
     (PyTorch ConvTranspose2d k4 s2 p1), each but the last followed by BatchNorm and ReLU, the
     channels halving; the last one maps to 1 channel and tanh. n = log2(image_size) - 2:
     32 -> 3 up-convolutions, 64 -> 4 (the tutorial), 128 -> 5.
     The tutorial's first layer, ConvTranspose2d(k4, s1, p0) on a 1x1 input, IS a dense layer
     whose output is reshaped to 4x4 (`out[i, j, f] = sum_c z[c] * w[c, f, i, j]`); it is written
     as `nn.Dense` (tests/models/test_layers.py checks the identity).
  D: n strided convolutions (Conv2d k4 s2 p1) from ndf channels doubling, LeakyReLU 0.2,
     BatchNorm after every one but the first (as the tutorial), down to 4x4, then a 4x4 valid
     convolution to one logit.
  Initialisation as the tutorial's `weights_init`: convolution (and the dense 4x4 projection)
  kernels normal(0, 0.02), BatchNorm scale normal(1, 0.02), bias 0; label embeddings normal(0, 1)
  like PyTorch's `nn.Embedding`.
  BatchNorm: momentum 0.9 and epsilon 1e-5 in Flax's convention, i.e. PyTorch's momentum 0.1.
  (PyTorch updates running = (1 - m_torch) * running + m_torch * batch, Flax running = m * running
  + (1 - m) * batch, so m_flax = 1 - m_torch. PyTorch's running variance is the unbiased one, Flax's
  the biased one; they differ by n/(n-1) with n >= 1024 here.)

FC-cGAN (the second report, Keras):
  G: [z, embed(label)] -> per width in g_features: Dense, LeakyReLU 0.2, BatchNorm -> Dense to
     image_size^2, tanh. Keras' BatchNorm momentum 0.8 is the SAME number in Flax's convention (both
     update running = m * running + (1 - m) * batch); Keras' epsilon is 1e-3.
  D: flattened image (and label plane) -> per width in d_features: Dense, ReLU (the report's
     words; `negative_slope` > 0 gives LeakyReLU), Dropout -> Dense to one logit.
  Initialisation as Keras: Glorot-uniform kernels, zero bias. Any image size.

Label conditioning (`conditioning`, config.model.conditioning):
  G always concatenates a learned `embed_dim` embedding of the label with z.
  D "plane": a learned image_size^2 embedding of the label, reshaped to an extra image channel
     (flattened and concatenated for the FC discriminator).
  D "projection" (Miyato & Koyama 2018): logit += <embed(label), phi(x)> with phi(x) the
     spatially averaged 4x4 feature map (DC; Miyato sums, the mean keeps the term at the logit's
     scale at initialisation) or the last hidden layer (FC); embedding init normal(0, 0.02).

  D "acgan" (Odena et al. 2017): D does not see the label; a second head predicts it from the
     same features, its class_logits [B, num_classes] returned beside the logits. The training
     step adds the cross-entropy of that head to both losses (xraygan_jax.train.steps). It needs
     both classes in one GAN (config.train.per_class=False).

Discriminator options for small sets (config.model):
  d_norm         "batch" (the tutorial's BatchNorm after every down-convolution but the first),
                 "layer" (LayerNorm over each image's H, W, C) or "none".
  spectral_norm  every weight of D (convolutions, dense layers, the projection embedding) divided
                 by its largest singular value (Miyato et al. 2018, `flax.linen.SpectralNorm`),
                 estimated by one power iteration per call in train mode. The power-iteration
                 vectors live in D's "batch_stats" collection, so they are part of the training
                 state and its checkpoints. It needs d_norm "layer" or "none": BatchNorm after a
                 normalised layer multiplies its output by the batch's 1/std, which undoes the
                 Lipschitz bound spectral normalisation is there for.
  minibatch_std  the group size of a minibatch standard deviation channel before D's last
                 layer (Karras et al. 2018, kept in StyleGAN and StyleGAN2 with groups of 4);
                 0, the default, leaves it out. Per group of that many consecutive images of a
                 batch, the standard deviation of each 4x4 feature over the group, averaged to one
                 number, joins each image of the group as a constant channel, so that D can tell
                 a batch of near-copies from a varied one and a collapsed G is penalised. A batch
                 the group does not divide (a partial last batch) is grouped by the largest
                 divisor of its size below the group size. Groups are consecutive images, so on
                 several devices the groups, and D's outputs, are those of one device as long as
                 each device's share is a multiple of the group. DC discriminator only.

Generator options (config.model):
  g_upsample     how the DC generator doubles its resolution: "transposed" (the reports' 4x4
                 stride-2 transposed convolutions, the default) or "resize" (nearest-neighbour
                 2x upsampling, then a stride-1 3x3 convolution without bias, DCGAN
                 initialisation: the resize-convolution of Odena et al. 2016, which cannot
                 leave the checkerboard pattern a stride-2 transposed convolution leaves where
                 its taps overlap unevenly). It costs 9 multiply-adds per input channel and
                 output pixel against the transposed convolution's 4. DC generator only.
  output_noise   per-pixel noise at the DC generator's output, the way StyleGAN's noise inputs
                 add stochastic detail (Karras et al. 2019), for the film's grain: the last
                 up-convolution gives a second channel, the noise's per-pixel log-scale, and G
                 returns tanh(content + softplus(log_scale + offset) * filter * noise), with
                 white noise filtered by a learned 3x3 kernel (initially the identity) and a
                 learned offset (initially -3.5: about 0.03, a few grey levels). Inception
                 features weigh pixel-scale texture heavily at these sizes (docs/models.md): a
                 generator that has to make grain from its up-convolutions makes it of the
                 wrong kind. The noise of each image is drawn from a key made of the bits of
                 its own latent vector (`latent_noise`), so G stays a function of (z, label):
                 sampling, FID, several devices and exact resume need no key of their own.
                 DC generator only.

SN-ResNet cGAN (kind "sngan"; Miyato et al. 2018, Miyato & Koyama 2018, the residual blocks
of BigGAN, Brock et al. 2019, without attention or hierarchical z). The reports' DC-cGAN did not
learn the phantom set within a CPU budget (docs/models.md); this is the published design that
trains stably on small sets with hinge loss and few D steps, built from layers XLA CPU runs fast:
  G: z -> dense to 4x4 x ngf*min(16, 2^n) -> n residual up-blocks -> BatchNorm, ReLU, 3x3 conv to
     1 channel, tanh; n = log2(image_size) - 2 (32 -> 3, 64 -> 4, 128 -> 5 blocks). Block i
     maps ngf*min(16, 2^(n-i)) to ngf*min(16, 2^(n-1-i)) channels (SNGAN's widths at 64 and 128):
         h = conv3x3(relu(cBN_2(conv3x3(upsample(relu(cBN_1(x, y)))), y)))
         out = h + upsample(conv1x1(x))
     upsample is nearest-neighbour 2x (a broadcast): no transposed convolution, whose gradient
     XLA CPU runs slowly (docs/performance.md, "Transposed convolutions") and which leaves
     checkerboard artefacts. The 1x1 shortcut runs before the upsampling, where it costs 4x less
     and gives the same result (nearest upsampling and a 1x1 convolution commute).
     The label enters through class-conditional BatchNorm (cBN, de Vries et al. 2017, as in
     Miyato & Koyama's G): BatchNorm without its own affine part, then a per-class scale
     (embedding initialised to 1) and shift (initialised to 0). G does not concatenate a label
     embedding with z, so model.embed_dim is unused.
  D: n down-blocks from ndf channels doubling (capped at ndf*16), then one block at 4x4 without
     downsampling, ReLU, sum over space, a dense logit plus the projection term
     <embed(label), features> (Miyato & Koyama 2018; conditioning "projection") or an ACGAN head
     ("acgan"). Block i (pre-activation except the first, which sees the image itself):
         h = avgpool(conv3x3(relu(conv3x3(relu(x)))))      out = h + conv1x1(avgpool(x))
     Downsampling is average pooling after the convolution (a reshape and a mean), not a strided
     convolution; the shortcut pools first (same result, 4x cheaper). The shortcut is the
     identity where neither the width nor the size changes.
     Spectral normalisation of every weight of D (config.model.spectral_norm, on in
     experiments/configs/sngan.py), no normalisation layer: d_norm must be "none".
  Initialisation as SNGAN's: 3x3 convolutions Glorot-uniform with gain sqrt(2), 1x1 shortcuts,
  dense layers and embeddings Glorot-uniform (the projection embedding normal(0, 0.02) as for the
  other kinds), biases 0. BatchNorm as the DC-cGAN's (momentum config.model.bn_momentum).
  Not supported, with the reason in the error: conditioning "plane" (the label as an extra input
  channel, which Miyato & Koyama found worse than projection, and which would bypass the
  projection this D is built around), d_norm "batch" or "layer" (SNGAN's D has none: BatchNorm
  makes each image's logit depend on the batch and rescales away spectral norm's Lipschitz
  bound), image sizes other than 32, 64 and 128.

Calls, for every kind:
    images = generator.apply(variables, z, labels, train=False)         # [B, S, S, 1] in [-1, 1]
    outputs = discriminator.apply(variables, images, labels, train=False)  # a DOutput
    outputs.logits                                                      # [B]
    outputs.class_logits                        # [B, num_classes] with an ACGAN head, else None
Every discriminator returns a DOutput, whatever its head, so callers never ask which kind it is.
`make_gan` checks the options once (`check_model_options`, `check_image_size`); the modules
trust the fields they are built with.
With train=True, pass mutable=["batch_stats"] (and rngs={"dropout": key} to the FC
discriminator). Every module takes `axis_name`: BatchNorm then averages its batch statistics
over that mapped axis (inside shard_map or pmap), so they are those of the global batch.

Mixed precision (`dtype`, config.train.compute_dtype): every module takes `dtype`, the dtype its
activations and convolutions/matmuls run in (jnp.bfloat16 for accelerators; None, the default,
follows the inputs and parameters as Flax does, so float32 stays float32 and float64 float64).
Parameters stay float32 (Flax's param_dtype), and are cast to `dtype` where used, so the
gradients and the optimiser state are float32. BatchNorm and LayerNorm get `dtype` as their
output dtype only: Flax computes their statistics, running averages and normalisation in float32
(force_float32_reductions), then casts the result; spectral normalisation works on the float32
kernels. G's images and D's logits are returned in at least float32, and the projection and
ACGAN heads run in at least float32 on D's pooled features, so sampling, FID and the losses run in
float32 when `dtype` is bfloat16.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from xraygan_jax.models import layers

SUPPORTED_IMAGE_SIZES = (32, 64, 128)  # the dcgan and sngan architectures; fcgan takes any size
KINDS = ("dcgan", "fcgan", "sngan")
CONDITIONINGS = ("plane", "projection", "acgan")
D_NORMS = ("batch", "layer", "none")
G_UPSAMPLES = ("transposed", "resize")  # the DC generator's (model.g_upsample)
# config.train.compute_dtype -> the modules' `dtype`. "float32" casts nothing: the modules follow
# their float32 parameters and inputs, exactly as before mixed precision existed.
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}

# softplus(-3.5) = 0.03: the output noise starts at a few grey levels, the phantom's scale.
NOISE_OFFSET_INIT = -3.5
# PyTorch BatchNorm2d's epsilon; Keras BatchNormalization's.
_TORCH_BN_EPSILON = 1e-5
_KERAS_BN_EPSILON = 1e-3
_LEAKY_SLOPE = 0.2
# PyTorch nn.Embedding initialises normal(0, 1).
_embedding_init = nn.initializers.normal(stddev=1.0)


@flax.struct.dataclass
class DOutput:
    """What every discriminator returns; a pytree, so it passes through jit, vjp and eval_shape.

    Attributes:
        logits: real-against-fake logits [B], in at least float32 (module docstring).
        class_logits: the ACGAN head's logits [B, num_classes] (conditioning "acgan"); None
            without that head.
    """

    logits: jax.Array
    class_logits: jax.Array | None = None


def num_up_convs(image_size: int, kind: str = "dcgan") -> int:
    """Up-sampling layers of G (= down-sampling layers of D): log2(size) - 2.

    The DC generator's up-convolutions, or the SN-ResNet generator's up-blocks (kind "sngan").

    Args:
        image_size: side of the square images, one of SUPPORTED_IMAGE_SIZES.
        kind: the architecture the error message names.

    Returns:
        3 for 32, 4 for 64, 5 for 128.

    Raises:
        ValueError: for a size the architecture does not support.
    """
    if image_size not in SUPPORTED_IMAGE_SIZES:
        supported = ", ".join(str(size) for size in SUPPORTED_IMAGE_SIZES)
        raise ValueError(
            f"image_size {image_size} is not supported by the {kind} architecture; "
            f"supported: {supported}"
        )
    return int(math.log2(image_size)) - 2


def compute_dtype(name: str) -> Any:
    """The modules' `dtype` for config.train.compute_dtype: None for "float32" (no casts),
    jnp.bfloat16 for "bfloat16".

    Raises:
        ValueError: an unknown name (the message lists the valid ones and names the flag).
    """
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype {name!r} is unknown; use one of: {', '.join(COMPUTE_DTYPES)} "
            "(--config.train.compute_dtype)"
        )
    return COMPUTE_DTYPES[name]


def _at_least_float32(x: jax.Array) -> jax.Array:
    """x in float32 if it is in a narrower float (bf16 activations), else unchanged."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _dcgan_batch_norm(
    train: bool, momentum: float, axis_name: str | None, dtype: Any = None
) -> nn.BatchNorm:
    """PyTorch's BatchNorm2d as the DCGAN tutorial uses it (eps 1e-5, scale normal(1, 0.02)).

    Called inside a compact method, so it becomes a submodule of the caller (BatchNorm_i).
    `dtype` is the output's; statistics and normalisation are float32 (module docstring).
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=_TORCH_BN_EPSILON,
        scale_init=layers.dcgan_scale_init,
        axis_name=axis_name,
        dtype=dtype,
    )


def minibatch_stddev(x: jax.Array, group_size: int) -> jax.Array:
    """x [B, H, W, C] with one more channel: its group's mean feature standard deviation.

    Karras et al. 2018 (module docstring, "minibatch_std"): the images of a batch fall into groups
    of `group_size` consecutive images (the largest divisor of B up to it, if it does not divide
    B); within a group, the standard deviation of every feature over the group's images (plus
    1e-8 under the square root, StyleGAN's), averaged over H, W and C, is one number, broadcast to
    an [H, W, 1] channel of each image of the group. Computed in at least float32.
    """
    batch = x.shape[0]
    group = max(d for d in range(1, min(group_size, batch) + 1) if batch % d == 0)
    grouped = _at_least_float32(x).reshape(batch // group, group, *x.shape[1:])
    spread = jnp.mean(jnp.sqrt(jnp.var(grouped, axis=1) + 1e-8), axis=(1, 2, 3))
    channel = jnp.broadcast_to(jnp.repeat(spread, group)[:, None, None, None], (*x.shape[:3], 1))
    return jnp.concatenate([x, channel.astype(x.dtype)], axis=-1)


def _check_conditioning(conditioning: str) -> None:
    if conditioning not in CONDITIONINGS:
        raise ValueError(
            f"conditioning {conditioning!r} is unknown; use one of: {', '.join(CONDITIONINGS)}"
        )


def _check_minibatch_std(group: int, kind: str) -> None:
    if not isinstance(group, int) or group < 0:
        raise ValueError(
            f"--config.model.minibatch_std={group!r} must be a whole number of images, at least 0 "
            "(0 leaves the channel out; StyleGAN uses 4)"
        )
    if group and kind != "dcgan":
        raise ValueError(
            f"--config.model.minibatch_std={group} is built for --config.model.kind=dcgan only, "
            f"not {kind}: its channel joins the DC discriminator's last 4x4 feature map, which "
            "the fcgan and sngan discriminators do not have; set --config.model.minibatch_std=0."
        )


def _check_g_upsample(upsample: str, kind: str) -> None:
    if upsample not in G_UPSAMPLES:
        raise ValueError(
            f"--config.model.g_upsample={upsample!r} is unknown; use one of: "
            f"{', '.join(G_UPSAMPLES)}"
        )
    if upsample != "transposed" and kind != "dcgan":
        raise ValueError(
            f"--config.model.g_upsample={upsample} is built for --config.model.kind=dcgan only, "
            f"not {kind}: the {kind} generator has its own upsampling; set "
            "--config.model.g_upsample=transposed."
        )


def _check_output_noise(output_noise: bool, kind: str) -> None:
    if output_noise and kind != "dcgan":
        raise ValueError(
            f"--config.model.output_noise=True is built for --config.model.kind=dcgan only, not "
            f"{kind}: its noise scale is a second channel of the DC generator's last "
            "up-convolution, which the fcgan and sngan generators do not have; set "
            "--config.model.output_noise=False."
        )


def _check_d_norm(d_norm: str) -> None:
    if d_norm not in D_NORMS:
        raise ValueError(
            f"--config.model.d_norm={d_norm!r} is unknown; use one of: {', '.join(D_NORMS)}"
        )


def check_discriminator_options(d_norm: str, spectral_norm: bool) -> None:
    """Raises ValueError for an unknown d_norm or spectral norm with BatchNorm (module docstring).

    The messages name the config flags (config.model.d_norm, config.model.spectral_norm).
    """
    _check_d_norm(d_norm)
    if spectral_norm and d_norm == "batch":
        raise ValueError(
            "--config.model.spectral_norm=True cannot be combined with "
            "--config.model.d_norm=batch: BatchNorm after a spectrally normalised layer rescales "
            "its output by the batch's 1/std and undoes the Lipschitz bound; set "
            "--config.model.d_norm=none (as SNGAN) or layer."
        )


def check_sngan_options(conditioning: str, d_norm: str) -> None:
    """Raises ValueError for the options the SN-ResNet cGAN (kind "sngan") cannot use.

    The messages name the flags and say why (module docstring). The conditioning is one of
    CONDITIONINGS (`check_model_options` checks that first).
    """
    if conditioning == "plane":
        raise ValueError(
            "--config.model.conditioning=plane cannot be used with --config.model.kind=sngan: "
            "its D is conditioned by projection (Miyato & Koyama 2018), which they found better "
            "than feeding the label as an extra input channel, and a label plane would bypass "
            "it; set --config.model.conditioning=projection (or acgan, with "
            "--config.train.per_class=false)."
        )
    if d_norm != "none":
        raise ValueError(
            f"--config.model.d_norm={d_norm} cannot be used with --config.model.kind=sngan: "
            "its D has no normalisation layer (SNGAN's), and BatchNorm or LayerNorm after a "
            "spectrally normalised convolution rescales its output by 1/std and undoes the "
            "Lipschitz bound (BatchNorm also makes each image's logit depend on its batch); "
            "set --config.model.d_norm=none."
        )


def check_model_options(model_config: ml_collections.ConfigDict) -> None:
    """The option combinations of config.model that a kind cannot build; nothing is built.

    The one check of the model section: `make_gan` runs it, and the modules trust the options
    they are built with. The image size, which comes from config.data, is `check_image_size`'s.

    Raises:
        ValueError: an unknown kind or conditioning, an unknown d_norm, spectral norm with
            dcgan's BatchNorm, a conditioning or d_norm sngan cannot use, a negative
            minibatch_std, an unknown g_upsample, or a minibatch_std, output_noise or resize
            g_upsample for a kind other than dcgan (the message names the flags and says why).
    """
    kind = model_config.kind
    if kind not in KINDS:
        raise ValueError(
            f"model kind {kind!r} is unknown; use one of: {', '.join(KINDS)} (--config.model.kind)"
        )
    _check_conditioning(model_config.conditioning)
    d_norm = model_config.get("d_norm", "batch")
    _check_minibatch_std(model_config.get("minibatch_std", 0), kind)
    _check_output_noise(model_config.get("output_noise", False), kind)
    _check_g_upsample(model_config.get("g_upsample", "transposed"), kind)
    if kind == "dcgan":
        check_discriminator_options(d_norm, bool(model_config.get("spectral_norm", False)))
    elif kind == "fcgan":
        _check_d_norm(d_norm)  # its D has no BatchNorm: "batch" means none, any spectral_norm
    else:
        check_sngan_options(model_config.conditioning, d_norm)


def check_image_size(kind: str, image_size: int) -> None:
    """Raises ValueError for an image size `kind` cannot build: dcgan and sngan take
    SUPPORTED_IMAGE_SIZES, fcgan any size (`num_up_convs`' message)."""
    if kind != "fcgan":
        num_up_convs(image_size, kind)


def discriminator_has_batch_norm(model_config: ml_collections.ConfigDict) -> bool:
    """Whether D normalises with BatchNorm, which in train mode makes each image's logit depend
    on the whole batch: dcgan's D with d_norm "batch" (fcgan's and sngan's D have none)."""
    return model_config.kind == "dcgan" and model_config.get("d_norm", "batch") == "batch"


class _DiscriminatorLayers:
    """How D builds its weighted layers and normalisations (shared by both kinds).

    Used inside a compact method: each call creates a submodule of the calling D.
    """

    def __init__(self, *, train: bool, spectral_norm: bool):
        self.train = train
        self.spectral_norm = spectral_norm

    def __call__(self, layer: nn.Module, *args):
        """layer(*args), through spectral normalisation when it is on."""
        if self.spectral_norm:
            return nn.SpectralNorm(layer)(*args, update_stats=self.train)
        return layer(*args)


def _label_plane(labels: jax.Array, num_classes: int, image_size: int) -> jax.Array:
    """A learned image_size^2 embedding of each label as one image channel (B, S, S, 1)."""
    plane = nn.Embed(
        num_classes, image_size * image_size, embedding_init=_embedding_init, name="label_plane"
    )(labels)
    return plane.reshape(labels.shape[0], image_size, image_size, 1)


def _projection(
    labels: jax.Array, features: jax.Array, num_classes: int, weighted: _DiscriminatorLayers
) -> jax.Array:
    """Miyato & Koyama's projection term <embed(label), features>, (B,).

    The embedding starts at normal(0, 0.02), the scale of the layer it sits beside (the logit
    layer); at normal(0, 1) the term swamped the logit at initialisation (D loss ~35 at step 0).
    """
    embed = nn.Embed(
        num_classes,
        features.shape[-1],
        embedding_init=layers.dcgan_kernel_init,
        name="label_projection",
    )
    embedding = weighted(embed, labels)
    return jnp.sum(embedding * features, axis=-1)


def _heads(
    logits: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    num_classes: int,
    conditioning: str,
    weighted: _DiscriminatorLayers,
) -> DOutput:
    """D's output from its logit and pooled features: the projection or ACGAN head, if any."""
    if conditioning == "projection":
        return DOutput(logits + _projection(labels, features, num_classes, weighted))
    if conditioning == "acgan":
        classifier = nn.Dense(num_classes, kernel_init=layers.dcgan_kernel_init, name="classifier")
        return DOutput(logits, weighted(classifier, features))
    return DOutput(logits)


def latent_noise(z: jax.Array, shape: Sequence[int]) -> jax.Array:
    """Standard normal noise [B, *shape] in float32, each image's drawn from a key made of the
    bits of its own latent vector (its first and last entries).

    G stays a function of (z, label): the same z gives the same noise on every device, batch
    split and resumed run, and a fresh z fresh noise (module docstring, "output_noise").
    """
    ends = jnp.stack([z[:, 0], z[:, -1]], axis=-1).astype(jnp.float32)
    keys = jax.random.wrap_key_data(
        jax.lax.bitcast_convert_type(ends, jnp.uint32), impl="threefry2x32"
    )
    return jax.vmap(lambda key: jax.random.normal(key, tuple(shape), jnp.float32))(keys)


class OutputNoise(nn.Module):
    """The film's noise for G's output: (z [B, nz], log_scale [B, S, S, 1]) -> [B, S, S, 1].

    White noise from z's bits (`latent_noise`), filtered by a learned 3x3 kernel (initially the
    identity), times softplus(log_scale + offset) per pixel, with a learned offset starting at
    NOISE_OFFSET_INIT (an amplitude of about 0.03, a few grey levels).
    """

    @nn.compact
    def __call__(self, z: jax.Array, log_scale: jax.Array) -> jax.Array:
        noise = latent_noise(z, log_scale.shape[1:])
        kernel = self.param(
            "filter", lambda key, shape: jnp.zeros(shape).at[1, 1, 0, 0].set(1.0), (3, 3, 1, 1)
        )
        noise = jax.lax.conv_general_dilated(
            noise, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        offset = self.param("offset", nn.initializers.constant(NOISE_OFFSET_INIT), ())
        return jax.nn.softplus(log_scale + offset) * noise


class DCGenerator(nn.Module):
    """DCGAN-tutorial generator conditioned on the label: (z [B, nz], labels [B]) -> [B,S,S,1]."""

    image_size: int = 64
    num_classes: int = 2
    ngf: int = 64
    embed_dim: int = 50
    bn_momentum: float = 0.9
    output_noise: bool = False  # per-pixel noise at the output (module docstring)
    upsample: str = "transposed"  # or "resize" (module docstring)
    axis_name: str | None = None
    dtype: Any = None  # activations and convolutions; None: the inputs' (module docstring)

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        num_up = num_up_convs(self.image_size)

        def batch_norm(x: jax.Array) -> jax.Array:
            return _dcgan_batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)

        embedding = nn.Embed(
            self.num_classes, self.embed_dim, embedding_init=_embedding_init, name="label_embedding"
        )(labels)
        x = jnp.concatenate([z, embedding.astype(z.dtype)], axis=-1)
        width = self.ngf * 2 ** (num_up - 1)
        x = nn.Dense(
            16 * width,
            use_bias=False,
            kernel_init=layers.dcgan_kernel_init,
            dtype=self.dtype,
            name="project",
        )(x)
        x = nn.relu(batch_norm(x.reshape(x.shape[0], 4, 4, width)))

        def up(features: int, h: jax.Array) -> jax.Array:
            if self.upsample == "transposed":
                return layers.UpConv2x(features, dtype=self.dtype)(h)
            conv = nn.Conv(
                features,
                (3, 3),
                padding="SAME",
                use_bias=False,
                kernel_init=layers.dcgan_kernel_init,
                dtype=self.dtype,
            )
            return conv(_upsample_nearest(h))

        for _ in range(num_up - 1):
            width //= 2
            x = nn.relu(batch_norm(up(width, x)))
        if not self.output_noise:
            return jnp.tanh(_at_least_float32(up(1, x)))
        # A second output channel is the per-pixel log-scale of the film's noise (module
        # docstring, "output_noise").
        content, log_scale = jnp.split(_at_least_float32(up(2, x)), 2, axis=-1)
        return jnp.tanh(content + OutputNoise(name="output_noise")(z, log_scale))


class DCDiscriminator(nn.Module):
    """DCGAN-tutorial discriminator conditioned on the label: (images, labels) -> DOutput."""

    image_size: int = 64
    num_classes: int = 2
    ndf: int = 64
    conditioning: str = "plane"
    bn_momentum: float = 0.9
    d_norm: str = "batch"
    spectral_norm: bool = False
    minibatch_std: int = 0  # group size of the minibatch standard deviation channel; 0: none
    axis_name: str | None = None
    dtype: Any = None  # activations and convolutions; None: the inputs' (module docstring)

    @nn.compact
    def __call__(self, images: jax.Array, labels: jax.Array, *, train: bool) -> DOutput:
        num_down = num_up_convs(self.image_size)
        weighted = _DiscriminatorLayers(train=train, spectral_norm=self.spectral_norm)
        x = images
        if self.conditioning == "plane":
            plane = _label_plane(labels, self.num_classes, self.image_size)
            x = jnp.concatenate([x, plane.astype(x.dtype)], axis=-1)
        for index in range(num_down):
            x = weighted(layers.DownConv2x(self.ndf * 2**index, dtype=self.dtype), x)
            if index > 0 and self.d_norm == "batch":
                x = _dcgan_batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
            elif index > 0 and self.d_norm == "layer":
                x = nn.LayerNorm(
                    epsilon=_TORCH_BN_EPSILON, reduction_axes=(1, 2, 3), dtype=self.dtype
                )(x)
            x = nn.leaky_relu(x, _LEAKY_SLOPE)
        features = jnp.mean(_at_least_float32(x), axis=(1, 2))
        if self.minibatch_std:
            x = minibatch_stddev(x, self.minibatch_std)
        last = nn.Conv(
            1,
            (4, 4),
            padding="VALID",
            use_bias=False,
            kernel_init=layers.dcgan_kernel_init,
            dtype=self.dtype,
        )
        # The losses, and the projection or ACGAN head, run in (at least) float32.
        logits = _at_least_float32(weighted(last, x).reshape(x.shape[0]))
        return _heads(logits, features, labels, self.num_classes, self.conditioning, weighted)


class FCGenerator(nn.Module):
    """The second report's dense generator: (z [B, nz], labels [B]) -> [B, S, S, 1] in [-1, 1]."""

    image_size: int = 64
    num_classes: int = 2
    features: Sequence[int] = (256, 512, 1024, 2048)
    embed_dim: int = 50
    bn_momentum: float = 0.8
    axis_name: str | None = None
    dtype: Any = None  # activations and matmuls; None: the inputs' (module docstring)

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        embedding = nn.Embed(
            self.num_classes, self.embed_dim, embedding_init=_embedding_init, name="label_embedding"
        )(labels)
        x = jnp.concatenate([z, embedding.astype(z.dtype)], axis=-1)
        for width in self.features:
            x = nn.Dense(width, kernel_init=nn.initializers.glorot_uniform(), dtype=self.dtype)(x)
            x = nn.leaky_relu(x, _LEAKY_SLOPE)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=_KERAS_BN_EPSILON,
                axis_name=self.axis_name,
                dtype=self.dtype,
            )(x)
        x = nn.Dense(
            self.image_size * self.image_size,
            kernel_init=nn.initializers.glorot_uniform(),
            dtype=self.dtype,
        )(x)
        x = jnp.tanh(_at_least_float32(x))
        return x.reshape(x.shape[0], self.image_size, self.image_size, 1)


class FCDiscriminator(nn.Module):
    """The second report's dense discriminator with dropout: (images, labels) -> DOutput.

    `axis_name` is accepted for a uniform interface; this discriminator has no BatchNorm.
    """

    image_size: int = 64
    num_classes: int = 2
    features: Sequence[int] = (1024, 512, 256, 128)
    dropout_rate: float = 0.3
    conditioning: str = "plane"
    negative_slope: float = 0.0  # 0: the report's ReLU; 0.2: LeakyReLU as Radford et al. advise
    # The report's D has no normalisation: "batch" (the config's default, for dcgan) and "none"
    # leave it so; "layer" adds LayerNorm after every hidden layer.
    d_norm: str = "none"
    spectral_norm: bool = False
    axis_name: str | None = None
    dtype: Any = None  # activations and matmuls; None: the inputs' (module docstring)

    @nn.compact
    def __call__(self, images: jax.Array, labels: jax.Array, *, train: bool) -> DOutput:
        weighted = _DiscriminatorLayers(train=train, spectral_norm=self.spectral_norm)
        x = images.reshape(images.shape[0], -1)
        if self.conditioning == "plane":
            plane = _label_plane(labels, self.num_classes, self.image_size)
            x = jnp.concatenate([x, plane.reshape(x.shape[0], -1).astype(x.dtype)], axis=-1)
        for width in self.features:
            dense = nn.Dense(width, kernel_init=nn.initializers.glorot_uniform(), dtype=self.dtype)
            x = weighted(dense, x)
            if self.d_norm == "layer":
                x = nn.LayerNorm(dtype=self.dtype)(x)
            x = nn.leaky_relu(x, self.negative_slope)
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        last = nn.Dense(1, kernel_init=nn.initializers.glorot_uniform(), dtype=self.dtype)
        # The losses, and the projection or ACGAN head, run in (at least) float32.
        logits = _at_least_float32(weighted(last, x).reshape(x.shape[0]))
        features = _at_least_float32(x)
        return _heads(logits, features, labels, self.num_classes, self.conditioning, weighted)


# SNGAN's initialisation: Glorot-uniform, gain sqrt(2) on the residual 3x3 convolutions.
_residual_init = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")
_shortcut_init = nn.initializers.xavier_uniform()
# SNGAN's widths are capped at 16 times the base width (1024 channels at ngf = ndf = 64).
_MAX_WIDTH_FACTOR = 16


def _upsample_nearest(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, 2H, 2W, C), each pixel repeated 2x2: a broadcast (its gradient a sum
    over each 2x2 block), not a transposed convolution."""
    batch, height, width, channels = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
    return x.reshape(batch, 2 * height, 2 * width, channels)


def _average_pool(x: jax.Array) -> jax.Array:
    """2x2 average pooling, stride 2, as a reshape and a mean (no strided window)."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
    return jnp.mean(x, axis=(2, 4))


def _conv(features: int, size: int, dtype: Any, name: str | None = None) -> nn.Conv:
    """A stride-1 "SAME" convolution with bias, SNGAN's initialisation for its size."""
    return nn.Conv(
        features,
        (size, size),
        padding="SAME",
        kernel_init=_residual_init if size > 1 else _shortcut_init,
        dtype=dtype,
        name=name,
    )


class ConditionalBatchNorm(nn.Module):
    """BatchNorm with a per-class scale and shift (de Vries et al. 2017; Miyato & Koyama's G).

    (x [B, H, W, C], labels [B]) -> normalised x * scale[label] + shift[label]; the scales start
    at 1 and the shifts at 0, so at initialisation it is BatchNorm with PyTorch's defaults.
    """

    num_classes: int
    momentum: float = 0.9
    axis_name: str | None = None
    dtype: Any = None  # the output's; statistics are float32 (module docstring)

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        features = x.shape[-1]
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.momentum,
            epsilon=_TORCH_BN_EPSILON,
            use_scale=False,
            use_bias=False,
            axis_name=self.axis_name,
            dtype=self.dtype,
        )(x)
        scale = nn.Embed(
            self.num_classes, features, embedding_init=nn.initializers.ones, name="scale"
        )(labels)
        shift = nn.Embed(
            self.num_classes, features, embedding_init=nn.initializers.zeros, name="shift"
        )(labels)
        return x * scale[:, None, None, :].astype(x.dtype) + shift[:, None, None, :].astype(x.dtype)


class ResidualUpBlock(nn.Module):
    """SNGAN's generator block: cBN, ReLU, 2x nearest upsampling, 3x3 conv, cBN, ReLU, 3x3
    conv, plus a 1x1-convolved, upsampled shortcut (module docstring)."""

    features: int
    num_classes: int
    bn_momentum: float = 0.9
    axis_name: str | None = None
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        def conditional_batch_norm(h: jax.Array) -> jax.Array:
            return ConditionalBatchNorm(
                self.num_classes, self.bn_momentum, self.axis_name, self.dtype
            )(h, labels, train=train)

        h = nn.relu(conditional_batch_norm(x))
        h = _conv(self.features, 3, self.dtype)(_upsample_nearest(h))
        h = nn.relu(conditional_batch_norm(h))
        h = _conv(self.features, 3, self.dtype)(h)
        # Nearest upsampling and a 1x1 convolution commute: convolve at the lower resolution.
        shortcut = _upsample_nearest(_conv(self.features, 1, self.dtype, "shortcut")(x))
        return h + shortcut.astype(h.dtype)


class ResidualDownBlock(nn.Module):
    """SNGAN's discriminator block: (ReLU,) 3x3 conv, ReLU, 3x3 conv, 2x2 average pooling, plus
    a shortcut (average pooling, then a 1x1 conv where the width changes); module docstring.

    `first`: the block that sees the image, with no ReLU before its first convolution (SNGAN's
    "optimized" block). `downsample`: False for the last block, at 4x4.
    """

    features: int
    first: bool = False
    downsample: bool = True
    spectral_norm: bool = True
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        weighted = _DiscriminatorLayers(train=train, spectral_norm=self.spectral_norm)
        h = x if self.first else nn.relu(x)
        h = weighted(_conv(self.features, 3, self.dtype), h)
        h = weighted(_conv(self.features, 3, self.dtype), nn.relu(h))
        shortcut = x
        if self.downsample:
            h = _average_pool(h)
            # Average pooling and a 1x1 convolution commute: pool first, 4x fewer multiply-adds.
            shortcut = _average_pool(shortcut)
        if shortcut.shape[-1] != self.features:
            shortcut = weighted(_conv(self.features, 1, self.dtype, "shortcut"), shortcut)
        return h + shortcut.astype(h.dtype)


def _sngan_widths(image_size: int, base: int) -> list[int]:
    """base * min(16, 2^i) for i = 0..n, n = log2(image_size) - 2: D's block widths from the
    image up; reversed, G's widths from 4x4 down (module docstring)."""
    num_blocks = num_up_convs(image_size, "sngan")
    return [base * min(_MAX_WIDTH_FACTOR, 2**index) for index in range(num_blocks + 1)]


class ResNetGenerator(nn.Module):
    """SN-ResNet generator with class-conditional BatchNorm: (z [B, nz], labels) -> [B,S,S,1]."""

    image_size: int = 64
    num_classes: int = 2
    ngf: int = 64
    bn_momentum: float = 0.9
    axis_name: str | None = None
    dtype: Any = None  # activations and convolutions; None: the inputs' (module docstring)

    @nn.compact
    def __call__(self, z: jax.Array, labels: jax.Array, *, train: bool) -> jax.Array:
        widths = _sngan_widths(self.image_size, self.ngf)[::-1]
        x = nn.Dense(16 * widths[0], kernel_init=_shortcut_init, dtype=self.dtype, name="project")(
            z
        )
        x = x.reshape(x.shape[0], 4, 4, widths[0])
        for width in widths[1:]:
            x = ResidualUpBlock(
                width, self.num_classes, self.bn_momentum, self.axis_name, self.dtype
            )(x, labels, train=train)
        x = nn.relu(_dcgan_batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x))
        return jnp.tanh(_at_least_float32(_conv(1, 3, self.dtype, "to_image")(x)))


class ResNetDiscriminator(nn.Module):
    """SN-ResNet discriminator with projection (or an ACGAN head): (images, labels) -> DOutput.

    `axis_name` is accepted for a uniform interface; this discriminator has no BatchNorm.
    """

    image_size: int = 64
    num_classes: int = 2
    ndf: int = 64
    conditioning: str = "projection"
    spectral_norm: bool = True
    axis_name: str | None = None
    dtype: Any = None  # activations and convolutions; None: the inputs' (module docstring)

    @nn.compact
    def __call__(self, images: jax.Array, labels: jax.Array, *, train: bool) -> DOutput:
        widths = _sngan_widths(self.image_size, self.ndf)
        weighted = _DiscriminatorLayers(train=train, spectral_norm=self.spectral_norm)
        x = images
        for index, width in enumerate(widths):
            x = ResidualDownBlock(
                width,
                first=index == 0,
                downsample=index < len(widths) - 1,
                spectral_norm=self.spectral_norm,
                dtype=self.dtype,
            )(x, train=train)
        # SNGAN sums the last feature map over space; the heads run in (at least) float32.
        features = jnp.sum(_at_least_float32(nn.relu(x)), axis=(1, 2))
        last = nn.Dense(1, kernel_init=_shortcut_init, name="logit")
        logits = weighted(last, features).reshape(features.shape[0])
        return _heads(logits, features, labels, self.num_classes, self.conditioning, weighted)


def make_gan(
    model_config: ml_collections.ConfigDict,
    *,
    image_size: int,
    num_classes: int,
    dtype: Any = None,
) -> tuple[nn.Module, nn.Module]:
    """The (generator, discriminator) pair that `model_config` describes.

    Args:
        model_config: the `model` section of a job config (experiments/configs/dcgan.py): kind,
            ngf, ndf, conditioning, embed_dim, g_features, d_features, dropout_rate, bn_momentum
            (Flax convention: PyTorch's momentum 0.1 is 0.9 here, Keras' 0.8 stays 0.8), d_norm
            and spectral_norm (module docstring; fcgan's D has no BatchNorm, so "batch" means
            none there; sngan needs "none" and reads spectral_norm, default on, and not
            embed_dim: experiments/configs/sngan.py).
        image_size: side of the square images; 32, 64 or 128 for dcgan and sngan, any for
            fcgan.
        num_classes: number of labels the GAN is conditioned on.
        dtype: the dtype of activations and convolutions, `compute_dtype(config.train.
            compute_dtype)`; None follows the inputs. Parameters are float32 either way (module
            docstring).

    Returns:
        (generator, discriminator), unbound Linen modules.

    Raises:
        ValueError: an unknown kind, conditioning or d_norm, spectral norm with dcgan's
            BatchNorm, or a conditioning or d_norm sngan cannot use (`check_model_options`); an
            image size dcgan or sngan does not support (`check_image_size`).
    """
    kind = model_config.kind
    check_model_options(model_config)
    check_image_size(kind, image_size)  # the size error belongs at construction, not first call
    if kind == "dcgan":
        generator = DCGenerator(
            image_size=image_size,
            num_classes=num_classes,
            ngf=model_config.ngf,
            embed_dim=model_config.embed_dim,
            bn_momentum=model_config.bn_momentum,
            output_noise=bool(model_config.get("output_noise", False)),
            upsample=model_config.get("g_upsample", "transposed"),
            dtype=dtype,
        )
        discriminator = DCDiscriminator(
            image_size=image_size,
            num_classes=num_classes,
            ndf=model_config.ndf,
            conditioning=model_config.conditioning,
            bn_momentum=model_config.bn_momentum,
            d_norm=model_config.get("d_norm", "batch"),
            spectral_norm=bool(model_config.get("spectral_norm", False)),
            minibatch_std=model_config.get("minibatch_std", 0),
            dtype=dtype,
        )
    elif kind == "fcgan":
        generator = FCGenerator(
            image_size=image_size,
            num_classes=num_classes,
            features=tuple(model_config.g_features),
            embed_dim=model_config.embed_dim,
            bn_momentum=model_config.bn_momentum,
            dtype=dtype,
        )
        discriminator = FCDiscriminator(
            image_size=image_size,
            num_classes=num_classes,
            features=tuple(model_config.d_features),
            dropout_rate=model_config.dropout_rate,
            conditioning=model_config.conditioning,
            d_norm=model_config.get("d_norm", "batch"),
            spectral_norm=bool(model_config.get("spectral_norm", False)),
            dtype=dtype,
        )
    else:  # "sngan"; check_model_options refused any other kind
        generator = ResNetGenerator(
            image_size=image_size,
            num_classes=num_classes,
            ngf=model_config.ngf,
            bn_momentum=model_config.bn_momentum,
            dtype=dtype,
        )
        discriminator = ResNetDiscriminator(
            image_size=image_size,
            num_classes=num_classes,
            ndf=model_config.ndf,
            conditioning=model_config.conditioning,
            spectral_norm=bool(model_config.get("spectral_norm", True)),
            dtype=dtype,
        )
    return generator, discriminator
