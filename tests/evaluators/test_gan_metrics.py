"""GAN metrics with floors: during training, per checkpoint, of a folder; the protocol's fields.

The evaluated run is a copy of the session's shared `conditional_run` (conftest.py), which
computed FID after its epoch 2; the tests that read it are marked slow.
"""

import json
import shutil

import numpy as np
import pytest
from helpers import read_events, run_launcher
from PIL import Image

from xraygan_jax import report, runs
from xraygan_jax.data import folders
from xraygan_jax.evaluators import drivers, gan_metrics, records
from xraygan_jax.metrics import diversity, fid
from xraygan_jax.train import reporting

PROTOCOL_FIELDS = ("num_real", "num_fake", "reference_split", "resize", "batch_stats")
FLOOR_FIELDS = ("fid_floor", "kid_floor", "floor_num", "fid_matched", "kid_matched")


@pytest.fixture(scope="module")
def evaluated_run(conditional_run, tmp_path_factory):
    """(config, workdir): a copy of the shared run, which these tests evaluate again."""
    workdir = tmp_path_factory.mktemp("evaluated") / "run"
    shutil.copytree(conditional_run.workdir, workdir)
    return conditional_run.config, workdir


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_records_during_training_carry_the_protocol_and_the_floor(evaluated_run):
    config, workdir = evaluated_run
    evaluated = _read(workdir / "eval.jsonl")
    assert [(r["epoch"], r["class"]) for r in evaluated] == [(2, "NORMAL"), (2, "PNEUMONIA")]
    source_counts = {"NORMAL": 0, "PNEUMONIA": 0}
    from xraygan_jax.data import pipeline, sources

    train = sources.get_source(config.data, "train")
    for label, name in enumerate(source_counts):
        source_counts[name] = len(pipeline.class_indices(train, label))
    for record in evaluated:
        assert all(field in record for field in PROTOCOL_FIELDS + FLOOR_FIELDS)
        # The reference is the whole train split of the class, and as many images are generated.
        assert record["reference_split"] == "train"
        assert record["num_real"] == record["num_fake"] == source_counts[record["class"]]
        assert record["floor_num"] == record["num_real"] // 2
        assert record["resize"] == "tf1" and record["batch_stats"] == "running"
        assert record["fid"] > 0 and record["fid_floor"] > 0
        assert 0 <= record["precision"] <= 1 and 0 <= record["recall"] <= 1
        assert 0 <= record["diversity"] < 10


@pytest.mark.slow
def test_evaluations_during_training_are_tensorboard_events_at_their_step(evaluated_run):
    _, workdir = evaluated_run
    events = read_events(workdir / "tensorboard" / "conditional")
    history = reporting.read_metrics(workdir / "metrics.jsonl", gan="conditional")
    last_step = history[-1]["step"]  # The evaluation ran after epoch 2, the last.
    written = set()
    for record in _read(workdir / "eval.jsonl"):
        for key, value in record.items():
            if key in ("gan", "epoch", "class") or not isinstance(value, int | float):
                continue
            if isinstance(value, bool):  # `ema`: a setting, not a scalar
                continue
            tag = f"eval/{record['class']}/{key}"
            assert [(e.step, np.float32(e.value)) for e in events.Scalars(tag)] == [
                (last_step, np.float32(value))
            ], tag
            written.add(tag)
    assert {"eval/NORMAL/fid", "eval/PNEUMONIA/fid_floor", "eval/NORMAL/recall"} <= written
    assert written == {tag for tag in events.Tags()["scalars"] if tag.startswith("eval/")}


