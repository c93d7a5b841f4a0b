"""GAN metrics with floors: during training, per checkpoint, of a folder; the protocol's fields."""

import json

import numpy as np
import pytest
from conftest import fid_weights_or_skip, run_launcher
from PIL import Image

from experiments.configs import test as test_config
from xraygan_jax import runs
from xraygan_jax.data import folders
from xraygan_jax.evaluators import gan_metrics
from xraygan_jax.metrics import fid, weights
from xraygan_jax.train import gan_loop

PROTOCOL_FIELDS = ("num_real", "num_fake", "reference_split", "resize", "batch_stats")
FLOOR_FIELDS = ("fid_floor", "kid_floor", "floor_num", "fid_matched", "kid_matched")


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    fid_weights_or_skip(lambda: weights.find_source(download=False))
    config = test_config.get_config()
    config.data.data_dir = str(tmp_path_factory.getbasetemp() / "tfds")
    config.train.per_class = False
    config.eval.fid_every_epochs = 2
    workdir = tmp_path_factory.mktemp("evaluated")
    gan_loop.train_and_evaluate(config, workdir)
    return config, workdir


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_during_training_carry_the_protocol_and_the_floor(evaluated_run):
    config, workdir = evaluated_run
    records = _read(workdir / "eval.jsonl")
    assert [(r["epoch"], r["class"]) for r in records] == [(2, "NORMAL"), (2, "PNEUMONIA")]
    source_counts = {"NORMAL": 0, "PNEUMONIA": 0}
    from xraygan_jax.data import pipeline, sources

    train = sources.get_source(config.data, "train")
    for label, name in enumerate(source_counts):
        source_counts[name] = len(pipeline.class_indices(train, label))
    for record in records:
        assert all(field in record for field in PROTOCOL_FIELDS + FLOOR_FIELDS)
        # The reference is the whole train split of the class, and as many images are generated.
        assert record["reference_split"] == "train"
        assert record["num_real"] == record["num_fake"] == source_counts[record["class"]]
        assert record["floor_num"] == record["num_real"] // 2
        assert record["resize"] == "tf1" and record["batch_stats"] == "running"
        assert record["fid"] > 0 and record["fid_floor"] > 0
        assert 0 <= record["precision"] <= 1 and 0 <= record["recall"] <= 1


def test_evaluate_run_covers_every_checkpoint_and_matches_training_time(evaluated_run):
    _, workdir = evaluated_run
    during_training = {r["class"]: r for r in _read(workdir / "eval.jsonl")}
    records = gan_metrics.evaluate_run(workdir)
    assert [(r["epoch"], r["class"]) for r in records] == [
        (1, "NORMAL"),
        (1, "PNEUMONIA"),
        (2, "NORMAL"),
        (2, "PNEUMONIA"),
    ]
    # The same checkpoint, latents and reference give the same numbers as during training.
    for record in records[2:]:
        expected = during_training[record["class"]]
        for key in ("fid", "fid_floor", "fid_matched", "kid_mean"):
            assert record[key] == pytest.approx(expected[key], rel=1e-6), key
    # Evaluating again replaces the records of the same evaluation instead of repeating them.
    written = _read(workdir / "eval.jsonl")
    assert len(written) == 4
    plot = Image.open(workdir / "plots" / "fid_vs_epoch.png")
    assert plot.size[0] > 300


def test_batch_statistics_sampling_is_named_and_differs(evaluated_run):
    _, workdir = evaluated_run
    # Epoch 2 with running statistics was evaluated during training (the run's config.eval).
    running = [r for r in _read(workdir / "eval.jsonl") if r["epoch"] == 2]
    assert [r["batch_stats"] for r in running] == ["running", "running"]
    batch = gan_metrics.evaluate_run(workdir, epochs=[2], batch_stats="batch")
    assert {r["batch_stats"] for r in batch} == {"batch"}
    assert all(a["fid"] != b["fid"] for a, b in zip(running, batch, strict=True))


def test_floor_is_two_disjoint_halves_of_the_real_features():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 16))
    fake = rng.normal(size=(40, 16)) + 3.0
    result = gan_metrics.compare(real, fake, seed=1)
    half_a, half_b = gan_metrics._floor_halves(40, 1)
    assert len(set(half_a) | set(half_b)) == 40  # disjoint, every image used once
    direct = fid.evaluate(real[half_a], real[half_b], seed=1)
    assert result["fid_floor"] == pytest.approx(direct["fid"])
    assert result["fid_matched"] == pytest.approx(
        fid.evaluate(real[half_a], fake[:20], seed=1)["fid"]
    )
    # Shifted fakes are far above the floor.
    assert result["fid_matched"] > 10 * result["fid_floor"]


