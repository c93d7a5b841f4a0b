"""FID, KID and precision/recall per class, each beside its real-vs-real floor.

    evaluator = GANMetricsEvaluator(sample_fn, config=config)   # config: a run's config
    metrics = evaluator.run()                                     # {"<class>/<metric>": value}
    records = evaluator.records(metrics, gan="conditional", epoch=20)   # eval.jsonl's lines

The evaluators' contract (`Evaluator(fn, **config).run()`, xraygan_jax.evaluators): the function
is a sampler, the keyword config the run's config and the classes to score.

Scoring what is on disk (a run's checkpoints, a folder of images) is `evaluators.drivers`; the
records' file and summary are `evaluators.records`.

The protocol (docs/fid_protocol.md says why):
- The real side of a class is the split the GAN learned from (`config.eval.reference_split`,
  default "train"), all of its images of that class. The test split is used only when asked for:
  the classifier study is scored on it, so nothing may be chosen by it.
- The number of generated images equals the number of real ones, unless
  `config.eval.num_images_per_class` fixes it; the same for every checkpoint.
- The floor: the same metrics between two disjoint random halves of the real images
  (`fid_floor`, `kid_floor`, each half of `floor_num` images). FID is biased by sample size, so the
  GAN is also scored against one half with as many generated images (`fid_matched`,
  `kid_matched`): `fid_matched - fid_floor` compares like with like.
- Every record names num_real, num_fake, reference_split, resize and the sampling mode.
- `diversity`: the generated features' mean pairwise distance over the real ones'
  (metrics.diversity), from the same features; `coarse_diversity`: the same for the images
  averaged down to 16 x 16 pixels, the films' layout without their grain (Inception features
  weigh grain heavily, so a template plus grain has feature diversity well above 0 and coarse
  diversity near 0). A class that metrics.diversity's rule calls
  collapsed gets a warning with its recall and diversity on standard error (during training and
  in `drivers.evaluate_run`), in the run's summary.md and in the pipeline's report.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import errors
from xraygan_jax.data import pipeline, sources
from xraygan_jax.metrics import diversity, fid, reference
from xraygan_jax.pretrained import inception_weights

SampleFn = Callable[[int, int, int], np.ndarray]
_REFERENCE_BATCH = 64
# The floor needs two halves of at least this many images (KID and precision/recall with k = 3
# need k + 1 = 4 per set).
MIN_FLOOR_IMAGES = 4
_FLOOR_SALT = 0xF1004


@functools.cache
def extractor_for(weights_path: str = "", resize: str = "tf1") -> fid.InceptionFeatureExtractor:
    """One Inception extractor per (weights, resize mode), compiled once per process."""
    return fid.InceptionFeatureExtractor(
        inception_weights.load_params(weights_path or None), resize=resize
    )


_REFERENCES: dict[tuple, reference.Reference] = {}


def _class_batches(source, label: int) -> Iterator[np.ndarray]:
    indices = pipeline.class_indices(source, label)
    for start in range(0, len(indices), _REFERENCE_BATCH):
        chunk = indices[start : start + _REFERENCE_BATCH]
        yield np.stack([np.asarray(source[int(i)]["image"]) for i in chunk])


def _reference_fingerprint(data_config, split: str) -> str:
    """What besides the key's fields chooses the real images: the built set, and the train
    subset of `data.train_images_per_class` (sources.get_source), which must not share the whole
    split's cache entry."""
    fingerprint = sources.builder(data_config).builder_config.name
    per_class = int(data_config.get("train_images_per_class", 0))
    if split == "train" and per_class > 0:
        fingerprint += f" train_images_per_class={per_class} split_seed={data_config.split_seed}"
    return fingerprint


