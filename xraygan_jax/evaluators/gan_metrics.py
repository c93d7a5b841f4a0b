"""FID, KID and precision/recall per class, each beside its real-vs-real floor.

    evaluator = GANMetricsEvaluator(config, sample_fn)   # config: a run's config
    metrics = evaluator.run()                              # flat {"<class>/<metric>": value}
    records = evaluate_run("runs/dcgan")                   # every checkpoint: eval.jsonl + plot

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
  (metrics.diversity), from the same features. A class that metrics.diversity's rule calls
  collapsed gets a warning with its recall and diversity on standard error (during training and
  here), in the run's summary.md and in the pipeline's report.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import errors, runs, viz
from xraygan_jax.data import mixing, pipeline, sources
from xraygan_jax.metrics import diversity, fid, reference
from xraygan_jax.pretrained import inception_weights
from xraygan_jax.train import reporting

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


def _floor_halves(num: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng([seed, _FLOOR_SALT, num]).permutation(num)
    half = num // 2
    return order[:half], order[half : 2 * half]


def compare(
    real: np.ndarray, fake: np.ndarray, *, seed: int = 0, floor: bool = True, class_name: str = ""
) -> dict[str, float | int]:
    """FID, KID, precision/recall of generated features against real ones, with the floor.

    Args:
      real: real features [N, 2048]. fake: generated features [M, 2048].
      seed: seed of the floor's halves and of KID's subsets.
      floor: also compute the real-vs-real floor and the matched-size scores.
      class_name: named in the message when the class is too small for a floor.

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
      config: a run's config: `config.data` says what is real, `config.eval` how
        (reference_split, num_images_per_class, resize, batch_stats, weights_path).
      sample_fn: `(label, num, seed) -> uint8 [num, S, S, 1]`, e.g. `runs.Run(...).sample_fn()`.
      labels: the classes to evaluate (default: all).
      seed: seed of the generated latents, the floor halves and KID's subsets.
      extractor: an Inception feature extractor (default: shared one for the config).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        sample_fn: SampleFn,
        *,
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
            metrics = compare(real, self.extractor(images), seed=self.seed, class_name=name)
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


def _same_evaluation(a: dict, b: dict) -> bool:
    keys = ("gan", "epoch", "class", "reference_split", "resize", "batch_stats", "num_fake")
    return all(a.get(k) == b.get(k) for k in keys)


def write_records(path: pathlib.Path, records: Sequence[dict]) -> None:
    """Appends records to a JSON-lines file, replacing earlier records of the same evaluation."""
    kept = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                old = json.loads(line)
                if not any(_same_evaluation(old, new) for new in records):
                    kept.append(old)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        for record in [*kept, *records]:
            file.write(json.dumps(record) + "\n")
    os.replace(temporary, path)


def evaluate_run(
    workdir: str | os.PathLike,
    *,
    num_images_per_class: int | None = None,
    reference_split: str | None = None,
    resize: str | None = None,
    batch_stats: str | None = None,
    weights_path: str | None = None,
    epochs: Sequence[int] | None = None,
    seed: int = 0,
) -> list[dict]:
    """Evaluates every checkpoint of a run: one record per (GAN, epoch, class).

    Writes `workdir/eval.jsonl` and `workdir/plots/fid_vs_epoch.png` (FID against epoch, with
    each class's floor), rewrites the evaluation part of `workdir/summary.md` when the run has
    one, and prints a warning per collapsed class and checkpoint (metrics.diversity's rule) to
    standard error. Arguments left None take the run's `config.eval` values.

    Returns:
      The records written.
    """
    run = runs.Run(workdir)
    config = run.load_config()
    overrides = {
        "num_images_per_class": num_images_per_class,
        "reference_split": reference_split,
        "resize": resize,
        "batch_stats": batch_stats,
        "weights_path": weights_path,
    }
    with config.unlocked():
        for key, value in overrides.items():
            if value is not None:
                config.eval[key] = value
    check_eval_config(config)
    records = []
    for gan_name, label in run.gan_names():
        saved = run.checkpoint_epochs(gan_name)
        if not saved:
            raise errors.MissingError(
                f"no checkpoint in {run.checkpoint_dir(gan_name)}; nothing to evaluate"
            )
        chosen = saved if epochs is None else [e for e in saved if e in set(epochs)]
        if not chosen:
            raise errors.MissingError(
                f"none of --epochs {list(epochs)} is a saved epoch of {gan_name}; saved: {saved}"
            )
        labels = [label] if label is not None else None
        progress = reporting.Progress(
            len(chosen), 1, f"[eval {gan_name}]", every_steps=1, unit="checkpoint"
        )
        for done, epoch in enumerate(chosen, start=1):
            sample_fn, _ = run.sample_fn({gan_name: epoch}, batch_stats=config.eval.batch_stats)
            evaluator = GANMetricsEvaluator(config, sample_fn, labels=labels, seed=seed)
            metrics = evaluator.run()
            records += evaluator.records(metrics, gan=gan_name, epoch=epoch)
            progress.update(done, _fid_line(metrics))
            emit_collapse_warnings(records[-len(evaluator.labels) :], prefix=f"[eval {gan_name}] ")
    write_records(run.eval_path, records)
    plot_fid_by_epoch(records, run.fid_plot_path)
    update_summary(run)
    return records


