"""The GAN training loop: `train_and_evaluate(config, workdir)`.

An orchestrator, beside the study and the report: it drives `train/` (states built by
`train.setup`, the pure steps, checkpoints), writes the run folder through `runs` and scores
checkpoints with `evaluators`, so it sits above all three (the import contracts in pyproject.toml).
It is handed the evaluators of `config.evals` (`evaluators.from_config`) and runs each one due
after an epoch on a sampler of the GAN being trained; it names no evaluator itself.

What a run leaves in `workdir` is described in `xraygan_jax.runs` (the one module that knows
the layout): config.json, checkpoints/<gan>/<epoch>/, samples/<class>/epoch_XXXX.png,
plots/losses_<gan>.png, metrics.jsonl, eval.jsonl, summary.md, and tensorboard/<gan>/: the
scalars of metrics.jsonl and eval.jsonl and the sample grids as TensorBoard events, when
tensorboardX is installed and `config.train.tensorboard` is on (`train.tensorboard_events`).

The step runs under `jax.jit` on a 1-D ("data",) mesh over every device of every process, state
replicated and batch split. Resume is exact: the checkpoint holds the state (step, optimiser
states included) and the data position, and the per-step key is `fold_in(key, step)`: a stopped
and resumed run ends with the same parameters as one that was not, and the records of steps
logged after the last checkpoint are dropped before they are run again (in TensorBoard, hidden by
the new event file each resumed GAN starts).

Several processes (`experiments.train_gan --distributed`) train exactly as one process with as
many devices: each process reads its block of every global batch (`data.pipeline`), so the
global batches, and with them the parameters, do not depend on the process count. The data
position is saved globally, as the number of global batches consumed (`data_position` in the
checkpoint's meta), so a run saved by N processes resumes on M. Only process 0 writes the run's
files (config, metrics, samples, plots, summary, TensorBoard events); orbax writes each
checkpoint jointly.

The config is validated (model and image size, batch against devices and data, eval settings)
before anything is written into the workdir.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pathlib
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import compiler, errors, evaluators, runs, viz
from xraygan_jax.data import pipeline, sources
from xraygan_jax.evaluators import records
from xraygan_jax.train import (
    checkpointing,
    multihost,
    reporting,
    sampling,
    setup,
    sharding,
    steps,
    tensorboard_events,
)

JOINT_GAN_NAME = runs.JOINT_GAN_NAME


@dataclasses.dataclass
class GANResult:
    """What training one GAN produced."""

    name: str
    epochs: int
    steps: int
    kimg: float  # thousands of images shown, over all processes
    seconds: float
    images_per_second: float | None
    checkpoint_dir: str
    final_metrics: dict[str, float]
    sample_grids: list[str]
    loss_plot: str | None


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What validation found out about a config before anything is written."""

    class_names: tuple[str, ...]
    mesh: jax.sharding.Mesh
    train_source: object
    examples: dict[str, int]  # per GAN, examples per epoch over all processes


def validate(config: ml_collections.ConfigDict) -> _Plan:
    """Checks a training config against the devices and the data; nothing is written.

    Raises:
      errors.ConfigError: a model, image size, step option, batch size, epoch count or eval
        setting that cannot work, alone or with another (the message names the `--config.`
        flags: `setup.check_gan_config` for the model and step options); processes of one run
        started with different configs (names the fields).
      errors.DataError: a class with fewer images than one batch (names the count and the flags).
    """
    multihost.check_same_config(config)
    setup.check_gan_config(config)
    if float(config.train.get("num_images", 0)) < 0:
        raise errors.ConfigError(
            f"--config.train.num_images={config.train.num_images} must be >= 0 (thousands of "
            "images shown; 0 = use --config.train.num_epochs)."
        )
    try:
        class_names = sources.class_names(config.data)
    except errors.UserError:
        raise
    except ValueError as error:
        raise errors.ConfigError(str(error)) from error
    for key in ("num_epochs", "checkpoint_every_epochs", "sample_every_epochs"):
        if int(config.train[key]) < 1:
            raise errors.ConfigError(
                f"--config.train.{key}={config.train[key]} must be at least 1."
            )
    mesh = sharding.make_mesh()
    try:
        sharding.check_batch_divisible(config.train.batch_size, mesh.size)
    except ValueError as error:
        processes = jax.process_count()
        where = (
            f" ({processes} processes x {jax.local_device_count()} devices each)"
            if processes > 1
            else ""
        )
        raise errors.ConfigError(f"--config.train.batch_size: {error}{where}") from error
    evaluators.check_config(config)
    try:
        # Process 0 builds the data set first, so processes sharing a disk never write it at once.
        train_source = multihost.in_process_order(lambda: sources.get_source(config.data, "train"))
    except ValueError as error:
        raise errors.DataError(str(error)) from error
    examples = {}
    batch = config.train.batch_size
    for name, label in runs.gan_names(config):
        count = (
            len(pipeline.class_indices(train_source, label))
            if label is not None
            else len(train_source)
        )
        examples[name] = count
        usable = count - count % mesh.size
        if usable == 0 or (_drop_remainder(config) and count < batch):
            raise errors.DataError(
                f"{name}: the train split has {count} image(s), fewer than one batch of {batch}"
                + (
                    "; lower --config.train.batch_size or set --config.train.drop_remainder=false."
                    if usable
                    else f" and fewer than the {mesh.size} devices; add images."
                )
            )
    return _Plan(class_names, mesh, train_source, examples)