def real_features(
    data_config, split: str, label: int, extractor: fid.InceptionFeatureExtractor
) -> np.ndarray:
    """Inception features of every real image of class `label` in `split` (cached on disk).

    Raises:
      errors.DataError: the split holds fewer than 2 images of the class (names the split).
    """
    class_name = sources.class_names(data_config)[label]
    key = reference.ReferenceKey(
        dataset=data_config.source,
        split=split,
        class_name=class_name,
        image_size=int(data_config.image_size),
        fingerprint=_reference_fingerprint(data_config, split),
        resize=extractor.resize,
    )
    if key not in _REFERENCES:
        source = sources.get_source(data_config, split)
        count = len(pipeline.class_indices(source, label))
        if count < 2:
            raise errors.DataError(
                f"the {split} split holds {count} {class_name} image(s); FID needs at least 2 "
                f"real images per class: choose another split (--split or "
                f"--config.eval.reference_split; train holds the most)."
            )
        _REFERENCES[key] = reference.load_or_compute(
            key, lambda: _class_batches(source, label), extractor
        )
    return _REFERENCES[key].features


_REAL_IMAGES: dict[tuple[str, str, int], np.ndarray] = {}


def real_images(data_config, split: str, label: int) -> np.ndarray:
    """Every real uint8 image [N, S, S, 1] of class `label` in `split`, in the order of the
    reference's features (held in memory once per data config, split and class)."""
    key = (data_config.to_json(sort_keys=True), split, label)
    if key not in _REAL_IMAGES:
        source = sources.get_source(data_config, split)
        _REAL_IMAGES[key] = np.concatenate(list(_class_batches(source, label)))
    return _REAL_IMAGES[key]


def _floor_halves(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, _FLOOR_SALT, num]).permutation(num)
    half = num // 2
    return order[:half], order[half : 2 * half]


def compare(
    real: np.ndarray,
    fake: np.ndarray,
    *,
    seed: int = 0,
    floor: bool = True,
    class_name: str = "",
    real_images: np.ndarray | None = None,
    fake_images: np.ndarray | None = None,
) -> dict[str, float | int]:
    """FID, KID, precision/recall of generated features against real ones, with the floor.

    Args:
      real: real features [N, 2048]. fake: generated features [M, 2048].
      seed: seed of the floor's halves and of KID's subsets.
      floor: also compute the real-vs-real floor and the matched-size scores.
      class_name: named in the message when the class is too small for a floor.
      real_images, fake_images: the images the features are of ([N, S, S, C]); with both,
        `coarse_diversity` is measured too.

    Returns:
      fid.evaluate's fields, diversity (generated over real mean pairwise feature distance,
      metrics.diversity), plus fid_floor, kid_floor, floor_num, fid_matched, kid_matched
      (NaN, with a logged warning, when the real set is too small for two halves).
    """
    with warnings.catch_warnings():
        # Small N is expected here and every record carries N.
        warnings.simplefilter("ignore", fid.SmallSampleWarning)
        result = dict(fid.evaluate(real, fake, seed=seed))
        result["diversity"] = diversity.diversity(real, fake)
        if real_images is not None and fake_images is not None:
            result["coarse_diversity"] = diversity.coarse_diversity(real_images, fake_images)
        if not floor:
            return result
        half_a, half_b = _floor_halves(len(real), seed)
        floor_num = len(half_a)
        nan = float("nan")
        result.update(
            floor_num=floor_num, fid_floor=nan, kid_floor=nan, fid_matched=nan, kid_matched=nan
        )
        if floor_num < MIN_FLOOR_IMAGES or len(fake) < floor_num:
            logging.warning(
                "%s: %d real images are too few for a real-vs-real floor (two halves of at "
                "least %d are needed, and as many generated images); floor reported as NaN.",
                class_name or "class",
                len(real),
                MIN_FLOOR_IMAGES,
            )
            return result
        floor_metrics = fid.evaluate(real[half_a], real[half_b], seed=seed)
        matched = fid.evaluate(real[half_a], fake[:floor_num], seed=seed)
    result.update(
        fid_floor=floor_metrics["fid"],
        kid_floor=floor_metrics["kid_mean"],
        fid_matched=matched["fid"],
        kid_matched=matched["kid_mean"],
    )
    return result


