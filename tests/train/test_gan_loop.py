"""End-to-end GAN training on the tiny test config: artifacts, exact resume, crashes, bad input.

The conditional runs start from, or compare with, the session's shared `conditional_run`
(conftest.py); the runs that train are marked slow.
"""

import errno
import io
import json
import pathlib
import re
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import REPO_ROOT, grid_tiles, read_events, read_grid_png, run_launcher
from PIL import Image

from experiments.configs import test as test_config
from xraygan_jax import errors, gan_loop, runs
from xraygan_jax.data import folders
from xraygan_jax.train import checkpointing, reporting, setup, sharding, tensorboard_events


def _config(data_dir, **train):
    config = test_config.get_config()
    config.data.data_dir = data_dir
    for key, value in train.items():
        config.train[key] = value
    return config


def _final_params(workdir, name):
    run = runs.Run(workdir)
    abstract, _ = setup.abstract_state(run.load_config(), 2, sharding.make_mesh())
    checkpoints = run.checkpointer(name)
    state = checkpoints.restore(checkpoints.latest_epoch(), abstract)
    checkpoints.close()
    return jax.device_get({"g": state.g_params, "d": state.d_params, "opt": state.d_opt_state})


def _epochs(workdir, name):
    return runs.Run(workdir).checkpoint_epochs(name)


def _assert_events_show_metrics_once(workdir, name):
    """TensorBoard shows every scalar of GAN `name`'s metrics.jsonl records, each step once.

    Returns the events read (TensorBoard stores scalars as float32).
    """
    events = read_events(runs.Run(workdir).tensorboard_dir / name)
    history = reporting.read_metrics(workdir / "metrics.jsonl", gan=name)
    keys = {
        key
        for record in history
        for key, value in record.items()
        if key not in ("gan", "step") and isinstance(value, int | float)
    }
    assert {"epoch", "kimg", "loss/d", "loss/g", "d/real_prob", "images_per_s"} <= keys
    assert keys <= set(events.Tags()["scalars"])
    for key in keys:
        expected = [(r["step"], np.float32(r[key])) for r in history if r.get(key) is not None]
        assert [(e.step, np.float32(e.value)) for e in events.Scalars(key)] == expected, key
    return events


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, data_dir):
    """The shared run's conditional GAN trained 1 epoch, stopped, then resumed to epoch 2, in a
    folder where `tensorboard` is a file, not a folder.

    Returns (workdir, the warnings of each of the two attempts). Compared with the shared run,
    which wrote its events: a TensorBoard folder that cannot be written must not change the
    training, and neither may the stop.
    """
    workdir = tmp_path_factory.mktemp("resumed")
    (workdir / "tensorboard").write_text("not a folder")
    attempts = []
    for num_epochs in (1, 2):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            gan_loop.train_and_evaluate(
                _config(data_dir, per_class=False, num_epochs=num_epochs), workdir
            )
        attempts.append(warned)
        assert _epochs(workdir, "conditional") == list(range(1, num_epochs + 1))
    return workdir, attempts


@pytest.fixture(scope="module")
def per_class_run(tmp_path_factory, data_dir):
    config = _config(data_dir)
    workdir = tmp_path_factory.mktemp("per_class")
    results = gan_loop.train_and_evaluate(config, workdir)
    return config, workdir, results


@pytest.mark.slow
def test_per_class_run_leaves_every_artifact(per_class_run):
    config, workdir, results = per_class_run
    assert sorted(results) == ["NORMAL", "PNEUMONIA"]
    # The test config's 4 grid images: 2 x 2 tiles with 2-pixel black borders.
    side = 2 * (config.data.image_size + 2) + 2
    tiles = {}
    for name, result in results.items():
        assert _epochs(workdir, name) == [1, 2]
        for epoch in (1, 2):
            grid = read_grid_png(workdir / "samples" / name / f"epoch_000{epoch}.png", side)
            tiles[name, epoch] = grid_tiles(grid, config.data.image_size)
            assert len(tiles[name, epoch]) == 4
        # Four latents, four different images; training changed them.
        first, *others = tiles[name, 2]
        assert all(not np.array_equal(first, other) for other in others)
        assert not np.array_equal(tiles[name, 1][0], first)
        assert pathlib.Path(result.loss_plot).exists()
        history = reporting.read_metrics(workdir / "metrics.jsonl", gan=name)
        assert len(history) == result.steps > 0
        assert all(np.isfinite(r["loss/d"]) and np.isfinite(r["loss/g"]) for r in history)
    # Each class's grid is its own GAN's: the same latents draw other images.
    assert not np.array_equal(tiles["NORMAL", 2][0], tiles["PNEUMONIA", 2][0])
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["ngf"] == config.model.ngf
    summary = (workdir / "summary.md").read_text()
    assert "NORMAL" in summary and "plots/losses_PNEUMONIA.png" in summary


