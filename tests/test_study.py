"""The augmentation study end to end through its launcher, its outputs, and its bad inputs."""

import csv
import json

import numpy as np
import pytest
from conftest import run_launcher

from experiments.configs import study_test
from experiments.configs import test as gan_test_config
from xraygan_jax import errors, study
from xraygan_jax.data import pipeline
from xraygan_jax.train import gan_loop


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "tfds")


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, data_dir):
    config = gan_test_config.get_config()
    config.data.data_dir = data_dir
    config.train.per_class = False
    config.train.num_epochs = 1
    workdir = tmp_path_factory.mktemp("gan")
    gan_loop.train_and_evaluate(config, workdir)
    return workdir


def _launch_study(workdir, gan_run, data_dir, *extra):
    """The study launcher on the tiny config, as a user runs it."""
    return run_launcher(
        "experiments.augmentation_study",
        "--config=experiments/configs/study_test.py",
        f"--gan_workdir={gan_run}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    )


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, gan_run, data_dir):
    workdir = tmp_path_factory.mktemp("study")
    result = _launch_study(workdir, gan_run, data_dir)
    assert result.returncode == 0, result.stderr
    return workdir, result


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_the_launcher_writes_every_output(finished_study):
    workdir, result = finished_study
    rows = _rows(workdir / "study.csv")
    assert [(r["arm"], r["fraction"], r["seed"]) for r in rows] == [
        ("0%", "0.0", "0"),
        ("50%", "0.5", "0"),
    ]
    assert list(rows[0])[:15] == list(study.CSV_COLUMNS)
    for row in rows:
        tp, fp, tn, fn = (int(row[k]) for k in ("tp", "fp", "tn", "fn"))
        assert tp + fp + tn + fn == 16  # the test config's test split
        assert float(row["accuracy"]) == pytest.approx((tp + tn) / 16)
    # Add mode: all real images kept; 50% synthetic = as many synthetic as real.
    assert rows[1]["num_real"] == rows[0]["num_real"] == rows[1]["num_synthetic"]
    predictions = _rows(workdir / "predictions.csv")
    assert len(predictions) == 2 * 16
    # Every statistic can be recomputed from predictions.csv.
    arm = [p for p in predictions if p["arm"] == "50%"]
    labels = np.array([int(p["label"]) for p in arm])
    probabilities = np.array([float(p["probability"]) for p in arm])
    assert float(rows[1]["accuracy"]) == pytest.approx(np.mean((probabilities >= 0.5) == labels))
    report = (workdir / "study.md").read_text()
    assert "| 50% | " in report and "McNemar" in report and "## Verdict" in report
    assert (workdir / "plots" / "metrics_by_fraction.png").stat().st_size > 0
    assert (workdir / "plots" / "training_curves.png").stat().st_size > 0
    assert "study.md" in result.stdout


def test_a_rerun_retrains_nothing(finished_study, gan_run, data_dir):
    workdir, _ = finished_study
    before = (workdir / "study.csv").read_text()
    result = _launch_study(workdir, gan_run, data_dir)
    assert result.returncode == 0, result.stderr
    # No classifier trained: their progress lines are named "[<arm> syn, ...]".
    assert not [line for line in result.stderr.splitlines() if " syn, " in line]
    assert (workdir / "study.csv").read_text() == before


def test_a_gan_of_another_image_size_is_named_with_both_sizes(gan_run, data_dir, tmp_path):
    result = _launch_study(tmp_path, gan_run, data_dir, "--config.data.image_size=64")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "makes 32x32 images of classes NORMAL, PNEUMONIA" in result.stderr
    assert "the classifier's data is 64x64" in result.stderr


def _config(data_dir, **study_fields):
    config = study_test.get_config()
    config.data.data_dir = data_dir
    for key, value in study_fields.items():
        config.study[key] = value
    return config


def test_a_fraction_outside_zero_to_one_is_refused(data_dir, tmp_path):
    with pytest.raises(errors.ConfigError, match=r"fractions: 1.5 is outside \[0, 1\]"):
        study.run_study(_config(data_dir, fractions=(0.0, 1.5)), tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_a_real_set_size_larger_than_the_class_is_refused(data_dir, tmp_path):
    with pytest.raises(errors.DataError, match=r"real_per_class: 500 per class is more than"):
        study.run_study(_config(data_dir, fractions=(0.0,), real_per_class=(500,)), tmp_path)


def test_an_arm_without_images_of_a_class_is_named():
    train = pipeline.ArraySource(np.zeros((3, 8, 8, 1), np.uint8), [1, 1, 1])
    with pytest.raises(errors.DataError, match=r"arm 100% synthetic .* without any NORMAL image"):
        study.check_training_set(train, ("NORMAL", "PNEUMONIA"), "100%", 0)


def test_a_test_split_of_one_class_reports_auc_undefined_and_the_rest(tmp_path):
    config = _config("", fractions=(0.0, 0.5), seeds=(0, 1))
    labels = np.ones(6, np.int64)
    test = pipeline.ArraySource(np.zeros((6, 8, 8, 1), np.uint8), labels)
    results = []
    for fraction in (0.0, 0.5):
        for seed in (0, 1):
            probabilities = np.linspace(0.3, 0.9, 6) + (0.05 if fraction else 0.0) * seed
            results.append(
                {
                    "arm": study.arm_name(fraction),
                    "fraction": fraction,
                    "mode": "add",
                    "real_per_class": "all",
                    "seed": seed,
                    "accuracy": float(np.mean(probabilities >= 0.5)),
                    "sensitivity": float(np.mean(probabilities >= 0.5)),
                    "specificity": float("nan"),
                    "precision": 1.0,
                    "f1": 0.8,
                    "auc": float("nan"),
                    "tp": 4,
                    "fp": 0,
                    "tn": 0,
                    "fn": 2,
                    "threshold_val": 0.5,
                    "accuracy_at_val_threshold": 0.6,
                    "sensitivity_at_val_threshold": 0.6,
                    "specificity_at_val_threshold": float("nan"),
                    "num_real": 10,
                    "num_synthetic": 10 if fraction else 0,
                    "best_step": 3,
                    "seconds": 1.0,
                    "history": [{"step": 3, "loss/train": 0.7, "loss/val": 0.6}],
                    "test_probabilities": probabilities.tolist(),
                }
            )
    data = study.StudyData(test, test, test, None, ("NORMAL", "PNEUMONIA"))
    study.write_outputs(config, tmp_path, results, data)
    report = (tmp_path / "study.md").read_text()
    assert "The test split has one class only: AUC is undefined (n/a)." in report
    assert "| 0% | 10 + 0 | 66.7 ± 0.0 [33.3, 100.0] | 66.7 ± 0.0 | n/a | n/a |" in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert np.isnan(summary[0]["auc_mean"])


def test_the_real_set_size_sweep_uses_nested_subsets(gan_run, data_dir, tmp_path):
    config = _config(data_dir, real_per_class=(4, 0))
    results = study.run_study(config, tmp_path, gan_workdir=gan_run)
    assert [(r["real_per_class"], r["arm"]) for r in results] == [
        (4, "0%"),
        (4, "50%"),
        ("all", "0%"),
        ("all", "50%"),
    ]
    assert results[0]["num_real"] == 8 and results[1]["num_synthetic"] == 8  # 4 per class
    assert (tmp_path / "plots" / "metrics_by_real_size.png").stat().st_size > 0
    assert "## Real images per class: 4" in (tmp_path / "study.md").read_text()
