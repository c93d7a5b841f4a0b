"""The augmentation study end to end through its launcher, its outputs, and its bad inputs.

The study's GAN is the session's shared `conditional_run` (conftest.py).
"""

import csv
import json

import numpy as np
import pytest
from helpers import run_launcher

from experiments.configs import study_test
from xraygan_jax import errors, study
from xraygan_jax.data import mixing, phantom, pipeline
from xraygan_jax.metrics import calibration, statistics
from xraygan_jax.study import arms, images, writers


@pytest.fixture(scope="module")
def gan_run(conditional_run):
    """The shared conditional GAN's run folder (only read: the study samples from it)."""
    return conditional_run.workdir


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


@pytest.mark.slow
def test_the_launcher_writes_every_output(finished_study):
    workdir, result = finished_study
    rows = _rows(workdir / "study.csv")
    assert [(r["arm"], r["fraction"], r["source"], r["seed"]) for r in rows] == [
        ("0%", "0.0", "real", "0"),
        ("50%", "0.5", "gan", "0"),
        ("50% duplicate", "0.5", "duplicate", "0"),
        ("50% oracle", "0.5", "oracle", "0"),
    ]
    assert list(rows[0]) == list(arms.CSV_COLUMNS + arms.EXTRA_COLUMNS)
    for row in rows:
        tp, fp, tn, fn = (int(row[k]) for k in ("tp", "fp", "tn", "fn"))
        assert tp + fp + tn + fn == 16  # the test config's test split
        assert float(row["accuracy"]) == pytest.approx((tp + tn) / 16)
    # Add mode: all real images kept; 50% extra = as many extra images as real, in every arm.
    for row in rows[1:]:
        assert row["num_real"] == rows[0]["num_real"] == row["num_synthetic"]
    predictions = _rows(workdir / "predictions.csv")
    assert len(predictions) == 4 * 16
    # Every statistic can be recomputed from predictions.csv.
    arm = [p for p in predictions if p["arm"] == "50%"]
    labels = np.array([int(p["label"]) for p in arm])
    probabilities = np.array([float(p["probability"]) for p in arm])
    assert float(rows[1]["accuracy"]) == pytest.approx(np.mean((probabilities >= 0.5) == labels))
    report = (workdir / "study.md").read_text()
    assert "| 50% | " in report and "| 50% oracle | " in report and "## Verdict" in report
    # The test config trains one seed: no seed-level interval, so no verdict, and it says why.
    assert "1 seed per arm: the seed-level interval is not computable" in report
    assert "Not enough data for any verdict" in report
    assert (workdir / "plots" / "metrics_by_fraction.png").stat().st_size > 0
    assert (workdir / "plots" / "training_curves.png").stat().st_size > 0
    assert "study.md" in result.stdout


@pytest.mark.slow
def test_a_rerun_retrains_nothing(finished_study, gan_run, data_dir):
    workdir, _ = finished_study
    before = (workdir / "study.csv").read_text()
    result = _launch_study(workdir, gan_run, data_dir)
    assert result.returncode == 0, result.stderr
    # No classifier trained: their progress lines are named "[<arm> syn, ...]".
    assert not [line for line in result.stderr.splitlines() if " syn, " in line]
    assert (workdir / "study.csv").read_text() == before


@pytest.mark.slow
def test_classifiers_trained_in_threads_equal_those_trained_one_at_a_time(
    finished_study, gan_run, data_dir, tmp_path
):
    """study.threads = 2 trains two classifiers at a time; each equals its lone run bitwise."""
    alone_dir, _ = finished_study
    together = study.run_study(_config(data_dir, threads=2), tmp_path, gan_workdir=gan_run)
    assert len(together) == 4  # 0%, 50%, 50% duplicate, 50% oracle; one seed
    alone = {
        path.parent.name: json.loads(path.read_text())
        for path in (alone_dir / "arms").glob("*/result.json")
    }
    threaded = {
        path.parent.name: json.loads(path.read_text())
        for path in (tmp_path / "arms").glob("*/result.json")
    }
    assert sorted(threaded) == sorted(alone) and len(alone) == 4
    for name, result in threaded.items():
        assert result["test_probabilities"] == alone[name]["test_probabilities"], name
        assert result["history"] == alone[name]["history"], name
    assert [r.arm for r in together] == [r["arm"] for r in _rows(alone_dir / "study.csv")]


