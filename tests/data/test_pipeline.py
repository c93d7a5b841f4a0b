"""Tests for xraygan_jax.data.pipeline: batches, epochs, classes, shards, resume, orbax."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from xraygan_jax.data import pipeline

NUM_EXAMPLES = 21
IMAGE_SIZE = 8


def _source(num_examples=NUM_EXAMPLES):
    """Image i is filled with the value i, so a batch tells which records it holds."""
    images = np.broadcast_to(
        np.arange(num_examples, dtype=np.uint8)[:, None, None, None],
        (num_examples, IMAGE_SIZE, IMAGE_SIZE, 1),
    ).copy()
    # Class 1: indices 0, 4, ..., 20 (6 records); class 0: the other 15.
    labels = (np.arange(num_examples) % 4 == 0).astype(np.int64)
    return pipeline.ArraySource(images, labels)


class _RecordSource:
    """A source without a `labels` array (like a TFDS data source) that counts its reads."""

    def __init__(self, images, labels):
        self._images = images
        self._labels = labels
        self.reads = 0

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, index):
        self.reads += 1
        return {"image": self._images[index], "label": int(self._labels[index])}


def _indices(batch):
    return np.rint((batch["image"][:, 0, 0, 0] + 1.0) * 127.5).astype(int)


def _epoch_indices(dataset):
    return np.concatenate([_indices(batch) for batch in dataset])


def _assert_batches_equal(expected, got):
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_array_equal(want["image"], have["image"])
        np.testing.assert_array_equal(want["label"], have["label"])


def test_batches_have_shape_dtype_range_and_matching_labels():
    source = _source()
    batch = next(iter(pipeline.make_dataset(source, batch_size=4, seed=0)))
    assert batch["image"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 1)
    assert batch["image"].dtype == np.float32
    assert batch["label"].shape == (4,)
    assert batch["label"].dtype == np.int32
    indices = _indices(batch)
    np.testing.assert_array_equal(batch["label"], source.labels[indices])
    expected = source.images[indices].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(batch["image"], expected)


def test_uint8_extremes_map_to_minus_one_and_one():
    images = np.zeros((2, 4, 4, 1), np.uint8)
    images[1] = 255
    source = pipeline.ArraySource(images, [0, 1])
    batch = next(iter(pipeline.make_dataset(source, batch_size=2, seed=0, shuffle=False)))
    assert batch["image"][0].min() == batch["image"][0].max() == -1.0
    assert batch["image"][1].min() == batch["image"][1].max() == 1.0


def test_conversion_is_inverted_exactly_by_nvidia_quantisation():
    images = np.arange(256, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    source = pipeline.ArraySource(images, np.zeros(256, np.int64))
    batch = next(iter(pipeline.make_dataset(source, batch_size=256, seed=0, shuffle=False)))
    quantised = np.clip(batch["image"] * 127.5 + 128, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(quantised, images)


def test_epoch_without_drop_remainder_visits_every_index_once():
    dataset = pipeline.make_dataset(
        _source(), batch_size=4, seed=0, num_epochs=1, drop_remainder=False
    )
    batches = list(dataset)
    assert len(batches) == pipeline.steps_per_epoch(NUM_EXAMPLES, 4, drop_remainder=False) == 6
    assert [len(b["label"]) for b in batches] == [4, 4, 4, 4, 4, 1]
    np.testing.assert_array_equal(np.sort(_epoch_indices(batches)), np.arange(NUM_EXAMPLES))


def test_drop_remainder_gives_full_batches_of_distinct_examples():
    batches = list(pipeline.make_dataset(_source(), batch_size=4, seed=0, num_epochs=2))
    assert len(batches) == 2 * pipeline.steps_per_epoch(NUM_EXAMPLES, 4) == 10
    assert all(len(b["label"]) == 4 for b in batches)
    for epoch in (batches[:5], batches[5:]):
        assert len(set(_epoch_indices(epoch).tolist())) == 20


def test_epochs_differ_and_same_seed_repeats_exactly():
    def two_epochs(seed):
        return list(
            pipeline.make_dataset(
                _source(), batch_size=4, seed=seed, num_epochs=2, drop_remainder=False
            )
        )

    first = two_epochs(seed=3)
    epoch_0, epoch_1 = _epoch_indices(first[:6]), _epoch_indices(first[6:])
    np.testing.assert_array_equal(np.sort(epoch_0), np.arange(NUM_EXAMPLES))
    np.testing.assert_array_equal(np.sort(epoch_1), np.arange(NUM_EXAMPLES))
    assert not np.array_equal(epoch_0, epoch_1)
    _assert_batches_equal(first, two_epochs(seed=3))
    assert not np.array_equal(_epoch_indices(two_epochs(seed=4)), _epoch_indices(first))
    # Seeds are hashed: seed 4's first epoch is not seed 3's second (grain alone uses seed+epoch).
    assert not np.array_equal(_epoch_indices(two_epochs(seed=4)[:6]), epoch_1)


def test_no_shuffle_reads_in_index_order():
    dataset = pipeline.make_dataset(
        _source(), batch_size=5, seed=0, shuffle=False, num_epochs=2, drop_remainder=False
    )
    np.testing.assert_array_equal(_epoch_indices(dataset), np.tile(np.arange(NUM_EXAMPLES), 2))


def test_label_filter_yields_only_that_class():
    source = _source()
    dataset = pipeline.make_dataset(
        source, batch_size=4, seed=0, num_epochs=1, drop_remainder=False, label=1
    )
    batches = list(dataset)
    assert all((b["label"] == 1).all() for b in batches)
    np.testing.assert_array_equal(np.sort(_epoch_indices(batches)), [0, 4, 8, 12, 16, 20])
    np.testing.assert_array_equal(pipeline.class_indices(source, 1), [0, 4, 8, 12, 16, 20])
    assert pipeline.num_examples_per_epoch(source, label=1) == 6


def test_balanced_sampling_gives_equal_class_counts_and_uses_minority_evenly():
    source = _source()
    assert pipeline.num_examples_per_epoch(source, balanced=True) == 30
    dataset = pipeline.make_dataset(
        source, batch_size=4, seed=0, num_epochs=2, drop_remainder=False, balanced=True
    )
    batches = list(dataset)
    assert len(batches) == 2 * pipeline.steps_per_epoch(30, 4, drop_remainder=False)
    indices = _epoch_indices(batches)
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, source.labels[indices])
    for epoch in (indices[:30], indices[30:]):
        assert np.sum(source.labels[epoch] == 0) == np.sum(source.labels[epoch] == 1) == 15
        minority_counts = np.bincount(epoch, minlength=NUM_EXAMPLES)[source.labels == 1]
        assert set(minority_counts.tolist()) <= {2, 3}  # 15 draws over 6 images.
        majority_counts = np.bincount(epoch, minlength=NUM_EXAMPLES)[source.labels == 0]
        assert (majority_counts == 1).all()
    # Two epochs take 30 consecutive draws from the minority stream: 5 full cycles of 6.
    assert (np.bincount(indices, minlength=NUM_EXAMPLES)[source.labels == 1] == 5).all()


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_process_shards_are_disjoint_and_cover_the_epoch(drop_remainder):
    def share(process_index):
        dataset = pipeline.make_dataset(
            _source(),
            batch_size=5,
            seed=1,
            num_epochs=2,
            drop_remainder=drop_remainder,
            process_index=process_index,
            process_count=2,
        )
        batches = list(dataset)
        per_epoch = len(batches) // 2
        return _epoch_indices(batches[:per_epoch]), _epoch_indices(batches[per_epoch:])

    (first_0, second_0), (first_1, second_1) = share(0), share(1)
    for a, b in ((first_0, first_1), (second_0, second_1)):
        assert not set(a.tolist()) & set(b.tolist())
        union = np.sort(np.concatenate([a, b]))
        if drop_remainder:
            # Equal shares of 21 // 2 = 10, two full batches of 5 each.
            assert len(a) == len(b) == 10
            assert len(set(union.tolist())) == 20
        else:
            assert (len(a), len(b)) == (11, 10)
            np.testing.assert_array_equal(union, np.arange(NUM_EXAMPLES))
    # The permutation, hence the split between processes, changes with the epoch.
    assert set(first_0.tolist()) != set(second_0.tolist())


def test_default_process_sharding_uses_jax_process():
    explicit = pipeline.make_dataset(
        _source(), batch_size=4, seed=0, num_epochs=1, process_index=0, process_count=1
    )
    default = pipeline.make_dataset(_source(), batch_size=4, seed=0, num_epochs=1)
    assert jax.process_count() == 1
    _assert_batches_equal(list(explicit), list(default))


@pytest.mark.parametrize(
    ("drop_remainder", "per_epoch"),
    # 21 examples, global batch 8: two full batches; the remainder of 5 is dropped, or kept
    # trimmed to a multiple of the 4 "devices" (4 examples).
    [(True, [8, 8]), (False, [8, 8, 4])],
)
def test_global_batches_do_not_depend_on_the_process_count(drop_remainder, per_epoch):
    """Process blocks concatenated in process order are the 1-process batch, row for row."""

    def global_batches(process_count):
        shares = [
            list(
                pipeline.make_dataset(
                    _source(),
                    batch_size=8 // process_count,
                    seed=3,
                    num_epochs=2,
                    drop_remainder=drop_remainder,
                    process_index=index,
                    process_count=process_count,
                    remainder_multiple_of=4,
                )
            )
            for index in range(process_count)
        ]
        assert len({len(share) for share in shares}) == 1  # Lock-step: same count everywhere.
        return [
            np.concatenate([_indices(share[k]) for share in shares]) for k in range(len(shares[0]))
        ]

    one, two, four = global_batches(1), global_batches(2), global_batches(4)
    assert [len(batch) for batch in one] == per_epoch * 2
    assert len(one) == 2 * pipeline.steps_per_epoch(
        NUM_EXAMPLES, 8, drop_remainder=drop_remainder, remainder_multiple_of=4
    )
    for batches in (two, four):
        assert len(batches) == len(one)
        for want, have in zip(one, batches, strict=True):
            np.testing.assert_array_equal(want, have)


def test_start_batch_continues_where_an_iterator_of_any_process_count_was():
    """start_batch counts global batches: a 2-process position resumes 1 process and back."""
    kwargs = {"seed": 5, "drop_remainder": False, "remainder_multiple_of": 2}
    one = [
        _indices(b) for b in pipeline.make_dataset(_source(), batch_size=4, num_epochs=3, **kwargs)
    ]
    for start in (0, 3, 6, 7):  # Mid-epoch, at an epoch boundary (6 batches per epoch), after.
        resumed = pipeline.make_dataset(
            _source(), batch_size=4, num_epochs=3, start_batch=start, **kwargs
        )
        got = [_indices(b) for b in resumed]
        assert len(got) == len(one) - start
        for want, have in zip(one[start:], got, strict=True):
            np.testing.assert_array_equal(want, have)
        blocks = [
            [
                _indices(b)
                for b in pipeline.make_dataset(
                    _source(),
                    batch_size=2,
                    num_epochs=3,
                    start_batch=start,
                    process_index=index,
                    process_count=2,
                    **kwargs,
                )
            ]
            for index in range(2)
        ]
        for want, first, second in zip(one[start:], *blocks, strict=True):
            np.testing.assert_array_equal(want, np.concatenate([first, second]))


@pytest.mark.parametrize(
    ("consumed", "kwargs"),
    [
        (3, {"prefetch_threads": 2}),  # mid-epoch; the next 5 cross into epoch 2 (5 per epoch)
        (5, {"prefetch_threads": 2}),  # exactly at the epoch boundary
        (7, {"prefetch_threads": 0}),
        (4, {"prefetch_threads": 1, "balanced": True}),
        (2, {"prefetch_threads": 1, "label": 0}),
    ],
)
def test_restored_iterator_continues_exactly(consumed, kwargs):
    dataset = pipeline.make_dataset(_source(), batch_size=4, seed=7, **kwargs)
    iterator = iter(dataset)
    for _ in range(consumed):
        next(iterator)
    state = iterator.get_state()
    expected = [next(iterator) for _ in range(5)]

    restored = iter(pipeline.make_dataset(_source(), batch_size=4, seed=7, **kwargs))
    next(restored)  # A fresh iterator that has moved elsewhere is put back by the state.
    restored.set_state(state)
    _assert_batches_equal(expected, [next(restored) for _ in range(5)])


def test_orbax_checkpoint_round_trip_restores_model_state_and_data_order(tmp_path):
    dataset = pipeline.make_dataset(_source(), batch_size=4, seed=0)
    iterator = iter(dataset)
    for _ in range(7):
        next(iterator)
    state = {"params": {"kernel": jnp.arange(6.0).reshape(2, 3)}, "step": jnp.int32(7)}
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
        manager.save(
            7,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=grain.checkpoint.CheckpointSave(iterator),
            ),
        )
        manager.wait_until_finished()
    expected = [next(iterator) for _ in range(5)]

    new_iterator = iter(dataset)
    abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
        step = manager.latest_step()
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=grain.checkpoint.CheckpointRestore(new_iterator),
            ),
        )
    assert step == 7
    np.testing.assert_array_equal(restored["state"]["params"]["kernel"], state["params"]["kernel"])
    assert int(restored["state"]["step"]) == 7
    assert restored["data"] is new_iterator
    _assert_batches_equal(expected, [next(new_iterator) for _ in range(5)])


def test_source_without_label_array_is_read_once_for_labels():
    reference = _source()
    source = _RecordSource(reference.images, reference.labels)
    np.testing.assert_array_equal(pipeline.class_indices(source, 1), [0, 4, 8, 12, 16, 20])
    reads = source.reads
    assert reads == NUM_EXAMPLES
    np.testing.assert_array_equal(pipeline.class_indices(source, 0).size, 15)
    assert source.reads == reads  # Cached.
    batches = list(
        pipeline.make_dataset(
            source, batch_size=4, seed=0, num_epochs=1, balanced=True, drop_remainder=False
        )
    )
    assert np.sum(np.concatenate([b["label"] for b in batches]) == 1) == 15


def test_steps_per_epoch():
    assert pipeline.steps_per_epoch(21, 4) == 5
    assert pipeline.steps_per_epoch(21, 4, drop_remainder=False) == 6
    assert pipeline.steps_per_epoch(20, 4, drop_remainder=False) == 5
    # The kept remainder of 5 is trimmed to a multiple of 4 (one batch) or of 8 (none).
    assert pipeline.steps_per_epoch(21, 8, drop_remainder=False, remainder_multiple_of=4) == 3
    assert pipeline.steps_per_epoch(21, 8, drop_remainder=False, remainder_multiple_of=8) == 2
    assert pipeline.steps_per_epoch(21, 8, drop_remainder=True, remainder_multiple_of=4) == 2
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        pipeline.steps_per_epoch(21, 0)


def test_array_source_records_and_from_source():
    source = _source()
    record = source[4]
    assert record["label"] == 1 and isinstance(record["label"], int)
    assert record["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 1)
    copy = pipeline.ArraySource.from_source(_RecordSource(source.images, source.labels))
    np.testing.assert_array_equal(copy.images, source.images)
    np.testing.assert_array_equal(copy.labels, source.labels)
    assert pipeline.ArraySource.from_source(source) is source


@pytest.mark.parametrize(
    ("images", "labels", "error", "match"),
    [
        (np.zeros((2, 8, 8, 1), np.float32), [0, 1], TypeError, "must be a uint8 numpy array"),
        ([[0]], [0], TypeError, "must be a uint8 numpy array, got list"),
        (np.zeros((2, 8, 8), np.uint8), [0, 1], ValueError, r"\[N, S, S, 1\].*\(2, 8, 8\)"),
        (np.zeros((2, 8, 6, 1), np.uint8), [0, 1], ValueError, r"square.*\(2, 8, 6, 1\)"),
        (np.zeros((2, 8, 8, 3), np.uint8), [0, 1], ValueError, "one channel"),
        (np.zeros((2, 8, 8, 1), np.uint8), [0, 1, 1], ValueError, r"\(2,\) to match.*\(3,\)"),
        (np.zeros((2, 8, 8, 1), np.uint8), [0.0, 1.5], TypeError, "must be integers"),
        (np.zeros((2, 8, 8, 1), np.uint8), [0, -1], ValueError, "non-negative.*-1"),
    ],
)
def test_array_source_rejects_bad_arrays(images, labels, error, match):
    with pytest.raises(error, match=match):
        pipeline.ArraySource(images, labels)


class _FloatSource(_RecordSource):
    def __getitem__(self, index):
        record = super().__getitem__(index)
        return {"image": record["image"].astype(np.float32), "label": record["label"]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*32\), got -1"),
        ({"num_epochs": 0}, "num_epochs must be a positive integer or None, got 0"),
        ({"prefetch_threads": -1}, "prefetch_threads must be >= 0, got -1"),
        ({"remainder_multiple_of": 0}, "remainder_multiple_of must be a positive integer, got 0"),
        ({"start_batch": -1}, "start_batch must be a non-negative integer, got -1"),
        ({"label": 1, "balanced": True}, "label=1 and balanced=True exclude each other"),
        ({"label": 5}, r"label=5 has no records .*labels present: \[0, 1\]"),
        ({"process_index": 2, "process_count": 2}, "process_index=2, process_count=2"),
        ({"batch_size": 16, "process_count": 2, "process_index": 1}, "exceeds the 10 examples"),
        ({"batch_size": 22}, "batch_size=22 exceeds the 21 examples process 0 of 1"),
        (
            {"process_count": 30, "process_index": 25, "drop_remainder": False},
            "Process 25 of 30 gets no examples from an epoch of 21",
        ),
    ],
)
def test_make_dataset_rejects_bad_arguments(kwargs, match):
    arguments = {"batch_size": 4, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        pipeline.make_dataset(_source(), **arguments)


def test_make_dataset_rejects_bad_sources():
    with pytest.raises(ValueError, match="is empty"):
        pipeline.make_dataset(_RecordSource([], []), batch_size=1, seed=0)
    source = _source()
    with pytest.raises(TypeError, match=r"Images of _FloatSource must be uint8, got float32"):
        pipeline.make_dataset(_FloatSource(source.images, source.labels), batch_size=1, seed=0)

    class BadLabels(_RecordSource):
        labels = np.zeros(3, np.int64)

    with pytest.raises(ValueError, match=r"BadLabels.labels has shape \(3,\), expected \(21,\)"):
        pipeline.make_dataset(
            BadLabels(source.images, source.labels), batch_size=1, seed=0, balanced=True
        )