def num_epochs_for(config: ml_collections.ConfigDict, images_per_epoch: int) -> int:
    """Epochs a GAN trains for: config.train.num_epochs, or the image budget in whole epochs.

    With config.train.num_images = N > 0 (thousands of images shown, StyleGAN's kimg), the run
    trains ceil(1000 N / images_per_epoch) epochs, so GANs on sets of different sizes see the same
    number of images (rounded up to whole epochs: checkpoints, grids and FID stay per epoch).

    Args:
      config: the job config.
      images_per_epoch: images one epoch of this GAN shows, over all processes.
    """
    budget = float(config.train.get("num_images", 0))
    if budget > 0:
        return max(1, math.ceil(budget * 1000 / images_per_epoch))
    return int(config.train.num_epochs)


def _drop_remainder(config: ml_collections.ConfigDict) -> bool:
    """Whether each epoch's last partial batch is dropped.

    False (the seed's PyTorch DataLoader default) keeps it, trimmed to a multiple of the global
    device count, so that it splits over the devices and equally over the processes.
    """
    return bool(config.train.get("drop_remainder", False))


class _Compiled:
    """The jitted functions of a run, shared by all its GANs (one compilation per run)."""

    def __init__(self, config: ml_collections.ConfigDict, num_classes: int, mesh):
        self.abstract_state, self.init = setup.abstract_state(config, num_classes, mesh)
        replicated = sharding.replicated(mesh)
        self.options = steps.StepOptions.from_config(config.train)
        self._shardings = dict(
            in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
            out_shardings=(replicated, replicated),
        )
        self._train_steps = {}

    def train_step(self, state, batch, key, step: int):
        """The jitted `gan_train_step` for step number `step` (lazy R1's turn on the host).

        One compilation per distinct `options.at_step(step)`: two with lazy R1, else one.
        """
        options = self.options.at_step(step)
        if options not in self._train_steps:
            # YNNPACK's reduce fusions take BatchNorm's statistics out of XLA's slow CPU loops:
            # 1.2-1.4x the GAN step (docs/performance.md, "GAN step").
            self._train_steps[options] = compiler.jit(
                functools.partial(steps.gan_train_step, options=options),
                donate_argnums=0,
                reduce_fusion=True,
                **self._shardings,
            )
        return self._train_steps[options](state, batch, key)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
    """Trains the GAN(s) of `config`, resuming from `workdir` when it holds checkpoints.

    Args:
      config: a job config (experiments/configs/dcgan.py and variants).
      workdir: the run directory (created if missing).

    Returns:
      {gan name: GANResult}.

    Raises:
      errors.UserError: a config or data problem, found before anything is written.
    """
    plan = validate(config)
    run = runs.Run(workdir)
    run.write_config(config)
    meta = runs.gan_meta(config)
    restored = {}
    for name, _ in runs.gan_names(config):
        epoch = run.checkpoint_epochs(name)[-1:] or [0]
        step = 0
        if epoch[0]:
            checkpoints = run.checkpointer(name)
            saved = checkpoints.read_meta(epoch[0])
            checkpoints.close()
            checkpointing.check_compatible(saved, meta, run.checkpoint_dir(name))
            step = int(saved["step"])
        restored[name] = (epoch[0], step)
    # Every process has looked for checkpoints before any creates a checkpoint folder (orbax
    # does on first use): a process that saw a folder another had just made would join the
    # others' collectives out of step.
    multihost.barrier("checkpoints found")
    # Before the metrics file is opened: a resumed GAN logs its lost steps again.
    run.truncate_records(restored)

    # Built once: every GAN of the run has the same state structure, so the per-class GANs
    # reuse one compiled step instead of compiling it again.
    compiled = _Compiled(config, len(plan.class_names), plan.mesh)
    scheduled = evaluators.from_config(config)
    results = {}
    writer = reporting.MetricsWriter(run.metrics_path)
    events = tensorboard_events.EventWriter(
        run.tensorboard_dir, enabled=bool(config.train.get("tensorboard", True))
    )
    try:
        for name, label in runs.gan_names(config):
            results[name] = _train_one_gan(
                config, run, name, label, plan, meta, writer, events, compiled, scheduled
            )
    finally:
        writer.close()
        events.close()
    if jax.process_index() == 0:
        write_summary(config, run.workdir, results)
    return results


