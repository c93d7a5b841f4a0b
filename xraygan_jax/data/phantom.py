"""cxr_phantom: procedural PA chest radiographs, the embedded default data set.

The whole pipeline (GAN, FID, classifiers) has to run on a fresh machine with no download, and the
tests need data that looks like the real task. This module draws Kermany-style pediatric chest
radiographs (dark lungs, bright bones and mediastinum, black background) from a few dozen random
anatomical parameters per image; PNEUMONIA images add one to three consolidations inside the lungs.

Every image is a pure function of `(spec.seed, split, index, spec)`: its randomness comes from
`np.random.default_rng((seed, stream, split_id, index))`, never from a batch-level stream, so image
i is the same whatever batch it is generated in and on every machine. The geometry is built in
normalised coordinates ([-1, 1] across the image), so any `image_size` shows the same anatomy.

Rendering is attenuation based: soft tissue, bones and heart add attenuation, lung air removes it,
consolidation fills the air back in, and the detector maps it with `1 - exp(-k * A)` followed by a
per-image window and gamma, blur, quantum noise and grain. All array work is vectorised over the
batch; the only Python loop is over images, to draw their random numbers. Rendering speed is a
requirement (at least 500 images/s at 128x128 on one core); the measured rate is in
docs/performance.md, section "Phantom rendering".
"""

import collections
import dataclasses
import functools
import math
import threading

import numpy as np
from scipy import ndimage

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
# The stream of `generate_fresh`: images no split holds (the study's oracle arm).
_FRESH_SPLIT_ID = 3
# Separate seed streams, so that the label permutation and the images never share random numbers.
_STREAM_IMAGES = 0
_STREAM_LABELS = 1

# Coarse noise grids, fixed in normalised space so every image size shows the same texture.
_COARSE_GRID = (8, 8)  # lung mottling, interstitial haze
_MID_GRID = (16, 16)  # consolidation outlines, patchy (bronchopneumonic) texture
# Vessels: noise stretched vertically, whose zero crossings are wavy, mostly vertical lines, like
# the vessels fanning up and down from the hila.
_VESSEL_GRID = (9, 30)
# Pixels rendered together: enough to amortise NumPy's per-call overhead, few enough that the
# float32 temporaries stay in cache (block sizes compared: docs/performance.md, section "Phantom
# rendering").
_BLOCK_PIXELS = 4 * 128 * 128
_MAX_LESIONS = 3

# Per-image anatomy and acquisition parameters: name -> (low, high) of a uniform draw.
# Coordinates are normalised: x from -1 (image left, patient's right) to 1, y from -1 (top) to 1.
# Lung x values are lateral distances from the midline.
_ANATOMY = {
    # Patient placement.
    "scale": (0.9, 1.06),
    "shift_x": (-0.06, 0.06),
    "shift_y": (-0.07, 0.06),
    "rotation": (-np.deg2rad(4.0), np.deg2rad(4.0)),
    # Body silhouette.
    "body_half_width": (0.92, 1.12),
    "neck_half_width": (0.2, 0.27),
    "shoulder_y": (-1.0, -0.84),
    # Lungs: the left lung (image right) is narrower, pushed out by the heart, and its diaphragm
    # sits lower.
    "right_lung_x": (0.4, 0.47),
    "right_lung_radius": (0.31, 0.37),
    "left_lung_x": (0.44, 0.5),
    "left_lung_radius": (0.27, 0.32),
    "lung_skew": (-0.3, 0.3),
    "lung_apex_y": (-0.8, -0.66),
    "lung_base_y": (0.34, 0.48),
    "left_base_drop": (0.02, 0.08),
    "dome_height": (0.14, 0.26),
    "lung_air": (0.62, 0.74),
    # Heart: pediatric hearts are large (cardiothoracic ratio up to ~0.6).
    "heart_x": (0.1, 0.16),
    "heart_y": (0.18, 0.26),
    "heart_radius_x": (0.31, 0.37),
    "heart_radius_y": (0.23, 0.28),
    "heart_angle": (0.2, 0.45),
    # The mediastinum widens from the great vessels down to the heart.
    "mediastinum_top": (0.08, 0.12),
    "mediastinum_widening": (0.08, 0.16),
    # Bones.
    "spine_half_width": (0.07, 0.1),
    "vertebra_period": (0.085, 0.11),
    "vertebra_phase": (0.0, 1.0),
    "rib_period": (0.1, 0.125),
    "rib_phase": (0.0, 1.0),
    "rib_rise": (0.5, 0.7),
    "rib_curve": (0.55, 0.8),
    "rib_density": (0.12, 0.2),
    "clavicle_y": (-0.66, -0.56),
    "clavicle_slope": (0.15, 0.35),
    "clavicle_density": (0.25, 0.35),
    # Gastric bubble under the left hemidiaphragm (present when > 0.5).
    "bubble": (0.0, 1.0),
    "bubble_x": (0.35, 0.55),
    # Acquisition: exposure, window, gamma, sharpness, noise.
    "exposure": (1.1, 1.5),
    "window_low": (0.03, 0.12),
    "window_high": (0.85, 0.97),
    "gamma": (0.9, 1.4),
    "sharpness": (0.0, 1.4),
    "quantum_noise": (0.01, 0.025),
    "grain": (0.005, 0.015),
    "background": (0.0, 0.06),
    # Corner marker (present when > 0.55), its corner and letter.
    "marker": (0.0, 1.0),
    "marker_corner": (0.0, 3.999),
    "marker_letter": (0.0, 1.999),
}
_ANATOMY_NAMES = tuple(_ANATOMY)
_ANATOMY_LOW = np.array([low for low, _ in _ANATOMY.values()], np.float32)
_ANATOMY_HIGH = np.array([high for _, high in _ANATOMY.values()], np.float32)

