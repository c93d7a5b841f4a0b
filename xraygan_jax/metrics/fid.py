"""FID, KID and precision/recall on FID Inception features.

The standard definitions, computed so that numbers are comparable with published ones:

- Features: the 2048-d pool features of `inception.FIDInception` on uint8 images, float32
  (`InceptionFeatureExtractor`). How images reach the network's 299x299 input is a choice, the
  `resize` mode, and each mode reproduces one FID tool (docs/fid_protocol.md, "Resize modes"):
  `tf1` (the default) is TTUR's and NVIDIA's TF1 bilinear resize, `pytorch_fid` pytorch-fid's
  half-pixel bilinear resize and [-1, 1] scaling, `clean` clean-fid's Pillow bicubic resize. At
  low resolution they give different FIDs, so results name their mode.
- FID (Heusel et al. 2017): mean and covariance accumulated in float64, streamed
  (`FeatureStats`), so a large set never has to be held in memory. The covariance is the
  unbiased sample covariance (divides by N - 1), as `np.cov` in TTUR and pytorch-fid; NVIDIA's
  stylegan2-ada divides by N, a difference of O(1/N) in FID. The matrix square root term is
  computed in the symmetric form Tr sqrt(S1^1/2 S2 S1^1/2) with `scipy.linalg.eigh`, which avoids
  `scipy.linalg.sqrtm` on a non-symmetric product (scipy 1.11.2-1.11.3 broke it). When both
  sets' features are at hand and small (N_r N_g <= 2048^2, every per-class evaluation here),
  the same trace is the sum of singular values of the N_r x N_g cross product of the centred
  features (`frechet_distance_from_features`): exact, and seconds faster per FID. FID is
  biased upward for small N and the covariance is singular below 2048 samples: every result
  carries N, and N < 2048 warns (`SmallSampleWarning`).
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged
  over random subsets of min(N, 1000) samples; mean and standard deviation over subsets.
- Precision and recall (Kynkaanniemi et al. 2019): each sample's k-NN radius (k = 3) among its own
  set defines a manifold; precision is the share of generated samples inside the real manifold,
  recall the share of real samples inside the generated one.
"""

import dataclasses
import os
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from PIL import Image

from xraygan_jax import compiler, files, pixels
from xraygan_jax.models import inception

FEATURE_DIM = inception.FEATURE_DIM
# Below this many samples the 2048-d covariance is singular and FID is strongly biased.
MIN_SAMPLES_FOR_FID = 2048
# Generator output may overshoot [-1, 1] by rounding; anything further is a caller's mistake.
_FLOAT_RANGE_TOLERANCE = 1e-3
# Images per Inception call on CPU (InceptionFeatureExtractor).
CPU_BATCH_SIZE = 4
# Batches queued ahead of the one whose features are fetched (InceptionFeatureExtractor).
_MAX_BATCHES_IN_FLIGHT = 2
# KID kernel matrices over whole sets up to this size are computed once, not per subset.
_MAX_PRECOMPUTED_KID_SAMPLES = 4096
# How images are resized to the network input; each reproduces one FID tool (`resize_images`).
RESIZE_MODES = ("tf1", "pytorch_fid", "clean")


class SmallSampleWarning(UserWarning):
    """FID from fewer than 2048 samples: biased, singular covariance; report N, prefer KID."""


