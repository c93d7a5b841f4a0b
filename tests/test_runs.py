"""The run folder: the paths `runs.Run` names, and its JSON-lines helpers.

That a trained run writes no file its Run does not name: tests/train/test_gan_loop.py.
"""

import json

from xraygan_jax import runs


def test_the_layouts_paths(tmp_path):
    run = runs.Run(tmp_path)
    assert run.summary_path == tmp_path / "summary.md"
    assert run.sample_grid_path("NORMAL", 7) == tmp_path / "samples" / "NORMAL" / "epoch_0007.png"
    assert run.loss_plot_path("conditional") == tmp_path / "plots" / "losses_conditional.png"
    assert run.fid_plot_path == tmp_path / "plots" / "fid_vs_epoch.png"
    # What exists, found by the same names: grids oldest first, loss plots by GAN name.
    assert run.sample_grids("NORMAL") == [] and run.loss_plots() == []
    for epoch in (10, 2):
        run.sample_grid_path("NORMAL", epoch).parent.mkdir(parents=True, exist_ok=True)
        run.sample_grid_path("NORMAL", epoch).write_bytes(b"")
    for gan in ("PNEUMONIA", "NORMAL"):
        run.plots_dir.mkdir(exist_ok=True)
        run.loss_plot_path(gan).write_bytes(b"")
    run.fid_plot_path.write_bytes(b"")
    assert run.sample_grids("NORMAL") == [run.sample_grid_path("NORMAL", e) for e in (2, 10)]
    assert run.loss_plots() == [run.loss_plot_path("NORMAL"), run.loss_plot_path("PNEUMONIA")]


def test_jsonl_rewrite_keeps_lines_as_written_and_appends_in_one_replace(tmp_path):
    path = tmp_path / "eval.jsonl"
    assert runs.read_jsonl(path) == []
    runs.rewrite_jsonl(path, lambda record: True)
    assert not path.exists()  # nothing kept, nothing appended: no file made
    runs.rewrite_jsonl(path, lambda record: True, append=[{"epoch": 1}])
    path.write_text(path.read_text() + '{"epoch":  2}\n\n{"epoch": 3, "cut')
    # The cut last line (a kill mid-write) is no record; the kept line keeps its spacing.
    assert runs.read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    runs.rewrite_jsonl(path, lambda record: record["epoch"] > 1, append=[{"epoch": 4}])
    assert path.read_text() == '{"epoch":  2}\n' + json.dumps({"epoch": 4}) + "\n"