# Per-lesion parameters, all uniform in [0, 1) and mapped in `_lesion_parameters`.
_LESION_FIELDS = ("side", "along", "across", "radius", "aspect", "angle", "density", "patchy")
# Whole-image lesion parameters: number of lesions, bilateral spread, interstitial haze.
_LESION_IMAGE_FIELDS = ("count", "bilateral", "haze", "haze_density")

# 5x3 bitmaps of the lead side markers technicians put on the cassette.
_MARKER_GLYPHS = np.array(
    [
        [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 1]],  # L
        [[1, 1, 0], [1, 0, 1], [1, 1, 0], [1, 0, 1], [1, 0, 1]],  # R
    ],
    np.float32,
)


@dataclasses.dataclass(frozen=True)
class PhantomSpec:
    """What to generate: image size, difficulty, seed, split sizes and class balance.

    The default class balance copies Kermany's: train 1,341 NORMAL of 5,216, test 234 of 624;
    its 16-image val split is balanced.

    Attributes:
      image_size: side of the square images in pixels (16 to 1024).
      difficulty: in [0, 1]; higher means fainter, smaller consolidations and more anatomical
        variation (vessel and lung texture) for them to hide in. How well a small CNN does at
        each difficulty: docs/performance.md, section "Phantom difficulty".
      seed: non-negative integer; every image and label is a function of it.
      num_train, num_val, num_test: number of images per split (>= 0).
      train_normal_fraction, val_normal_fraction, test_normal_fraction: share of NORMAL images
        per split, in [0, 1]; each split holds exactly `num_normal(split)` NORMAL images.
    """

    image_size: int = 128
    difficulty: float = 0.5
    seed: int = 0
    num_train: int = 1000
    num_val: int = 100
    num_test: int = 300
    train_normal_fraction: float = 1341 / 5216
    val_normal_fraction: float = 0.5
    test_normal_fraction: float = 234 / 624

    def __post_init__(self):
        def check_int(name, low, high=None):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"PhantomSpec.{name} must be an int, got {value!r}.")
            if value < low or (high is not None and value > high):
                bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
                raise ValueError(f"PhantomSpec.{name} must be {bounds}, got {value}.")

        def check_unit(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(f"PhantomSpec.{name} must be a number in [0, 1], got {value!r}.")
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError(f"PhantomSpec.{name} must be in [0, 1], got {value}.")

        check_int("image_size", 16, 1024)
        check_int("seed", 0)
        for split in SPLITS:
            check_int(f"num_{split}", 0)
            check_unit(f"{split}_normal_fraction")
        check_unit("difficulty")

    def num_examples(self, split: str) -> int:
        """Number of images in `split` ("train", "val" or "test")."""
        return getattr(self, f"num_{_check_split(split)}")

    def num_normal(self, split: str) -> int:
        """Number of NORMAL images in `split` (rounded half up); the rest are PNEUMONIA."""
        fraction = getattr(self, f"{_check_split(split)}_normal_fraction")
        return math.floor(self.num_examples(split) * fraction + 0.5)


def _check_split(split: str) -> str:
    if split not in _SPLIT_IDS:
        raise ValueError(f"Unknown phantom split {split!r}; expected one of {SPLITS}.")
    return split


def labels(spec: PhantomSpec, split: str) -> np.ndarray:
    """The label of every image of a split.

    Args:
      spec: the data set.
      split: "train", "val" or "test".

    Returns:
      int64 array [spec.num_examples(split)], 0 = NORMAL, 1 = PNEUMONIA; a seeded permutation of
      exactly `spec.num_normal(split)` zeros and the rest ones.
    """
    return _labels(spec, _check_split(split)).copy()


@functools.lru_cache(maxsize=16)
def _labels(spec: PhantomSpec, split: str) -> np.ndarray:
    # Cached because every `generate` call, however small, needs its slice of the permutation.
    num = spec.num_examples(split)
    ordered = np.ones(num, np.int64)
    ordered[: spec.num_normal(split)] = 0
    permuted = np.random.default_rng((spec.seed, _STREAM_LABELS, _SPLIT_IDS[split])).permutation(
        ordered
    )
    permuted.flags.writeable = False
    return permuted


def generate(spec: PhantomSpec, split: str, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Renders images `[start, stop)` of a split.

    Args:
      spec: the data set.
      split: "train", "val" or "test".
      start, stop: index range, 0 <= start <= stop <= spec.num_examples(split).

    Returns:
      images uint8 [stop - start, S, S, 1] with S = spec.image_size, and their labels int64
      [stop - start]. Image i does not depend on start/stop.
    """
    num = spec.num_examples(split)
    if not (isinstance(start, int | np.integer) and isinstance(stop, int | np.integer)):
        raise ValueError(f"start and stop must be ints, got {start!r} and {stop!r}.")
    if not 0 <= start <= stop <= num:
        raise ValueError(
            f"Index range [{start}, {stop}) is outside the {split!r} split of {num} images; "
            f"need 0 <= start <= stop <= {num}."
        )
    split_labels = _labels(spec, split)[start:stop].copy()
    size = spec.image_size
    images = np.empty((stop - start, size, size, 1), np.uint8)
    block = max(1, _BLOCK_PIXELS // (size * size))
    for begin in range(start, stop, block):
        end = min(begin + block, stop)
        images[begin - start : end - start, ..., 0] = _render(
            spec,
            _SPLIT_IDS[split],
            np.arange(begin, end),
            split_labels[begin - start : end - start],
        )
    return images, split_labels


def generate_fresh(spec: PhantomSpec, labels_: np.ndarray, *, start: int = 0) -> np.ndarray:
    """Renders new images of the given labels that no split of `spec` holds.

    They come from a seed stream of their own (as a fourth split would), indices `start`,
    `start + 1`, ...; so they are drawn from the same distribution as the train split without
    being any of its images: the "oracle" of the augmentation study, a perfect generator's output.

    Args:
      spec: the data set (image size, difficulty, seed).
      labels_: int [n], 0 = NORMAL, 1 = PNEUMONIA.
      start: first index of the stream.

    Returns:
      uint8 [n, S, S, 1]; image i depends on (spec, start + i, labels_[i]) only.
    """
    labels_ = np.asarray(labels_, dtype=np.int64)
    if labels_.ndim != 1 or not np.isin(labels_, (0, 1)).all():
        raise ValueError(f"labels must be a 1-D array of 0/1, got {labels_!r}.")
    size = spec.image_size
    images = np.empty((labels_.size, size, size, 1), np.uint8)
    block = max(1, _BLOCK_PIXELS // (size * size))
    for begin in range(0, labels_.size, block):
        end = min(begin + block, labels_.size)
        images[begin:end, ..., 0] = _render(
            spec, _FRESH_SPLIT_ID, np.arange(start + begin, start + end), labels_[begin:end]
        )
    return images


class PhantomSource:
    """Random-access source of one phantom split, usable by `grain` (picklable, thread-safe).

    `source[i]` is `{"image": uint8 [S, S, 1], "label": np.int64}`. A miss renders the aligned
    chunk of `chunk_size` images around i in one vectorised call and keeps it (least recently used
    chunks go first), so sequential reads and shuffled epochs over a set that fits in
    `max_cached_images` render every image once. When the split is larger than that, a random
    (non-sequential) miss renders only its own image, so shuffled reads never render 64 images to
    use one.
    """

    def __init__(
        self,
        spec: PhantomSpec,
        split: str,
        chunk_size: int = 64,
        max_cached_images: int = 4096,
    ):
        """Creates the source.

        Args:
          spec: the data set.
          split: "train", "val" or "test".
          chunk_size: images rendered together on a miss.
          max_cached_images: cap on images kept in memory (S * S bytes each).
        """
        for name, value in (("chunk_size", chunk_size), ("max_cached_images", max_cached_images)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PhantomSource {name} must be a positive int, got {value!r}.")
        self._spec = spec
        self._split = _check_split(split)
        self._chunk_size = chunk_size
        self._max_chunks = max(1, max_cached_images // chunk_size)
        self._labels = _labels(spec, split)
        self._fits = len(self._labels) <= self._max_chunks * chunk_size
        self._lock = threading.Lock()
        self._chunks: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._last_index = -2

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range [0, {len(self)}) for {self!r}.")
        chunk_start = index - index % self._chunk_size
        with self._lock:
            sequential, self._last_index = index == self._last_index + 1, index
            chunk = self._chunks.get(chunk_start)
            if chunk is not None:
                self._chunks.move_to_end(chunk_start)
            elif self._fits or sequential:
                chunk_stop = min(chunk_start + self._chunk_size, len(self))
                chunk, _ = generate(self._spec, self._split, chunk_start, chunk_stop)
                self._chunks[chunk_start] = chunk
                if len(self._chunks) > self._max_chunks:
                    self._chunks.popitem(last=False)
        if chunk is None:
            image = generate(self._spec, self._split, index, index + 1)[0][0]
        else:
            image = chunk[index - chunk_start]
        return {"image": image, "label": self._labels[index]}

    def __repr__(self) -> str:
        return f"PhantomSource(spec={self._spec!r}, split={self._split!r})"

    def __getstate__(self):
        # Locks do not pickle, and each worker process rebuilds its own cache.
        state = self.__dict__.copy()
        del state["_lock"]
        state["_chunks"] = collections.OrderedDict()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# Rendering. Arrays are [n, S, S] float32 over a block of images; per-image parameters are
# [n, 1, 1] so they broadcast. Whole-image temporaries are updated in place where that saves a
# pass over memory: rendering speed is a requirement (>= 500 images/s at 128x128 on one core).

_CACHE: dict[tuple, np.ndarray] = {}


def _cached(key, build):
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def _pixel_centres(size: int) -> np.ndarray:
    def build():
        return ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)

    return _cached(("centres", size), build)


def _spline_upsampler(size: int, grid: int) -> np.ndarray:
    """[size, grid] cubic B-spline weights, rows scaled so the upsampled noise has unit variance."""

    def build():
        # The grid overhangs the image by one cell on each side, so edges are as smooth as the
        # middle.
        position = (_pixel_centres(size).astype(np.float64) + 1) / 2 * (grid - 3) + 1
        offset = np.abs(position[:, None] - np.arange(grid)[None, :])
        weights = np.where(
            offset < 1,
            2 / 3 - offset**2 + offset**3 / 2,
            np.where(offset < 2, (2 - offset) ** 3 / 6, 0.0),
        )
        weights /= np.sqrt((weights**2).sum(axis=1, keepdims=True))
        return weights.astype(np.float32)

    return _cached(("spline", size, grid), build)


def _smooth_noise(coarse: np.ndarray, size: int) -> np.ndarray:
    """Unit-variance smooth noise [..., S, S] from white noise grids [..., rows, cols].

    Two small matrix products (rows @ coarse @ cols.T) instead of a large blur; the texture scale
    is fixed in normalised coordinates, so every image size shows the same pattern.
    """
    rows = _spline_upsampler(size, coarse.shape[-2])
    cols = _spline_upsampler(size, coarse.shape[-1])
    return rows @ coarse @ cols.T


def _step(value: np.ndarray, width) -> np.ndarray:
    """Soft step from 0 to 1 as `value` crosses 0 over `width`; overwrites `value` (a temporary)."""
    value *= 1.0 / width
    value += 0.5
    return np.clip(value, 0.0, 1.0, out=value)


def _bone(distance: np.ndarray) -> np.ndarray:
    """Profile across a long bone at normalised distance from its axis; overwrites `distance`.

    Thickness of a solid rod minus part of its marrow cavity, so the cortex shows as brighter
    rims as on a radiograph.
    """
    distance *= distance
    marrow = np.clip(1.0 - 2.25 * distance, 0.0, 1.0)
    np.subtract(1.0, distance, out=distance)
    np.clip(distance, 0.0, 1.0, out=distance)
    distance -= 0.55 * marrow
    return distance


def _binomial_blur(image: np.ndarray, passes: int) -> np.ndarray:
    """[1, 2, 1] / 4 blur along both image axes `passes` times (sigma^2 = passes / 2 pixels^2).

    Slicing arithmetic, faster here than `scipy.ndimage.correlate1d` on small images
    (docs/performance.md, section "Phantom rendering").
    """
    for _ in range(passes):
        for axis in (-1, -2):
            source = np.moveaxis(image, axis, -1)
            blurred = 0.5 * source
            blurred[..., 1:] += 0.25 * source[..., :-1]
            blurred[..., :-1] += 0.25 * source[..., 1:]
            # Replicate the border pixels, so edges keep their brightness.
            blurred[..., 0] += 0.25 * source[..., 0]
            blurred[..., -1] += 0.25 * source[..., -1]
            image = np.moveaxis(blurred, -1, axis)
    return image


def _draw_random_numbers(spec: PhantomSpec, split_id: int, indices: np.ndarray):
    """Every image's random numbers from its own seeded stream, always in the same order.

    Lesion numbers are drawn for every image (NORMAL ones ignore them), so the anatomy of index i
    does not depend on its label.
    """
    n, size = len(indices), spec.image_size
    anatomy_u = np.empty((n, len(_ANATOMY)), np.float32)
    coarse = np.empty((n, 2, *_COARSE_GRID), np.float32)
    mid = np.empty((n, 2, *_MID_GRID), np.float32)
    vessel = np.empty((n, *_VESSEL_GRID), np.float32)
    pixel_noise = np.empty((n, size, size), np.float32)
    lesion_u = np.empty((n, _MAX_LESIONS, len(_LESION_FIELDS)), np.float32)
    image_u = np.empty((n, len(_LESION_IMAGE_FIELDS)), np.float32)
    for row, index in enumerate(indices):
        rng = np.random.default_rng((spec.seed, _STREAM_IMAGES, split_id, int(index)))
        anatomy_u[row] = rng.random(anatomy_u.shape[1:], np.float32)
        coarse[row] = rng.standard_normal(coarse.shape[1:], np.float32)
        mid[row] = rng.standard_normal(mid.shape[1:], np.float32)
        vessel[row] = rng.standard_normal(vessel.shape[1:], np.float32)
        lesion_u[row] = rng.random(lesion_u.shape[1:], np.float32)
        image_u[row] = rng.random(image_u.shape[1:], np.float32)
        # Last, because its length depends on the image size: everything above is the same at
        # every size. Uniform: 6x cheaper to draw than Gaussian; the blur makes it Gaussian-like.
        pixel_noise[row] = rng.random((size, size), np.float32)
    pixel_noise -= 0.5
    pixel_noise *= np.sqrt(12.0, dtype=np.float32)  # unit variance
    return anatomy_u, coarse, mid, vessel, pixel_noise, lesion_u, image_u


def _lesion_parameters(lesion_u, image_u, labels_, p, difficulty):
    """Maps uniforms to consolidation geometry; NORMAL images and unused slots get zero density.

    Returns:
      (lesions, haze): a dict of float32 [n, _MAX_LESIONS] arrays (centre, ellipse coefficients,
      density, patchy) and the float32 [n] density of an interstitial haze (0 when absent).
    """
    count = 1 + (image_u[:, 0:1] > 0.5) + (image_u[:, 0:1] > 0.8)
    active = (np.arange(_MAX_LESIONS)[None, :] < count) & (labels_[:, None] == 1)
    # The right lung is hit a bit more often; further lesions stay in the first one's lung
    # unless the pneumonia is bilateral.
    side = np.where(lesion_u[..., 0] < 0.55, -1.0, 1.0)
    bilateral = image_u[:, 1:2] < 0.35
    side = np.where(bilateral | (np.arange(_MAX_LESIONS) == 0), side, side[:, :1])
    is_left = side > 0
    lung_x = np.where(is_left, p["left_lung_x"][:, :, 0], p["right_lung_x"][:, :, 0])
    lung_radius = np.where(is_left, p["left_lung_radius"][:, :, 0], p["right_lung_radius"][:, :, 0])
    apex = p["lung_apex_y"][:, :, 0]
    base = p["lung_base_y"][:, :, 0] + np.where(is_left, p["left_base_drop"][:, :, 0], 0.0)
    # Lower zones are favoured, as in lobar pneumonia; the centre lies inside the lung outline.
    along = 0.3 + 0.65 * np.sqrt(lesion_u[..., 1])
    centre_y = apex + along * (base - apex)
    half_width = lung_radius * np.sqrt(
        1.0 - ((1.0 - along) * (base - apex) / (base + 0.05 - apex)) ** 4
    )
    centre_x = side * (lung_x + (2.0 * lesion_u[..., 2] - 1.0) * 0.75 * half_width)
    # Difficulty shrinks and fades consolidations; dense ones stay possible at every level.
    radius = (0.1 + 0.17 * lesion_u[..., 3]) * (1.3 - 0.6 * difficulty)
    density = (0.25 + 0.7 * lesion_u[..., 6]) * (1.5 - 1.0 * difficulty)
    angle = np.pi * lesion_u[..., 5]
    aspect = 0.6 + 0.9 * lesion_u[..., 4]
    lesions = {
        "centre_x": centre_x,
        "centre_y": centre_y,
        # Rotated-ellipse coefficients: r^2 = (dx*a + dy*b)^2 + (dy*c - dx*d)^2.
        "a": np.cos(angle) / radius,
        "b": np.sin(angle) / radius,
        "c": np.cos(angle) * aspect / radius,
        "d": np.sin(angle) * aspect / radius,
        "density": np.where(active, np.minimum(density, 0.95), 0.0),
        "patchy": lesion_u[..., 7] < 0.4,
    }
    # Interstitial (viral-like) perihilar haze, on a quarter of PNEUMONIA images.
    haze = (
        np.where((image_u[:, 2] < 0.25) & (labels_ == 1), 1.0, 0.0)
        * (0.2 + 0.3 * image_u[:, 3])
        * (1.3 - difficulty)
    )
    return {k: v.astype(np.float32) for k, v in lesions.items()}, haze.astype(np.float32)


def _soft_tissue(x, y, p):
    """Torso of parabolic thickness, narrowing to the neck above the shoulders.

    Returns:
      (attenuation, skin): the tissue's attenuation and a 0..1 mask that is 1 inside the body.
    """
    half_width = _step(y - p["shoulder_y"] + 0.15, 0.3)
    half_width *= p["body_half_width"] - p["neck_half_width"]
    half_width += p["neck_half_width"]
    body = np.divide(x, half_width, out=half_width)
    body *= body
    np.subtract(1.0, body, out=body)
    np.clip(body, 0.0, 1.0, out=body)
    # A steep rise at the skin line, then thickness growing toward the midline.
    skin = np.minimum(body * 8.0, 1.0)
    attenuation = 0.35 * skin
    attenuation += 0.65 * body
    return attenuation, skin


def _heart(x, y, p):
    """Thickness (0..1) of a tilted ellipsoid heart, apex toward the patient's left and down."""
    hx = x - p["heart_x"]
    hy = y - p["heart_y"]
    hcos, hsin = np.cos(p["heart_angle"]), np.sin(p["heart_angle"])
    along = hx * (hcos / p["heart_radius_x"])
    along += hy * (hsin / p["heart_radius_x"])
    across = hy * (hcos / p["heart_radius_y"])
    across -= hx * (hsin / p["heart_radius_y"])
    along *= along
    across *= across
    heart = np.subtract(1.0, along, out=along)
    heart -= across
    return np.clip(heart, 0.0, 1.0, out=heart)


def _lungs(x, y, ax, y_edges, heart, p, edge):
    """Where the lungs are: 0..1, lower at their rims, cut by diaphragm, mediastinum and heart.

    Each lung is a superellipse widest at its base (a broad, rounded apex), cut from below by a
    diaphragm dome; the left one (image right) is narrower and sits lower.
    """
    air = np.zeros_like(x)
    for side, name, drop in ((-1.0, "right", 0.0), (1.0, "left", p["left_base_drop"])):
        centre_x, radius = p[f"{name}_lung_x"], p[f"{name}_lung_radius"]
        base = p["lung_base_y"] + drop
        centre_y = base + 0.05
        radius_y = centre_y - p["lung_apex_y"]
        lateral = x * (side / radius)
        lateral -= centre_x / radius
        vertical = y * (1.0 / radius_y)
        vertical -= centre_y / radius_y
        skew = lateral * vertical
        skew *= p["lung_skew"]
        lateral_2 = lateral * lateral
        outline = np.subtract(1.0, lateral_2)
        vertical *= vertical
        vertical *= vertical
        outline -= vertical
        outline -= skew
        # Lungs are thinner front-to-back near their borders: less air, a lighter rim.
        rim = np.minimum(outline, 0.25)
        rim *= 1.2
        rim += 0.7
        # `outline` changes by about 2 / radius per unit distance at the border.
        lung = _step(outline, 2.0 * edge / radius)
        lung *= rim
        # Diaphragm: y = base - dome_height * (1 - lateral^2), in units of the edge width.
        below = lateral_2 * (p["dome_height"] / edge)
        below += (base - p["dome_height"]) / edge + 0.5
        below -= y_edges
        lung *= np.clip(below, 0.0, 1.0, out=below)
        air += lung
    # The mediastinum widens from the great vessels down to the heart.
    mediastinum = _step(y - 0.1, 0.5)
    mediastinum *= p["mediastinum_widening"]
    mediastinum += p["mediastinum_top"]
    np.subtract(ax, mediastinum, out=mediastinum)
    air *= _step(mediastinum, edge)
    air *= 1.0 - 0.9 * np.minimum(heart * 6.0, 1.0)
    return air


def _lung_texture(ax, y, vessel_noise, mottle, difficulty):
    """Hila, vessels and parenchymal mottle, as added attenuation inside the lungs.

    Returns:
      (texture, hilum_distance_2): the attenuation and the squared distance to the nearer hilum.
    """
    hilum_x = ax - 0.2
    hilum_x *= hilum_x
    hilum_y = y + 0.05
    hilum_y *= hilum_y
    hilum_distance_2 = np.add(hilum_x, hilum_y, out=hilum_x)
    hilar = 8.0 * hilum_distance_2
    hilar += 1.0
    np.reciprocal(hilar, out=hilar)
    # Vessels: ridged noise, bright along its zero crossings, with a steeper ridge (thinner
    # vessels) and less contrast toward the periphery.
    vessels = np.abs(vessel_noise)
    vessels *= hilar * 2.0 - 3.6
    vessels += 1.0
    np.clip(vessels, 0.0, 1.0, out=vessels)
    vessels *= vessels
    vessels *= 0.35 + 0.65 * hilar
    # Difficulty also raises the anatomical clutter consolidations hide in.
    anatomical = 0.6 + 0.8 * difficulty
    texture = np.multiply(vessels, 0.12 * anatomical, out=vessels)
    texture += 0.14 * hilar
    texture += (0.05 * anatomical) * mottle
    return texture, hilum_distance_2


def _consolidation(x, y, hilum_distance_2, lesions, haze, outline_noise, patch_noise, haze_noise):
    """Opacity (0..1, the share of lung air replaced) of the PNEUMONIA lesions.

    Each lesion is a paraboloid bump plus noise, clipped: a dense core with irregular,
    ill-defined margins, sometimes broken into patches. Lesion j is rendered only on the images
    that have it.
    """
    opacity = np.zeros_like(x)
    for j in range(_MAX_LESIONS):
        rows = np.flatnonzero(lesions["density"][:, j])
        if rows.size == 0:
            continue
        lesion = {name: value[rows, j, None, None] for name, value in lesions.items()}
        dx = x[rows] - lesion["centre_x"]
        dy = y[rows] - lesion["centre_y"]
        first = dx * lesion["a"]
        first += dy * lesion["b"]
        second = dy * lesion["c"]
        second -= dx * lesion["d"]
        first *= first
        second *= second
        first += second
        blob = np.multiply(first, -0.35, out=first)
        blob += 1.2
        blob += 0.6 * outline_noise[rows]
        np.clip(blob, 0.0, 1.0, out=blob)
        patches = _step(patch_noise[rows] + 0.2, 1.2)
        patches *= lesion["patchy"]
        np.subtract(1.0, patches, out=patches)
        blob *= patches
        blob *= lesion["density"]
        opacity[rows] = np.maximum(opacity[rows], blob)
    hazy = np.flatnonzero(haze)
    if hazy.size:
        perihilar = _step(haze_noise[hazy] + 0.3, 1.5)
        perihilar *= 1.0 / (1.0 + 5.0 * hilum_distance_2[hazy])
        perihilar *= haze[hazy, None, None]
        opacity[hazy] = np.maximum(opacity[hazy], perihilar)
    return opacity


def _airways(x, y, y_edges, p, edge):
    """Negative attenuation of the trachea and, on half of the images, the gastric bubble."""
    trachea = x * (1.0 / 0.045)
    trachea *= trachea
    np.subtract(1.0, trachea, out=trachea)
    np.clip(trachea, 0.0, 1.0, out=trachea)
    trachea *= np.clip(-0.3 / edge + 0.5 - y_edges, 0.0, 1.0)  # above the carina
    trachea *= -0.18
    bubbly = np.flatnonzero(p["bubble"][:, 0, 0] > 0.5)
    if bubbly.size:
        bubble_y = p["lung_base_y"] + p["left_base_drop"] + 0.1
        bubble_x = (x[bubbly] - p["bubble_x"][bubbly]) * (1.0 / 0.12)
        bubble_x *= bubble_x
        bubble = (y[bubbly] - bubble_y[bubbly]) * (1.0 / 0.07)
        bubble *= bubble
        bubble += bubble_x
        np.subtract(1.0, bubble, out=bubble)
        np.clip(bubble, 0.0, 1.0, out=bubble)
        trachea[bubbly] -= 0.25 * bubble
    return trachea


def _spine(x, y, p):
    """Attenuation of a column of vertebral bodies with darker disc spaces."""
    spine = x * (1.0 / p["spine_half_width"])
    spine *= spine
    np.subtract(1.0, spine, out=spine)
    np.clip(spine, 0.0, 1.0, out=spine)
    # A triangle wave in y: bodies and discs, cheaper than a cosine.
    vertebra = y * (1.0 / p["vertebra_period"])
    vertebra += p["vertebra_phase"]
    vertebra -= np.floor(vertebra)
    vertebra -= 0.5
    np.abs(vertebra, out=vertebra)
    vertebra *= 0.6
    vertebra += 0.7
    spine *= vertebra
    spine *= 0.35
    return spine


def _ribs(ax, y, y_edges, air, p, edge):
    """Attenuation of the posterior and anterior ribs.

    One phase field whose integer level sets are the posterior rib arcs: rising from the spine,
    then bending down along the chest wall, with spacing widening toward the base. A second,
    fainter field gives the anterior ribs, sloping down toward the sternum.
    """
    shape = ax * p["rib_curve"]
    shape -= p["rib_rise"]
    shape *= ax
    bend = np.maximum(ax - 0.55, 0.0)
    bend *= bend
    shape += 1.5 * bend
    below_arc = np.subtract(y, shape, out=shape)
    below_arc -= p["lung_apex_y"] - 0.12
    np.maximum(below_arc, 0.0, out=below_arc)
    level = below_arc * (0.25 * p["rib_period"])
    level += p["rib_period"]
    np.divide(below_arc, level, out=level)
    level += p["rib_phase"]
    ribs = level - np.floor(level)
    ribs -= 0.22
    ribs *= 1.0 / 0.22
    ribs = _bone(ribs)
    ribs *= _step(level - 1.0, 0.1)
    ribs *= _step(np.maximum(p["left_lung_x"], p["right_lung_x"]) + 0.45 - ax, 0.06)
    ribs *= _step(ax - 0.06, 0.04)
    ribs *= np.clip((p["lung_base_y"] + 0.15) / edge + 0.5 - y_edges, 0.0, 1.0)
    front = ax * 0.55
    front += y
    front -= p["lung_apex_y"]
    front *= 1.0 / (1.3 * p["rib_period"])
    front += p["rib_phase"]
    front -= np.floor(front)
    front -= 0.25
    front *= 1.0 / 0.25
    front *= front
    np.subtract(1.0, front, out=front)
    np.clip(front, 0.0, 1.0, out=front)
    front *= _step(ax - 0.25, 0.1)
    front *= air
    front *= 0.3
    ribs += front
    # Over the lungs the ribs stand out against air; over soft tissue they barely show.
    ribs *= 0.5 * air + 0.5
    ribs *= p["rib_density"]
    return ribs


def _clavicles(ax, y, skin, p):
    """Attenuation of the clavicles: hollow bones from the sternal notch up to the shoulders."""
    from_notch = ax - 0.1
    centre_y = ax - 0.75
    centre_y *= 0.3
    centre_y -= p["clavicle_slope"]
    centre_y *= from_notch
    centre_y += p["clavicle_y"]
    thickness = ax * -0.015
    thickness += 0.045
    clavicle = np.subtract(y, centre_y, out=centre_y)
    clavicle /= thickness
    clavicle = _bone(clavicle)
    clavicle *= _step(from_notch, 0.05)
    clavicle *= _step(0.8 - ax, 0.1)
    clavicle *= skin
    clavicle *= p["clavicle_density"]
    return clavicle


def _detector(attenuation, pixel_noise, p, size):
    """Film response, markers, quantum noise, blur, grain, window and gamma; overwrites its input.

    Returns:
      uint8 [n, S, S] images.
    """
    np.maximum(attenuation, 0.0, out=attenuation)
    attenuation *= -p["exposure"]
    image = np.exp(attenuation, out=attenuation)
    # 1 - (1 - background) * exp(-exposure * attenuation): black where nothing attenuates.
    image *= p["background"] - 1.0
    image += 1.0
    _draw_markers(image, p, size)
    image += p["quantum_noise"] * (0.4 + 0.6 * image) * pixel_noise
    # The detector's blur is fixed in normalised units, so every size shows the same sharpness.
    sigma = 0.006 * size
    passes = max(1, round(2 * sigma**2))
    if passes <= 8:
        blurred = _binomial_blur(image, passes)
    else:  # from 512 px up, scipy's Gaussian beats many binomial passes
        blurred = ndimage.gaussian_filter(image, (0, sigma, sigma), mode="nearest", truncate=3.0)
    image -= blurred
    image *= p["sharpness"]  # < 1 blurs, > 1 is the edge enhancement of processed films
    image += blurred
    image += p["grain"] * pixel_noise
    image -= p["window_low"]
    image *= 1.0 / (p["window_high"] - p["window_low"])
    # Gamma as exp(gamma * log(x)): NumPy's float32 exp and log are vectorised, pow is not.
    np.clip(image, 1.0 / 512.0, 1.0, out=image)
    np.log(image, out=image)
    image *= p["gamma"]
    np.exp(image, out=image)
    image *= 255.0
    image += 0.5
    return image.astype(np.uint8)


def _draw_markers(image: np.ndarray, p: dict, size: int) -> None:
    """Stamps a lead side marker (a bright L or R) into a corner of some images, in place."""
    cell = max(1, round(size * 0.014))
    height, width = 5 * cell, 3 * cell
    margin = max(1, round(size * 0.05))
    for row in np.flatnonzero(p["marker"][:, 0, 0] > 0.55):
        corner = int(p["marker_corner"][row, 0, 0])
        glyph = _MARKER_GLYPHS[int(p["marker_letter"][row, 0, 0])]
        stamp = np.kron(glyph, np.ones((cell, cell), np.float32))
        top = margin if corner < 2 else size - margin - height
        left = margin if corner % 2 == 0 else size - margin - width
        region = image[row, top : top + height, left : left + width]
        np.maximum(region, 0.97 * stamp, out=region)


def _render(spec: PhantomSpec, split_id: int, indices: np.ndarray, labels_: np.ndarray):
    """Renders one block of images as uint8 [n, S, S]."""
    size = spec.image_size
    difficulty = float(spec.difficulty)
    anatomy_u, coarse, mid, vessel, pixel_noise, lesion_u, image_u = _draw_random_numbers(
        spec, split_id, indices
    )
    values = _ANATOMY_LOW + (_ANATOMY_HIGH - _ANATOMY_LOW) * anatomy_u
    p = {name: values[:, i, None, None] for i, name in enumerate(_ANATOMY_NAMES)}
    lesions, haze = _lesion_parameters(lesion_u, image_u, labels_, p, difficulty)
    mottle, haze_noise = _smooth_noise(coarse, size).transpose(1, 0, 2, 3)
    outline_noise, patch_noise = _smooth_noise(mid, size).transpose(1, 0, 2, 3)
    vessel_noise = _smooth_noise(vessel, size)
    # Soft edges at least ~1.5 pixels wide, so small images are anti-aliased.
    edge = np.float32(max(0.025, 3.0 / size))

    # Body coordinates: the patient is scaled, shifted and rotated under the detector. The
    # products are 1-D, so each coordinate costs one full-image pass.
    centres = _pixel_centres(size)
    cos = np.cos(p["rotation"]) / p["scale"]
    sin = np.sin(p["rotation"]) / p["scale"]
    u = centres[None, None, :] - p["shift_x"]
    v = centres[None, :, None] - p["shift_y"]
    x = u * cos + v * sin
    y = v * cos - u * sin
    ax = np.abs(x)
    y_edges = y * (1.0 / edge)  # shared by the horizontal boundaries' soft steps

    attenuation, skin = _soft_tissue(x, y, p)
    heart = _heart(x, y, p)
    attenuation += 0.25 * heart
    air = _lungs(x, y, ax, y_edges, heart, p, edge)
    texture, hilum_distance_2 = _lung_texture(ax, y, vessel_noise, mottle, difficulty)
    opacity = _consolidation(
        x, y, hilum_distance_2, lesions, haze, outline_noise, patch_noise, haze_noise
    )
    # Air thickness grows toward the bases; consolidation replaces part of it.
    air_thickness = _step(y - p["lung_apex_y"] - 0.5, 1.0)
    air_thickness *= 0.25 * p["lung_air"]
    air_thickness += 0.75 * p["lung_air"]
    air_thickness *= air
    np.subtract(1.0, opacity, out=opacity)
    air_thickness *= opacity
    attenuation -= air_thickness
    texture *= air
    attenuation += texture
    attenuation += _airways(x, y, y_edges, p, edge)
    attenuation += _spine(x, y, p)
    attenuation += _ribs(ax, y, y_edges, air, p, edge)
    attenuation += _clavicles(ax, y, skin, p)
    return _detector(attenuation, pixel_noise, p, size)