def check_images(images: Any) -> np.ndarray:
    """Validates images for feature extraction and returns them as a NumPy array.

    Args:
      images: [N, H, W, C] with C = 1 or 3; uint8 (0..255), or float generator output in
        [-1, 1].

    Returns:
      The images as a NumPy array, dtype unchanged.

    Raises:
      ValueError: wrong rank, channel count, dtype or range, no images, or NaN/Inf values; the
        message says what was expected.
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        hint = " (add a channel axis: images[..., None])" if array.ndim == 3 else ""
        raise ValueError(
            f"expected images of shape [N, H, W, C] with C = 1 or 3 (NHWC), got shape "
            f"{array.shape}{hint}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"expected at least one image, got an empty batch of shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"expected uint8 images (0..255) or float images in [-1, 1], got dtype {array.dtype}; "
            "cast integer images holding 0..255 with .astype(np.uint8)"
        )
    finite = np.isfinite(array).reshape(array.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{bad.size} of {array.shape[0]} generated images contain NaN or Inf (first: index "
            f"{bad[0]}); the generator diverged or its output was not computed"
        )
    low, high = float(array.min()), float(array.max())
    if low < -1 - _FLOAT_RANGE_TOLERANCE or high > 1 + _FLOAT_RANGE_TOLERANCE:
        raise ValueError(
            f"expected float images in [-1, 1] (generator output), got values in [{low:.4g}, "
            f"{high:.4g}]; pass images holding 0..255 as uint8, map [0, 1] images by x * 2 - 1"
        )
    return array


def check_resize_mode(resize: str) -> str:
    """Returns `resize` if it is one of `RESIZE_MODES`.

    Raises:
      ValueError: an unknown mode; the message lists the valid ones.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(
            f"unknown resize mode {resize!r}; expected one of {', '.join(RESIZE_MODES)} "
            '(docs/fid_protocol.md, "Resize modes")'
        )
    return resize


def _resize_clean(images: np.ndarray, size: int) -> np.ndarray:
    """clean-fid's resize: every channel as a float32 Pillow image (mode "F"), bicubic.

    Pillow widens the bicubic kernel by the shrink factor when downsampling (antialiasing). The
    result is clipped to 0..255, as clean-fid does against the kernel's overshoot, and not
    quantised again. One image channel costs about 1.5 ms at 64 -> 299 on one core
    (docs/fid_protocol.md).
    """
    images = np.asarray(images)
    resized = np.empty((images.shape[0], size, size, images.shape[-1]), np.float32)
    for index in range(images.shape[0]):
        for channel in range(images.shape[-1]):
            plane = np.ascontiguousarray(images[index, :, :, channel], dtype=np.float32)
            # A 2-D float32 array becomes a mode "F" image.
            image = Image.fromarray(plane).resize((size, size), Image.Resampling.BICUBIC)
            resized[index, :, :, channel] = np.asarray(image)
    return np.clip(resized, 0.0, 255.0, out=resized)


def resize_images(
    images: Any, resize: str = "tf1", *, size: int = inception.INPUT_SIZE
) -> jax.Array | np.ndarray:
    """Resizes images holding pixel values 0..255 the way the `resize` mode's FID tool does.

    - "tf1": TF1's `resize_bilinear` (align_corners=False, half_pixel_centers=False, no
      antialiasing), as TTUR and NVIDIA's metrics (`inception.resize_bilinear_tf1`).
    - "pytorch_fid": PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`, as
      pytorch-fid: half-pixel centres, no antialiasing. `jax.image.resize` with "linear" and
      antialias=False computes the same (source = (dst + 0.5) * in / out - 0.5; taps outside the
      image get no weight and the rest are renormalised, which equals PyTorch's clamping to the
      edge pixel), at `Precision.HIGHEST` so that no accelerator rounds it to TF32.
    - "clean": clean-fid's Pillow bicubic with antialiasing on each channel in float32, clipped
      to 0..255, not quantised again. It runs in NumPy on the host.

    Args:
      images: [N, H, W, C] holding values 0..255 (uint8, or float holding integers as
        `pixels.quantize` returns).
      resize: one of `RESIZE_MODES`.
      size: output height and width.

    Returns:
      float32 [N, size, size, C] in the pixel scale 0..255: a `jax.Array`, or for "clean" a
      NumPy array.

    Raises:
      ValueError: an unknown mode.
    """
    check_resize_mode(resize)
    if resize == "clean":
        return _resize_clean(np.asarray(images), size)
    x = jnp.asarray(images).astype(jnp.float32)
    if resize == "tf1":
        return inception.resize_bilinear_tf1(x, size)
    if x.shape[1:3] == (size, size):
        return x
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "linear", antialias=False)