def _train_one_gan(
    config: ml_collections.ConfigDict,
    run: runs.Run,
    name: str,
    label: int | None,
    plan: _Plan,
    meta: dict,
    writer: reporting.MetricsWriter,
    events: tensorboard_events.EventWriter,
    compiled: _Compiled,
    scheduled: Sequence[evaluators.Scheduled],
) -> GANResult:
    mesh = plan.mesh
    num_classes = len(plan.class_names)
    global_batch = config.train.batch_size
    drop_remainder = _drop_remainder(config)
    num_examples = plan.examples[name]
    # Global batches per epoch; a kept partial batch is trimmed to a multiple of the devices.
    steps_per_epoch = pipeline.steps_per_epoch(
        num_examples, global_batch, drop_remainder=drop_remainder, remainder_multiple_of=mesh.size
    )
    full_batches, remainder = divmod(num_examples, global_batch)
    images_per_epoch = full_batches * global_batch
    if not drop_remainder:
        images_per_epoch += remainder - remainder % mesh.size
    position = {"global_batch_size": global_batch, "examples_per_epoch": num_examples}

    checkpoints = run.checkpointer(name)
    start_epoch = checkpoints.latest_epoch() or 0
    start_batch = 0
    if start_epoch:
        state = checkpoints.restore(start_epoch, compiled.abstract_state)
        start_batch = _start_batch(checkpoints.read_meta(start_epoch), position, steps_per_epoch)
        logging.info("%s: resumed from epoch %d in %s", name, start_epoch, checkpoints.directory)
    else:
        state = compiled.init(runs.gan_key(config, runs.INIT_STREAM, label))
    iterator = iter(
        pipeline.make_dataset(
            plan.train_source,
            batch_size=global_batch // jax.process_count(),
            seed=config.train.seed,
            shuffle=True,
            drop_remainder=drop_remainder,
            label=label,
            remainder_multiple_of=mesh.size,
            start_batch=start_batch,
        )
    )

    train_step = compiled.train_step
    step_key = runs.gan_key(config, runs.STEP_STREAM, label)
    grid_key = jax.random.fold_in(jax.random.key(config.train.seed), runs.GRID_STREAM)
    latents = steps.sample_latents(grid_key, config.train.num_grid_images, config.model.nz)
    grid_labels = [label] if label is not None else list(range(num_classes))

    num_epochs = num_epochs_for(config, images_per_epoch)
    step = first_step = int(jax.device_get(state.step))
    events.start(name, first_step)
    progress = reporting.Progress(
        total_steps=(num_epochs - start_epoch) * steps_per_epoch,
        items_per_step=config.train.batch_size,
        name=f"[{name}]",
        every_steps=config.train.log_every_steps,
    )
    grids: list[str] = []
    last: dict[str, float] = {}
    rate = None

    def record(step_done: int, epoch: int, seen: int, metrics) -> None:
        """Reads one step's metrics: NaN check, progress line, metrics.jsonl and its events.

        `seen` counts the images this epoch has shown up to the step, over all processes.
        """
        nonlocal last, rate
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        _check_finite(last, name, step_done, epoch, checkpoints)
        extra = f" ada p {last['ada/p']:.3f}" if "ada/p" in last else ""
        if "g/mode_seeking_ratio" in last:
            extra += f" mode seeking r {last['g/mode_seeking_ratio']:.3f}"
        rate = progress.update(
            step_done - first_step,
            f"epoch {epoch}/{num_epochs} loss/d {last['loss/d']:.3f} "
            f"loss/g {last['loss/g']:.3f}{extra}",
        )
        if jax.process_index() == 0:
            kimg = ((epoch - 1) * images_per_epoch + seen) / 1000
            values = {"epoch": epoch, "kimg": kimg, **last, "images_per_s": rate}
            writer.write({"gan": name, "step": step_done, **values})
            events.scalars(name, step_done, values)

    started = time.perf_counter()
    for epoch in range(start_epoch + 1, num_epochs + 1):
        # A step's metrics are read after the next step is dispatched, so the host never waits
        # for the device between steps; every step of the epoch is read (and NaN-checked)
        # before anything is sampled or saved.
        pending = None
        seen = 0
        for _ in range(steps_per_epoch):
            batch = sharding.shard_batch(next(iterator), mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(step_key, step), step)
            step += 1
            seen += batch["label"].shape[0]  # The global batch, over all processes.
            if pending is not None:
                record(*pending)
            pending = (step, epoch, seen, metrics)
        record(*pending)
        # Events first: whatever metrics.jsonl shows of a killed run, the events hold too.
        events.flush()
        writer.flush()
        if epoch % config.train.sample_every_epochs == 0 or epoch == num_epochs:
            grids += save_sample_grids(
                sampling.GeneratorState.from_gan_state(state, use_ema=True),
                latents,
                grid_labels,
                plan.class_names,
                run,
                epoch,
                batch_stats=config.eval.get("batch_stats", "running"),
                events=events,
                gan_name=name,
                step=step,
            )
        due = [entry for entry in scheduled if entry.due(epoch, num_epochs)]
        if due:
            _evaluate_during_training(due, config, state, label, name, epoch, step, run, events)
        if epoch % config.train.checkpoint_every_epochs == 0 or epoch == num_epochs:
            data_position = {**position, "epoch": epoch, "batch": epoch * steps_per_epoch}
            checkpoints.save(
                epoch, state, {**meta, "epoch": epoch, "step": step, "data_position": data_position}
            )
    progress.finish()
    seconds = time.perf_counter() - started
    checkpoints.close()

    loss_plot = None
    if jax.process_index() == 0:
        history = reporting.read_metrics(run.metrics_path, gan=name)
        if history:
            loss_plot = viz.plot_loss_curves(
                history, run.loss_plot_path(name), title=f"G and D loss ({name})"
            )
    return GANResult(
        name=name,
        epochs=num_epochs,
        steps=step,
        kimg=num_epochs * images_per_epoch / 1000,
        seconds=seconds,
        images_per_second=rate,
        checkpoint_dir=str(checkpoints.directory),
        final_metrics=last,
        sample_grids=grids,
        loss_plot=loss_plot,
    )


