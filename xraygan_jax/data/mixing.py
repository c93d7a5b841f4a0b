"""Training sets for the augmentation study: real images mixed with a fraction of synthetic ones.

Definition of the synthetic fraction f (per class, of the FINAL training set):
  for a class with R real images and 0 <= f < 1, all R real images are kept and
  S = round_half_up(R * f / (1 - f)) synthetic images of that class are added, so that
  S / (R + S) = f up to rounding. f = 1 means synthetic only: R synthetic images per class and no
  real ones, so the set keeps the real set's size and class balance. f = 0 is the real set.
So "20%" with R = 1,341 NORMAL images adds 335 synthetic NORMAL images (335 / 1,676 = 19.99%).
(The first report's 0/10/20/100% runs scored 80.13/81.25/79.01/65.71%; 100% is the synthetic-only
end of the same scale here.) Classes present only in the synthetic set get no images: the
fraction is relative to the real class counts.

Which synthetic images are used is seeded per class, and the choice is nested: with one seed a
larger fraction uses a superset of the synthetic images a smaller fraction used. The same holds
for `subsample_per_class` (the real-set-size sweep): smaller subsets are inside larger ones.

Generated images are read from the folder layout `experiments.generate` writes:
DIR/<class_name>/*.png, grayscale, image_size x image_size; label i is class_names[i].
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import numpy as np
from absl import logging
from PIL import Image

from xraygan_jax.data import folders, pipeline


def num_synthetic(num_real: int, fraction: float) -> int:
    """Synthetic images to add to a class of `num_real` images for the given final fraction.

    Args:
      num_real: real images of the class (R).
      fraction: share of synthetic images in the final class, in [0, 1].

    Returns:
      round_half_up(R * f / (1 - f)) for f < 1, R for f = 1 (synthetic only).
    """
    _check_fraction(fraction, "fraction")
    if fraction == 1.0:
        return int(num_real)
    return math.floor(num_real * fraction / (1.0 - fraction) + 0.5)


def _check_fraction(fraction: float, name: str, *, allow_zero: bool = True) -> None:
    is_number = isinstance(fraction, int | float | np.integer | np.floating)
    low_ok = is_number and (fraction >= 0.0 if allow_zero else fraction > 0.0)
    if not (low_ok and fraction <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {fraction!r}.")


def _take(source: Any, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of the given records (fancy indexing for in-memory sources)."""
    if isinstance(source, pipeline.ArraySource):
        return source.images[indices], source.labels[indices]
    records = [source[int(i)] for i in indices]
    images = np.stack([np.asarray(r["image"]) for r in records])
    return images, np.array([int(r["label"]) for r in records], dtype=np.int64)


def _image_shape(source: Any) -> tuple[int, ...]:
    if isinstance(source, pipeline.ArraySource):
        return source.images.shape[1:]
    return np.asarray(source[0]["image"]).shape


