"""Tests for the TFDS builders and xraygan_jax.data.sources, on image files written by the tests."""

import os
import pickle
import re
import sys

import numpy as np
import pytest
from helpers import CLASS_LEVELS, write_image

from experiments.configs import common
from xraygan_jax.data import phantom, sources


def _config(tmp_path, **fields):
    config = common.data_config()
    config.data_dir = str(tmp_path / "tfds")
    for name, value in fields.items():
        setattr(config, name, value)
    return config


def _records(source):
    return [source[i] for i in range(len(source))]


def _check_records(records, image_size):
    """Shapes, dtypes, ranges, and labels that agree with the image's brightness."""
    for record in records:
        image = record["image"]
        assert image.shape == (image_size, image_size, 1) and image.dtype == np.uint8
        assert 0 < image.max() <= 255
        label = int(record["label"])
        assert abs(float(image[image_size // 2 :].mean()) - CLASS_LEVELS[label]) < 6


def test_kermany_prepare_and_source(kermany_tree, tmp_path, caplog):
    config = _config(tmp_path, source="kermany", dir=str(kermany_tree.root), image_size=64)
    with caplog.at_level("WARNING"):
        report = sources.prepare(config)
    assert report.built and report.class_names == ("NORMAL", "PNEUMONIA")
    assert report.counts == kermany_tree.counts
    reasons = {os.path.basename(s.path): s.reason for s in report.skipped}
    assert sorted(reasons) == sorted(kermany_tree.skipped)
    assert reasons["truncated.jpeg"].startswith("cannot decode: image file is truncated")
    assert reasons["garbage.jpeg"].startswith("cannot decode: cannot identify image file")
    assert reasons["empty.jpeg"] == "empty file (0 bytes)"
    # The one image smaller than 64 px was upsampled with a warning naming it.
    upsampled = [r.getMessage() for r in caplog.records if "upsampled" in r.getMessage()]
    assert len(upsampled) == 1 and str(kermany_tree.small) in upsampled[0]
    table = report.format()
    assert re.search(r"^split\s+NORMAL\s+PNEUMONIA\s+total$", table, re.M)
    assert re.search(r"^train\s+3\s+4\s+7$", table, re.M)
    assert re.search(r"^total\s+6\s+7\s+13$", table, re.M)
    assert "skipped files: 4" in table and "truncated.jpeg: cannot decode" in table

    for split, per_class in kermany_tree.counts.items():
        source = sources.get_source(config, split)
        records = _records(source)
        assert len(source) == sum(per_class.values())
        _check_records(records, 64)
        labels = np.array([int(r["label"]) for r in records])
        assert np.bincount(labels, minlength=2).tolist() == list(per_class.values())

    again = sources.prepare(config)
    assert not again.built and again.counts == report.counts and again.skipped == report.skipped
    assert again.dataset_dir == report.dataset_dir
    # chest_xray itself is another path, so another set; its content is the same.
    config.dir = str(kermany_tree.root / "chest_xray")
    assert sources.prepare(config).counts == kermany_tree.counts


def test_kermany_changed_folder_is_caught_and_rebuilt(kermany_tree, tmp_path):
    config = _config(tmp_path, source="kermany", dir=str(kermany_tree.root), image_size=32)
    sources.prepare(config)
    extra = kermany_tree.root / "chest_xray/test/NORMAL/new.png"
    write_image(extra, mode="L", size=(50, 50), label=0)
    with pytest.raises(ValueError, match=r"changed since .* was built .*--rebuild"):
        sources.get_source(config, "test")
    report = sources.prepare(config, rebuild=True)
    assert report.built and report.counts["test"] == {"NORMAL": 3, "PNEUMONIA": 2}
    assert len(sources.get_source(config, "test")) == 5


def test_folder_source_split_by_seed(tmp_path):
    images = tmp_path / "covid"
    for label, name in enumerate(("COVID", "NORMAL")):
        for i in range(10):
            write_image(images / name / f"{i}.png", mode="RGB", size=(60 + i, 50), label=label)
    write_image(images / "Viral/0.png", mode="L", size=(50, 50), label=0)
    config = _config(
        tmp_path,
        source="folder",
        dir=str(images),
        class_names=("COVID,NORMAL",),
        image_size=32,
        val_fraction=0.1,
    )
    assert sources.class_names(config) == ("COVID", "NORMAL")
    report = sources.prepare(config)
    assert report.counts == {
        "train": {"COVID": 7, "NORMAL": 7},
        "val": {"COVID": 1, "NORMAL": 1},
        "test": {"COVID": 2, "NORMAL": 2},
    }
    seen = []
    for split in ("train", "val", "test"):
        records = _records(sources.get_source(config, split))
        _check_records(records, 32)
        seen += [r["image"].tobytes() for r in records]
    assert len(set(seen)) == 20  # every image once, none in two splits

    config.val_fraction = 0.0
    with pytest.raises(ValueError, match=r"no 'val' split; it has train, test\. Set "):
        sources.get_source(config, "val")


def test_phantom_records_are_the_generator_images(tmp_path, caplog):
    config = _config(tmp_path, image_size=32)
    config.phantom.update(num_train=40, num_val=0, num_test=10, seed=3)
    report = sources.prepare(config)
    spec = sources.phantom_spec(config)
    assert list(report.counts) == ["train", "test"] and report.skipped == ()
    for split in ("train", "test"):
        images, labels = phantom.generate(spec, split, 0, spec.num_examples(split))
        source = sources.get_source(config, split)
        records = _records(source)
        np.testing.assert_array_equal(np.stack([r["image"] for r in records]), images)
        np.testing.assert_array_equal([r["label"] for r in records], labels)
        assert report.counts[split] == dict(
            zip(phantom.CLASS_NAMES, np.bincount(labels, minlength=2).tolist(), strict=True)
        )
    with pytest.raises(ValueError, match=r"no 'val' split; it has train, test\.$"):
        sources.get_source(config, "val")
    # Grain workers unpickle the source: same records, and no TFDS notice per worker.
    with caplog.at_level("INFO"):
        copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy[3]["image"], records[3]["image"])
    assert not [r for r in caplog.records if "custom data configuration" in r.getMessage()]
    # No TensorFlow and no Beam were needed.
    assert "tensorflow" not in sys.modules and "apache_beam" not in sys.modules


def test_distinct_parameters_build_distinct_sets(tmp_path):
    base_config = _config(tmp_path, source="folder", dir=str(tmp_path / "x"), image_size=32)
    base_config.class_names = ("A", "B")
    changes = {
        "image_size": 48,
        "test_fraction": 0.25,
        "val_fraction": 0.1,
        "split_seed": 1,
        "class_names": ("B", "A"),
        "dir": str(tmp_path / "y"),
    }
    names = {sources.builder(base_config).builder_config.name}
    for field, value in changes.items():
        config = base_config.copy_and_resolve_references()
        setattr(config, field, value)
        names.add(sources.builder(config).builder_config.name)
    assert len(names) == 1 + len(changes)

    phantom_config = _config(tmp_path, image_size=32)
    names = {sources.builder(phantom_config).info.full_name}
    for field, value in {"difficulty": 0.7, "seed": 1, "num_train": 10}.items():
        config = phantom_config.copy_and_resolve_references()
        setattr(config.phantom, field, value)
        names.add(sources.builder(config).info.full_name)
    assert len(names) == 4


def test_default_data_dir_uses_xraygan_cache(tmp_path, monkeypatch):
    config = common.data_config()
    monkeypatch.setenv("XRAYGAN_CACHE", str(tmp_path / "cache"))
    assert sources.data_dir(config) == str(tmp_path / "cache/tensorflow_datasets")
    monkeypatch.delenv("XRAYGAN_CACHE")
    assert sources.data_dir(config) == os.path.expanduser(
        "~/.cache/xraygan_jax/tensorflow_datasets"
    )
    config.data_dir = "~/elsewhere"
    assert sources.data_dir(config) == os.path.expanduser("~/elsewhere")


def test_bad_configs_say_what_to_do(tmp_path):
    config = _config(tmp_path, source="imagenet")
    for call in (
        sources.class_names,
        sources.builder,
        sources.prepare,
        lambda c: sources.get_source(c, "train"),
    ):
        with pytest.raises(
            ValueError, match=r"Unknown data source 'imagenet' .*cxr_phantom, kermany, folder"
        ):
            call(config)
    config = _config(tmp_path, source="kermany")
    with pytest.raises(ValueError, match=r"source=kermany reads images .*--config\.data\.dir"):
        sources.prepare(config)
    config.dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere' does not exist"):
        sources.prepare(config)
    config = _config(tmp_path, source="folder", class_names=("A", "A"))
    with pytest.raises(ValueError, match=r"must name distinct class folders"):
        sources.class_names(config)


def test_a_class_with_no_decodable_image_stops_the_build(tmp_path):
    images = tmp_path / "images"
    for i in range(4):
        write_image(images / "NORMAL" / f"{i}.png", mode="L", size=(40, 40), label=0)
        (images / "COVID").mkdir(exist_ok=True)
        (images / "COVID" / f"{i}.jpeg").write_bytes(b"corrupt" * 30)
    config = _config(
        tmp_path, source="folder", dir=str(images), class_names=("COVID", "NORMAL"), image_size=32
    )
    with pytest.raises(
        ValueError,
        match=r"No image of class COVID in the train split could be decoded: all 3 files in "
        r"'.*COVID' failed",
    ):
        sources.prepare(config)
    # Nothing half-built is left to be reused.
    assert not sources.builder(config).is_prepared()


def test_kermany_fixture_through_grain_batches(kermany_tree, tmp_path):
    """Done-when of the ingestion issue: files -> TFDS source -> grain batches."""
    from xraygan_jax.data import pipeline

    config = _config(tmp_path, source="kermany", dir=str(kermany_tree.root), image_size=32)
    source = sources.get_source(config, "train")
    dataset = pipeline.make_dataset(
        source,
        batch_size=4,
        seed=0,
        num_epochs=1,
        drop_remainder=False,
        process_index=0,
        process_count=1,
        prefetch_threads=0,
    )
    batches = list(dataset)
    assert [b["image"].shape for b in batches] == [(4, 32, 32, 1), (3, 32, 32, 1)]
    images = np.concatenate([b["image"] for b in batches])
    labels = np.concatenate([b["label"] for b in batches])
    assert images.dtype == np.float32 and -1.0 <= images.min() and images.max() <= 1.0
    assert np.bincount(labels, minlength=2).tolist() == [3, 4]
    # Labels still agree with brightness after the [-1, 1] conversion.
    levels = (images[:, 16:].mean(axis=(1, 2, 3)) + 1) * 127.5
    assert np.all(np.abs(levels - np.take(CLASS_LEVELS, labels)) < 6)


def test_the_default_phantom_spec_builds(tmp_path):
    # The builder class declares the default spec's config; asking for it must work too.
    config = _config(tmp_path, image_size=128)
    assert sources.phantom_spec(config) == phantom.PhantomSpec()
    source = sources.get_source(config, "val")
    assert len(source) == phantom.PhantomSpec().num_val
    assert source[0]["image"].shape == (128, 128, 1)