def evaluate_folder(
    images_dir: str | os.PathLike,
    config: ml_collections.ConfigDict,
    *,
    extractor: fid.InceptionFeatureExtractor | None = None,
    seed: int = 0,
) -> list[dict]:
    """Evaluates images made by any tool, laid out `images_dir/<class>/*.png`, against real data.

    Every class of `config.data` needs a folder of square grayscale images of
    `config.data.image_size`; the number of images is what the folder holds.

    Raises:
      FileNotFoundError / ValueError: a missing or extra class folder, or images of another
        size (the message names both), from the shared class-folder reader.
    """
    check_eval_config(config)
    class_names = sources.class_names(config.data)
    size = int(config.data.image_size)
    images = mixing.load_image_folder(images_dir, size, class_names)
    by_label = {label: images.images[images.labels == label] for label in range(len(class_names))}
    evaluator = GANMetricsEvaluator(
        config, lambda label, num, seed: by_label[label], seed=seed, extractor=extractor
    )
    metrics = evaluator.run()
    return evaluator.records(metrics, images_dir=str(images_dir))


def plot_fid_by_epoch(records: Sequence[dict], path: str | os.PathLike) -> str:
    """FID against epoch, one line per class, each with its real-vs-real floor (dashed)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    floors: dict[str, float] = {}
    for record in sorted(records, key=lambda r: r["epoch"]):
        label = f"{record['class']} (N real {record['num_real']}, generated {record['num_fake']})"
        epochs, values = series.setdefault(label, ([], []))
        epochs.append(record["epoch"])
        values.append(record["fid"])
        floor = record.get("fid_floor")
        if floor is not None and np.isfinite(floor):
            floors[label] = floor
    return viz.plot_metric_by_epoch(
        series,
        path,
        ylabel="FID",
        title="FID against epoch (dashed: real-vs-real floor)",
        floors=floors,
    )


def _fid_line(metrics: dict[str, float]) -> str:
    shown = {"fid": ".1f", "fid_floor": ".1f", "recall": ".3f", "diversity": ".3f"}
    return " ".join(
        f"{k} {v:{shown[k.rsplit('/', 1)[-1]]}}"
        for k, v in metrics.items()
        if k.rsplit("/", 1)[-1] in shown
    )


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of an eval.jsonl, in file order; [] when there is none.

    Records written before a field existed (e.g. `diversity`) are returned as they are: readers
    use `record.get` for such fields (metrics.diversity's rule leaves a missing figure out).
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def latest_records(records: Sequence[dict]) -> list[dict]:
    """The records of each GAN's latest evaluated epoch, in file order."""
    latest: dict[object, int] = {}
    for record in records:
        gan = record.get("gan")
        latest[gan] = max(latest.get(gan, record["epoch"]), record["epoch"])
    return [r for r in records if r["epoch"] == latest[r.get("gan")]]


def format_record(record: dict) -> str:
    """'NORMAL: FID 301.20 (floor 50.10; N real 24, generated 24), KID 0.4123, precision 0.000,
    recall 0.000, diversity 0.031', the line a person reads in the log."""
    return (
        f"{record['class']}: FID {record['fid']:.2f} (floor "
        f"{record.get('fid_floor', float('nan')):.2f}; N real {record['num_real']}, generated "
        f"{record['num_fake']}), KID {record.get('kid_mean', float('nan')):.4f}, precision "
        f"{record.get('precision', float('nan')):.3f}, {diversity.describe(record)}"
    )


def emit_collapse_warnings(records: Sequence[dict], *, prefix: str = "") -> list[str]:
    """Prints 'PREFIX WARNING: <class> collapsed ...' to standard error for each collapsed record.

    Returns:
      The warnings (without prefix), as metrics.diversity.collapse_warnings.
    """
    found = diversity.collapse_warnings(records)
    for message in found:
        reporting.emit(f"{prefix}WARNING: {message}")
    return found


SUMMARY_BEGIN = "<!-- evaluation: written from eval.jsonl -->"
SUMMARY_END = "<!-- end of evaluation -->"


def summary_section(records: Sequence[dict]) -> list[str]:
    """The evaluation part of a run's summary.md: each GAN's latest evaluated checkpoint, a
    warning per collapsed class first. [] when there are no records."""
    if not records:
        return []
    shown = latest_records(records)
    lines = [SUMMARY_BEGIN, "", "## Evaluation", ""]
    for message in diversity.collapse_warnings(shown):
        lines.append(f"- **WARNING: {message}**")
    if lines[-1] != "":
        lines.append("")
    lines += [
        "Latest evaluated checkpoint of each GAN (`eval.jsonl`). Diversity: the generated "
        "images' mean pairwise Inception-feature distance over the real images' (1: as varied "
        f"as the real ones, 0: all alike); {diversity.RULE}.",
        "",
        "| GAN | epoch | class | G BatchNorm | N real | N generated | FID | FID at N/2 (floor) "
        "| KID | precision | recall | diversity | collapsed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in shown:
        score = r.get("diversity")
        lines.append(
            f"| {r.get('gan', '')} | {r['epoch']} | {r['class']} | {r.get('batch_stats', '')} | "
            f"{r['num_real']} | {r['num_fake']} | {r['fid']:.1f} | "
            f"{r.get('fid_matched', nan):.1f} ({r.get('fid_floor', nan):.1f}) | "
            f"{r.get('kid_mean', nan):.4f} | {r.get('precision', nan):.3f} | "
            f"{r.get('recall', nan):.3f} | {'n/a' if score is None else f'{score:.3f}'} | "
            f"{'**yes**' if diversity.record_collapsed(r) else 'no'} |"
        )
    return [*lines, "", SUMMARY_END]


def update_summary(run: runs.Run) -> None:
    """Rewrites the evaluation part of `run`'s summary.md from its eval.jsonl (no summary: no-op).

    A summary written before it had an evaluation part gets one at its end.
    """
    path = run.summary_path
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    section = "\n".join(summary_section(read_records(run.eval_path)))
    if SUMMARY_BEGIN in text and SUMMARY_END in text:
        before, rest = text.split(SUMMARY_BEGIN, 1)
        after = rest.split(SUMMARY_END, 1)[1]
        text = before + section + after
    elif section:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
