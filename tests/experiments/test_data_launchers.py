"""The data launchers run as a user would: python -m experiments.prepare_data / preview_data."""

import re

import pytest
from helpers import grid_tiles, read_grid_png, run_launcher, write_image
from PIL import Image

_TEST_CONFIG = "--config=experiments/configs/test.py"
# Every test starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores.
pytestmark = pytest.mark.slow


def _run(module, *args):
    return run_launcher(
        module, *args, env={"XRAYGAN_CACHE": "/nonexistent-cache-must-not-be-used"}, timeout=120
    )


def test_prepare_and_preview_kermany(kermany_tree, tmp_path):
    data = [
        _TEST_CONFIG,
        "--config.data.source=kermany",
        f"--config.data.dir={kermany_tree.root}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    ]
    result = _run("experiments.prepare_data", *data)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^split\s+NORMAL\s+PNEUMONIA\s+total$", out, re.M)
    assert re.search(r"^train\s+3\s+4\s+7$", out, re.M)
    assert re.search(r"^val\s+1\s+1\s+2$", out, re.M)
    assert re.search(r"^test\s+2\s+2\s+4$", out, re.M)
    assert "skipped files: 4" in out
    assert re.search(r"train/NORMAL/truncated\.jpeg: cannot decode: image file is truncated", out)
    assert re.search(r"train/NORMAL/empty\.jpeg: empty file \(0 bytes\)", out)
    assert re.search(r"^built in \d+\.\d\d s$", out, re.M)
    assert ".DS_Store" not in out and "__MACOSX" not in out

    result = _run(
        "experiments.preview_data",
        *data,
        "--split=train",
        "--num_per_class=4",
        f"--out={tmp_path / 'preview'}",
    )
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    expected = [
        str(tmp_path / "preview" / f"kermany_train_{c}.png") for c in ("NORMAL", "PNEUMONIA")
    ]
    assert paths == expected
    # Each class's grid shows its train images (3 NORMAL, 4 PNEUMONIA; 32 px tiles, 2 x 2),
    # which tell their class by their gray level (dark NORMAL, bright PNEUMONIA).
    for path, count, (low, high) in zip(paths, (3, 4), ((30, 100), (150, 256)), strict=True):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 256
        tiles = grid_tiles(read_grid_png(path, 2 * (32 + 2) + 2), 32)
        assert [low <= tile.mean() < high for tile in tiles] == [True] * count + [False] * (
            4 - count
        )


def test_prepare_phantom_and_class_folders_from_the_command_line(tmp_path):
    result = _run("experiments.prepare_data", _TEST_CONFIG, f"--config.data.data_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    # experiments/configs/test.py: 48 / 8 / 16 phantom images at 32 px.
    assert re.search(r"^total\s+\d+\s+\d+\s+72$", result.stdout, re.M)
    assert "cxr_phantom/32px_n48-8-16_" in result.stdout

    images = tmp_path / "covid"
    for label, name in enumerate(("COVID", "NORMAL")):
        for i in range(5):
            write_image(images / name / f"{i}.jpeg", mode="L", size=(64, 48), label=label)
    result = _run(
        "experiments.prepare_data",
        _TEST_CONFIG,
        "--config.data.source=folder",
        f"--config.data.dir={images}",
        "--config.data.class_names=COVID,NORMAL",
        f"--config.data.data_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^split\s+COVID\s+NORMAL\s+total$", result.stdout, re.M)
    assert re.search(r"^train\s+4\s+4\s+8$", result.stdout, re.M)
    assert re.search(r"^test\s+1\s+1\s+2$", result.stdout, re.M)


def test_unknown_source_fails_with_the_choices(tmp_path):
    result = _run(
        "experiments.prepare_data",
        _TEST_CONFIG,
        "--config.data.source=imagenet",
        f"--config.data.data_dir={tmp_path}",
    )
    assert result.returncode != 0
    assert "Unknown data source 'imagenet'" in result.stderr
    assert "expected one of cxr_phantom, kermany, folder" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was built


def test_data_launcher_errors_are_one_line_without_a_traceback(tmp_path):
    for module in ("experiments.prepare_data", "experiments.preview_data"):
        result = _run(
            module,
            _TEST_CONFIG,
            "--config.data.source=folder",
            f"--config.data.dir={tmp_path / 'missing'}",
            f"--config.data.data_dir={tmp_path / 'tfds'}",
            *([f"--out={tmp_path / 'out'}"] if module.endswith("preview_data") else []),
        )
        assert result.returncode == 1, module
        assert "Traceback" not in result.stderr, module
        (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
        assert "missing' does not exist. Point --config.data.dir" in line, module
