"""A two-point sweep through its launcher: each point a normal run, sweep.csv, plots, resume."""

import csv

import pytest
from helpers import run_launcher

from experiments.configs import sweep_test
from xraygan_jax import errors, runs, sweep


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir, fid_weights_source):
    workdir = tmp_path_factory.mktemp("sweep")
    args = (
        "--config=experiments/configs/sweep_test.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
    )
    result = run_launcher("experiments.sweep", *args, timeout=1200)
    assert result.returncode == 0, result.stderr
    return workdir, args


@pytest.mark.slow
def test_every_point_is_a_run_with_metrics_and_a_gain(finished):
    workdir, _ = finished
    with open(workdir / "sweep.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [float(r["optim.g_lr"]) for r in rows] == [1e-4, 2e-4]
    for row in rows:
        assert float(row["fid_mean"]) > 0 and float(row["NORMAL/fid_floor"]) > 0
        assert -1 <= float(row["classifier_gain"]) <= 1
        assert float(row["train_seconds"]) > 0
        run = runs.Run(workdir / "points" / row["point"])
        assert run.load_config().optim.g_lr == float(row["optim.g_lr"])
        assert run.checkpoint_epochs("conditional") == [1]
    assert (workdir / "plots" / "sweep_optim.g_lr.png").stat().st_size > 0


@pytest.mark.slow
def test_a_rerun_resumes_without_training(finished):
    workdir, args = finished
    before = (workdir / "sweep.csv").read_text()
    result = run_launcher("experiments.sweep", *args)
    assert result.returncode == 0, result.stderr
    assert "[conditional]" not in result.stderr  # no GAN step ran
    # Points read back are named, and not counted as points trained (no rate, no ETA from them).
    assert "[sweep] 2 of 2 points read back" in result.stderr, result.stderr
    assert "point/s" not in result.stderr and "s/point" not in result.stderr, result.stderr
    assert (workdir / "sweep.csv").read_text() == before


def test_a_grid_key_the_config_lacks_is_named(tmp_path):
    config = sweep_test.get_config()
    config.sweep.grid = ("optim.bogus=1,2",)
    with pytest.raises(errors.ConfigError, match=r"the GAN config has no 'optim.bogus'"):
        sweep.run_sweep(config, tmp_path)
    assert not (tmp_path / "config.json").exists()


def test_list_mode_pairs_values_and_needs_equal_lengths():
    config = sweep_test.get_config()
    config.sweep.grid = ("optim.g_lr=1e-4,2e-4", "model.nz=4,8")
    config.sweep.mode = "list"
    assert sweep.points(config) == [
        {"optim.g_lr": 1e-4, "model.nz": 4},
        {"optim.g_lr": 2e-4, "model.nz": 8},
    ]
    config.sweep.grid = ("optim.g_lr=1e-4,2e-4", "model.nz=4")
    with pytest.raises(errors.ConfigError, match="the same number of values"):
        sweep.points(config)


def test_arms_are_named_variants_whose_values_may_hold_commas():
    config = sweep_test.get_config()
    config.sweep.mode = "arms"
    config.sweep.arms = (
        "baseline:",
        "augmented: train.diffaugment=color,cutout; model.nz=4 ; train.ada=true",
    )
    assert sweep.points(config) == [
        {"arm": "baseline"},
        {"arm": "augmented", "train.diffaugment": "color,cutout", "model.nz": 4, "train.ada": True},
    ]
    job = sweep.point_config(config, sweep.points(config)[1])
    assert job.train.diffaugment == "color,cutout" and job.model.nz == 4 and "arm" not in job
    assert sweep.point_name(sweep.points(config)[1]) == "augmented"


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        (("no colon here",), r"entry 'no colon here' is not 'name: key=value; key=value'"),
        (("a:", "a: model.nz=4"), r"the name 'a' is used twice"),
        (("a: model.bogus=1",), r"the GAN config has no 'model.bogus'"),
        (("a: model.nz",), r"a: 'model.nz' is not 'key=value'"),
        (("a: model.nz=four",), r"arms a model.nz: invalid literal"),
    ],
)
def test_a_malformed_arm_is_named(arms, message):
    config = sweep_test.get_config()
    config.sweep.mode = "arms"
    config.sweep.arms = arms
    with pytest.raises(errors.ConfigError, match=message):
        sweep.points(config)


