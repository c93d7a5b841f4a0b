"""Reference statistics of real images, cached per data set, split, class, image size and resize.

Every evaluation of a generator compares it with the same real images, so their Inception
features and statistics are computed once and kept in `$XRAYGAN_CACHE/fid_reference/`, in
`<data set>-<split>-<class>-<size>px[-<mode>][-<fingerprint hash>].npz`, where `<mode>` is the
resize mode (`fid.RESIZE_MODES`), left out for the default "tf1" so that files written before
the modes existed keep their names. A file records what it was computed with (the key, the
weights' SHA-1 and the preprocessing version); one computed differently is recomputed, not
reused, and an extractor whose resize mode differs from the key's is refused.

    extractor = fid.InceptionFeatureExtractor(inception_weights.load_params(), resize="tf1")
    key = reference.ReferenceKey(
        "cxr_phantom", "test", "NORMAL", 64, fingerprint="seed=0 ...", resize=extractor.resize
    )
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

from xraygan_jax import files
from xraygan_jax.metrics import fid
from xraygan_jax.pretrained import inception_weights

# Bump when the features of the same images would change (network, resize, quantisation). This
# is the "tf1" mode's version; it predates the other modes and keeps its value, so that files
# written before them stay valid.
PREPROCESSING_VERSION = "fid-inception-2015-12-05/tf1-bilinear-299/(x-128)/128/v1"
# The same for the other resize modes (`fid.resize_images`, `fid.normalize_resized`).
_OTHER_MODES_PREPROCESSING_VERSIONS = {
    "pytorch_fid": "fid-inception-2015-12-05/torch-bilinear-half-pixel-299/x/255*2-1/v1",
    "clean": "fid-inception-2015-12-05/pil-bicubic-float-clip-299/(x-128)/128/v1",
}
# Files written before the resize modes existed hold no `key_resize`; they were all "tf1".
_DEFAULT_RESIZE = "tf1"


def preprocessing_version(resize: str = _DEFAULT_RESIZE) -> str:
    """The preprocessing version recorded in (and required of) files of a resize mode."""
    fid.check_resize_mode(resize)
    if resize == "tf1":
        return PREPROCESSING_VERSION
    return _OTHER_MODES_PREPROCESSING_VERSIONS[resize]


def reference_dir() -> pathlib.Path:
    """`$XRAYGAN_CACHE/fid_reference` (`$XRAYGAN_CACHE` defaults to ~/.cache/xraygan_jax)."""
    return inception_weights.cache_root() / "fid_reference"


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
      resize: the resize mode of the features (`fid.RESIZE_MODES`); the extractor's `resize`.
        Features of different modes never share a file.
    """

    dataset: str
    split: str
    class_name: str
    image_size: int
    fingerprint: str = ""
    resize: str = _DEFAULT_RESIZE

    def __post_init__(self):
        fid.check_resize_mode(self.resize)

    def filename(self) -> str:
        """The cache file name: readable fields, the resize mode unless "tf1", then a hash of
        the fingerprint."""
        parts = [self.dataset, self.split, self.class_name, f"{self.image_size}px"]
        if self.resize != _DEFAULT_RESIZE:
            parts.append(self.resize)
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
        "preprocessing": np.array(preprocessing_version(reference.key.resize)),
        "weights_sha1": np.array(inception_weights.SOURCE_SHA1),
    }
    for field in dataclasses.fields(ReferenceKey):
        arrays[f"key_{field.name}"] = np.array(getattr(reference.key, field.name))
    if reference.features is not None:
        arrays["features"] = reference.features.astype(np.float32)
    files.save_npz(path, **arrays)


def load(path: str | os.PathLike) -> Reference:
    """Reads a reference written by `save`.

    Raises:
      ValueError: the file was computed with other weights or preprocessing, or is incomplete.
    """
    with np.load(path, allow_pickle=False) as archive:
        names = set(archive.files)
        needed = {"mu", "sigma", "count", "preprocessing", "weights_sha1"}
        needed |= {f"key_{field.name}" for field in dataclasses.fields(ReferenceKey)}
        needed.discard("key_resize")
        if not needed <= names:
            raise ValueError(
                f"{path} lacks {sorted(needed - names)}; not written by reference.save"
            )
        resize = str(archive["key_resize"]) if "key_resize" in names else _DEFAULT_RESIZE
        expected = (preprocessing_version(resize), inception_weights.SOURCE_SHA1)
        made_with = (str(archive["preprocessing"]), str(archive["weights_sha1"]))
        if made_with != expected:
            raise ValueError(
                f"{path} was computed with {made_with}, not with the current {expected}; "
                "delete it to recompute"
            )
        key = ReferenceKey(
            dataset=str(archive["key_dataset"]),
            split=str(archive["key_split"]),
            class_name=str(archive["key_class_name"]),
            image_size=int(archive["key_image_size"]),
            fingerprint=str(archive["key_fingerprint"]),
            resize=resize,
        )
        stats = fid.FeatureStats.from_moments(
            archive["mu"], archive["sigma"], int(archive["count"])
        )
        features = archive["features"] if "features" in names else None
    return Reference(key=key, stats=stats, features=features)


def _check_extractor_resize(key: ReferenceKey, extractor: Callable[[Any], np.ndarray]) -> None:
    """Refuses an extractor whose resize mode is not the key's (a plain function passes)."""
    resize = getattr(extractor, "resize", None)
    if resize is not None and resize != key.resize:
        raise ValueError(
            f"the extractor resizes with {resize!r} but the reference key asks for "
            f"{key.resize!r}; build the key with resize=extractor.resize"
        )


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
      ValueError: fewer than 2 images in total, a batch of bad images, or an extractor whose
        resize mode is not the key's.
    """
    _check_extractor_resize(key, extractor)
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

    Raises:
      ValueError: an extractor whose resize mode is not the key's (checked before the cache is
        read, so that cached features of one mode never meet generated features of another).
    """
    _check_extractor_resize(key, extractor)
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
