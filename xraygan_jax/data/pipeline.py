"""grain input pipelines: shuffle per epoch by seed, shard by process, batch, prefetch, resume.

Every source is a random-access object with `__len__` and `__getitem__(i) -> {"image": uint8
[S, S, 1], "label": int}` (an `ArraySource`, `phantom.PhantomSource`, a TFDS
`builder.as_data_source(split)`, ...). `make_dataset` turns one into a `grain.IterDataset` whose
iterator yields batches

    {"image": float32 [B, S, S, 1] in [-1, 1], "label": int32 [B]}

with the image converted as `x / 127.5 - 1` (uint8 0 -> -1.0, 255 -> 1.0). The FID code inverts it
as `clip(x * 127.5 + 128, 0, 255)` truncated to uint8 (NVIDIA's quantisation), which returns
every original uint8 value exactly (checked for all 256 in float32).

Order of operations (all on grain `MapDataset`s, so every step is a pure function of the index):

    indices -> shuffle(seed, epoch) -> global batch -> process's block -> read + convert
            -> repeat -> to_iter_dataset (thread prefetch)

- Shuffle: one global permutation per epoch, determined by (seed, epoch) (grain folds the epoch
  into the shuffle seed). The user seed is first hashed, so seeds 0 and 1 do not share orders
  shifted by one epoch (grain uses `seed + epoch`).
- Process sharding: every process computes the same permutation and cuts it into the same
  global batches of `batch_size * process_count` consecutive positions; process p reads the p-th
  block of `batch_size` rows of each. So the global batch (the processes' blocks concatenated in
  process order, as `jax.make_array_from_process_local_data` assembles it) holds the same
  examples in the same order whatever the process count: 2 processes x 2 devices train on exactly
  the batches of 1 process x 4 devices. Shares are disjoint, their union is the epoch, and which
  examples land on which process changes every epoch. `batch_size` is the per-process batch.
- Remainder policy: batches never span epochs. With `drop_remainder=True` (training) every
  global batch is full: `N // (batch_size * process_count)` of them per epoch; the left-over
  examples differ from epoch to epoch. With `drop_remainder=False` the last, partial global batch
  is kept, first trimmed to a multiple of `remainder_multiple_of` (training passes the device
  count, so that it splits over the devices and equally over the processes); with the default 1
  every example is read once per epoch (evaluation) and process shares may differ by one
  example (a process whose share of the last batch is empty skips it).
- Epoch count: `steps_per_epoch(num_examples_per_epoch(...), batch_size * process_count,
  drop_remainder, remainder_multiple_of)` is the number of global batches per epoch, the same
  for every process count.

Prefetch: `prefetch_threads` threads read and convert whole batches ahead of the training step
(a buffer of 2 batches per thread). Reading uint8 arrays is light, so threads rather than
worker processes.

Resuming: the iterator's state is the index of the next batch (`{"next_index": n}`), so
`get_state()` / `set_state()` restore exactly, across epoch boundaries, provided the new iterator
is built with the same arguments. Since batches are global, n counts global batches and is the
same on every process and for every process count: `make_dataset(..., start_batch=n)` starts a
fresh pipeline there, which is how a run resumes on a different number of processes (grain's
own files below are per process). Inside an orbax checkpoint, next to the model state, use grain's
own orbax handler args (grain.checkpoint.CheckpointSave / CheckpointRestore, which write one JSON
file per process):

    manager = ocp.CheckpointManager(directory)
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(iterator)))  # sets `iterator`'s state in place

Per-class iteration (one GAN per class as in the first report): `label=c` keeps only class c.
Balanced sampling (`balanced=True`): each epoch holds `num_classes * max_count` examples, every
class contributing `max_count` (the majority count). Class c draws them from its own endless
stream of seeded permutations of its `n_c` examples, continued from epoch to epoch, so a minority
example appears `floor(max_count / n_c)` or one more times per epoch and all of a class's examples
are used equally often over time (no fixed set of favoured duplicates).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np

# Salts that decorrelate the seeds grain's shuffle and the balanced streams derive from one user
# seed.
_SHUFFLE_SALT = 0x5EED5
_BALANCED_SALT = 0xBA1A


class ArraySource:
    """A random-access source over in-memory arrays: record i is {"image", "label"}.

    Attributes:
      images: uint8 [N, S, S, 1].
      labels: int64 [N], non-negative class indices.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | Sequence[int]):
        """Validates and wraps the arrays (no copy when they already have the right types).

        Args:
          images: uint8 array [N, S, S, 1] (square, one channel, NHWC).
          labels: integer array [N] of non-negative class indices.

        Raises:
          TypeError: images are not a uint8 array or labels not integers.
          ValueError: wrong shapes, mismatched lengths or negative labels.
        """
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
            raise TypeError(
                f"ArraySource images must be a uint8 numpy array, got {got}; convert images in "
                "[-1, 1] with np.clip(np.round(x * 127.5 + 127.5), 0, 255).astype(np.uint8)."
            )
        if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 1:
            raise ValueError(
                f"ArraySource images must have shape [N, S, S, 1] (square, one channel), got "
                f"{images.shape}; add a channel axis with images[..., None]."
            )
        labels = np.asarray(labels)
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"ArraySource labels must be integers, got dtype {labels.dtype}.")
        labels = labels.astype(np.int64, copy=False)
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"ArraySource labels must have shape [N] = ({images.shape[0]},) to match the "
                f"images, got {labels.shape}."
            )
        if labels.size and labels.min() < 0:
            raise ValueError(
                f"ArraySource labels must be non-negative class indices, got {labels.min()}."
            )
        self.images = images
        self.labels = labels

    @classmethod
    def from_source(cls, source: Any) -> ArraySource:
        """Reads every record of a random-access source into memory.

        Args:
          source: any object with `__len__` and `__getitem__(i) -> {"image", "label"}`.

        Returns:
          An ArraySource with the same records in the same order (`source` itself if it already
          is one).
        """
        if isinstance(source, ArraySource):
            return source
        if len(source) == 0:
            raise ValueError(f"Cannot read an empty source {source!r} into an ArraySource.")
        records = [source[i] for i in range(len(source))]
        images = np.stack([np.asarray(r["image"]) for r in records])
        labels = np.array([int(r["label"]) for r in records], dtype=np.int64)
        return cls(images, labels)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "label": int(self.labels[index])}

    def __repr__(self) -> str:
        counts = dict(zip(*np.unique(self.labels, return_counts=True), strict=True))
        counts = {int(k): int(v) for k, v in counts.items()}
        return f"ArraySource(images={self.images.shape}, label counts={counts})"


