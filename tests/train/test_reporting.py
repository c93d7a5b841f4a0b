"""Metrics files, progress lines and the plots made from them."""

import numpy as np
from PIL import Image

from xraygan_jax import viz
from xraygan_jax.train import reporting


def test_read_metrics_keeps_the_last_record_of_a_repeated_step(tmp_path):
    writer = reporting.MetricsWriter(tmp_path / "m.jsonl")
    for step, loss in [(1, 0.5), (2, 0.4), (3, 0.3)]:
        writer.write({"gan": "A", "step": step, "loss/d": np.float32(loss)})
    # A resumed run repeats steps 2 and 3 (after its last checkpoint) with other values.
    for step, loss in [(2, 0.7), (3, 0.6), (4, 0.2)]:
        writer.write({"gan": "A", "step": step, "loss/d": loss})
    writer.write({"gan": "B", "step": 1, "loss/d": 9.0})
    writer.close()
    records = reporting.read_metrics(tmp_path / "m.jsonl", gan="A")
    assert [(r["step"], round(r["loss/d"], 6)) for r in records] == [
        (1, 0.5),
        (2, 0.7),
        (3, 0.6),
        (4, 0.2),
    ]


def test_format_duration():
    assert reporting.format_duration(3725) == "1h02m05s"
    assert reporting.format_duration(65) == "1m05s"
    assert reporting.format_duration(4.2) == "4s"
    assert reporting.format_duration(float("inf")) == "?"


def test_progress_rate_and_eta_skip_the_compiling_first_step(monkeypatch):
    clock = iter([0.0, 100.0, 101.0, 103.0, 103.0])  # start; step 1 ends after a 100 s compile
    monkeypatch.setattr(reporting.time, "perf_counter", lambda: next(clock))
    progress = reporting.Progress(total_steps=10, items_per_step=64, name="t", every_steps=100)
    assert progress.update(1) is None  # only the compiled step so far: no rate yet
    progress.update(2)  # 1 s for one step
    rate = progress.update(3)  # 3 s for two steps after the first
    assert rate == 2 * 64 / 3.0
    assert progress.eta_seconds(103.0) == 7 * 64 / rate


def test_loss_curves_and_metric_plots_draw_the_records(tmp_path, plotted):
    records = [{"step": s, "loss/g": 1 + 0.1 * s, "loss/d": 1 - 0.05 * s} for s in range(1, 20)]
    path = viz.plot_loss_curves(records, tmp_path / "plots" / "loss.png")
    image = np.asarray(Image.open(path).convert("L"))
    assert image.shape == (400, 800)
    (axes,) = plotted["loss.png"]
    assert (axes.xlabel, axes.ylabel) == ("step", "loss")
    assert list(axes.series) == ["G", "D"]
    np.testing.assert_allclose(axes.series["G"], [(r["step"], r["loss/g"]) for r in records])
    np.testing.assert_allclose(axes.series["D"], [(r["step"], r["loss/d"]) for r in records])
    path = viz.plot_metric_by_epoch(
        {"NORMAL": ([20, 40], [300.0, 250.0])},
        tmp_path / "fid.png",
        ylabel="FID",
        title="t",
        floors={"NORMAL": 50.0},
    )
    assert Image.open(path).size == (700, 400)
    (axes,) = plotted["fid.png"]
    assert (axes.title, axes.xlabel, axes.ylabel) == ("t", "epoch", "FID")
    assert axes.series["NORMAL"] == [(20, 300.0), (40, 250.0)]
    assert [y for _, y in axes.series["NORMAL: floor"]] == [50.0, 50.0]  # dashed, across


def test_the_finished_progress_line_shows_the_elapsed_time(monkeypatch, capsys):
    clock = iter([0.0, 50.0, 51.0, 52.0, 52.0, 65.0])
    monkeypatch.setattr(reporting.time, "perf_counter", lambda: next(clock, 65.0))
    progress = reporting.Progress(total_steps=3, items_per_step=10, name="[t]", every_steps=100)
    for step in (1, 2, 3):
        progress.update(step, "loss 0.5")
    progress.finish()  # a second call prints nothing more
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["[t] done: 3/3 steps in 1m05s | 10.0 img/s | loss 0.5"]


def test_progress_over_checkpoints_counts_checkpoints_not_steps(monkeypatch, capsys):
    clock = iter([0.0, 0.0, 80.0, 80.0, 170.0])
    monkeypatch.setattr(reporting.time, "perf_counter", lambda: next(clock, 170.0))
    progress = reporting.Progress(
        total_steps=3, items_per_step=1, name="[eval g]", every_steps=1,
        unit="checkpoint", counted="checkpoints",
    )  # fmt: skip
    for done in (1, 2):
        progress.update(done)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[eval g] 1/3 checkpoints | compiling | ETA ?"
    assert lines[1].startswith("[eval g] 2/3 checkpoints | 80.0 s/checkpoint | ETA ")