def _start_batch(saved_meta: dict, position: dict, steps_per_epoch: int) -> int:
    """The global batch a resumed GAN's data continues from.

    The checkpoint's `data_position` (global batches consumed; the same for every process count)
    when it was made with this global batch size and epoch size; otherwise (a checkpoint of an
    older version, or a changed batch size or data set) the start of the next epoch as this
    config counts batches, since checkpoints are made at the end of an epoch.
    """
    saved = saved_meta.get("data_position") or {}
    if all(saved.get(key) == value for key, value in position.items()) and "batch" in saved:
        return int(saved["batch"])
    return int(saved_meta["epoch"]) * steps_per_epoch


def _evaluate_during_training(
    due: Sequence[evaluators.Scheduled],
    config,
    state,
    label,
    name,
    epoch,
    step,
    run: runs.Run,
    events: tensorboard_events.EventWriter,
) -> None:
    """Runs the evaluators due after `epoch` on samples of the GAN (its EMA generator, if any).

    Each evaluator's records (the default one's: FID/KID/precision-recall/diversity per class
    with floors) are appended to eval.jsonl and written as events `eval/<class>/<metric>` at
    `step`; a line per record and a warning per collapsed class (metrics.diversity's rule) go
    to standard error.
    """
    generator = sampling.GeneratorState.from_gan_state(state, use_ema=True)
    labels = [label] if label is not None else list(range(len(run.class_names)))
    sample_fn = sampling.make_sample_fn(
        {lab: generator for lab in labels}, batch_stats=config.eval.get("batch_stats", "running")
    )
    for entry in due:
        evaluator = entry.build(sample_fn, labels=labels, seed=config.train.seed)
        evaluated = evaluator.records(evaluator.run(), gan=name, epoch=epoch)
        if jax.process_index() != 0:
            continue
        records.write_records(run.eval_path, evaluated)
        for record in evaluated:
            prefix = f"eval/{record['class']}/"
            metrics = {k: v for k, v in record.items() if k not in ("gan", "epoch", "class")}
            events.scalars(name, step, {prefix + k: v for k, v in metrics.items()})
        events.flush()
        for record in evaluated:
            reporting.emit(f"[{name}] epoch {epoch} {records.format_record(record)}")
        records.emit_collapse_warnings(evaluated, prefix=f"[{name}] epoch {epoch} ")