@pytest.mark.slow
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
                arms.ArmResult.from_json(
                    {
                        "arm": arms.arm_name(fraction),
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
            )
    data = images.StudyData(test, test, test, None, ("NORMAL", "PNEUMONIA"))
    writers.write_outputs(config, tmp_path, results, data)
    report = (tmp_path / "study.md").read_text()
    assert "The test split has one class only (0 NORMAL + 6 PNEUMONIA)" in report
    assert "| 0% | 10 + 0 | n/a | 66.7 ± 0.0 n/a | 66.7 ± 0.0 | n/a |" in report
    assert "Not enough data for any verdict" in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert np.isnan(summary[0]["auc_mean"])


def _arm_result(**changes):
    fields = {
        "arm": "50%", "fraction": 0.5, "mode": "add", "real_per_class": "all", "seed": 3,
        "accuracy": 0.75, "sensitivity": 0.5, "specificity": 1.0, "precision": 1.0,
        "f1": 2 / 3, "auc": 0.875, "tp": 1, "fp": 0, "tn": 2, "fn": 1, "threshold_val": 0.4,
        "accuracy_at_val_threshold": 1.0, "sensitivity_at_val_threshold": 1.0,
        "specificity_at_val_threshold": 1.0, "num_real": 10, "num_synthetic": 10,
        "source": "gan", "classic": False, "best_step": 6, "seconds": 1.5,
        "history": [{"step": 6, "loss/train": 0.7, "loss/val": 0.6}],
        "test_probabilities": [0.1, 0.45, 0.3, 0.9],
    }  # fmt: skip
    return arms.ArmResult(**{**fields, **changes})


def test_an_arm_result_round_trips_through_its_result_json(tmp_path):
    result = _arm_result()
    path = tmp_path / "arms" / "real_all_synthetic50_seed3" / "result.json"
    result.save(path)
    assert arms.ArmResult.load(path) == result
    # study.csv's columns in order, then the history and the test probabilities; the row is
    # the fields of those columns.
    record = json.loads(path.read_text())
    columns = [*arms.CSV_COLUMNS, *arms.EXTRA_COLUMNS]
    assert list(record) == [*columns, "history", "test_probabilities"]
    assert result.row() == [record[column] for column in columns]
    # An undefined AUC (a test split of one class) is written as NaN and read back as NaN.
    _arm_result(auc=float("nan")).save(path)
    assert np.isnan(arms.ArmResult.load(path).auc)


def test_a_result_written_before_the_control_arms_is_a_baseline_or_synthetic_arm(tmp_path):
    old = {k: v for k, v in _arm_result().to_json().items() if k not in ("source", "classic")}
    path = tmp_path / "result.json"
    for fraction, source in ((0.0, "real"), (0.5, "gan")):
        path.write_text(json.dumps({**old, "fraction": fraction}))
        loaded = arms.ArmResult.load(path)
        assert (loaded.fraction, loaded.source, loaded.classic) == (fraction, source, False)


@pytest.mark.slow
def test_the_real_set_size_sweep_uses_nested_subsets(gan_run, data_dir, tmp_path, plotted):
    config = _config(data_dir, real_per_class=(4, 0))
    results = study.run_study(config, tmp_path, gan_workdir=gan_run)
    names = ["0%", "50%", "50% duplicate", "50% oracle"]
    assert [(r.real_per_class, r.arm) for r in results] == [
        (size, arm) for size in (4, "all") for arm in names
    ]
    assert results[0].num_real == 8 and results[1].num_synthetic == 8  # 4 per class
    assert results[3].num_synthetic == 8  # the oracle arm too
    # Accuracy against the real-set size, one line per arm, the smaller size first.
    accuracy = plotted["metrics_by_real_size.png"][0]
    assert accuracy.title == "accuracy" and list(accuracy.series) == names
    summaries = json.loads((tmp_path / "summary.json").read_text())
    for arm in names:
        of_arm = {s["real_per_class"]: s for s in summaries if s["arm"] == arm}
        assert accuracy.series[arm] == [
            (4, pytest.approx(100 * of_arm[4]["accuracy_mean"])),
            (of_arm["all"]["num_real"], pytest.approx(100 * of_arm["all"]["accuracy_mean"])),
        ]
    # Accuracy against the extra fraction: each kind of extra images starts from its size's 0%.
    by_fraction = plotted["metrics_by_fraction.png"][0]
    for name, arm in (("GAN", "50%"), ("duplicate", "50% duplicate"), ("oracle", "50% oracle")):
        of_size = {s["arm"]: s for s in summaries if s["real_per_class"] == 4}
        assert by_fraction.series[f"{name}, 4 real/class"] == [
            (0.0, pytest.approx(100 * of_size["0%"]["accuracy_mean"])),
            (50.0, pytest.approx(100 * of_size[arm]["accuracy_mean"])),
        ]
    # The training curves of the last size's arms, train and validation loss.
    (curves,) = plotted["training_curves.png"]
    history = results[-1].history
    assert curves.series["50% oracle val"] == [(h["step"], h["loss/val"]) for h in history]
    assert "## Real images per class: 4" in (tmp_path / "study.md").read_text()


def _simulated_results(gains: dict, *, num_seeds=10, num_test=300, size="all", seed=0):
    """Study results of classifiers simulated with known gains (points) over the baseline."""
    setting = calibration.Setting(num_seeds=num_seeds, num_test=num_test, seed_sd_points=2.0)
    labels, scores = calibration.simulate_arms(setting, gains, np.random.default_rng(seed))
    results = []
    for name, arm_scores in scores.items():
        fraction = float(name.split("%")[0]) / 100
        source = "real" if fraction == 0 else (name.split(" ")[1] if " " in name else "gan")
        for index, probabilities in enumerate(arm_scores):
            correct = (probabilities >= 0.5) == labels
            results.append(
                arms.ArmResult(
                    arm=name,
                    fraction=fraction,
                    source=source,
                    classic=False,
                    mode="add",
                    real_per_class=size,
                    seed=index,
                    **{k: float(np.mean(correct)) for k in arms.METRIC_COLUMNS},
                    threshold_val=0.5,
                    accuracy_at_val_threshold=float(np.mean(correct)),
                    sensitivity_at_val_threshold=0.8,
                    specificity_at_val_threshold=0.8,
                    num_real=500,
                    num_synthetic=0 if fraction == 0 else 125,
                    best_step=3,
                    seconds=1.0,
                    history=[{"step": 3, "loss/train": 0.7, "loss/val": 0.6}],
                    test_probabilities=probabilities.tolist(),
                )
            )
    test = pipeline.ArraySource(np.zeros((labels.size, 8, 8, 1), np.uint8), labels)
    return results, images.StudyData(test, test, test, None, ("NORMAL", "PNEUMONIA"))


def test_a_true_gain_is_called_and_read_against_both_controls(tmp_path, plotted):
    config = _config("", fractions=(0.0, 0.2), seeds=tuple(range(10)), num_bootstrap=500)
    results, data = _simulated_results(
        {"0%": 0.0, "20%": 6.0, "20% duplicate": 0.0, "20% oracle": 8.0}
    )
    summaries = writers.write_outputs(config, tmp_path, results, data)
    by_arm = {s["arm"]: s for s in summaries}
    assert by_arm["20%"]["verdict"] == "better"
    assert by_arm["20% duplicate"]["verdict"] == "no detectable difference"
    report = (tmp_path / "study.md").read_text()
    assert "Primary endpoint: **AUC**" in report and "Holm" in report
    assert "the GAN images recovered" in report and "of the oracle's gain over duplicate" in report
    assert "a difference under" in report and "could have gone undetected" in report
    # The Holm-adjusted p-values are the adjustment of the raw ones over the three arms.
    compared = [by_arm[a] for a in ("20%", "20% duplicate", "20% oracle")]
    np.testing.assert_allclose(
        [s["p_holm"] for s in compared],
        statistics.holm_adjust([s["d_auc_p"] for s in compared]),
    )
    # The forest plot: each arm's difference from 0% in points, one row per arm.
    (forest,) = plotted["differences.png"]
    (points,) = forest.series.values()
    assert points == [(pytest.approx(100 * s["d_auc"]), row) for row, s in enumerate(compared)]


def test_no_share_is_read_when_the_oracle_does_not_beat_duplicates(tmp_path):
    config = _config("", fractions=(0.0, 0.2), seeds=tuple(range(10)), num_bootstrap=500)
    results, data = _simulated_results(
        {"0%": 0.0, "20%": 0.0, "20% duplicate": 0.0, "20% oracle": 0.0}, seed=1
    )
    writers.write_outputs(config, tmp_path, results, data)
    report = (tmp_path / "study.md").read_text()
    assert "new real images did not detectably beat duplicates" in report


def test_a_test_split_of_two_images_supports_no_claim(tmp_path):
    # As the 16 real Kermany JPEGs in the Kaggle layout give: 1 + 1 test images.
    config = _config("", fractions=(0.0, 0.2), seeds=(0, 1, 2), num_bootstrap=200)
    results, data = _simulated_results({"0%": 0.0, "20%": 0.0}, num_seeds=3, num_test=2)
    summaries = writers.write_outputs(config, tmp_path, results, data)
    report = (tmp_path / "study.md").read_text()
    top = report.split("## Real images per class")[0]
    assert "1 NORMAL + 1 PNEUMONIA images: too small for any claim" in top
    assert "about 100 points" in top
    assert [s["verdict"] for s in summaries if "verdict" in s] == ["not enough data"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("primary_metric", "f1", r"primary_metric='f1' is unknown; use one of: auc, accuracy, "),
        ("controls", ("duplicate", "mixup"), r"controls: 'mixup' unknown; use any of: duplicate"),
        ("oracle_fraction", 1.0, r"oracle_fraction=1.0 must be in \(0, 1\)"),
        ("alpha", 0.7, r"alpha=0.7 must be in \(0, 0.5\)"),
        ("threads", 0, r"threads=0 must be a whole number >= 1 \(classifiers trained at the"),
    ],
)
def test_bad_study_settings_are_named(data_dir, tmp_path, field, value, message):
    with pytest.raises(errors.ConfigError, match=message):
        study.run_study(_config(data_dir, **{field: value}), tmp_path)
    assert not (tmp_path / "config.json").exists()


