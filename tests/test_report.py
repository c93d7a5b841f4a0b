"""The pipeline report from a run folder's state alone: failed stages, the data, inlined images.

The report of a finished pipeline is checked end to end in test_main_job.py (slow); these build
it from a state and files written here.
"""

import base64
import json

import numpy as np

from experiments.configs import pipeline_test
from xraygan_jax import report, viz


def test_a_report_before_any_gan_names_the_failed_stage_and_the_data(tmp_path):
    config = pipeline_test.get_config()
    state = {
        "command": "python -m experiments.pipeline --workdir=somewhere",
        "stages": {
            "data": {"status": "done", "summary": "split NORMAL PNEUMONIA total"},
            "gan": {"status": "failed", "error": "DataError: the data set is empty"},
        },
    }
    path = report.write_report(config, tmp_path, state)
    text = (tmp_path / "report.md").read_text()
    assert path == str(tmp_path / "report.md")
    assert "**Stage `gan` failed**: DataError: the data set is empty." in text
    assert "python -m experiments.pipeline --workdir=somewhere" in text
    assert "`cxr_phantom`, 32x32, classes NORMAL, PNEUMONIA." in text
    assert "split NORMAL PNEUMONIA total" in text
    assert report.referenced_images(text) == []
    # The config travels with the report, as JSON.
    config_json = text.split("## Config")[1].split("```json")[1].split("```")[0]
    assert json.loads(config_json)["data"]["image_size"] == 32
    page = (tmp_path / "report.html").read_text()
    assert "<title>xraygan_jax pipeline report</title>" in page and "<table>" in page


def test_the_html_inlines_each_linked_png_and_leaves_a_missing_one_linked(tmp_path):
    grid = viz.save_image_grid(np.zeros((1, 4, 4, 1), np.uint8), tmp_path / "gan" / "grid.png")
    text = "![a grid](gan/grid.png)\n\n![gone](gan/missing.png)\n"
    assert report.referenced_images(text) == ["gan/grid.png", "gan/missing.png"]
    page = report.build_html(text, tmp_path)
    encoded = base64.b64encode((tmp_path / "gan" / "grid.png").read_bytes()).decode("ascii")
    assert grid.endswith("grid.png") and f'src="data:image/png;base64,{encoded}"' in page
    assert 'src="gan/missing.png"' in page