# id(source) -> (weak reference to source, labels). Sources without a `labels` array (TFDS data
# sources) decode whole records to read a label, so their labels are read once per source object.
_LABEL_CACHE: dict[int, tuple[weakref.ref, np.ndarray]] = {}


def source_labels(source: Any) -> np.ndarray:
    """The labels of all records of a source, int64 [N].

    Uses the source's `labels` attribute when it has one (ArraySource, PhantomSource); otherwise
    reads every record once and caches the result for as long as the source object lives.

    Args:
      source: a random-access source.

    Returns:
      int64 array [len(source)].
    """
    labels = getattr(source, "labels", None)
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(source),):
            raise ValueError(
                f"{type(source).__name__}.labels has shape {labels.shape}, expected "
                f"({len(source)},) (one label per record)."
            )
        return labels
    cached = _LABEL_CACHE.get(id(source))
    if cached is not None and cached[0]() is source:
        return cached[1]
    labels = np.array([int(source[i]["label"]) for i in range(len(source))], dtype=np.int64)
    key = id(source)
    try:
        reference = weakref.ref(source, lambda _: _LABEL_CACHE.pop(key, None))
    except TypeError:  # Not weak-referenceable: no cache rather than keeping the source alive.
        return labels
    _LABEL_CACHE[key] = (reference, labels)
    return labels