def _kermany_study_config(kermany_tree, tmp_path, **study_fields):
    config = _config(str(tmp_path / "tfds"), controls=("oracle",), **study_fields)
    config.data.source = "kermany"
    config.data.dir = str(kermany_tree.root)
    return config


def test_an_oracle_pool_on_too_few_images_per_class_is_named(kermany_tree, tmp_path):
    # 3 NORMAL train images: 10% of them rounds to none for the pool.
    config = _kermany_study_config(kermany_tree, tmp_path, oracle_fraction=0.1)
    with pytest.raises(errors.DataError, match=r"class NORMAL has 3 train image\(s\): holding "):
        images.load_data(config, images_dir=str(tmp_path))


def test_an_oracle_pool_larger_than_the_split_can_spare_is_named(kermany_tree, tmp_path):
    config = _kermany_study_config(kermany_tree, tmp_path, oracle_fraction=0.7)
    with pytest.raises(errors.DataError, match=r"an oracle pool of 2 .* is more than the split "):
        images.load_data(config, images_dir=str(tmp_path))


def test_an_oracle_pool_smaller_than_its_arm_needs_is_named(kermany_tree, tmp_path):
    # 4 PNEUMONIA: 1 to the pool, 1 to validation, 2 to train; 50% added needs 2 oracle images.
    config = _kermany_study_config(kermany_tree, tmp_path, oracle_fraction=0.25)
    with pytest.raises(
        errors.DataError, match=r"the oracle pool holds 1 PNEUMONIA image\(s\) .* needs 2"
    ):
        images.load_data(config, images_dir=str(tmp_path))