def _check_finite(metrics: dict[str, float], name: str, step: int, epoch: int, checkpoints) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        latest = checkpoints.latest_epoch()
        raise errors.TrainingDivergedError(
            f"{name}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step} "
            f"(epoch {epoch}). Training stopped; the last good checkpoint is "
            f"{'epoch ' + str(latest) if latest else 'none'} in {checkpoints.directory}. "
            "Lower the learning rates (--config.optim.g_lr / d_lr) and rerun to resume from it."
        )


def save_sample_grids(
    generator: sampling.GeneratorState,
    latents,
    labels,
    class_names,
    run: runs.Run,
    epoch: int,
    *,
    batch_stats: str = "running",
    events: tensorboard_events.EventWriter | None = None,
    gan_name: str = "",
    step: int = 0,
) -> list[str]:
    """One PNG grid per class from the fixed latents; returns the paths.

    With `events`, each grid (the tiles, without the PNG's title) is also the image
    `samples/<class>` of GAN `gan_name` at training step `step`.
    """
    paths = []
    for label in labels:
        label_array = np.full((latents.shape[0],), label, np.int32)
        generate = sampling.jitted_generate(batch_stats)
        images = jax.device_get(generate(generator, latents, label_array))
        if jax.process_index() == 0:
            path = run.sample_grid_path(class_names[label], epoch)
            paths.append(
                viz.save_image_grid(
                    np.asarray(images), path, title=f"{class_names[label]}, epoch {epoch}"
                )
            )
            if events is not None:
                events.image(gan_name, step, f"samples/{class_names[label]}", viz.tile(images))
    return paths


def write_summary(config, workdir: pathlib.Path, results: dict[str, GANResult]) -> str:
    """A Markdown page linking the run's grids and curves, with the latest evaluation of each GAN
    (and a warning per collapsed class) when the run has eval.jsonl; `evaluate_gan` rewrites that
    part (evaluators.drivers.update_summary)."""
    lines = [
        "# GAN training run",
        "",
        f"- model: {config.model.kind}, image size {config.data.image_size}, nz {config.model.nz}, "
        f"ngf {config.model.ngf}, ndf {config.model.ndf}",
        f"- data: {config.data.source}; classes {', '.join(sources.class_names(config.data))}",
        f"- optimiser: {config.optim.name}, lr G {config.optim.g_lr} / D {config.optim.d_lr}; "
        f"batch {config.train.batch_size} over {jax.device_count()} device(s)",
        "",
        "| GAN | epochs | steps | kimg | time | images/s | loss/d | loss/g | D(real) | D(fake) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results.values():
        m = result.final_metrics
        lines.append(
            f"| {result.name} | {result.epochs} | {result.steps} | {result.kimg:g} | "
            f"{reporting.format_duration(result.seconds)} | "
            f"{result.images_per_second or float('nan'):.1f} | "
            f"{m.get('loss/d', float('nan')):.3f} | "
            f"{m.get('loss/g', float('nan')):.3f} | {m.get('d/real_prob', float('nan')):.3f} | "
            f"{m.get('d/fake_prob', float('nan')):.3f} |"
        )
    run = runs.Run(workdir)
    evaluation = records.summary_section(records.read_records(run.eval_path))
    if evaluation:
        lines += ["", *evaluation]
    for result in results.values():
        lines += ["", f"## {result.name}", ""]
        if result.loss_plot:
            lines.append(f"![losses]({os.path.relpath(result.loss_plot, workdir)})")
        if result.sample_grids:
            lines.append(f"![last samples]({os.path.relpath(result.sample_grids[-1], workdir)})")
    run.summary_path.write_text("\n".join(lines) + "\n")
    return str(run.summary_path)
