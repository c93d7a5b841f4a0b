"""How varied generated images are against real ones, and the one rule that calls a GAN collapsed.

    score = diversity.diversity(real_features, fake_features)   # 1: as varied as real; 0: alike
    coarse = diversity.coarse_diversity(real_images, fake_images)  # the same at 16 x 16 pixels
    if diversity.record_collapsed(record): ...
    message = diversity.collapse_warning(record)                 # None, or names class and numbers

Diversity is the mean pairwise Euclidean distance of the generated images' Inception features
divided by the same for the real images. A mean over pairs is an unbiased (U-statistic) estimate,
so, unlike FID, it needs no matched sample sizes. A collapsed generator draws one template per
class whatever z is: its features sit together (diversity near 0), and no real image falls
inside the k-nearest-neighbour balls of the generated ones (recall 0).

Coarse diversity is the same ratio for the images themselves, averaged down to 16 x 16 pixels:
the layout of each film (where the body, lungs and heart are, how large, how bright) without its
grain. Inception features weigh pixel-scale texture heavily at these image sizes, so a generator
that draws one film per class plus grain that differs from sample to sample has feature
diversity well above 0 (0.5-0.7 in the main job's runs before its GAN took the mode-seeking
term) while every film has the same layout; its coarse diversity is near 0 (0.14-0.21 there;
docs/fid_protocol.md).

The rule (`is_collapsed`): recall below `RECALL_COLLAPSE_BELOW` and the lower of the two
diversities below `DIVERSITY_COLLAPSE_BELOW`. A figure that was not measured (NaN, or missing
from a record written before it was: None) is left out, so an old record with recall 0 is judged
by recall alone; a record with no figure is not called collapsed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

# Fewer than 1 in 100 real images covered by the generated images' k-NN manifold.
RECALL_COLLAPSE_BELOW = 0.01
# Generated features less than a quarter as spread as the real ones.
DIVERSITY_COLLAPSE_BELOW = 0.25
# The side of the images coarse diversity compares.
COARSE_SIZE = 16
RULE = (
    f"collapsed = recall < {RECALL_COLLAPSE_BELOW:g} and the lower of diversity and coarse "
    f"diversity < {DIVERSITY_COLLAPSE_BELOW:g}"
)


def mean_pairwise_distance(features: Any, *, block_size: int = 1024) -> float:
    """The mean Euclidean distance over all pairs i < j of the rows of `features`.

    Computed blockwise from inner products (memory: block_size x N float64) on features centred
    on their mean, so that identical rows are exactly 0 apart.

    Args:
      features: [N, D] with N >= 2.
      block_size: rows of the distance matrix computed at once.

    Returns:
      The mean distance (0.0 when every row is the same).

    Raises:
      ValueError: features not 2-D, fewer than 2 rows, or NaN/Inf values.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"a mean pairwise distance needs at least 2 rows, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features hold NaN or Inf values")
    x = x - x.mean(axis=0)
    squared_norms = np.einsum("ij,ij->i", x, x)
    total = 0.0
    for start in range(0, len(x), block_size):
        block = x[start : start + block_size]
        squared = (
            squared_norms[start : start + block_size, None]
            + squared_norms[None]
            - 2 * (block @ x.T)
        )
        # Rounding can leave tiny negatives; a row's distance to itself is 0 by definition.
        np.maximum(squared, 0.0, out=squared)
        rows = np.arange(len(block))
        squared[rows, start + rows] = 0.0
        total += float(np.sqrt(squared).sum())
    count = len(x)
    # The full matrix counts every pair twice.
    return total / (count * (count - 1))


def diversity(real_features: Any, fake_features: Any) -> float:
    """The generated features' mean pairwise distance over the real features' one.

    Args:
      real_features: [N_r, D], N_r >= 2. fake_features: [N_g, D], N_g >= 2 (any N_g).

    Returns:
      1 when the generated images are as varied as the real ones, 0 when all are identical,
      above 1 when more varied; NaN when the real features are all identical (nothing to compare
      with).

    Raises:
      ValueError: as `mean_pairwise_distance`, or feature dimensions that differ.
    """
    real = np.asarray(real_features)
    fake = np.asarray(fake_features)
    if real.ndim == fake.ndim == 2 and real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and generated features differ in dimension: {real.shape[1]} vs {fake.shape[1]}"
        )
    real_spread = mean_pairwise_distance(real)
    fake_spread = mean_pairwise_distance(fake)
    if real_spread == 0.0:
        return float("nan")
    return fake_spread / real_spread


