"""End-to-end GAN training on the tiny test config: artifacts, exact resume, crashes, bad input."""

import json
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import run_launcher
from PIL import Image

from experiments.configs import test as test_config
from xraygan_jax import errors, runs
from xraygan_jax.data import folders
from xraygan_jax.train import checkpointing, gan_loop, reporting, sharding


def _config(tmp_path_factory, **train):
    config = test_config.get_config()
    config.data.data_dir = str(tmp_path_factory.getbasetemp() / "tfds")
    for key, value in train.items():
        config.train[key] = value
    return config


def _final_params(workdir, name):
    run = runs.Run(workdir)
    abstract, _ = gan_loop.abstract_state(run.load_config(), 2, sharding.make_mesh())
    checkpoints = run.checkpointer(name)
    state = checkpoints.restore(checkpoints.latest_epoch(), abstract)
    checkpoints.close()
    return jax.device_get({"g": state.g_params, "d": state.d_params, "opt": state.d_opt_state})


def _epochs(workdir, name):
    return runs.Run(workdir).checkpoint_epochs(name)


@pytest.fixture(scope="module")
def per_class_run(tmp_path_factory):
    config = _config(tmp_path_factory)
    workdir = tmp_path_factory.mktemp("per_class")
    results = gan_loop.train_and_evaluate(config, workdir)
    return config, workdir, results


def test_per_class_run_leaves_every_artifact(per_class_run):
    config, workdir, results = per_class_run
    assert sorted(results) == ["NORMAL", "PNEUMONIA"]
    for name, result in results.items():
        assert _epochs(workdir, name) == [1, 2]
        assert (workdir / "samples" / name / "epoch_0001.png").exists()
        grid = Image.open(workdir / "samples" / name / "epoch_0002.png")
        assert grid.size[0] > config.data.image_size
        assert pathlib.Path(result.loss_plot).exists()
        history = reporting.read_metrics(workdir / "metrics.jsonl", gan=name)
        assert len(history) == result.steps > 0
        assert all(np.isfinite(r["loss/d"]) and np.isfinite(r["loss/g"]) for r in history)
        assert 0.0 <= history[-1]["d/real_prob"] <= 1.0
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["ngf"] == config.model.ngf
    summary = (workdir / "summary.md").read_text()
    assert "NORMAL" in summary and "plots/losses_PNEUMONIA.png" in summary


def test_per_class_gans_have_different_parameters(per_class_run):
    _, workdir, _ = per_class_run
    normal = _final_params(workdir, "NORMAL")["g"]
    pneumonia = _final_params(workdir, "PNEUMONIA")["g"]
    differences = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), normal, pneumonia)
    assert max(jax.tree.leaves(differences)) > 0


def test_generate_writes_png_folders(per_class_run, tmp_path):
    _, workdir, _ = per_class_run
    images, epochs = runs.Run(workdir).generate_per_class(5, seed=1)
    assert epochs == {"NORMAL": 2, "PNEUMONIA": 2}
    assert images["NORMAL"].shape == (5, 32, 32, 1) and images["NORMAL"].dtype == np.uint8
    counts = folders.write_image_folder(images, tmp_path / "out")
    assert counts == {"NORMAL": 5, "PNEUMONIA": 5}
    png = Image.open(tmp_path / "out" / "PNEUMONIA" / "PNEUMONIA_00004.png")
    assert png.mode == "L" and png.size == (32, 32)
    np.testing.assert_array_equal(np.asarray(png), images["PNEUMONIA"][4, ..., 0])


def test_stop_and_resume_is_exact(tmp_path_factory):
    straight = tmp_path_factory.mktemp("straight")
    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False), straight)

    resumed = tmp_path_factory.mktemp("resumed")
    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False, num_epochs=1), resumed)
    assert _epochs(resumed, "conditional") == [1]
    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False), resumed)
    assert _epochs(resumed, "conditional") == [1, 2]

    expected = _final_params(straight, "conditional")
    actual = _final_params(resumed, "conditional")
    jax.tree.map(np.testing.assert_array_equal, expected, actual)