def test_a_class_too_small_for_the_floor_is_named_and_the_rest_reported(caplog):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(6, 8)), rng.normal(size=(6, 8))
    result = gan_metrics.compare(real, fake, class_name="COVID")
    assert np.isfinite(result["fid"]) and np.isfinite(result["kid_mean"])
    assert np.isnan(result["fid_floor"]) and np.isnan(result["kid_floor"])
    assert "COVID: 6 real images are too few for a real-vs-real floor" in caplog.text


def test_an_unknown_resize_mode_lists_the_valid_ones(evaluated_run):
    _, workdir = evaluated_run
    with pytest.raises(ValueError, match=r"--config.eval.resize='bilinear' .* tf1, pytorch_fid"):
        gan_metrics.evaluate_run(workdir, resize="bilinear")


def test_evaluate_folder_matches_a_direct_computation(evaluated_run, tmp_path):
    config, workdir = evaluated_run
    images, _ = runs.Run(workdir).generate_per_class(6, seed=3)
    folders.write_image_folder(images, tmp_path)
    records = gan_metrics.evaluate_folder(tmp_path, config)
    assert [r["class"] for r in records] == ["NORMAL", "PNEUMONIA"]
    extractor = gan_metrics.extractor_for("", "tf1")
    real = gan_metrics.real_features(config.data, "train", 1, extractor)
    direct = fid.evaluate(real, extractor(images["PNEUMONIA"]))
    assert records[1]["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert records[1]["num_fake"] == 6 and records[1]["num_real"] == len(real)


def test_evaluate_folder_of_another_size_or_classes_says_both(evaluated_run, tmp_path):
    config, _ = evaluated_run
    wrong_size = {name: np.zeros((2, 16, 16, 1), np.uint8) for name in ("NORMAL", "PNEUMONIA")}
    folders.write_image_folder(wrong_size, tmp_path / "size")
    with pytest.raises(ValueError, match=r"is 16x16, expected 32x32"):
        gan_metrics.evaluate_folder(tmp_path / "size", config)
    extra = {name: np.zeros((2, 32, 32, 1), np.uint8) for name in ("NORMAL", "COVID")}
    folders.write_image_folder(extra, tmp_path / "classes")
    with pytest.raises(ValueError, match=r"class folders \['COVID'\] that are not in class_names"):
        gan_metrics.evaluate_folder(tmp_path / "classes", config)


def test_a_split_too_small_for_fid_names_the_split_flag(evaluated_run):
    config, _ = evaluated_run
    small = config.copy_and_resolve_references()
    small.data.phantom.num_val = 1
    extractor = gan_metrics.extractor_for("", "tf1")
    with pytest.raises(ValueError, match=r"the val split holds [01] \w+ image\(s\).*--split"):
        for label in (0, 1):
            gan_metrics.real_features(small.data, "val", label, extractor)


def test_evaluate_gan_launcher_needs_a_run_directory(tmp_path):
    result = run_launcher("experiments.evaluate_gan", f"--workdir={tmp_path}")
    assert result.returncode == 1
    assert "is not a training run directory" in result.stderr and "check --workdir" in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_evaluate_gan_launcher_refuses_config_overrides_with_a_run_directory(tmp_path):
    result = run_launcher(
        "experiments.evaluate_gan",
        f"--workdir={tmp_path}",
        "--config.eval.num_images_per_class=200",
    )
    assert result.returncode != 0
    assert "--config.eval.num_images_per_class: with --workdir the run's own config" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_train_subset_has_its_own_reference_cache_entry():
    from experiments.configs import test as test_config

    data = test_config.get_config().data
    whole = gan_metrics._reference_fingerprint(data, "train")
    data.train_images_per_class = 12
    subset = gan_metrics._reference_fingerprint(data, "train")
    assert subset != whole and "train_images_per_class=12" in subset
    # Other splits are not subset, so they keep the whole split's entry.
    plain = test_config.get_config().data
    assert gan_metrics._reference_fingerprint(data, "test") == (
        gan_metrics._reference_fingerprint(plain, "test")
    )