def normalize_resized(resized: Any, resize: str = "tf1") -> jax.Array:
    """Maps `resize_images` output (0..255) to the network input, as the mode's tool does.

    "tf1" and "clean" feed (x - 128) / 128 (the TF graph's own normalisation). "pytorch_fid"
    feeds 2 x - 1 of images scaled to [0, 1], i.e. x / 255 * 2 - 1; pytorch-fid scales before it
    resizes, but a bilinear resize is an affine-equivariant average (weights sum to 1), so
    resizing first changes the result only by float32 rounding (about 1e-7).

    Args:
      resized: float [N, 299, 299, C], C = 1 (repeated to RGB) or 3.
      resize: one of `RESIZE_MODES`.

    Returns:
      float32 [N, 299, 299, 3].

    Raises:
      ValueError: an unknown mode.
    """
    check_resize_mode(resize)
    x = jnp.asarray(resized, jnp.float32)
    if resize == "pytorch_fid":
        x = x / 255.0 * 2.0 - 1.0
    else:
        x = (x - 128.0) / 128.0
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    return x


def _network_features(variables: Any, images: jax.Array) -> jax.Array:
    return inception.FIDInception().apply(variables, images)


def _preprocess(images: jax.Array, *, resize: str = "tf1") -> jax.Array:
    """Quantisation, resize and normalisation on the device ("tf1", "pytorch_fid")."""
    if images.dtype != jnp.uint8:
        images = pixels.quantize(images)
    return normalize_resized(resize_images(images, resize), resize)


def _pad_batch(batch: np.ndarray, batch_size: int) -> np.ndarray:
    """Zero rows up to `batch_size`, so that one compiled network serves every batch."""
    if batch.shape[0] == batch_size:
        return batch
    padding = np.zeros((batch_size - batch.shape[0], *batch.shape[1:]), batch.dtype)
    return np.concatenate([batch, padding])


class InceptionFeatureExtractor:
    """Computes FID Inception pool features of images, in fixed-size batches.

    The network is jitted once for the batch size (the last batch is padded); preprocessing
    (quantisation, resize, normalisation) is jitted separately per input shape and dtype, so
    new image sizes cost only a small compilation. Both compilations are cached by `jax.jit`.
    In the "clean" mode quantisation and Pillow's resize run on the host, one image channel at
    a time, while the device computes the batches already queued.

    Attributes:
      variables: FIDInception variables (`xraygan_jax.pretrained.inception_weights.load_params()`).
      batch_size: images per network call.
      resize: the resize mode, one of `RESIZE_MODES`; record it with every result, since FIDs
        of different modes are not comparable.
    """

    def __init__(self, variables: Any, batch_size: int | None = None, *, resize: str = "tf1"):
        """Builds the extractor.

        Args:
          variables: FIDInception variables, e.g. `pretrained.inception_weights.load_params()`.
          batch_size: images per network call; None picks 4 on CPU, where small batches are
            fastest (a large batch's 299x299 activations overflow the caches: 26.5 images/s
            at batch 4 against 23.6 at batch 48 on two cores;
            experiments/benchmarks/inception_features.py), and 50 on accelerators.
          resize: how images reach 299x299, one of `RESIZE_MODES` (`resize_images`): "tf1"
            (TTUR, NVIDIA's metrics), "pytorch_fid" (pytorch-fid) or "clean" (clean-fid).

        Raises:
          ValueError: an unknown resize mode or a batch size below 1.
        """
        self.resize = check_resize_mode(resize)
        if batch_size is None:
            batch_size = CPU_BATCH_SIZE if jax.default_backend() == "cpu" else 50
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.variables = jax.device_put(variables)
        self.batch_size = batch_size
        self._network = compiler.jit(_network_features)
        # In the "clean" mode the batches arrive resized (`_batches`).
        device_part = normalize_resized if resize == "clean" else _preprocess
        self._preprocess = compiler.jit(device_part, static_argnames="resize")

    def _batches(self, images: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start : start + self.batch_size]
            valid = batch.shape[0]
            if self.resize == "clean":
                # Resized before padding, so that Pillow never resizes the padding.
                batch = _resize_clean(pixels.quantize(batch), inception.INPUT_SIZE)
            yield _pad_batch(batch, self.batch_size), valid

    def __call__(self, images: Any) -> np.ndarray:
        """Features of a set of images.

        Args:
          images: [N, H, W, C], C = 1 (repeated to RGB) or 3, any H and W (resized to 299 as
            the `resize` mode says); uint8 0..255, or float in [-1, 1] (quantised to uint8 as
            NVIDIA does, in every mode).

        Returns:
          float32 [N, 2048].

        Raises:
          ValueError: images of the wrong shape, dtype or range, or holding NaN/Inf.
        """
        images = check_images(images)
        # JAX runs batches asynchronously: the next one is dispatched while the previous one
        # computes, but at most _MAX_BATCHES_IN_FLIGHT are queued, so a large set does not
        # pile up inputs in memory.
        pending: list[tuple[jax.Array, int]] = []
        features = []
        for batch, valid in self._batches(images):
            network_input = self._preprocess(batch, resize=self.resize)
            pending.append((self._network(self.variables, network_input), valid))
            if len(pending) > _MAX_BATCHES_IN_FLIGHT:
                out, count = pending.pop(0)
                features.append(np.asarray(out)[:count])
        features += [np.asarray(out)[:count] for out, count in pending]
        return np.concatenate(features)