@pytest.mark.slow
def test_the_tiny_run_collapses_and_is_warned_of_in_the_progress_lines_and_summary(
    evaluated_run, conditional_run
):
    # Two epochs of 6 steps on 24 images per class: G draws one template per class (recall 0,
    # diversity about 0.14 when measured), which is what every GAN of the project did at small
    # budgets. The warnings must say so where a person reads results.
    _, workdir = evaluated_run
    evaluated = _read(workdir / "eval.jsonl")
    assert all(diversity.record_collapsed(r) for r in evaluated), evaluated
    log = conditional_run.log
    summary = (workdir / "summary.md").read_text()
    for r in evaluated:
        numbers = diversity.describe(r)
        assert numbers.endswith(f", coarse diversity {r['coarse_diversity']:.3f}")
        assert (
            f"[conditional] epoch 2 {r['class']}: FID {r['fid']:.2f} (floor {r['fid_floor']:.2f}; "
            in log
        )
        assert (
            f"[conditional] epoch 2 WARNING: {r['class']} collapsed (gan conditional, epoch 2): "
            f"{numbers} ({diversity.RULE})" in log
        )
        assert f"**WARNING: {r['class']} collapsed (gan conditional, epoch 2): {numbers}" in summary
        assert f"| conditional | 2 | {r['class']} | running |" in summary
    assert log.count("WARNING") == 2


def test_features_as_spread_as_the_real_ones_are_not_called_collapsed(capsys):
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 16)), rng.normal(size=(40, 16))
    record = {"class": "NORMAL", "epoch": 1, **gan_metrics.compare(real, fake)}
    assert record["diversity"] == pytest.approx(1.0, abs=0.1) and record["recall"] > 0.5
    assert records.emit_collapse_warnings([record]) == []
    assert "WARNING" not in capsys.readouterr().err
    section = "\n".join(records.summary_section([record]))
    assert "WARNING" not in section and "| **yes** |" not in section
    assert f"| {record['recall']:.3f} | {record['diversity']:.3f} | n/a | no |" in section
    # One image repeated: diversity exactly 0, recall 0, collapsed.
    template = {"class": "NORMAL", "epoch": 1, **gan_metrics.compare(real, fake[[0] * 40])}
    assert template["diversity"] == 0.0 and template["recall"] == 0.0
    assert records.emit_collapse_warnings([template], prefix="[x] ") == [
        diversity.collapse_warning(template)
    ]
    assert "[x] WARNING: NORMAL collapsed (epoch 1): recall 0.000, diversity 0.000" in (
        capsys.readouterr().err
    )


def test_compare_measures_coarse_diversity_from_the_images_when_given():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(12, 16)), rng.normal(size=(12, 16))
    real_images = rng.integers(0, 256, (12, 32, 32, 1)).astype(np.uint8)
    one_layout = np.repeat(real_images[:1], 12, axis=0)
    result = gan_metrics.compare(
        real, fake, floor=False, real_images=real_images, fake_images=one_layout
    )
    assert result["coarse_diversity"] == 0.0 and result["diversity"] > 0.5
    assert "coarse_diversity" not in gan_metrics.compare(real, fake, floor=False)


def test_records_written_before_diversity_are_read_and_judged_by_recall(tmp_path):
    # eval.jsonl of an older run: no diversity field. Resume and evaluate_gan append to it, the
    # summary and the report read it.
    old = {"gan": "NORMAL", "epoch": 20, "class": "NORMAL", "num_real": 8, "num_fake": 8,
           "fid": 300.0, "fid_floor": 50.0, "fid_matched": 310.0, "kid_mean": 0.4,
           "kid_floor": 0.0, "precision": 0.0, "recall": 0.0, "batch_stats": "running",
           "reference_split": "train", "resize": "tf1"}  # fmt: skip
    covered = {**old, "gan": "PNEUMONIA", "class": "PNEUMONIA", "recall": 0.5}
    run = runs.Run(tmp_path)
    run.eval_path.write_text(json.dumps(old) + "\n" + json.dumps(covered) + "\n")
    new = {**old, "epoch": 40, "diversity": 0.9, "recall": 0.25}
    records.write_records(run.eval_path, [new])
    assert records.read_records(run.eval_path) == [old, covered, new]
    # The latest epoch of each GAN: NORMAL's new record, PNEUMONIA's old one.
    assert records.latest_records(records.read_records(run.eval_path)) == [covered, new]
    run.summary_path.write_text("# GAN training run\n\n## NORMAL\n")
    drivers.update_summary(run)
    summary = run.summary_path.read_text()
    assert summary.startswith("# GAN training run\n\n## NORMAL\n\n" + records.SUMMARY_BEGIN)
    assert "WARNING" not in summary  # recall 0.5 and 0.25: not collapsed
    assert "| PNEUMONIA | 20 | PNEUMONIA | running | 8 | 8 | 300.0 | 310.0 (50.0) |" in summary
    assert "| 0.000 | 0.500 | n/a | n/a | no |" in summary
    # The old record alone: recall 0, diversity not measured, collapsed by recall.
    run.eval_path.write_text(json.dumps(old) + "\n")
    drivers.update_summary(run)
    summary = run.summary_path.read_text()
    assert summary.count(records.SUMMARY_BEGIN) == 1  # rewritten in place
    assert (
        "**WARNING: NORMAL collapsed (gan NORMAL, epoch 20): recall 0.000, diversity not measured"
        in summary
    )


