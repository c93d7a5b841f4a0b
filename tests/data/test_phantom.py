"""Tests for the embedded phantom set: shapes, determinism, class counts, lesion signal, errors."""

import pickle

import grain
import numpy as np
import pytest

from xraygan_jax.data import phantom

SMALL = phantom.PhantomSpec(image_size=32, num_train=40, num_val=10, num_test=20)


def _lung_windows(images: np.ndarray) -> np.ndarray:
    """Mean intensity per image over two boxes in the lower-middle lung zones."""
    size = images.shape[1]
    rows = slice(int(0.45 * size), int(0.65 * size))
    right = images[:, rows, int(0.18 * size) : int(0.35 * size), 0]
    left = images[:, rows, int(0.68 * size) : int(0.82 * size), 0]
    return (right.mean(axis=(1, 2)) + left.mean(axis=(1, 2))) / 2


@pytest.mark.parametrize("size", [32, 128])
def test_shapes_dtypes_and_dynamic_range(size):
    spec = phantom.PhantomSpec(image_size=size, num_train=6)
    images, labels = phantom.generate(spec, "train", 1, 5)
    assert images.shape == (4, size, size, 1) and images.dtype == np.uint8
    assert labels.shape == (4,) and labels.dtype == np.int64
    assert set(labels.tolist()) <= {0, 1}
    # A radiograph: black background outside the body, bright mediastinum and abdomen.
    assert (images.min(axis=(1, 2, 3)) < 40).all()
    assert (images.max(axis=(1, 2, 3)) > 200).all()


def test_image_does_not_depend_on_batching_or_access_path():
    batch, batch_labels = phantom.generate(SMALL, "val", 0, 10)
    source = phantom.PhantomSource(SMALL, "val", chunk_size=4)
    for i in (0, 3, 4, 9):
        single, single_labels = phantom.generate(SMALL, "val", i, i + 1)
        np.testing.assert_array_equal(batch[i], single[0])
        assert batch_labels[i] == single_labels[0]
        item = source[i]
        np.testing.assert_array_equal(item["image"], batch[i])
        assert item["label"] == batch_labels[i] and item["label"].dtype == np.int64
    np.testing.assert_array_equal(phantom.generate(SMALL, "val", 0, 10)[0], batch)


def test_seeds_and_splits_give_different_images():
    reference = phantom.generate(SMALL, "train", 0, 4)[0].astype(int)
    other_seed = phantom.PhantomSpec(image_size=32, num_train=40, num_val=10, num_test=20, seed=1)
    for images in (
        phantom.generate(other_seed, "train", 0, 4)[0],
        phantom.generate(SMALL, "test", 0, 4)[0],
    ):
        assert (np.abs(images.astype(int) - reference).mean(axis=(1, 2, 3)) > 5).all()


def test_image_sizes_show_the_same_anatomy():
    # Same index, same content: a 128 px image averaged down to 32 px matches the 32 px render
    # up to noise.
    large = phantom.PhantomSpec(image_size=128, num_train=40, num_val=10, num_test=20)
    big = phantom.generate(large, "train", 0, 3)[0][..., 0].astype(float)
    small = phantom.generate(SMALL, "train", 0, 3)[0][..., 0].astype(float)
    pooled = big.reshape(3, 32, 4, 32, 4).mean(axis=(2, 4))
    for a, b in zip(pooled, small, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9


def test_class_counts_are_exact_and_kermany_like_by_default():
    spec = phantom.PhantomSpec()
    expected_normal = {"train": 257, "val": 50, "test": 113}  # 1000 * 1341/5216, 50%, 37.5%
    for split in phantom.SPLITS:
        labels = phantom.labels(spec, split)
        assert labels.dtype == np.int64 and len(labels) == spec.num_examples(split)
        assert spec.num_normal(split) == expected_normal[split]
        assert (labels == 0).sum() == expected_normal[split]
        assert (labels == 1).sum() == spec.num_examples(split) - expected_normal[split]
    # Shuffled, not sorted, and the same on every call.
    train = phantom.labels(spec, "train")
    assert train[:257].sum() > 0
    np.testing.assert_array_equal(train, phantom.labels(spec, "train"))
    assert [spec.num_examples(split) for split in phantom.SPLITS] == [1000, 100, 300]


def test_pneumonia_lungs_are_brighter_and_difficulty_hides_them():
    gaps = {}
    for difficulty in (0.1, 0.5, 0.9):
        spec = phantom.PhantomSpec(image_size=64, difficulty=difficulty, num_train=96)
        images, labels = phantom.generate(spec, "train", 0, 96)
        lungs = _lung_windows(images)
        gaps[difficulty] = lungs[labels == 1].mean() - lungs[labels == 0].mean()
    assert gaps[0.5] > 3.0, gaps  # grey levels
    assert gaps[0.1] > gaps[0.5] > gaps[0.9], gaps


def test_source_is_a_grain_source_and_survives_pickling():
    source = phantom.PhantomSource(SMALL, "test")
    assert isinstance(source, grain.sources.RandomAccessDataSource)
    assert len(source) == 20
    assert "split='test'" in repr(source) and "image_size=32" in repr(source)
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[7]["image"], source[7]["image"])
    shuffled = grain.MapDataset.source(source).shuffle(seed=3).batch(5)
    batch = shuffled[0]
    assert batch["image"].shape == (5, 32, 32, 1)
    images, labels = phantom.generate(SMALL, "test", 0, 20)
    for image, label in zip(batch["image"], batch["label"], strict=True):
        matches = np.flatnonzero((images == image).all(axis=(1, 2, 3)))
        assert len(matches) == 1 and labels[matches[0]] == label


