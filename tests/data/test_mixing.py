"""Tests for xraygan_jax.data.mixing: synthetic fractions, generated-image folders, subsets."""

import logging

import numpy as np
import pytest
from PIL import Image

from xraygan_jax.data import mixing, pipeline

SIZE = 8
NUM_REAL = {0: 20, 1: 10}


def _images(values, marker):
    """Pixel (0, 0) holds the record's number, pixel (0, 1) marks real (0) or synthetic (1)."""
    images = np.zeros((len(values), SIZE, SIZE, 1), np.uint8)
    images[:, 0, 0, 0] = values
    images[:, 0, 1, 0] = marker
    return images


def _real():
    labels = np.repeat([0, 1], [NUM_REAL[0], NUM_REAL[1]])
    return pipeline.ArraySource(_images(np.arange(labels.size), 0), labels)


def _synthetic(per_class=40):
    labels = np.tile([0, 1], per_class)  # Interleaved, unlike the real set.
    return pipeline.ArraySource(_images(np.arange(labels.size), 1), labels)


class _RecordSource:
    """A source without arrays or a `labels` attribute, as a TFDS data source."""

    def __init__(self, array_source):
        self._source = array_source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        return self._source[index]


def _synthetic_ids(mixed, label):
    is_synthetic = (mixed.images[:, 0, 1, 0] == 1) & (mixed.labels == label)
    return set(mixed.images[is_synthetic, 0, 0, 0].tolist())


@pytest.mark.parametrize(
    ("fraction", "expected_synthetic"),
    [
        (0.0, {0: 0, 1: 0}),
        # round_half_up(R * f / (1 - f)): 20/9 = 2.22 -> 2, 10/9 = 1.11 -> 1.
        (0.1, {0: 2, 1: 1}),
        # 20 * 0.25 = 5, 10 * 0.25 = 2.5 -> 3.
        (0.2, {0: 5, 1: 3}),
        (0.5, {0: 20, 1: 10}),
    ],
)
def test_mix_adds_synthetic_fraction_per_class_and_keeps_real(fraction, expected_synthetic):
    real = _real()
    mixed = mixing.mix_synthetic(real, _synthetic(), fraction, seed=0)
    np.testing.assert_array_equal(mixed.images[: len(real)], real.images)
    np.testing.assert_array_equal(mixed.labels[: len(real)], real.labels)
    synthetic = mixed.images[:, 0, 1, 0] == 1
    assert synthetic.sum() == len(mixed) - len(real)
    for label in (0, 1):
        assert np.sum(synthetic & (mixed.labels == label)) == expected_synthetic[label]
        assert np.sum(~synthetic & (mixed.labels == label)) == NUM_REAL[label]
        assert mixing.num_synthetic(NUM_REAL[label], fraction) == expected_synthetic[label]
    # Every synthetic record keeps its own label.
    synthetic_source = _synthetic()
    ids = mixed.images[synthetic, 0, 0, 0]
    np.testing.assert_array_equal(mixed.labels[synthetic], synthetic_source.labels[ids])


def test_fraction_zero_returns_real_set_unchanged():
    real = _real()
    assert mixing.mix_synthetic(real, _synthetic(), 0.0, seed=0) is real
    copy = mixing.mix_synthetic(_RecordSource(real), _synthetic(), 0.0, seed=0)
    np.testing.assert_array_equal(copy.images, real.images)
    np.testing.assert_array_equal(copy.labels, real.labels)


def test_fraction_one_is_synthetic_only_with_real_class_counts():
    mixed = mixing.mix_synthetic(_real(), _synthetic(), 1.0, seed=0)
    assert (mixed.images[:, 0, 1, 0] == 1).all()
    assert np.bincount(mixed.labels).tolist() == [NUM_REAL[0], NUM_REAL[1]]