def mix_synthetic(real: Any, synthetic: Any, fraction: float, *, seed: int) -> pipeline.ArraySource:
    """Real images plus synthetic ones making up `fraction` of every class (module docstring).

    Args:
      real: random-access source of real {"image", "label"} records.
      synthetic: random-access source of generated records with the same image shape (e.g.
        `load_image_folder(...)`).
      fraction: share of synthetic images in the final set, per class, in [0, 1].
      seed: chooses which synthetic images are used.

    Returns:
      An ArraySource: the real records in their order (none when fraction == 1), followed by the
      chosen synthetic records class by class. fraction == 0 returns the real records unchanged.

    Raises:
      ValueError: fraction outside [0, 1], image shapes differ, or a class has fewer synthetic
        images than needed (the message names class, needed and available).
    """
    _check_fraction(fraction, "fraction")
    if len(real) == 0:
        raise ValueError("The real set is empty; nothing to mix synthetic images into.")
    real_source = pipeline.ArraySource.from_source(real)
    if fraction == 0.0:
        return real_source
    if len(synthetic) == 0:
        raise ValueError(f"The synthetic set is empty but fraction={fraction} needs images.")
    if _image_shape(synthetic) != real_source.images.shape[1:]:
        raise ValueError(
            f"Synthetic images have shape {_image_shape(synthetic)}, real images "
            f"{real_source.images.shape[1:]}; generate at the real set's image size."
        )
    synthetic_labels = pipeline.source_labels(synthetic)
    chosen = []
    for label in np.unique(real_source.labels):
        needed = num_synthetic(int(np.sum(real_source.labels == label)), fraction)
        available = np.flatnonzero(synthetic_labels == label)
        if available.size < needed:
            raise ValueError(
                f"Too few synthetic images of class {label}: fraction {fraction} needs {needed}, "
                f"{available.size} available; generate at least {needed} for this class."
            )
        # A permutation prefix per class: nested choices across fractions for one seed.
        order = np.random.default_rng([seed, int(label)]).permutation(available)
        chosen.append(np.sort(order[:needed]))
    chosen = np.concatenate(chosen)
    if chosen.size == 0:  # Classes so small that round_half_up(R * f / (1 - f)) == 0.
        return real_source
    synthetic_images, synthetic_labels = _take(synthetic, chosen)
    if fraction == 1.0:
        return pipeline.ArraySource(synthetic_images, synthetic_labels)
    return pipeline.ArraySource(
        np.concatenate([real_source.images, synthetic_images]),
        np.concatenate([real_source.labels, synthetic_labels]),
    )


MIX_MODES = ("add", "replace")