class GANMetricsEvaluator:
    """FID, KID and precision/recall of generated images per class, with floors.

    Args:
      sample_fn: `(label, num, seed) -> uint8 [num, S, S, 1]`, e.g. `runs.Run(...).sample_fn()`.
      config: a run's config: `config.data` says what is real, `config.eval` how
        (reference_split, num_images_per_class, resize, batch_stats, weights_path).
      labels: the classes to evaluate (default: all).
      seed: seed of the generated latents, the floor halves and KID's subsets.
      extractor: an Inception feature extractor (default: shared one for the config).
    """

    def __init__(
        self,
        sample_fn: SampleFn,
        *,
        config: ml_collections.ConfigDict,
        labels: Sequence[int] | None = None,
        seed: int = 0,
        extractor: fid.InceptionFeatureExtractor | None = None,
    ):
        check_eval_config(config)
        self.config = config
        self.sample_fn = sample_fn
        self.class_names = sources.class_names(config.data)
        self.labels = list(range(len(self.class_names))) if labels is None else list(labels)
        self.seed = seed
        self.split = config.eval.reference_split
        self.extractor = extractor or extractor_for(
            config.eval.weights_path, config.eval.get("resize", "tf1")
        )

    def num_fake(self, num_real: int) -> int:
        fixed = int(self.config.eval.num_images_per_class)
        return fixed if fixed > 0 else num_real

    def run(self) -> dict[str, float]:
        """Returns {"<class>/<metric>": value} for every evaluated class."""
        results: dict[str, float] = {}
        for label in self.labels:
            name = self.class_names[label]
            real = real_features(self.config.data, self.split, label, self.extractor)
            images = self.sample_fn(label, self.num_fake(len(real)), self.seed)
            metrics = compare(
                real,
                self.extractor(images),
                seed=self.seed,
                class_name=name,
                real_images=real_images(self.config.data, self.split, label),
                fake_images=images,
            )
            results.update({f"{name}/{k}": v for k, v in metrics.items()})
        return results

    def records(self, metrics: dict[str, float], **fields) -> list[dict]:
        """One record per class from `run()`'s output, with the protocol's fields and `fields`."""
        records = []
        for label in self.labels:
            name = self.class_names[label]
            prefix = f"{name}/"
            record = {
                **fields,
                "class": name,
                "reference_split": self.split,
                "resize": self.extractor.resize,
                "batch_stats": self.config.eval.get("batch_stats", "running"),
                "ema": bool(self.config.train.ema_decay > 0),
            }
            record.update({k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)})
            records.append(record)
        return records


def check_eval_config(config: ml_collections.ConfigDict) -> None:
    """Raises errors.ConfigError for eval settings that cannot work, naming the flag."""
    split = config.eval.reference_split
    if split not in ("train", "val", "test"):
        raise errors.ConfigError(
            f"--config.eval.reference_split={split!r} is not a split; use train (the default), "
            "val or test."
        )
    resize = config.eval.get("resize", "tf1")
    if resize not in fid.RESIZE_MODES:
        raise errors.ConfigError(
            f"--config.eval.resize={resize!r} is not a resize mode; use one of: "
            f"{', '.join(fid.RESIZE_MODES)}."
        )
    mode = config.eval.get("batch_stats", "running")
    if mode not in ("running", "batch"):
        raise errors.ConfigError(
            f"--config.eval.batch_stats={mode!r} is unknown; use running or batch."
        )
    if int(config.eval.num_images_per_class) < 0:
        raise errors.ConfigError(
            f"--config.eval.num_images_per_class={config.eval.num_images_per_class} must be >= 0 "
            "(0 = as many as the real images of the class)."
        )
