"""FID/KID/precision-recall of a trained run: during training, per checkpoint, and of a folder."""

import json

import numpy as np
import pytest
from conftest import fid_weights_or_skip, run_launcher

from experiments.configs import test as test_config
from xraygan_jax.metrics import fid, gan_evaluation, weights
from xraygan_jax.train import gan_loop, generation

pytestmark = pytest.mark.filterwarnings("ignore::xraygan_jax.metrics.fid.SmallSampleWarning")


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


def test_fid_during_training_is_written_per_class(evaluated_run):
    _, workdir = evaluated_run
    records = _read(workdir / "eval.jsonl")
    assert [(r["epoch"], r["class"]) for r in records] == [(2, "NORMAL"), (2, "PNEUMONIA")]
    for record in records:
        assert record["num_fake"] == 8 and record["num_real"] in (6, 10)
        assert record["fid"] > 0 and 0 <= record["precision"] <= 1 and 0 <= record["recall"] <= 1


def test_evaluate_run_covers_every_checkpoint_and_matches_training_time_fid(evaluated_run):
    _, workdir = evaluated_run
    during_training = {r["class"]: r for r in _read(workdir / "eval.jsonl")}
    records = gan_evaluation.evaluate_run(workdir)
    assert [(r["epoch"], r["class"]) for r in records] == [
        (1, "NORMAL"),
        (1, "PNEUMONIA"),
        (2, "NORMAL"),
        (2, "PNEUMONIA"),
    ]
    # The same checkpoint, latents and reference give the same numbers as during training.
    for record in records[2:]:
        assert record["fid"] == pytest.approx(during_training[record["class"]]["fid"], rel=1e-6)
    assert (workdir / "plots" / "fid_vs_epoch.png").stat().st_size > 0


def test_evaluate_folder_matches_a_direct_computation(evaluated_run, tmp_path):
    config, workdir = evaluated_run
    images, _ = generation.generate_per_class(workdir, 6, seed=3)
    generation.write_image_folder({"PNEUMONIA": images["PNEUMONIA"]}, tmp_path)
    evaluator = gan_evaluation.FIDEvaluator(config)
    records = gan_evaluation.evaluate_folder(tmp_path, config, extractor=evaluator.extractor)
    assert [r["class"] for r in records] == ["PNEUMONIA"]
    real = evaluator.reference(1).features
    direct = fid.evaluate(real, evaluator.extractor(images["PNEUMONIA"]))
    assert records[0]["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert records[0]["num_fake"] == 6
    assert np.isfinite(records[0]["kid_mean"])


def test_evaluate_folder_without_class_folders_says_which_are_expected(evaluated_run, tmp_path):
    config, _ = evaluated_run
    with pytest.raises(FileNotFoundError, match="has none of the class folders NORMAL, PNEUMONIA"):
        gan_evaluation.evaluate_folder(tmp_path, config)


def test_evaluate_gan_launcher_needs_a_run_directory(tmp_path):
    result = run_launcher("experiments.evaluate_gan", f"--workdir={tmp_path}")
    assert result.returncode != 0
    assert "is not a training run directory" in result.stderr


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
    assert "--num_images_per_class" in result.stderr