def class_indices(source: Any, label: int) -> np.ndarray:
    """Indices of the records of one class, ascending.

    Args:
      source: a random-access source (see `source_labels` for how labels are read).
      label: the class index.

    Returns:
      int64 array of record indices (empty if the class is absent).
    """
    return np.flatnonzero(source_labels(source) == label)


def num_examples_per_epoch(source: Any, *, label: int | None = None, balanced: bool = False) -> int:
    """How many examples one epoch of `make_dataset` holds, over all processes.

    Args:
      source: a random-access source.
      label: as in `make_dataset`: count only this class.
      balanced: as in `make_dataset`: num_classes * the majority class count.

    Returns:
      The global number of examples per epoch (before process sharding and remainder dropping).
    """
    if label is not None:
        return int(class_indices(source, label).size)
    if balanced:
        counts = np.bincount(source_labels(source))
        counts = counts[counts > 0]
        return int(counts.size * counts.max()) if counts.size else 0
    return len(source)


def steps_per_epoch(
    num_examples: int,
    batch_size: int,
    drop_remainder: bool = True,
    remainder_multiple_of: int = 1,
) -> int:
    """Batches per epoch.

    With process sharding pass the global count (`num_examples_per_epoch`) and the global batch
    (`batch_size * process_count`): the result is the number of global batches per epoch, which
    every process yields (with `drop_remainder=False` and a `remainder_multiple_of` that is not
    a multiple of the process count, the largest per-process count).

    Args:
      num_examples: examples per epoch.
      batch_size: examples per batch.
      drop_remainder: whether the last, partial batch is dropped.
      remainder_multiple_of: as in `make_dataset`: the kept partial batch is trimmed to a
        multiple of this, and counts only if something is left.

    Returns:
      floor(num_examples / batch_size), plus one if the remainder is kept and its trimmed size is
      positive.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if num_examples < 0:
        raise ValueError(f"num_examples must be non-negative, got {num_examples}.")
    if remainder_multiple_of <= 0:
        raise ValueError(f"remainder_multiple_of must be positive, got {remainder_multiple_of}.")
    full, remainder = divmod(num_examples, batch_size)
    if drop_remainder:
        return full
    return full + (1 if remainder >= remainder_multiple_of else 0)


def _derived_seed(seed: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, salt]).generate_state(1, np.uint32)[0])


class _BalancedIndexMap:
    """Position (epoch * length + q) of a balanced epoch -> source index.

    Position q in [0, num_classes * per_class) belongs to class q // per_class. Class c reads its
    examples from an endless stream: cycle k of the stream is a seeded permutation of the class's
    indices, and epoch e uses stream positions [e * per_class, (e + 1) * per_class).
    """

    def __init__(self, indices_per_class: list[np.ndarray], seed: int):
        self._indices_per_class = indices_per_class
        self._per_class = max(indices.size for indices in indices_per_class)
        self._length = self._per_class * len(indices_per_class)
        self._seed = seed

    def __len__(self) -> int:
        return self._length

    @functools.lru_cache(maxsize=64)  # noqa: B019 (one instance per pipeline, lives with it)
    def _permutation(self, class_position: int, cycle: int) -> np.ndarray:
        rng = np.random.default_rng([self._seed, class_position, cycle])
        return rng.permutation(self._indices_per_class[class_position])

    def __call__(self, index: int, _: Any) -> int:
        epoch, position = divmod(int(index), self._length)
        class_position, within = divmod(position, self._per_class)
        count = self._indices_per_class[class_position].size
        cycle, offset = divmod(epoch * self._per_class + within, count)
        return int(self._permutation(class_position, cycle)[offset])


def _check_record(record: Any, source: Any) -> tuple[int, ...]:
    """Validates record 0 so that a wrong source fails here, not inside a prefetch thread."""
    if not isinstance(record, dict) or "image" not in record or "label" not in record:
        raise TypeError(
            f"Records of {type(source).__name__} must be dicts with 'image' and 'label', got "
            f"{type(record).__name__} {list(record) if isinstance(record, dict) else ''}."
        )
    image = np.asarray(record["image"])
    if image.dtype != np.uint8:
        raise TypeError(
            f"Images of {type(source).__name__} must be uint8, got {image.dtype} (record 0)."
        )
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 1:
        raise ValueError(
            f"Images of {type(source).__name__} must have shape [S, S, 1], got {image.shape} "
            "(record 0)."
        )
    return image.shape


class _ProcessBlock:
    """A global batch of source indices -> this process's block of consecutive rows.

    Blocks are as equal as possible (`np.array_split`): process p of P reads rows
    [p * n / P, (p + 1) * n / P) of a global batch of n when P divides n.
    """

    def __init__(self, process_index: int, process_count: int):
        self._process_index = process_index
        self._process_count = process_count

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        return np.array_split(np.asarray(indices), self._process_count)[self._process_index]


class _ReadBatch:
    """Batch of source indices -> {"image": float32 in [-1, 1], "label": int32}."""

    def __init__(self, source: Any, image_shape: tuple[int, ...]):
        self._source = source
        self._image_shape = image_shape

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        if isinstance(self._source, ArraySource):
            images, labels = self._source.images[indices], self._source.labels[indices]
            return {
                "image": images.astype(np.float32) / 127.5 - 1.0,
                "label": labels.astype(np.int32),
            }
        if hasattr(self._source, "__getitems__"):  # Batched reads (TFDS array_record sources).
            records = self._source.__getitems__([int(i) for i in indices])
        else:
            records = [self._source[int(i)] for i in indices]
        images = np.stack([np.asarray(r["image"]) for r in records])
        if images.dtype != np.uint8 or images.shape[1:] != self._image_shape:
            raise ValueError(
                f"Records {indices.tolist()} of {type(self._source).__name__} hold "
                f"{images.dtype} images of shape {images.shape[1:]}; every image must be uint8 "
                f"{self._image_shape} like record 0."
            )
        labels = np.array([int(r["label"]) for r in records], dtype=np.int32)
        return {"image": images.astype(np.float32) / 127.5 - 1.0, "label": labels}


def make_dataset(
    source: Any,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    label: int | None = None,
    balanced: bool = False,
    process_index: int | None = None,
    process_count: int | None = None,
    remainder_multiple_of: int = 1,
    start_batch: int = 0,
    prefetch_threads: int = 2,
) -> grain.IterDataset:
    """Builds the batched, shuffled, process-sharded, prefetched input pipeline of a source.

    See the module docstring for the order of operations, the remainder policy and resuming.

    Args:
      source: random-access source of {"image": uint8 [S, S, 1], "label": int} records.
      batch_size: examples per batch on this process (global batch / process_count).
      seed: non-negative integer; with the other arguments it fixes every batch.
      shuffle: reshuffle every epoch (a different permutation per (seed, epoch)); False reads
        in index order (class-blocked order when balanced).
      num_epochs: epochs to yield, None for an endless stream.
      drop_remainder: drop the last partial global batch of every epoch; False keeps it (trimmed
        as `remainder_multiple_of` says).
      label: keep only the records of this class (per-class GAN training).
      balanced: sample every class `max_count` times per epoch (see module docstring).
      process_index: this process's share; default `jax.process_index()` (multi-host: call
        `jax.distributed.initialize()` before building the pipeline).
      process_count: number of shares; default `jax.process_count()`.
      remainder_multiple_of: with `drop_remainder=False`, the kept partial global batch is
        trimmed to a multiple of this (training: the global device count); 1 keeps it whole, so
        every example is read once per epoch.
      start_batch: the global batch the iterator starts at (counted from the first epoch's
        first batch, over epochs): resumes a run at the position its checkpoint recorded.
      prefetch_threads: threads that read and convert batches ahead (0: read on demand).

    Returns:
      A grain.IterDataset; its iterator yields {"image": float32 [B, S, S, 1] in [-1, 1],
      "label": int32 [B]} and supports get_state() / set_state().

    Raises:
      ValueError: bad argument values, an empty source or class, or fewer examples per process
        and epoch than one batch while dropping the remainder.
    """
    if not isinstance(batch_size, int | np.integer) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}.")
    if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs <= 0):
        raise ValueError(f"num_epochs must be a positive integer or None, got {num_epochs!r}.")
    if prefetch_threads < 0:
        raise ValueError(f"prefetch_threads must be >= 0, got {prefetch_threads}.")
    if not isinstance(remainder_multiple_of, int | np.integer) or remainder_multiple_of <= 0:
        raise ValueError(
            f"remainder_multiple_of must be a positive integer, got {remainder_multiple_of!r}."
        )
    if not isinstance(start_batch, int | np.integer) or start_batch < 0:
        raise ValueError(f"start_batch must be a non-negative integer, got {start_batch!r}.")
    if label is not None and balanced:
        raise ValueError(
            f"label={label} and balanced=True exclude each other: one class has nothing to "
            "balance. Pass one of them."
        )
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"Need 0 <= process_index < process_count, got process_index={process_index}, "
            f"process_count={process_count}."
        )
    if len(source) == 0:
        raise ValueError(f"The source {source!r} is empty; check the data set split and path.")
    image_shape = _check_record(source[0], source)

    if label is not None:
        indices = class_indices(source, label)
        if indices.size == 0:
            present = np.unique(source_labels(source)).tolist()
            raise ValueError(
                f"label={label} has no records in {type(source).__name__}; labels present: "
                f"{present}."
            )
        dataset = grain.MapDataset.source(indices)
    elif balanced:
        labels = source_labels(source)
        indices_per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        index_map = _BalancedIndexMap(indices_per_class, _derived_seed(seed, _BALANCED_SALT))
        dataset = grain.MapDataset.range(len(index_map)).map_with_index(index_map)
    else:
        dataset = grain.MapDataset.range(len(source))

    if shuffle:
        dataset = dataset.shuffle(seed=_derived_seed(seed, _SHUFFLE_SALT))
    epoch_size = len(dataset)
    global_batch = batch_size * process_count
    full_batches, remainder = divmod(epoch_size, global_batch)
    kept = 0 if drop_remainder else remainder - remainder % remainder_multiple_of
    share = full_batches * batch_size + kept // process_count
    share += 1 if process_index < kept % process_count else 0
    if (epoch_size // process_count == 0) if drop_remainder else (share == 0):
        trimmed = (
            f" (its last batch trimmed to a multiple of {remainder_multiple_of})"
            if remainder_multiple_of > 1
            else ""
        )
        raise ValueError(
            f"Process {process_index} of {process_count} gets no examples from an epoch of "
            f"{epoch_size}{trimmed}; use fewer processes or a larger data set."
        )
    if drop_remainder and full_batches == 0:
        raise ValueError(
            f"batch_size={batch_size} exceeds the {epoch_size // process_count} examples process "
            f"{process_index} of {process_count} gets per epoch, so no full batch exists; lower "
            "batch_size or pass drop_remainder=False."
        )
    if kept != remainder:
        # The trimmed examples are skipped this epoch; the next permutation differs.
        dataset = dataset.slice(slice(0, full_batches * global_batch + kept))
    dataset = dataset.batch(global_batch, drop_remainder=drop_remainder)
    if process_count > 1:
        dataset = dataset.map(_ProcessBlock(process_index, process_count))
        if 0 < kept < process_count and process_index >= kept:
            # This process has no row of the last, partial batch: it skips that batch.
            dataset = dataset.filter(lambda indices: indices.size > 0)
    dataset = dataset.map(_ReadBatch(source, image_shape))
    dataset = dataset.repeat(num_epochs)
    if start_batch:
        dataset = dataset.slice(slice(start_batch, None))
    read_options = grain.ReadOptions(
        num_threads=prefetch_threads, prefetch_buffer_size=2 * prefetch_threads
    )
    return dataset.to_iter_dataset(read_options)