def duplicate_real(real: Any, fraction: float, *, mode: str, seed: int) -> pipeline.ArraySource:
    """The study's `duplicate` control: extra copies of real images instead of synthetic ones.

    It has exactly the counts of the synthetic arm of the same fraction and mode, so a gain of
    that arm over this one cannot come from showing more images (the classifier's augmentation
    makes each copy a new draw when it is seen):
      add: per class with R images, `num_synthetic(R, f)` copies of that class's real images are
        added, without replacement while there are images left (every image once before any
        twice);
      replace: `num_replaced(R, f)` real images are dropped (the same seeded choice as
        `replace_with_synthetic`) and as many copies of the kept ones added: the same size with
        fewer distinct images.

    Args:
      real: random-access source of real records.
      fraction: in [0, 1); 0 returns the real set.
      mode: "add" or "replace".
      seed: chooses the copies.

    Raises:
      ValueError: fraction outside [0, 1), an unknown mode, or an empty real set.
    """
    _check_fraction(fraction, "fraction")
    if fraction == 1.0:
        raise ValueError(
            "duplicate_real needs a fraction below 1: with no real image left there is nothing "
            "to duplicate."
        )
    if mode not in MIX_MODES:
        raise ValueError(f"mixing mode {mode!r} is unknown; use one of: {', '.join(MIX_MODES)}")
    real_source = pipeline.ArraySource.from_source(real)
    if len(real_source) == 0:
        raise ValueError("The real set is empty; nothing to duplicate.")
    if fraction == 0.0:
        return real_source
    kept, copies = [], []
    for label in np.unique(real_source.labels):
        indices = np.flatnonzero(real_source.labels == label)
        if mode == "add":
            count, pool = num_synthetic(indices.size, fraction), indices
        else:
            count = num_replaced(indices.size, fraction)
            order = np.random.default_rng([seed, int(label), 1]).permutation(indices)
            pool = np.sort(order[count:])
        kept.append(indices if mode == "add" else pool)
        rng = np.random.default_rng([seed, int(label), 2])
        rounds = -(-count // max(pool.size, 1))
        drawn = np.concatenate([rng.permutation(pool) for _ in range(rounds)] or [pool[:0]])
        copies.append(drawn[:count])
    keep, copy = np.sort(np.concatenate(kept)), np.concatenate(copies)
    return pipeline.ArraySource(
        np.concatenate([real_source.images[keep], real_source.images[copy]]),
        np.concatenate([real_source.labels[keep], real_source.labels[copy]]),
    )


def num_replaced(num_real: int, fraction: float) -> int:
    """Real images of a class replaced by synthetic ones in `replace` mode: round_half_up(R f)."""
    _check_fraction(fraction, "fraction")
    return math.floor(num_real * fraction + 0.5)


def replace_with_synthetic(
    real: Any, synthetic: Any, fraction: float, *, seed: int
) -> pipeline.ArraySource:
    """The real set with `fraction` of every class replaced by synthetic images: same size.

    Per class with R real images, round_half_up(R f) real images (a seeded, nested choice) are
    dropped and as many synthetic ones of that class taken instead, so the training set keeps its
    size and class balance ("replace" mode; `mix_synthetic` is the "add" mode).

    Raises:
      ValueError: as `mix_synthetic`.
    """
    _check_fraction(fraction, "fraction")
    real_source = pipeline.ArraySource.from_source(real)
    if len(real_source) == 0:
        raise ValueError("The real set is empty; nothing to replace.")
    if fraction == 0.0:
        return real_source
    if _image_shape(synthetic) != real_source.images.shape[1:]:
        raise ValueError(
            f"Synthetic images have shape {_image_shape(synthetic)}, real images "
            f"{real_source.images.shape[1:]}; generate at the real set's image size."
        )
    synthetic_labels = pipeline.source_labels(synthetic)
    kept_real, chosen = [], []
    for label in np.unique(real_source.labels):
        indices = np.flatnonzero(real_source.labels == label)
        replaced = num_replaced(indices.size, fraction)
        available = np.flatnonzero(synthetic_labels == label)
        if available.size < replaced:
            raise ValueError(
                f"Too few synthetic images of class {label}: replacing {replaced} of "
                f"{indices.size} needs {replaced}, {available.size} available."
            )
        real_order = np.random.default_rng([seed, int(label), 1]).permutation(indices)
        kept_real.append(np.sort(real_order[replaced:]))
        order = np.random.default_rng([seed, int(label)]).permutation(available)
        chosen.append(np.sort(order[:replaced]))
    keep = np.concatenate(kept_real)
    synthetic_images, synthetic_labels = _take(synthetic, np.concatenate(chosen))
    return pipeline.ArraySource(
        np.concatenate([real_source.images[keep], synthetic_images]),
        np.concatenate([real_source.labels[keep], synthetic_labels]),
    )


def mix(real: Any, synthetic: Any, fraction: float, *, mode: str, seed: int):
    """`mix_synthetic` (mode "add") or `replace_with_synthetic` (mode "replace")."""
    if mode == "add":
        return mix_synthetic(real, synthetic, fraction, seed=seed)
    if mode == "replace":
        return replace_with_synthetic(real, synthetic, fraction, seed=seed)
    raise ValueError(f"mixing mode {mode!r} is unknown; use one of: {', '.join(MIX_MODES)}")


def subsample_per_class(
    source: Any,
    *,
    seed: int,
    num_per_class: int | None = None,
    fraction: float | None = None,
) -> pipeline.ArraySource:
    """A seeded subset with `num_per_class` images, or `fraction` of the images, of every class.

    For the real-set-size sweep. With one seed, smaller subsets are contained in larger ones.

    Args:
      source: random-access source.
      seed: chooses the subset.
      num_per_class: images to keep per class (exactly one of this and `fraction`).
      fraction: share of every class to keep, in (0, 1]; round_half_up(n * fraction) images,
        at least one, so that no class disappears.

    Returns:
      An ArraySource with the chosen records in their original order.

    Raises:
      ValueError: neither or both of num_per_class / fraction, bad values, or a class with
        fewer images than num_per_class (the message names class, needed and available).
    """
    if (num_per_class is None) == (fraction is None):
        raise ValueError(
            f"Pass exactly one of num_per_class / fraction, got num_per_class={num_per_class}, "
            f"fraction={fraction}."
        )
    if num_per_class is not None and (
        not isinstance(num_per_class, int | np.integer) or num_per_class <= 0
    ):
        raise ValueError(f"num_per_class must be a positive integer, got {num_per_class!r}.")
    if fraction is not None:
        _check_fraction(fraction, "fraction", allow_zero=False)
    labels = pipeline.source_labels(source)
    if labels.size == 0:
        raise ValueError("Cannot subsample an empty source.")
    chosen = []
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        if num_per_class is not None:
            needed = int(num_per_class)
        else:
            needed = max(1, math.floor(indices.size * fraction + 0.5))
        if indices.size < needed:
            raise ValueError(
                f"Class {label} has {indices.size} images available, {needed} needed per class; "
                "lower num_per_class."
            )
        order = np.random.default_rng([seed, int(label)]).permutation(indices)
        chosen.append(order[:needed])
    images, labels = _take(source, np.sort(np.concatenate(chosen)))
    return pipeline.ArraySource(images, labels)


def _read_png(path: pathlib.Path, image_size: int) -> np.ndarray:
    """One grayscale image as uint8 [S, S]; OSError for unreadable files (skipped by caller)."""
    with Image.open(path) as image:
        image.load()
        if image.mode == "RGB":
            image = image.convert("L")
        elif image.mode != "L":
            raise ValueError(
                f"{path} has image mode {image.mode}; generated images must be grayscale (L) or "
                "RGB."
            )
        if image.size != (image_size, image_size):
            raise ValueError(
                f"{path} is {image.size[0]}x{image.size[1]}, expected {image_size}x{image_size}; "
                "generate at the training image size or pass the matching image_size."
            )
        return np.asarray(image, dtype=np.uint8)


def load_image_folder(
    path: str | pathlib.Path, image_size: int, class_names: tuple[str, ...] | list[str]
) -> pipeline.ArraySource:
    """Reads generated PNGs laid out as DIR/<class_name>/*.png into an ArraySource.

    Files are read in sorted name order; label i is class_names[i]. Unreadable (corrupt or
    truncated) PNGs are skipped and listed in a warning, unless a whole class is left empty.

    Args:
      path: the folder DIR.
      image_size: expected side S of the square images.
      class_names: the class folder names, in label order.

    Returns:
      An ArraySource with uint8 [N, S, S, 1] images.

    Raises:
      FileNotFoundError: DIR or a class folder is missing.
      ValueError: an unknown class folder, a class without readable PNGs, an image of the wrong
        size or mode.
    """
    root = pathlib.Path(path)
    if not class_names:
        raise ValueError("class_names is empty; pass the class folder names in label order.")
    if not root.is_dir():
        raise FileNotFoundError(
            f"Generated-image folder {root} does not exist; write it with experiments.generate "
            "or pass the folder that holds <class_name>/*.png."
        )
    found = folders.visible_subdirs(root)
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(
            f"{root} holds class folders {unknown} that are not in class_names "
            f"{list(class_names)}; pass the matching class_names or move those folders."
        )
    images, labels, skipped = [], [], []
    for label, class_name in enumerate(class_names):
        folder = root / class_name
        if not folder.is_dir():
            raise FileNotFoundError(
                f"Class folder {folder} for class {class_name!r} is missing; found {found}."
            )
        try:
            files, _ = folders.list_class_images(folder)
        except ValueError as error:
            raise ValueError(f"No images for class {class_name!r}: {error}") from error
        class_images = []
        for file in files:
            try:
                class_images.append(_read_png(pathlib.Path(file), image_size))
            except OSError as error:  # PIL's UnidentifiedImageError and truncated files.
                skipped.append(f"{file} ({error})")
        if not class_images:
            raise ValueError(
                f"No readable images in {folder} ({len(files)} image files, all unreadable)."
            )
        images.extend(class_images)
        labels.extend([label] * len(class_images))
    if skipped:
        logging.warning("Skipped %d unreadable images:\n%s", len(skipped), "\n".join(skipped))
    return pipeline.ArraySource(np.stack(images)[..., None], np.array(labels, dtype=np.int64))
