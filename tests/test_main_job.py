"""The main job end to end on the tiny pipeline config: every stage, the report, resume, errors."""

import json
import shutil
import subprocess

import numpy as np
import pytest
from helpers import run_launcher
from PIL import Image

from experiments.configs import pipeline_test
from xraygan_jax import errors, pipeline, report

pytestmark = pytest.mark.slow  # Every test reads the pipeline's run or starts the launcher.


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir, fid_weights_source):
    workdir = tmp_path_factory.mktemp("pipeline")
    result = run_launcher(
        "experiments.pipeline",
        "--config=experiments/configs/pipeline_test.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr
    return workdir, result


def test_every_stage_ran_and_the_report_links_only_existing_images(finished):
    workdir, result = finished
    state = json.loads((workdir / "pipeline.json").read_text())
    assert {name: s["status"] for name, s in state["stages"].items()} == {
        "data": "done",
        "gan": "done",
        "evaluate": "done",
        "study": "done",
        "report": "done",
    }
    text = (workdir / "report.md").read_text()
    for heading in ("## What ran", "## DC-cGAN", "## Augmentation study", "## Environment"):
        assert heading in text
    assert "--config=experiments/configs/pipeline_test.py" in text  # the exact command
    images = report.referenced_images(text)
    assert any("fid_vs_epoch" in i for i in images) and any("study/plots" in i for i in images)
    assert all((workdir / image).is_file() for image in images), images
    page = (workdir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(images)
    assert 'src="gan/' not in page  # nothing left to load from disk
    assert str(workdir / "report.md") in result.stdout


def test_a_rerun_reuses_every_stage(finished, data_dir):
    workdir, _ = finished
    result = run_launcher(
        "experiments.pipeline",
        "--config=experiments/configs/pipeline_test.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
    )
    assert result.returncode == 0, result.stderr
    for stage in ("data", "gan", "evaluate", "study"):
        assert f"{stage}: done before, kept" in result.stderr


def test_a_workdir_of_another_config_is_refused_and_kept(finished, data_dir):
    workdir, _ = finished
    before = (workdir / "config.json").read_text()
    result = run_launcher(
        "experiments.pipeline",
        "--config=experiments/configs/pipeline_test.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        "--config.gan.optim.g_lr=0.001",
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "gan.optim.g_lr: workdir 0.0002, now 0.001" in result.stderr
    assert (workdir / "config.json").read_text() == before


def test_a_failed_stage_is_named_in_the_report_and_earlier_stages_are_kept(
    finished, tmp_path, data_dir, monkeypatch
):
    workdir, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    state = json.loads((copy / "pipeline.json").read_text())
    state["stages"]["study"]["status"] = "pending"
    (copy / "pipeline.json").write_text(json.dumps(state))
    config = pipeline_test.get_config()
    config.data.data_dir = data_dir

    def broken(*args, **kwargs):
        raise errors.DataError("the synthetic folder is empty")

    monkeypatch.setattr(pipeline.study, "run_study", broken)
    with pytest.raises(errors.DataError):
        pipeline.run_pipeline(config, copy)
    text = (copy / "report.md").read_text()
    assert "**Stage `study` failed**: DataError: the synthetic folder is empty" in text
    assert "## DC-cGAN" in text  # the earlier stages' results are still reported
    assert (copy / "gan" / "checkpoints").is_dir()


def test_a_full_disk_while_writing_the_report_names_the_file(finished, tmp_path, monkeypatch):
    workdir, _ = finished
    state = json.loads((workdir / "pipeline.json").read_text())
    config = pipeline_test.get_config()
    original = type(tmp_path).write_text

    def full(self, *args, **kwargs):
        if self.name.startswith("report"):
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "write_text", full)
    with pytest.raises(OSError, match=r"could not write .*report.md: No space left on device"):
        report.write_report(config, workdir, state)
    assert (workdir / "report.md").exists()  # the previous report was not replaced


def test_the_html_report_renders_in_a_headless_browser(finished, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium installed (apt-get install chromium)")
    workdir, _ = finished
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (workdir / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dom.returncode == 0, dom.stderr
    assert "xraygan_jax pipeline report" in dom.stdout
    images = len(report.referenced_images((workdir / "report.md").read_text()))
    # The page's own check: every <img> decoded (complete, with a natural width).
    assert f'data-images-loaded="{images}/{images}"' in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,2400",
            (workdir / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 20  # text, tables and pictures, not an empty page