@pytest.mark.slow
def test_the_pipeline_report_warns_of_a_collapsed_checkpoint(evaluated_run, tmp_path):
    config, workdir = evaluated_run
    # The report's GAN section of a run folder; "fcgan" needs no real-image grids.
    shutil.copytree(workdir, tmp_path / "fcgan", ignore=shutil.ignore_patterns("checkpoints"))
    text = "\n".join(report._gan_section(config, tmp_path, "fcgan", "FC", {}))
    for r in _read(workdir / "eval.jsonl"):
        if r["epoch"] == 2:
            assert (
                f"**WARNING: {r['class']} collapsed (gan conditional, epoch 2): recall "
                f"{r['recall']:.3f}, diversity {r['diversity']:.3f}" in text
            )
            spreads = f"{r['diversity']:.3f} | {r['coarse_diversity']:.3f}"
            assert f"| {r['recall']:.3f} | {spreads} | **yes** |" in text
    # The same section from records as varied as the real ones, and from an older record: no
    # warning, diversities n/a.
    varied = [
        {**r, "recall": 0.4, "diversity": 0.95, "coarse_diversity": 0.9}
        for r in _read(workdir / "eval.jsonl")
    ]
    older = [{k: v for k, v in r.items() if "diversity" not in k} for r in varied]
    for evaluated, cell in (
        (varied, "| 0.400 | 0.950 | 0.900 | no |"),
        (older, "| 0.400 | n/a | n/a | no |"),
    ):
        (tmp_path / "fcgan" / "eval.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in evaluated)
        )
        text = "\n".join(report._gan_section(config, tmp_path, "fcgan", "FC", {}))
        assert "WARNING" not in text and cell in text


@pytest.mark.slow
def test_evaluate_run_covers_every_checkpoint_and_matches_training_time(
    evaluated_run, capsys, plotted
):
    _, workdir = evaluated_run
    during_training = {r["class"]: r for r in _read(workdir / "eval.jsonl")}
    evaluated = drivers.evaluate_run(workdir)
    # What experiments.evaluate_gan prints to standard error: a warning per collapsed class and
    # checkpoint, naming the numbers.
    err = capsys.readouterr().err
    for record in evaluated:
        where = f"[eval conditional] WARNING: {record['class']} collapsed (gan conditional, epoch "
        if diversity.record_collapsed(record):
            assert f"[eval conditional] WARNING: {diversity.collapse_warning(record)}" in err
        else:
            assert f"{where}{record['epoch']})" not in err
    # The same checkpoint, latents and reference give the same numbers as during training.
    for record in evaluated[2:]:
        expected = during_training[record["class"]]
        for key in ("fid", "fid_floor", "fid_matched", "kid_mean", "diversity"):
            assert record[key] == pytest.approx(expected[key], rel=1e-6), key
    # Evaluating again replaces the records of the same evaluation instead of repeating them.
    written = _read(workdir / "eval.jsonl")
    assert len(written) == 4
    plot = Image.open(workdir / "plots" / "fid_vs_epoch.png")
    assert plot.size[0] > 300
    # FID against epoch per class, each class's floor dashed: the records' numbers.
    (axes,) = plotted["fid_vs_epoch.png"]
    assert (axes.xlabel, axes.ylabel) == ("epoch", "FID")
    for name in ("NORMAL", "PNEUMONIA"):
        of_class = [r for r in evaluated if r["class"] == name]
        label = f"{name} (N real {of_class[0]['num_real']}, generated {of_class[0]['num_fake']})"
        assert axes.series[label] == [(r["epoch"], r["fid"]) for r in of_class]
        assert {y for _, y in axes.series[f"{label}: floor"]} == {of_class[-1]["fid_floor"]}