def coarse_images(images: Any, size: int = COARSE_SIZE) -> np.ndarray:
    """Images [N, S, S, C] averaged down to [N, size * size * C] float64 (module docstring).

    Each output pixel is the mean of an S/size x S/size block when size divides S; otherwise the
    images are resized by linear interpolation (scipy.ndimage.zoom). Images smaller than `size`
    are kept as they are.

    Raises:
      ValueError: images that are not [N, S, S, C].
    """
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"images must be [N, S, S, C], got shape {x.shape}")
    side = x.shape[1]
    if side > size and side % size == 0:
        factor = side // size
        x = x.reshape(len(x), size, factor, size, factor, x.shape[3]).mean(axis=(2, 4))
    elif side > size:
        x = ndimage.zoom(x, (1, size / side, size / side, 1), order=1, prefilter=False)
    return x.reshape(len(x), -1)


def coarse_diversity(real_images: Any, fake_images: Any, size: int = COARSE_SIZE) -> float:
    """`diversity` of the images averaged down to size x size pixels (module docstring).

    Args:
      real_images: [N_r, S, S, C], N_r >= 2. fake_images: [N_g, S, S, C], N_g >= 2, same S, C.

    Returns:
      1 when the generated films' layouts vary as much as the real ones', 0 when all alike.

    Raises:
      ValueError: images not [N, S, S, C], fewer than 2, or of different shapes.
    """
    real, fake = np.asarray(real_images), np.asarray(fake_images)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"real and generated images differ in shape: {real.shape[1:]} vs {fake.shape[1:]}"
        )
    return diversity(coarse_images(real, size), coarse_images(fake, size))


def _measured(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_collapsed(
    recall: float | None, diversity_score: float | None, coarse_score: float | None = None
) -> bool:
    """The collapse rule: every measured sign says collapsed (module docstring, `RULE`).

    Args:
      recall: improved recall of the generated images (None or NaN: not measured).
      diversity_score: `diversity(...)` (None or NaN: not measured, e.g. an older record).
      coarse_score: `coarse_diversity(...)` (None or NaN: not measured).

    Returns:
      True when at least one figure is measured and each measured sign is: recall below its
      threshold, and the lower of the measured diversities below its threshold.
    """
    signs = []
    recall = _measured(recall)
    if recall is not None:
        signs.append(recall < RECALL_COLLAPSE_BELOW)
    spreads = [x for x in map(_measured, (diversity_score, coarse_score)) if x is not None]
    if spreads:
        signs.append(min(spreads) < DIVERSITY_COLLAPSE_BELOW)
    return bool(signs) and all(signs)


def record_collapsed(record: Mapping[str, Any]) -> bool:
    """`is_collapsed` of an evaluation record (eval.jsonl; the diversities may be missing)."""
    return is_collapsed(
        record.get("recall"), record.get("diversity"), record.get("coarse_diversity")
    )


def format_score(value: Any) -> str:
    """A diversity for a table: '0.631', or 'n/a' where it was not measured."""
    value = _measured(value)
    return "n/a" if value is None else f"{value:.3f}"


def describe(record: Mapping[str, Any]) -> str:
    """'recall 0.000, diversity 0.631, coarse diversity 0.152' ('diversity not measured' for an
    older record; the coarse figure only where it was measured)."""
    recall = _measured(record.get("recall"))
    score = _measured(record.get("diversity"))
    coarse = _measured(record.get("coarse_diversity"))
    recall_text = "recall not measured" if recall is None else f"recall {recall:.3f}"
    diversity_text = "diversity not measured" if score is None else f"diversity {score:.3f}"
    coarse_text = "" if coarse is None else f", coarse diversity {coarse:.3f}"
    return f"{recall_text}, {diversity_text}{coarse_text}"


def collapse_warning(record: Mapping[str, Any]) -> str | None:
    """A one-line warning naming the class and its numbers when the record is collapsed, or None.

    E.g. "NORMAL collapsed (gan conditional, epoch 2): recall 0.000, diversity 0.631, coarse
    diversity 0.152 (collapsed = recall < 0.01 and the lower of diversity and coarse diversity
    < 0.25)".
    """
    if not record_collapsed(record):
        return None
    where = ", ".join(
        f"{key} {record[key]}" for key in ("gan", "epoch") if record.get(key) is not None
    )
    return (
        f"{record.get('class', 'class')} collapsed{f' ({where})' if where else ''}: "
        f"{describe(record)} ({RULE})"
    )


def collapse_warnings(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """`collapse_warning` of every collapsed record, in order."""
    return [w for w in map(collapse_warning, records) if w is not None]
