"""Reference statistics of real images, cached per data set, split, class and image size.

Every evaluation of a generator compares it with the same real images, so their Inception
features and statistics are computed once and kept in
`$XRAYGAN_CACHE/fid_reference/<data set>-<split>-<class>-<size>px[-<fingerprint hash>].npz`.
A file records what it was computed with (the weights' SHA-1 and the preprocessing version);
one computed differently is recomputed, not reused.

    extractor = fid.InceptionFeatureExtractor(weights.load_params())
    key = reference.ReferenceKey("cxr_phantom", "test", "NORMAL", 64, fingerprint="seed=0 ...")
    ref = reference.load_or_compute(key, lambda: batches_of_uint8_images, extractor)
    metrics = fid.evaluate(ref.features, extractor(generated_images))
"""

import dataclasses
import hashlib
import os
import pathlib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from absl import logging

from xraygan_jax.metrics import fid, weights

# Bump when the features of the same images would change (network, resize, quantisation).
PREPROCESSING_VERSION = "fid-inception-2015-12-05/tf1-bilinear-299/(x-128)/128/v1"


def reference_dir() -> pathlib.Path:
    """`$XRAYGAN_CACHE/fid_reference` (`$XRAYGAN_CACHE` defaults to ~/.cache/xraygan_jax)."""
    return weights.cache_root() / "fid_reference"


@dataclasses.dataclass(frozen=True)
class ReferenceKey:
    """What identifies a set of real images.

    Attributes:
      dataset: data set name, e.g. "cxr_phantom", "kermany", "covid".
      split: "train", "val" or "test".
      class_name: e.g. "NORMAL"; "all" for every class together.
      image_size: side in pixels of the images as the data set stores them (before the
        Inception's own resize to 299).
      fingerprint: anything else that changes the images (phantom seed, difficulty and sizes;
        the source folder), hashed into the file name; "" when the name says it all.
    """

    dataset: str
    split: str
    class_name: str
    image_size: int
    fingerprint: str = ""

    def filename(self) -> str:
        """The cache file name: readable fields, then a hash of the fingerprint."""
        parts = [self.dataset, self.split, self.class_name, f"{self.image_size}px"]
        name = "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", part) for part in parts)
        if self.fingerprint:
            name += "-" + hashlib.sha1(self.fingerprint.encode()).hexdigest()[:10]
        return name + ".npz"


@dataclasses.dataclass
class Reference:
    """Real-image statistics and (optionally) features for one key.

    Attributes:
      key: what the images are.
      stats: their streaming mean and covariance.
      features: float32 [N, 2048] (for KID and precision/recall), or None when not kept.
    """

    key: ReferenceKey
    stats: fid.FeatureStats
    features: np.ndarray | None


def save(reference: Reference, path: str | os.PathLike) -> None:
    """Writes a reference to an .npz (atomically), with what it was computed with."""
    arrays: dict[str, Any] = {
        "mu": reference.stats.mean,
        "sigma": reference.stats.cov,
        "count": np.int64(reference.stats.count),
        "preprocessing": np.array(PREPROCESSING_VERSION),
        "weights_sha1": np.array(weights.SOURCE_SHA1),
    }
    for field in dataclasses.fields(ReferenceKey):
        arrays[f"key_{field.name}"] = np.array(getattr(reference.key, field.name))
    if reference.features is not None:
        arrays["features"] = reference.features.astype(np.float32)
    fid.save_npz(path, **arrays)


def load(path: str | os.PathLike) -> Reference:
    """Reads a reference written by `save`.

    Raises:
      ValueError: the file was computed with other weights or preprocessing, or is incomplete.
    """
    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        needed = {"mu", "sigma", "count", "preprocessing", "weights_sha1"}
        needed |= {f"key_{field.name}" for field in dataclasses.fields(ReferenceKey)}
        if not needed <= names:
            raise ValueError(
                f"{path} lacks {sorted(needed - names)}; not written by reference.save"
            )
        made_with = (str(archive["preprocessing"]), str(archive["weights_sha1"]))
        if made_with != (PREPROCESSING_VERSION, weights.SOURCE_SHA1):
            raise ValueError(
                f"{path} was computed with {made_with}, not with the current "
                f"{(PREPROCESSING_VERSION, weights.SOURCE_SHA1)}; delete it to recompute"
            )
        key = ReferenceKey(
            dataset=str(archive["key_dataset"]),
            split=str(archive["key_split"]),
            class_name=str(archive["key_class_name"]),
            image_size=int(archive["key_image_size"]),
            fingerprint=str(archive["key_fingerprint"]),
        )
        stats = fid.FeatureStats.from_moments(
            archive["mu"], archive["sigma"], int(archive["count"])
        )
        features = archive["features"] if "features" in names else None
    return Reference(key=key, stats=stats, features=features)


def compute(
    key: ReferenceKey,
    batches: Iterable[Any],
    extractor: Callable[[Any], np.ndarray],
    *,
    keep_features: bool = True,
) -> Reference:
    """Streams image batches through the extractor into statistics (and features).

    Args:
      key: what the images are.
      batches: an iterable of image batches [n, H, W, C] (uint8, or float in [-1, 1]).
      extractor: maps a batch to float32 features [n, 2048]: `fid.InceptionFeatureExtractor`.
      keep_features: keep the features too (KID and precision/recall need them; 8 KiB per image).

    Returns:
      The reference.

    Raises:
      ValueError: fewer than 2 images in total, or a batch of bad images.
    """
    stats = fid.FeatureStats()
    kept = []
    start = last_log = time.monotonic()
    for batch in batches:
        features = extractor(batch)
        stats.update(features)
        if keep_features:
            kept.append(features)
        if time.monotonic() - last_log > 30:
            last_log = time.monotonic()
            rate = stats.count / (last_log - start)
            logging.info(
                "reference %s: %d images, %.1f images/s", key.filename(), stats.count, rate
            )
    if stats.count < 2:
        raise ValueError(
            f"reference {key} holds {stats.count} image(s); statistics need at least 2 "
            "(is the split or class empty?)"
        )
    features = np.concatenate(kept) if keep_features else None
    return Reference(key=key, stats=stats, features=features)


def load_or_compute(
    key: ReferenceKey,
    batches: Callable[[], Iterable[Any]],
    extractor: Callable[[Any], np.ndarray],
    *,
    cache_dir: str | os.PathLike | None = None,
    keep_features: bool = True,
) -> Reference:
    """The cached reference for `key`, computed (and cached) on first use.

    Args:
      key: what the images are.
      batches: called only when the cache has no usable file; returns an iterable of image
        batches (uint8 [n, H, W, C], or float in [-1, 1]).
      extractor: maps a batch to float32 features [n, 2048]: `fid.InceptionFeatureExtractor`.
      cache_dir: folder of the cache files; default `reference_dir()`.
      keep_features: keep features for KID and precision/recall (a cached file without them is
        recomputed when they are asked for).

    Returns:
      The reference.
    """
    path = pathlib.Path(cache_dir or reference_dir()) / key.filename()
    if path.is_file():
        try:
            cached = load(path)
        except (ValueError, OSError) as error:
            logging.warning("recomputing reference statistics: %s", error)
        else:
            if cached.key != key:
                logging.warning("recomputing %s: it holds %s, not %s", path, cached.key, key)
            elif keep_features and cached.features is None:
                logging.info("recomputing %s: features are needed and it holds none", path)
            else:
                return cached
    reference = compute(key, batches(), extractor, keep_features=keep_features)
    save(reference, path)
    logging.info("saved reference statistics of %d images to %s", reference.stats.count, path)
    return reference