@pytest.mark.slow
def test_an_arms_sweep_compares_per_class_metrics_and_shows_samples_side_by_side(
    tmp_path_factory, data_dir, fid_weights_source, plotted
):
    config = sweep_test.get_config()
    config.data.data_dir = data_dir
    config.data.train_images_per_class = 12
    config.sweep.mode = "arms"
    config.sweep.arms = (
        "reports: train.per_class=true",
        "augmented: train.diffaugment=translation",
    )
    config.sweep.classifier_gain = False
    config.gan.train.num_epochs = 100  # replaced by the image budget below
    config.gan.train.num_images = 0.048  # 48 images: 2 epochs of 24, 4 epochs of 12 per class
    workdir = tmp_path_factory.mktemp("arms")
    rows = sweep.run_sweep(config, workdir)
    assert [row["arm"] for row in rows] == ["reports", "augmented"]
    for row in rows:
        assert row["kimg"] == pytest.approx(0.048 * (2 if row["arm"] == "reports" else 1))
        for name in ("NORMAL", "PNEUMONIA"):
            assert row[f"{name}/num_real"] == 12
            assert 0 <= row[f"{name}/precision"] <= 1 and row[f"{name}/fid"] > 0
    assert runs.Run(workdir / "points" / "reports").checkpoint_epochs("NORMAL")[-1] == 4
    assert runs.Run(workdir / "points" / "augmented").checkpoint_epochs("conditional")[-1] == 2
    with open(workdir / "sweep.csv", newline="") as file:
        assert "NORMAL/recall" in next(csv.reader(file))
    page = (workdir / "sweep.md").read_text().splitlines()
    assert page[0] == sweep.RANKING_NOTE and page[1] == ""
    table = page[2:]
    assert table[0].startswith(
        "| rank (collapsed last) | arm | collapsed | mean FID gap to floor | kimg | train time | "
        "NORMAL FID |"
    )
    assert "| NORMAL diversity (coarse) |" in table[0] and len(table) == 4
    # The rows in rank order, each arm once, its kimg and diversity shown.
    ranked = {row["arm"]: row for row in sweep.rank_points(rows)}
    for line, rank in zip(table[2:], (1, 2), strict=True):
        arm = next(name for name, row in ranked.items() if row["rank"] == rank)
        kimg = "0.096" if arm == "reports" else "0.048"
        assert line.startswith(f"| {rank} | {arm} | "), line
        spread = (
            f"{ranked[arm]['NORMAL/diversity']:.3f} ({ranked[arm]['NORMAL/coarse_diversity']:.3f})"
        )
        assert f" | {kimg} | " in line and f" | {spread} |" in line
    # A bar per arm and class at the rows' FIDs; the samples table a grid per arm and class.
    (bars,) = plotted["arms_fid.png"]
    for name in ("NORMAL", "PNEUMONIA"):
        assert [fid for _, fid in bars.series[f"{name} FID"]] == [r[f"{name}/fid"] for r in rows]
    table = plotted["samples.png"]
    assert [axes.ylabel for axes in table[::2]] == ["reports", "augmented"]
    assert [axes.title for axes in table[:2]] == ["NORMAL", "PNEUMONIA"]
    assert [axes.images for axes in table] == [1, 1, 1, 1]
    assert set(rows[0]["samples"]) == {"NORMAL", "PNEUMONIA"}


def _row(point, gap, recall, diversity=None, **extra):
    row = {"point": point, "arm": point, "fid_gap_mean": gap, "kimg": 1.0, "train_seconds": 5.0}
    for name in ("NORMAL", "PNEUMONIA"):
        row.update({f"{name}/fid": gap + 50, f"{name}/fid_matched": gap + 50,
                    f"{name}/fid_floor": 50.0, f"{name}/kid_mean": 0.1, f"{name}/kid_floor": 0.0,
                    f"{name}/precision": 0.5, f"{name}/recall": recall})  # fmt: skip
        if diversity is not None:
            row[f"{name}/diversity"] = 0.9
    row.update(extra)
    return row


def test_collapsed_points_rank_after_every_other_whatever_their_gap():
    rows = [
        # The best gap, but NORMAL is one template: last but one.
        _row("template", 10.0, 0.5, 0.9, **{"NORMAL/recall": 0.0, "NORMAL/diversity": 0.1}),
        _row("far", 50.0, 0.5, 0.9),
        _row("near", 30.0, 0.5, 0.9),
        # A row read back from a point.json written before diversity: judged by recall alone.
        _row("old_collapsed", 5.0, 0.0, **{"NORMAL/recall": 0.0, "PNEUMONIA/recall": 0.0}),
        _row("old_covered", 40.0, 0.5),
        _row("no_floor", float("nan"), 0.5, 0.9),
        # Recall 0 but as varied as the real images: bad, not collapsed.
        _row("varied_far", 60.0, 0.5, 0.9, **{"NORMAL/recall": 0.0}),
    ]
    ranked = sweep.rank_points(rows)
    assert [(r["point"], r["rank"], r["collapsed"]) for r in ranked] == [
        ("near", 1, ""),
        ("old_covered", 2, ""),
        ("far", 3, ""),
        ("varied_far", 4, ""),
        ("no_floor", 5, ""),
        ("old_collapsed", 6, "NORMAL PNEUMONIA"),
        ("template", 7, "NORMAL"),
    ]
    assert "rank" not in rows[0]  # the input rows are left as they were
    table = sweep.arms_table(rows).splitlines()
    assert table[2].startswith("| 1 | near | no | 30.0 | 1 | 5s | 80.0 | 80.0 (50.0) |")
    assert table[3].startswith("| 2 | old_covered | no | 40.0 |") and "| n/a (n/a) |" in table[3]
    assert table[8].startswith("| 7 | template | **collapsed: NORMAL** | 10.0 |")
    assert "| 0.50 / 0.00 | 0.100 (n/a) | " in table[8]
    assert table[7].startswith("| 6 | old_collapsed | **collapsed: NORMAL, PNEUMONIA** | 5.0 |")
    assert "collapsed" in sweep.RANKING_NOTE and "ranked after" in sweep.RANKING_NOTE


def test_sweep_csv_keeps_the_planned_order_with_rank_and_collapsed(tmp_path):
    rows = [_row("a", 10.0, 0.0, 0.9, **{"NORMAL/diversity": 0.1}), _row("b", 20.0, 0.5, 0.9)]
    for row in rows:
        row.update({"optim.g_lr": 1e-4, "fid_mean": 60.0, "images_per_second": 1.0})
    (tmp_path / "plots").mkdir()
    sweep.write_outputs(tmp_path, rows, ["optim.g_lr"])
    with open(tmp_path / "sweep.csv", newline="") as file:
        written = list(csv.DictReader(file))
    assert [(r["point"], r["rank"], r["collapsed"]) for r in written] == [
        ("a", "2", "NORMAL"),
        ("b", "1", ""),
    ]
    assert (tmp_path / "sweep.md").read_text().startswith(sweep.RANKING_NOTE)