def test_source_larger_than_its_cache_renders_single_images_on_random_misses():
    source = phantom.PhantomSource(SMALL, "train", chunk_size=8, max_cached_images=8)
    images = phantom.generate(SMALL, "train", 0, 40)[0]
    for i in (33, 2, 17, 18, 19, 5):
        np.testing.assert_array_equal(source[i]["image"], images[i])
    # Only sequential reads (17 -> 18 -> 19) fill the cache, and it keeps one chunk.
    assert list(source._chunks) == [16]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("image_size", 8, r"PhantomSpec.image_size must be in \[16, 1024\], got 8"),
        ("image_size", 64.0, r"PhantomSpec.image_size must be an int, got 64.0"),
        ("difficulty", 1.5, r"PhantomSpec.difficulty must be in \[0, 1\], got 1.5"),
        ("difficulty", float("nan"), r"PhantomSpec.difficulty must be in \[0, 1\], got nan"),
        ("difficulty", "hard", r"PhantomSpec.difficulty must be a number in \[0, 1\], got 'hard'"),
        ("seed", -1, r"PhantomSpec.seed must be >= 0, got -1"),
        ("num_train", -5, r"PhantomSpec.num_train must be >= 0, got -5"),
        ("num_test", True, r"PhantomSpec.num_test must be an int, got True"),
        ("val_normal_fraction", -0.1, r"PhantomSpec.val_normal_fraction must be in \[0, 1\]"),
        ("test_normal_fraction", 2, r"PhantomSpec.test_normal_fraction must be in \[0, 1\], got 2"),
    ],
)
def test_bad_spec_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        phantom.PhantomSpec(**{field: value})


def test_bad_split_range_and_index_are_reported():
    with pytest.raises(ValueError, match=r"Unknown phantom split 'validation'; expected one of"):
        phantom.generate(SMALL, "validation", 0, 1)
    with pytest.raises(ValueError, match=r"Unknown phantom split 'dev'"):
        SMALL.num_examples("dev")
    with pytest.raises(ValueError, match=r"Index range \[5, 11\) is outside the 'val' split of 10"):
        phantom.generate(SMALL, "val", 5, 11)
    with pytest.raises(ValueError, match=r"Index range \[3, 2\)"):
        phantom.generate(SMALL, "val", 3, 2)
    with pytest.raises(ValueError, match=r"start and stop must be ints, got 0.5 and 2"):
        phantom.generate(SMALL, "val", 0.5, 2)
    with pytest.raises(IndexError, match=r"Index 10 out of range \[0, 10\)"):
        phantom.PhantomSource(SMALL, "val")[10]
    with pytest.raises(ValueError, match=r"PhantomSource chunk_size must be a positive int, got 0"):
        phantom.PhantomSource(SMALL, "val", chunk_size=0)
    with pytest.raises(ValueError, match=r"Unknown phantom split 'eval'"):
        phantom.PhantomSource(SMALL, "eval")