def test_synthetic_choice_is_seeded_and_nested_across_fractions():
    real, synthetic = _real(), _synthetic()
    small = mixing.mix_synthetic(real, synthetic, 0.1, seed=5)
    large = mixing.mix_synthetic(real, synthetic, 0.2, seed=5)
    again = mixing.mix_synthetic(real, synthetic, 0.2, seed=5)
    other = mixing.mix_synthetic(real, synthetic, 0.2, seed=6)
    np.testing.assert_array_equal(large.images, again.images)
    for label in (0, 1):
        assert _synthetic_ids(small, label) <= _synthetic_ids(large, label)
    assert any(_synthetic_ids(other, c) != _synthetic_ids(large, c) for c in (0, 1))


def test_mix_reads_record_sources():
    mixed = mixing.mix_synthetic(_RecordSource(_real()), _RecordSource(_synthetic()), 0.2, seed=0)
    expected = mixing.mix_synthetic(_real(), _synthetic(), 0.2, seed=0)
    np.testing.assert_array_equal(mixed.images, expected.images)
    np.testing.assert_array_equal(mixed.labels, expected.labels)


def test_too_few_synthetic_images_names_class_needed_available():
    synthetic = _synthetic(per_class=4)  # 4 per class; fraction 0.5 needs 20 and 10.
    with pytest.raises(ValueError, match="class 0: fraction 0.5 needs 20, 4 available"):
        mixing.mix_synthetic(_real(), synthetic, 0.5, seed=0)
    only_class_0 = pipeline.ArraySource(_images(np.arange(30), 1), np.zeros(30, np.int64))
    with pytest.raises(ValueError, match="class 1: fraction 0.2 needs 3, 0 available"):
        mixing.mix_synthetic(_real(), only_class_0, 0.2, seed=0)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), "0.1", None])
def test_fraction_out_of_range_is_rejected(fraction):
    with pytest.raises(ValueError, match=r"fraction must be a number in \[0, 1\], got"):
        mixing.mix_synthetic(_real(), _synthetic(), fraction, seed=0)