def test_killed_while_saving_keeps_the_previous_checkpoint(tmp_path_factory, monkeypatch):
    workdir = tmp_path_factory.mktemp("killed")
    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False, num_epochs=1), workdir)
    checkpoints = workdir / "checkpoints" / "conditional"
    saved = {path.name for path in checkpoints.iterdir()}
    save_json = ocp.handlers.JsonCheckpointHandler.async_save

    async def killed(self, *args, **kwargs):
        await save_json(self, *args, **kwargs)
        raise KeyboardInterrupt("killed while saving")

    # Epoch 2's metadata is written, then the process dies before orbax completes the checkpoint.
    with monkeypatch.context() as patch:
        patch.setattr(ocp.handlers.JsonCheckpointHandler, "async_save", killed)
        with pytest.raises(KeyboardInterrupt):
            gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False), workdir)
    # The half-written checkpoint is on disk, but not counted.
    assert {path.name for path in checkpoints.iterdir()} - saved
    assert _epochs(workdir, "conditional") == [1]

    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False), workdir)
    assert _epochs(workdir, "conditional") == [1, 2]


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("nan")
    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False, num_epochs=1), workdir)
    good = _final_params(workdir, "conditional")

    config = _config(tmp_path_factory, per_class=False)
    config.optim.d_lr = float("nan")
    message = r"non-finite loss/[dg]=nan at step \d+ \(epoch 2\)"
    with pytest.raises(FloatingPointError, match=message):
        gan_loop.train_and_evaluate(config, workdir)
    assert _epochs(workdir, "conditional") == [1]
    jax.tree.map(np.testing.assert_array_equal, good, _final_params(workdir, "conditional"))


def test_checkpoint_of_another_architecture_is_named_and_kept(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("arch")
    gan_loop.train_and_evaluate(_config(tmp_path_factory, per_class=False, num_epochs=1), workdir)
    config = _config(tmp_path_factory, per_class=False)
    config.model.ngf = 16
    with pytest.raises(
        ValueError, match=r"different architecture[\s\S]*model\.ngf: checkpoint 8, config 16"
    ):
        gan_loop.train_and_evaluate(config, workdir)
    assert _epochs(workdir, "conditional") == [1]


def test_check_compatible_names_changed_parameter_shapes(tmp_path):
    saved = {
        "model": {"kind": "dcgan"},
        "image_size": 32,
        "num_classes": 2,
        "param_shapes": {"['g']['Dense_0']['kernel']": [8, 16]},
    }
    current = dict(saved, param_shapes={"['g']['Dense_0']['kernel']": [8, 32]})
    with pytest.raises(
        ValueError, match=r"param \['g'\]\['Dense_0'\]\['kernel'\]: checkpoint \[8, 16\]"
    ):
        checkpointing.check_compatible(saved, current, tmp_path)
    checkpointing.check_compatible(saved, saved, tmp_path)


def _launch(*args, env=None):
    return run_launcher("experiments.train_gan", *args, env=env)


def test_launcher_rejects_an_unknown_config_key(tmp_path):
    result = _launch(
        "--config=experiments/configs/test.py",
        "--config.train.bogus_key=1",
        f"--workdir={tmp_path}",
    )
    assert result.returncode != 0
    assert "bogus_key" in result.stderr


def test_launcher_rejects_a_batch_that_does_not_divide_over_devices(tmp_path):
    result = _launch(
        "--config=experiments/configs/test.py",
        "--config.train.batch_size=6",
        f"--workdir={tmp_path}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode != 0
    assert "batch_size 6 does not divide over 4 devices" in result.stderr


def test_generate_launcher_writes_the_asked_number_per_class(per_class_run, tmp_path):
    _, workdir, _ = per_class_run
    result = run_launcher(
        "experiments.generate",
        f"--workdir={workdir}",
        "--num_per_class=3",
        "--epoch=1",
        f"--out={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    assert "NORMAL: 3 images from checkpoint epoch 1" in result.stdout
    for name in ("NORMAL", "PNEUMONIA"):
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == [
            f"{name}_0000{i}.png" for i in range(3)
        ]


def test_generate_names_the_saved_epochs_when_asked_for_another(per_class_run):
    _, workdir, _ = per_class_run
    with pytest.raises(
        errors.MissingError, match=r"no checkpoint of epoch 7 .* saved epochs: \[1, 2\]"
    ):
        runs.Run(workdir).restore_generator("NORMAL", 7)