@pytest.mark.slow
def test_tensorboard_events_hold_every_logged_scalar_and_each_sample_grid(per_class_run):
    config, workdir, results = per_class_run
    assert sorted(p.name for p in (workdir / "tensorboard").iterdir()) == ["NORMAL", "PNEUMONIA"]
    # The test config's 4 grid images: 2 x 2 tiles with 2-pixel black borders.
    side = 2 * (config.data.image_size + 2) + 2
    for name in results:
        events = _assert_events_show_metrics_once(workdir, name)
        history = reporting.read_metrics(workdir / "metrics.jsonl", gan=name)
        last_steps = [max(r["step"] for r in history if r["epoch"] == e) for e in (1, 2)]
        grids = events.Images(f"samples/{name}")
        assert [grid.step for grid in grids] == last_steps  # a grid per epoch, as samples/
        for epoch, grid in enumerate(grids, start=1):
            assert (grid.width, grid.height) == (side, side)
            pixels = np.asarray(Image.open(io.BytesIO(grid.encoded_image_string)))
            assert pixels.shape == (side, side, 3)
            assert (pixels[..., 0] == pixels[..., 1]).all() and (
                pixels[..., 1] == pixels[..., 2]
            ).all()
            assert len(grid_tiles(pixels, config.data.image_size)) == 4  # black borders
            # The tiles of the epoch's PNG in samples/, without its title (the PNG's gray colour
            # map may round a level by one).
            png = read_grid_png(workdir / "samples" / name / f"epoch_000{epoch}.png", side)
            np.testing.assert_allclose(pixels[..., :1], png.astype(int), rtol=0, atol=1)


def test_a_resumed_gan_hides_the_events_its_stopped_attempt_logged_after_the_checkpoint(tmp_path):
    first = tensorboard_events.EventWriter(tmp_path)
    first.start("A", 0)
    for step in range(1, 7):
        first.scalars("A", step, {"loss/d": step, "note": "not a number", "ema": True})
    first.image("A", 6, "samples/X", np.zeros((6, 6, 1), np.uint8))
    first.close()
    resumed = tensorboard_events.EventWriter(tmp_path)
    resumed.start("A", 3)  # The checkpoint of step 3: steps 4 to 6 are trained again.
    for step in range(4, 8):
        resumed.scalars("A", step, {"loss/d": 10 * step})
    resumed.close()
    assert len(list((tmp_path / "A").iterdir())) == 2  # Nothing rewritten: TensorBoard purges.
    events = read_events(tmp_path / "A")
    assert events.Tags()["scalars"] == ["loss/d"]
    assert [(e.step, e.value) for e in events.Scalars("loss/d")] == [
        (1, 1), (2, 2), (3, 3), (4, 40), (5, 50), (6, 60), (7, 70)
    ]  # fmt: skip
    assert events.Images("samples/X") == []