def test_controls_have_the_synthetic_arms_counts_in_both_modes():
    real = pipeline.ArraySource(
        np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1), np.array([0] * 8 + [1] * 12)
    )
    synthetic = pipeline.ArraySource(np.full((40, 1, 1, 1), 255, np.uint8), np.repeat([0, 1], 20))
    for mode in ("add", "replace"):
        mixed = mixing.mix(real, synthetic, 0.25, mode=mode, seed=3)
        duplicated = mixing.duplicate_real(real, 0.25, mode=mode, seed=3)
        np.testing.assert_array_equal(np.bincount(duplicated.labels), np.bincount(mixed.labels))
        # Every duplicate is a real image of its own class.
        assert set(duplicated.images[duplicated.labels == 0].ravel()) <= set(range(8))
    # Replace mode keeps the size with fewer distinct images.
    replaced = mixing.duplicate_real(real, 0.25, mode="replace", seed=3)
    assert len(replaced) == 20 and len(set(replaced.images.ravel())) == 15


def test_oracle_images_of_the_phantom_set_are_new_images_of_the_asked_classes():
    spec = phantom.PhantomSpec(image_size=32, num_train=20)
    fresh = phantom.generate_fresh(spec, np.array([0, 1, 1]))
    train, _ = phantom.generate(spec, "train", 0, 20)
    assert fresh.shape == (3, 32, 32, 1)
    assert not any((fresh[i] == image).all() for i in range(3) for image in train)
    # Deterministic, and image i depends on its index and label only.
    np.testing.assert_array_equal(phantom.generate_fresh(spec, np.array([1]), start=1), fresh[1:2])