def test_mix_rejects_mismatched_shapes_and_empty_sets():
    small = pipeline.ArraySource(np.zeros((4, 4, 4, 1), np.uint8), [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"shape \(4, 4, 1\), real images \(8, 8, 1\)"):
        mixing.mix_synthetic(_real(), small, 0.1, seed=0)
    empty = pipeline.ArraySource(np.zeros((0, SIZE, SIZE, 1), np.uint8), [])
    with pytest.raises(ValueError, match="synthetic set is empty but fraction=0.1"):
        mixing.mix_synthetic(_real(), empty, 0.1, seed=0)
    with pytest.raises(ValueError, match="real set is empty"):
        mixing.mix_synthetic(empty, _synthetic(), 0.1, seed=0)


def _write_pngs(folder, values, mode="L", size=SIZE):
    folder.mkdir(parents=True, exist_ok=True)
    for value in values:
        array = np.full((size, size), value, np.uint8)
        image = Image.fromarray(array, mode="L").convert(mode)
        image.save(folder / f"{value:03d}.png")


def test_load_image_folder_reads_classes_in_order_and_skips_junk(tmp_path, caplog):
    _write_pngs(tmp_path / "NORMAL", [3, 1, 2])
    _write_pngs(tmp_path / "PNEUMONIA", [10, 11], mode="RGB")
    (tmp_path / "NORMAL" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "NORMAL" / "._001.png").write_bytes(b"resource fork")
    (tmp_path / "NORMAL" / "notes.txt").write_text("not an image")
    (tmp_path / "PNEUMONIA" / "999.png").write_bytes(b"not a png")  # Corrupt: skipped, listed.
    (tmp_path / "__MACOSX").mkdir()
    with caplog.at_level(logging.WARNING):
        source = mixing.load_image_folder(tmp_path, SIZE, ("NORMAL", "PNEUMONIA"))
    assert source.images.shape == (5, SIZE, SIZE, 1)
    assert source.images[:, 0, 0, 0].tolist() == [1, 2, 3, 10, 11]
    assert source.labels.tolist() == [0, 0, 0, 1, 1]
    assert "999.png" in caplog.text
    # The folder feeds the mixing directly.
    real = pipeline.ArraySource(np.zeros((4, SIZE, SIZE, 1), np.uint8), [0, 0, 1, 1])
    assert len(mixing.mix_synthetic(real, source, 0.5, seed=0)) == 8


def test_load_image_folder_errors_name_the_problem(tmp_path):
    names = ("NORMAL", "PNEUMONIA")
    with pytest.raises(FileNotFoundError, match=r"folder .*missing_dir does not exist"):
        mixing.load_image_folder(tmp_path / "missing_dir", SIZE, names)
    _write_pngs(tmp_path / "NORMAL", [1])
    with pytest.raises(FileNotFoundError, match=r"PNEUMONIA for class 'PNEUMONIA' is missing"):
        mixing.load_image_folder(tmp_path, SIZE, names)
    (tmp_path / "PNEUMONIA").mkdir()
    with pytest.raises(
        ValueError,
        match=r"No images for class 'PNEUMONIA': .*PNEUMONIA' has no usable image \(it is empty\)",
    ):
        mixing.load_image_folder(tmp_path, SIZE, names)
    (tmp_path / "PNEUMONIA" / "bad.png").write_bytes(b"truncated")
    with pytest.raises(
        ValueError, match=r"No readable images in .*\(1 image files, all unreadable"
    ):
        mixing.load_image_folder(tmp_path, SIZE, names)
    _write_pngs(tmp_path / "PNEUMONIA", [2], size=SIZE * 2)
    with pytest.raises(ValueError, match=r"002.png is 16x16, expected 8x8"):
        mixing.load_image_folder(tmp_path, SIZE, names)
    (tmp_path / "PNEUMONIA" / "002.png").unlink()
    _write_pngs(tmp_path / "PNEUMONIA", [3], mode="RGBA")
    with pytest.raises(ValueError, match=r"003.png has image mode RGBA"):
        mixing.load_image_folder(tmp_path, SIZE, names)
    (tmp_path / "PNEUMONIA" / "003.png").unlink()
    _write_pngs(tmp_path / "COVID", [4])
    with pytest.raises(ValueError, match=r"class folders \['COVID'\] that are not in class_names"):
        mixing.load_image_folder(tmp_path, SIZE, names)
    with pytest.raises(ValueError, match="class_names is empty"):
        mixing.load_image_folder(tmp_path, SIZE, ())


def test_subsample_per_class_counts_order_and_nesting():
    real = _real()
    four = mixing.subsample_per_class(real, num_per_class=4, seed=0)
    assert np.bincount(four.labels).tolist() == [4, 4]
    ids = four.images[:, 0, 0, 0]
    assert ids.tolist() == sorted(ids.tolist())  # Original order kept.
    np.testing.assert_array_equal(four.labels, real.labels[ids])
    eight = mixing.subsample_per_class(real, num_per_class=8, seed=0)
    assert set(ids.tolist()) <= set(eight.images[:, 0, 0, 0].tolist())
    half = mixing.subsample_per_class(_RecordSource(real), fraction=0.5, seed=0)
    assert np.bincount(half.labels).tolist() == [10, 5]
    tiny = mixing.subsample_per_class(real, fraction=0.01, seed=0)
    assert np.bincount(tiny.labels).tolist() == [1, 1]  # At least one per class.
    other = mixing.subsample_per_class(real, num_per_class=4, seed=1)
    assert not np.array_equal(other.images, four.images)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of num_per_class / fraction"),
        ({"num_per_class": 2, "fraction": 0.5}, "exactly one of num_per_class / fraction"),
        ({"num_per_class": 0}, "num_per_class must be a positive integer, got 0"),
        ({"fraction": 0.0}, r"fraction must be a number in \(0, 1\], got 0.0"),
        ({"num_per_class": 11}, "Class 1 has 10 images available, 11 needed"),
    ],
)
def test_subsample_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mixing.subsample_per_class(_real(), seed=0, **kwargs)