@pytest.mark.slow
def test_an_unwritable_tensorboard_folder_warns_once_and_training_goes_on(resumed_run):
    workdir, attempts = resumed_run
    for warned in attempts:  # once per attempt, however many steps it logs
        messages = [
            str(w.message) for w in warned if w.category is tensorboard_events.TensorBoardWarning
        ]
        assert len(messages) == 1, messages
        assert re.fullmatch(
            r"TensorBoard events are off for the rest of this run: \[Errno 20\] Not a directory: "
            r"'\S+/tensorboard/conditional'\. metrics\.jsonl and eval\.jsonl still get every "
            r"value; make \S+/tensorboard a writable folder, or set "
            r"--config\.train\.tensorboard=false\.",
            messages[0],
        ), messages[0]
    history = reporting.read_metrics(workdir / "metrics.jsonl", gan="conditional")
    assert [r["step"] for r in history] == list(range(1, 13))  # 2 epochs of 6 steps
    assert _epochs(workdir, "conditional") == [1, 2]
    assert (workdir / "tensorboard").read_text() == "not a folder"


def test_a_failed_event_write_warns_once_and_never_blocks(tmp_path, monkeypatch):
    events = tensorboard_events.EventWriter(tmp_path)
    events.start("A", 0)
    events.start("B", 0)

    def full_disk(self, event):
        raise OSError(errno.ENOSPC, "No space left on device")

    writer_class = tensorboard_events.import_tensorboardx().EventsWriter
    monkeypatch.setattr(writer_class, "write_event", full_disk)
    with pytest.warns(tensorboard_events.TensorBoardWarning) as warned:
        for step in range(1, 50):  # More than any queue would hold.
            events.scalars("A", step, {"loss/d": 1.0})
            events.scalars("B", step, {"loss/d": 1.0})
        events.flush()
        events.close()
    assert [str(w.message).split(". ")[0] for w in warned] == [
        "TensorBoard events are off for the rest of this run: [Errno 28] No space left on device"
    ]
    assert not events.active


@pytest.mark.slow
def test_per_class_gans_have_different_parameters(per_class_run):
    _, workdir, _ = per_class_run
    normal = _final_params(workdir, "NORMAL")["g"]
    pneumonia = _final_params(workdir, "PNEUMONIA")["g"]
    differences = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), normal, pneumonia)
    assert max(jax.tree.leaves(differences)) > 0


@pytest.mark.slow
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


@pytest.mark.slow
def test_stop_and_resume_is_exact(resumed_run, conditional_run):
    resumed, _ = resumed_run  # Trained without TensorBoard events (they cannot be written).
    # The shared run trained the same GAN straight through, writing its events.
    expected = _final_params(conditional_run.workdir, "conditional")
    actual = _final_params(resumed, "conditional")
    jax.tree.map(np.testing.assert_array_equal, expected, actual)