def _check_features(features: Any, name: str, dim: int | None = None) -> np.ndarray:
    array = np.asarray(features)
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        expected = f"[N, {dim}]" if dim is not None else "[N, D]"
        raise ValueError(f"{name}: expected features of shape {expected}, got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: features contain NaN or Inf")
    return array


def _require_samples(count: int, needed: int, name: str, what: str) -> None:
    if count < needed:
        raise ValueError(f"{what} needs at least {needed} samples in {name}, got {count}")


@dataclasses.dataclass
class FeatureStats:
    """Streaming mean and covariance of features, in float64.

    Batches are merged with Chan et al.'s pairwise update (batch mean and centred scatter, then
    the correction for the mean shift), which stays accurate where raw sums of squares would
    cancel.

    Attributes:
      dim: feature dimension.
      count: number of samples seen.
    """

    dim: int = FEATURE_DIM
    count: int = 0
    _mean: np.ndarray = dataclasses.field(default=None, repr=False)
    _scatter: np.ndarray = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if self._mean is None:
            self._mean = np.zeros(self.dim, np.float64)
        if self._scatter is None:
            self._scatter = np.zeros((self.dim, self.dim), np.float64)

    @classmethod
    def from_features(cls, features: Any) -> "FeatureStats":
        """Statistics of one array of features [N, D]."""
        features = _check_features(features, "features")
        stats = cls(dim=features.shape[1])
        stats.update(features)
        return stats

    def update(self, features: Any) -> None:
        """Adds a batch of features [n, dim] (any float dtype; accumulated in float64)."""
        batch = _check_features(features, "FeatureStats.update", self.dim).astype(np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(axis=0)
        centred = batch - batch_mean
        batch_scatter = centred.T @ centred
        total = self.count + n
        delta = batch_mean - self._mean
        self._scatter += batch_scatter + np.outer(delta, delta) * (self.count * n / total)
        self._mean += delta * (n / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        """float64 [dim] mean."""
        _require_samples(self.count, 1, "FeatureStats", "a mean")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """float64 [dim, dim] unbiased sample covariance (divides by count - 1, as np.cov)."""
        _require_samples(self.count, 2, "FeatureStats", "a covariance")
        return self._scatter / (self.count - 1)

    def save(self, path: str | os.PathLike) -> None:
        """Writes `mu`, `sigma` (pytorch-fid's names) and `count` to an .npz, atomically."""
        files.save_npz(path, mu=self.mean, sigma=self.cov, count=np.int64(self.count))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        """Reads statistics written by `save` (or by `reference.save`)."""
        with np.load(path, allow_pickle=False) as archive:
            missing = {"mu", "sigma", "count"} - set(archive.files)
            if missing:
                raise ValueError(
                    f"{path} lacks {sorted(missing)}; expected an archive written by "
                    "FeatureStats.save"
                )
            return cls.from_moments(archive["mu"], archive["sigma"], int(archive["count"]))

    @classmethod
    def from_moments(cls, mean: np.ndarray, cov: np.ndarray, count: int) -> "FeatureStats":
        """Statistics from a mean [D], unbiased covariance [D, D] and sample count."""
        stats = cls(dim=mean.shape[0], count=count)
        stats._mean = np.asarray(mean, np.float64).copy()
        stats._scatter = np.asarray(cov, np.float64) * max(count - 1, 0)
        return stats


def frechet_distance_from_moments(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr sqrt(S1^1/2 S2 S1^1/2). The last term equals the
    usual Tr sqrt(S1 S2) but is the square root of a symmetric PSD matrix, whose eigenvalues
    `scipy.linalg.eigvalsh` returns real; round-off negatives are clipped to zero.

    Args:
      mu1, mu2: means [D].
      sigma1, sigma2: covariances [D, D].

    Returns:
      The distance (a Python float).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    dim = mu1.shape[0]
    for name, value, shape in (
        ("mu1", mu1, (dim,)),
        ("mu2", mu2, (dim,)),
        ("sigma1", sigma1, (dim, dim)),
        ("sigma2", sigma2, (dim, dim)),
    ):
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}, expected {shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or Inf")
    eigenvalues, eigenvectors = scipy.linalg.eigh(sigma1)
    sqrt_sigma1 = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    product = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    product = (product + product.T) / 2
    trace_sqrt = np.sqrt(np.clip(scipy.linalg.eigvalsh(product), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def _warn_if_small(count_a: int, count_b: int, *, stacklevel: int = 3) -> None:
    """SmallSampleWarning when either set has fewer than MIN_SAMPLES_FOR_FID samples."""
    if min(count_a, count_b) < MIN_SAMPLES_FOR_FID:
        warnings.warn(
            f"FID from {count_a} and {count_b} samples: below "
            f"{MIN_SAMPLES_FOR_FID} the covariance is singular and FID is biased upward; "
            "compare FIDs only at equal N, and prefer KID for small sets",
            SmallSampleWarning,
            stacklevel=stacklevel,
        )


def frechet_distance_from_features(features_a: Any, features_b: Any) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets, without D x D matrices.

    The same number as `frechet_distance_from_moments` of the sets' means and unbiased
    covariances, computed in the sets' own span. With centred features A [n, D] and B [m, D],
    S1 = A'A / (n - 1) and S2 = B'B / (m - 1), so S1 S2 has the nonzero eigenvalues of M M' with
    M = A B' / sqrt((n - 1)(m - 1)) [n, m]: Tr sqrt(S1 S2) is the sum of M's singular values, and
    Tr S1 = ||A||^2 / (n - 1). This costs O(n m D) instead of two D x D eigendecompositions
    (about 3 s per FID at D = 2048 on 2 CPU cores: experiments/benchmarks/frechet.py), and
    avoids the round-off of the zero eigenvalues a covariance of n < D samples has. `evaluate`
    uses it when n m <= D^2.

    Args:
      features_a, features_b: features [n, D] and [m, D], each of at least 2 samples.

    Returns:
      The distance (a Python float), in float64.
    """
    a = _check_features(features_a, "features_a").astype(np.float64)
    b = _check_features(features_b, "features_b", a.shape[1]).astype(np.float64)
    _require_samples(len(a), 2, "features_a", "FID")
    _require_samples(len(b), 2, "features_b", "FID")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    centred_a, centred_b = a - mean_a, b - mean_b
    scale_a, scale_b = len(a) - 1, len(b) - 1
    cross = centred_a @ centred_b.T / np.sqrt(scale_a * scale_b)
    trace_sqrt = scipy.linalg.svdvals(cross).sum()
    diff = mean_a - mean_b
    trace_a = np.einsum("ij,ij->", centred_a, centred_a) / scale_a
    trace_b = np.einsum("ij,ij->", centred_b, centred_b) / scale_b
    return float(diff @ diff + trace_a + trace_b - 2.0 * trace_sqrt)


def frechet_distance(stats_a: FeatureStats, stats_b: FeatureStats) -> float:
    """FID between two feature statistics; warns (SmallSampleWarning) when N < 2048.

    Args:
      stats_a, stats_b: statistics of the two sets (each of at least 2 samples).

    Returns:
      The Frechet distance. Report it with both counts; it is biased upward for small N.
    """
    _warn_if_small(stats_a.count, stats_b.count, stacklevel=3)
    return frechet_distance_from_moments(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    m = k_xx.shape[0]
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2.0 * k_xy.sum() / (m * m))


def compute_kid(
    feats_a: Any,
    feats_b: Any,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, over subsets.

    Each subset draws m = min(len(feats_a), len(feats_b), subset_size) samples from each set
    without replacement (first from `feats_b`, then from `feats_a`, as NVIDIA's implementation
    draws generated then real). Computed in float64.

    Args:
      feats_a: features [N_a, D], e.g. real.
      feats_b: features [N_b, D], e.g. generated.
      num_subsets: number of random subsets.
      subset_size: largest subset size (the standard 1000).
      seed: seed of the subset draws.

    Returns:
      `(mean, std)` of MMD^2 over subsets (std with ddof 0, as the original and torchmetrics).
    """
    a = _check_features(feats_a, "feats_a").astype(np.float64)
    b = _check_features(feats_b, "feats_b", a.shape[1]).astype(np.float64)
    _require_samples(len(a), 2, "feats_a", "KID")
    _require_samples(len(b), 2, "feats_b", "KID")
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(
            f"num_subsets must be >= 1 and subset_size >= 2, got {num_subsets}, {subset_size}"
        )
    m = min(len(a), len(b), subset_size)
    rng = np.random.default_rng(seed)
    precompute = max(len(a), len(b)) <= _MAX_PRECOMPUTED_KID_SAMPLES
    if precompute:
        # Kernel matrices over the whole sets once; subsets then only index them.
        k_aa, k_bb, k_ab = (
            _polynomial_kernel(a, a),
            _polynomial_kernel(b, b),
            _polynomial_kernel(a, b),
        )
    values = []
    for _ in range(num_subsets):
        index_b = rng.choice(len(b), m, replace=False)
        index_a = rng.choice(len(a), m, replace=False)
        if precompute:
            k_xx = k_bb[np.ix_(index_b, index_b)]
            k_yy = k_aa[np.ix_(index_a, index_a)]
            k_xy = k_ab[np.ix_(index_a, index_b)]
        else:
            x, y = b[index_b], a[index_a]
            k_xx, k_yy, k_xy = (
                _polynomial_kernel(x, x),
                _polynomial_kernel(y, y),
                _polynomial_kernel(y, x),
            )
        values.append(_unbiased_mmd2(k_xx, k_yy, k_xy))
    return float(np.mean(values)), float(np.std(values))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d2 = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def _kth_neighbour_radii(features: np.ndarray, k: int, block: int) -> np.ndarray:
    """Squared distance of each sample to its k-th nearest other sample in the same set."""
    radii = np.empty(len(features))
    for start in range(0, len(features), block):
        d2 = _squared_distances(features[start : start + block], features)
        rows = np.arange(d2.shape[0])
        d2[rows, start + rows] = np.inf  # a sample is not its own neighbour
        radii[start : start + block] = np.partition(d2, k - 1, axis=1)[:, k - 1]
    return radii


def _coverage(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int) -> float:
    """Share of queries inside at least one ball (centre, squared radius)."""
    inside = np.empty(len(queries), bool)
    for start in range(0, len(queries), block):
        d2 = _squared_distances(queries[start : start + block], centres)
        inside[start : start + block] = (d2 <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(
    real_feats: Any, fake_feats: Any, k: int = 3, *, block_size: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN manifolds.

    Args:
      real_feats: real features [N_r, D].
      fake_feats: generated features [N_g, D].
      k: neighbourhood size (the paper's 3).
      block_size: rows of the distance matrix computed at once (memory: block x N float64).

    Returns:
      `(precision, recall)`: the share of generated samples within the k-NN radius of some real
      sample, and of real samples within the k-NN radius of some generated sample.
    """
    real = _check_features(real_feats, "real_feats").astype(np.float64)
    fake = _check_features(fake_feats, "fake_feats", real.shape[1]).astype(np.float64)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _require_samples(len(real), k + 1, "real_feats", f"precision/recall with k={k}")
    _require_samples(len(fake), k + 1, "fake_feats", f"precision/recall with k={k}")
    real_radii = _kth_neighbour_radii(real, k, block_size)
    fake_radii = _kth_neighbour_radii(fake, k, block_size)
    precision = _coverage(fake, real, real_radii, block_size)
    recall = _coverage(real, fake, fake_radii, block_size)
    return precision, recall


def evaluate(
    real: Any,
    fake_feats: Any,
    *,
    kid_num_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    seed: int = 0,
) -> dict[str, float | int]:
    """FID, KID and precision/recall of generated features against a real set.

    Args:
      real: real features [N_r, 2048], or their `FeatureStats` (then only FID is computed:
        KID and precision/recall need the features themselves).
      fake_feats: generated features [N_g, 2048].
      kid_num_subsets, kid_subset_size: KID subsets (`compute_kid`).
      pr_k: neighbourhood size of precision/recall.
      seed: seed of the KID subsets.

    Returns:
      `{"fid", "num_real", "num_fake"}` plus, when `real` holds features, `"kid_mean",
      "kid_std", "kid_subset_size", "precision", "recall", "pr_k"`. FID warns for N < 2048.
    """
    fake = _check_features(fake_feats, "fake_feats")
    _require_samples(len(fake), 2, "fake_feats", "FID")
    if isinstance(real, FeatureStats):
        real_features, num_real = None, real.count
    else:
        real_features = _check_features(real, "real", fake.shape[1])
        num_real = len(real_features)
    _require_samples(num_real, 2, "real", "FID")
    if real_features is not None and num_real * len(fake) <= fake.shape[1] ** 2:
        # The same distance, in the sets' span: cheaper, and exact (frechet_distance_from_features).
        _warn_if_small(num_real, len(fake))
        fid_value = frechet_distance_from_features(real_features, fake)
    else:
        real_stats = real if real_features is None else FeatureStats.from_features(real_features)
        fid_value = frechet_distance(real_stats, FeatureStats.from_features(fake))
    result: dict[str, float | int] = {
        "fid": fid_value,
        "num_real": num_real,
        "num_fake": len(fake),
    }
    if real_features is not None:
        kid_mean, kid_std = compute_kid(
            real_features, fake, num_subsets=kid_num_subsets, subset_size=kid_subset_size, seed=seed
        )
        precision, recall = precision_recall(real_features, fake, k=pr_k)
        result.update(
            kid_mean=kid_mean,
            kid_std=kid_std,
            kid_subset_size=min(len(real_features), len(fake), kid_subset_size),
            precision=precision,
            recall=recall,
            pr_k=pr_k,
        )
    return result