@pytest.mark.slow
def test_batch_statistics_sampling_is_named_and_differs(evaluated_run):
    _, workdir = evaluated_run
    # Epoch 2 with running statistics was evaluated during training (the run's config.eval).
    running = [r for r in _read(workdir / "eval.jsonl") if r["epoch"] == 2]
    assert [r["batch_stats"] for r in running] == ["running", "running"]
    batch = drivers.evaluate_run(workdir, epochs=[2], batch_stats="batch")
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


@pytest.mark.slow
def test_an_unknown_resize_mode_lists_the_valid_ones(evaluated_run):
    _, workdir = evaluated_run
    with pytest.raises(ValueError, match=r"--config.eval.resize='bilinear' .* tf1, pytorch_fid"):
        drivers.evaluate_run(workdir, resize="bilinear")


@pytest.mark.slow
def test_evaluate_folder_matches_a_direct_computation(evaluated_run, tmp_path):
    config, workdir = evaluated_run
    images, _ = runs.Run(workdir).generate_per_class(6, seed=3)
    folders.write_image_folder(images, tmp_path)
    evaluated = drivers.evaluate_folder(tmp_path, config)
    assert [r["class"] for r in evaluated] == ["NORMAL", "PNEUMONIA"]
    extractor = gan_metrics.extractor_for("", "tf1")
    real = gan_metrics.real_features(config.data, "train", 1, extractor)
    direct = fid.evaluate(real, extractor(images["PNEUMONIA"]))
    assert evaluated[1]["fid"] == pytest.approx(direct["fid"], rel=1e-9)
    assert evaluated[1]["num_fake"] == 6 and evaluated[1]["num_real"] == len(real)


@pytest.mark.slow
def test_evaluate_folder_of_another_size_or_classes_says_both(evaluated_run, tmp_path):
    config, _ = evaluated_run
    wrong_size = {name: np.zeros((2, 16, 16, 1), np.uint8) for name in ("NORMAL", "PNEUMONIA")}
    folders.write_image_folder(wrong_size, tmp_path / "size")
    with pytest.raises(ValueError, match=r"is 16x16, expected 32x32"):
        drivers.evaluate_folder(tmp_path / "size", config)
    extra = {name: np.zeros((2, 32, 32, 1), np.uint8) for name in ("NORMAL", "COVID")}
    folders.write_image_folder(extra, tmp_path / "classes")
    with pytest.raises(ValueError, match=r"class folders \['COVID'\] that are not in class_names"):
        drivers.evaluate_folder(tmp_path / "classes", config)


@pytest.mark.slow
def test_a_split_too_small_for_fid_names_the_split_flag(evaluated_run):
    config, _ = evaluated_run
    small = config.copy_and_resolve_references()
    small.data.phantom.num_val = 1
    extractor = gan_metrics.extractor_for("", "tf1")
    with pytest.raises(ValueError, match=r"the val split holds [01] \w+ image\(s\).*--split"):
        for label in (0, 1):
            gan_metrics.real_features(small.data, "val", label, extractor)


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_evaluate_gan_launcher_needs_a_run_directory(tmp_path):
    result = run_launcher("experiments.evaluate_gan", f"--workdir={tmp_path}")
    assert result.returncode == 1
    assert "is not a training run directory" in result.stderr and "check --workdir" in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
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