@pytest.mark.slow
def test_killed_while_saving_keeps_the_previous_checkpoint(
    copy_of_conditional_run, data_dir, monkeypatch
):
    # Stopped after epoch 1: its records and events of epoch 2 stay, as a killed run's would.
    workdir = copy_of_conditional_run("killed", keep_epochs=1)
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
            gan_loop.train_and_evaluate(_config(data_dir, per_class=False), workdir)
    # The half-written checkpoint is on disk, but not counted.
    assert {path.name for path in checkpoints.iterdir()} - saved
    assert _epochs(workdir, "conditional") == [1]

    gan_loop.train_and_evaluate(_config(data_dir, per_class=False), workdir)
    assert _epochs(workdir, "conditional") == [1, 2]
    # Three attempts logged epoch 2's steps (the shared run, the killed one, this one);
    # TensorBoard shows each once.
    _assert_events_show_metrics_once(workdir, "conditional")


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    copy_of_conditional_run, data_dir
):
    workdir = copy_of_conditional_run("nan", keep_epochs=1)
    good = _final_params(workdir, "conditional")

    config = _config(data_dir, per_class=False)
    config.optim.d_lr = float("nan")
    message = r"non-finite loss/[dg]=nan at step \d+ \(epoch 2\)"
    with pytest.raises(errors.TrainingDivergedError, match=message):
        gan_loop.train_and_evaluate(config, workdir)
    assert _epochs(workdir, "conditional") == [1]
    jax.tree.map(np.testing.assert_array_equal, good, _final_params(workdir, "conditional"))


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_named_and_kept(copy_of_conditional_run, data_dir):
    workdir = copy_of_conditional_run("arch", keep_epochs=1)
    config = _config(data_dir, per_class=False)
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


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_launcher_rejects_an_unknown_config_key(tmp_path):
    result = _launch(
        "--config=experiments/configs/test.py",
        "--config.train.bogus_key=1",
        f"--workdir={tmp_path}",
    )
    assert result.returncode != 0
    assert "bogus_key" in result.stderr


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_launcher_rejects_a_batch_that_does_not_divide_over_devices(tmp_path):
    result = _launch(
        "--config=experiments/configs/test.py",
        "--config.train.batch_size=6",
        f"--workdir={tmp_path}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--config.train.batch_size: batch_size 6 does not divide over 4 devices" in (
        result.stderr
    )


@pytest.mark.slow
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


@pytest.mark.slow
def test_generate_names_the_saved_epochs_when_asked_for_another(per_class_run):
    _, workdir, _ = per_class_run
    with pytest.raises(
        errors.MissingError, match=r"no checkpoint of epoch 7 .* saved epochs: \[1, 2\]"
    ):
        runs.Run(workdir).restore_generator("NORMAL", 7)


@pytest.mark.slow  # 7-22 s of compilation: the fast tier's heaviest
def test_per_class_gans_start_from_different_weights():
    config = test_config.get_config()
    _, init = setup.abstract_state(config, 2, sharding.make_mesh())
    first = init(runs.gan_key(config, runs.INIT_STREAM, 0))
    second = init(runs.gan_key(config, runs.INIT_STREAM, 1))
    for a, b in zip(jax.tree.leaves(first.g_params), jax.tree.leaves(second.g_params), strict=True):
        if a.size > 1 and float(np.std(a)) > 0:
            assert not np.array_equal(a, b)
    steps_0 = runs.gan_key(config, runs.STEP_STREAM, 0)
    steps_1 = runs.gan_key(config, runs.STEP_STREAM, 1)
    assert not np.array_equal(jax.random.key_data(steps_0), jax.random.key_data(steps_1))


@pytest.mark.slow
def test_sampling_reads_no_optimiser_state(per_class_run, tmp_path):
    _, workdir, _ = per_class_run
    # A copy of the run whose config names another optimiser: the optimiser state on disk no
    # longer matches what the config would build, and sampling must not care.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    saved = json.loads((copy / "config.json").read_text())
    saved["optim"]["name"] = "sgd"
    (copy / "config.json").write_text(json.dumps(saved))
    generator, epoch = runs.Run(copy).restore_generator("NORMAL")
    expected, _ = runs.Run(workdir).restore_generator("NORMAL")
    assert epoch == 2
    jax.tree.map(np.testing.assert_array_equal, generator.params, expected.params)
    with pytest.raises((ValueError, KeyError, TypeError)):  # the full state no longer restores
        _final_params(copy, "NORMAL")


def test_truncate_records_drops_what_a_resume_repeats(tmp_path):
    run = runs.Run(tmp_path)
    lines = [{"gan": "A", "step": s, "epoch": (s + 1) // 2} for s in range(1, 7)]
    lines += [{"gan": "B", "step": s, "epoch": s} for s in range(1, 3)]
    run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"gan": "A", "st')
    run.eval_path.write_text(
        "".join(json.dumps({"gan": "A", "epoch": e, "class": "X"}) + "\n" for e in (1, 2, 3))
    )
    run.truncate_records({"A": (2, 4), "B": (0, 0)})
    kept = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [(r["gan"], r["step"]) for r in kept] == [("A", 1), ("A", 2), ("A", 3), ("A", 4)]
    assert [json.loads(x)["epoch"] for x in run.eval_path.read_text().splitlines()] == [1, 2]


@pytest.mark.slow
def test_a_killed_run_resumes_with_each_record_once(tmp_path):
    """SIGKILL a real training process after it logged steps past its last checkpoint."""
    import signal
    import subprocess
    import sys
    import time

    workdir = tmp_path / "run"
    args = [
        "--config=experiments/configs/test.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        "--config.train.per_class=false",
        "--config.train.num_epochs=6",
        "--config.train.checkpoint_every_epochs=2",
        "--config.train.sample_every_epochs=6",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "experiments.train_gan", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = workdir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    try:
        # Wait for a record of epoch 3: after the epoch-2 checkpoint, before the epoch-4 one.
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and '"epoch": 3' in metrics.read_text():
                break
            time.sleep(0.05)
        assert process.poll() is None, "training ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert _epochs(workdir, "conditional") in ([2], [2, 4])
    result = run_launcher("experiments.train_gan", *args)
    assert result.returncode == 0, result.stderr
    steps = [r["step"] for r in reporting._iter_records(metrics)]
    assert steps == list(range(1, len(steps) + 1)), steps  # once each, none missing
    # The killed attempt's event file may end in a cut record; TensorBoard still shows each
    # step once, as metrics.jsonl has it.
    _assert_events_show_metrics_once(workdir, "conditional")


@pytest.mark.slow
def test_too_few_images_for_a_full_batch_still_train_with_the_partial_batch(
    tmp_path_factory, data_dir
):
    config = _config(data_dir, per_class=False, num_epochs=1, batch_size=64, tensorboard=False)
    config.data.phantom.num_train = 12
    workdir = tmp_path_factory.mktemp("partial")
    results = gan_loop.train_and_evaluate(config, workdir)
    assert results["conditional"].steps == 1  # one partial batch of 12 images per epoch
    assert not (workdir / "tensorboard").exists()  # train.tensorboard=False: no events
    config.train.drop_remainder = True
    with pytest.raises(
        errors.DataError,
        match=r"has 12 image\(s\), fewer than one batch of 64; lower --config.train.batch_size "
        r"or set --config.train.drop_remainder=false",
    ):
        gan_loop.train_and_evaluate(config, tmp_path_factory.mktemp("dropped"))


@pytest.mark.slow
def test_an_unsupported_image_size_fails_before_the_workdir_is_written(tmp_path):
    workdir = tmp_path / "run"
    result = _launch(
        "--config=experiments/configs/test.py",
        "--config.data.image_size=63",
        f"--workdir={workdir}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert "63" in line and "--config.data.image_size" in line
    assert not (workdir / "config.json").exists()
    # --verbosity=1 shows the traceback.
    verbose = _launch(
        "--config=experiments/configs/test.py",
        "--config.data.image_size=63",
        f"--workdir={workdir}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
        "--verbosity=1",
    )
    assert "Traceback" in verbose.stderr


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_generate_launcher_without_a_run_prints_one_line(tmp_path):
    result = run_launcher("experiments.generate", f"--workdir={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not a training run directory" in result.stderr


def test_unknown_loss_or_augmentation_is_refused_before_training(data_dir):
    config = _config(data_dir)
    config.train.loss = "wgan"
    with pytest.raises(errors.ConfigError, match=r"'wgan' does not exist; use one of: bce"):
        gan_loop.validate(config)
    config.train.loss = "hinge"
    config.train.diffaugment = "color,flip"
    with pytest.raises(errors.ConfigError, match=r"'flip' does not exist; valid: color"):
        gan_loop.validate(config)


@pytest.mark.slow  # reads the session's trained run (about 100 s to train once)
def test_every_file_of_the_run_is_where_its_run_says(conditional_run):
    run = runs.Run(conditional_run.workdir)
    (gan_name,) = [name for name, _ in run.gan_names()]
    assert run.loss_plots() == [run.loss_plot_path(gan_name)]
    for class_name in run.class_names:
        expected = [run.sample_grid_path(class_name, epoch) for epoch in (1, 2)]
        assert run.sample_grids(class_name) == expected
    assert run.summary_path.is_file() and run.eval_path.is_file() and run.metrics_path.is_file()
    written = {
        path.relative_to(run.workdir).as_posix()
        for path in run.workdir.rglob("*")
        if path.is_file() and "checkpoints" not in path.parts and "tensorboard" not in path.parts
    }
    named = {
        path.relative_to(run.workdir).as_posix()
        for path in [
            run.config_path,
            run.metrics_path,
            run.eval_path,
            run.summary_path,
            *run.loss_plots(),
            *(grid for name in run.class_names for grid in run.sample_grids(name)),
        ]
    }
    assert written == named
