"""The GAN training loop: `train_and_evaluate(config, workdir)`.

What a run leaves in `workdir`:
  config.json                       the resolved config (evaluate_gan and generate read it)
  checkpoints/<gan>/<epoch>/        orbax checkpoints every `checkpoint_every_epochs` and at the end
  samples/<class>/epoch_XXXX.png    grids from fixed latents, every `sample_every_epochs`
  plots/losses_<gan>.png            G and D loss against step (the first report's figures 3 and 4)
  metrics.jsonl                     one record per step: losses, D probabilities, images/s
  summary.md                        what was trained, for how long, where everything is

`<gan>` is the class name in per-class mode (one GAN per class, as the first report trained) and
`conditional` in joint mode (one GAN conditioned on the label).

The step runs under `jax.jit` on a 1-D ("data",) mesh over every device of every process, state
replicated and batch split (DESIGN.md decision 3). Resume is exact: the checkpoint holds the state
(step, optimiser states included) and the data iterator's position, and the per-step key is
`fold_in(key, step)`: a stopped and resumed run ends with the same parameters as one that was not.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from xraygan_jax import compiler, viz
from xraygan_jax.data import pipeline, sources
from xraygan_jax.models import gan
from xraygan_jax.train import checkpointing, optimizers, reporting, sharding, steps
from xraygan_jax.train import state as state_lib

JOINT_GAN_NAME = "conditional"
# Keys derived from the run's seed, one stream per purpose (typed keys, DESIGN.md decision 1).
_INIT_STREAM, _STEP_STREAM, _SAMPLE_STREAM = 0, 1, 2


@dataclasses.dataclass
class GANResult:
    """What training one GAN produced."""

    name: str
    epochs: int
    steps: int
    seconds: float
    images_per_second: float | None
    checkpoint_dir: str
    final_metrics: dict[str, float]
    sample_grids: list[str]
    loss_plot: str | None


def gan_names(config: ml_collections.ConfigDict) -> list[tuple[str, int | None]]:
    """(name, label) of every GAN a config trains: one per class, or one conditional GAN."""
    if config.train.per_class:
        return [(name, label) for label, name in enumerate(sources.class_names(config.data))]
    return [(JOINT_GAN_NAME, None)]


def build_models(config: ml_collections.ConfigDict, num_classes: int):
    """The (generator, discriminator) pair of a config."""
    return gan.make_gan(config.model, image_size=config.data.image_size, num_classes=num_classes)


def make_init(config: ml_collections.ConfigDict, num_classes: int) -> functools.partial:
    """`key -> GANState` for a config: its models, optimisers, image size, nz and EMA decay.

    Example:
        state = jax.jit(gan_loop.make_init(config, num_classes=2))(jax.random.key(0))
    """
    generator, discriminator = build_models(config, num_classes)
    return functools.partial(
        state_lib.create_gan_state,
        generator,
        discriminator,
        optimizers.make_optimizer(config.optim, "g"),
        optimizers.make_optimizer(config.optim, "d"),
        image_size=config.data.image_size,
        nz=config.model.nz,
        ema_decay=config.train.ema_decay,
    )


def abstract_and_init(config: ml_collections.ConfigDict, num_classes: int, mesh: jax.sharding.Mesh):
    """Returns (abstract_state with replicated shardings, jitted init fn, its key).

    The state is built shape-first (`jax.eval_shape`), then materialised directly replicated on
    the mesh by a jitted init, never on one device first (big_vision's pattern).
    """
    init = make_init(config, num_classes)
    init_key = jax.random.fold_in(jax.random.key(config.train.seed), _INIT_STREAM)
    replicated = sharding.replicated(mesh)
    abstract = jax.eval_shape(init, init_key)
    abstract = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated), abstract
    )
    return abstract, jax.jit(init, out_shardings=replicated), init_key


def run_meta(config: ml_collections.ConfigDict, num_classes: int, abstract_state) -> dict:
    """Metadata saved with every checkpoint and compared on resume."""
    return {
        "model": config.model.to_dict(),
        "image_size": config.data.image_size,
        "num_classes": num_classes,
        "param_shapes": checkpointing.shape_summary(
            {"g": abstract_state.g_params, "d": abstract_state.d_params}
        ),
    }


def fixed_latents(config: ml_collections.ConfigDict) -> jax.Array:
    """The latents of every sample grid: the same z at every epoch, so grids compare."""
    key = jax.random.fold_in(jax.random.key(config.train.seed), _SAMPLE_STREAM)
    return steps.sample_latents(key, config.train.num_grid_images, config.model.nz)


class _Compiled:
    """The jitted functions of a run, shared by all its GANs (one compilation per run)."""

    def __init__(self, config: ml_collections.ConfigDict, num_classes: int, mesh):
        self.abstract_state, self.init, self.init_key = abstract_and_init(config, num_classes, mesh)
        replicated = sharding.replicated(mesh)
        self.train_step = compiler.jit(
            functools.partial(
                steps.gan_train_step,
                d_steps_per_g_step=config.train.d_steps_per_g_step,
                g_steps_per_d_step=config.train.g_steps_per_d_step,
            ),
            in_shardings=(replicated, sharding.batch_sharding(mesh), replicated),
            out_shardings=(replicated, replicated),
            donate_argnums=0,
        )
        self.generate = compiler.jit(steps.generate, static_argnames="use_ema")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
    """Trains the GAN(s) of `config`, resuming from `workdir` when it holds checkpoints.

    Args:
      config: a job config (experiments/configs/dcgan.py and variants).
      workdir: the run directory (created if missing).

    Returns:
      {gan name: GANResult}.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = sharding.make_mesh()
    sharding.check_batch_divisible(config.train.batch_size, mesh.size)
    class_names = sources.class_names(config.data)
    train_source = sources.get_source(config.data, "train")
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

    # Built once: every GAN of the run has the same state structure, so the per-class GANs
    # reuse one compiled step instead of compiling it again.
    compiled = _Compiled(config, len(class_names), mesh)
    results = {}
    writer = reporting.MetricsWriter(workdir / "metrics.jsonl")
    try:
        for name, label in gan_names(config):
            results[name] = _train_one_gan(
                config, workdir, name, label, class_names, train_source, mesh, writer, compiled
            )
    finally:
        writer.close()
    if jax.process_index() == 0:
        write_summary(config, workdir, results)
    return results


def _train_one_gan(
    config: ml_collections.ConfigDict,
    workdir: pathlib.Path,
    name: str,
    label: int | None,
    class_names: tuple[str, ...],
    train_source,
    mesh: jax.sharding.Mesh,
    writer: reporting.MetricsWriter,
    compiled: _Compiled,
) -> GANResult:
    num_classes = len(class_names)
    abstract, init_key = compiled.abstract_state, compiled.init_key
    meta = run_meta(config, num_classes, abstract)

    process_count = jax.process_count()
    per_process_batch = config.train.batch_size // process_count
    dataset = pipeline.make_dataset(
        train_source,
        batch_size=per_process_batch,
        seed=config.train.seed,
        shuffle=True,
        drop_remainder=True,
        label=label,
    )
    iterator = iter(dataset)
    num_examples = (
        len(pipeline.class_indices(train_source, label)) if label is not None else len(train_source)
    )
    steps_per_epoch = pipeline.steps_per_epoch(
        num_examples // process_count, per_process_batch, drop_remainder=True
    )
    if steps_per_epoch == 0:
        raise ValueError(
            f"{name}: {num_examples} training images are fewer than one batch of "
            f"{config.train.batch_size}; lower --config.train.batch_size."
        )

    checkpoints = checkpointing.Checkpointer(workdir / "checkpoints" / name)
    start_epoch = checkpoints.latest_epoch() or 0
    if start_epoch:
        checkpointing.check_compatible(
            checkpoints.read_meta(start_epoch), meta, checkpoints.directory
        )
        state = checkpoints.restore(start_epoch, abstract, iterator)
        logging.info("%s: resumed from epoch %d in %s", name, start_epoch, checkpoints.directory)
    else:
        state = compiled.init(init_key)

    train_step = compiled.train_step
    step_key = jax.random.fold_in(jax.random.key(config.train.seed), _STEP_STREAM)
    latents = fixed_latents(config)
    grid_labels = [label] if label is not None else list(range(num_classes))

    num_epochs = config.train.num_epochs
    step = first_step = int(jax.device_get(state.step))
    progress = reporting.Progress(
        total_steps=(num_epochs - start_epoch) * steps_per_epoch,
        items_per_step=config.train.batch_size,
        name=f"[{name}]",
        every_steps=config.train.log_every_steps,
    )
    grids: list[str] = []
    evaluator = None
    last: dict[str, float] = {}
    rate = None

    def record(step_done: int, epoch: int, metrics) -> None:
        """Reads one step's metrics: NaN check, progress line, metrics.jsonl."""
        nonlocal last, rate
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        _check_finite(last, name, step_done, epoch, checkpoints)
        rate = progress.update(
            step_done - first_step,
            f"epoch {epoch}/{num_epochs} loss/d {last['loss/d']:.3f} loss/g {last['loss/g']:.3f}",
        )
        if jax.process_index() == 0:
            writer.write(
                {"gan": name, "epoch": epoch, "step": step_done, **last, "images_per_s": rate}
            )

    started = time.perf_counter()
    for epoch in range(start_epoch + 1, num_epochs + 1):
        # A step's metrics are read after the next step is dispatched, so the host never waits
        # for the device between steps; every step of the epoch is read (and NaN-checked)
        # before anything is sampled or saved.
        pending = None
        for _ in range(steps_per_epoch):
            batch = sharding.shard_batch(next(iterator), mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(step_key, step))
            step += 1
            if pending is not None:
                record(*pending)
            pending = (step, epoch, metrics)
        record(*pending)
        writer.flush()
        if epoch % config.train.sample_every_epochs == 0 or epoch == num_epochs:
            grids += save_sample_grids(
                compiled.generate,
                state,
                latents,
                grid_labels,
                class_names,
                workdir,
                epoch,
                use_ema=config.train.ema_decay > 0,
            )
        fid_every = config.eval.fid_every_epochs
        if fid_every and (epoch % fid_every == 0 or epoch == num_epochs):
            evaluator = evaluator or _fid_evaluator(config)
            _evaluate_during_training(evaluator, state, grid_labels, name, epoch, workdir)
        if epoch % config.train.checkpoint_every_epochs == 0 or epoch == num_epochs:
            checkpoints.save(epoch, state, {**meta, "epoch": epoch, "step": step}, iterator)
    seconds = time.perf_counter() - started
    checkpoints.close()

    loss_plot = None
    if jax.process_index() == 0:
        history = reporting.read_metrics(workdir / "metrics.jsonl", gan=name)
        if history:
            loss_plot = viz.plot_loss_curves(
                history, workdir / "plots" / f"losses_{name}.png", title=f"G and D loss ({name})"
            )
    return GANResult(
        name=name,
        epochs=num_epochs,
        steps=step,
        seconds=seconds,
        images_per_second=rate,
        checkpoint_dir=str(checkpoints.directory),
        final_metrics=last,
        sample_grids=grids,
        loss_plot=loss_plot,
    )


def _fid_evaluator(config):
    # Imported here: the evaluation module builds on this one (run configs, GAN names).
    from xraygan_jax.metrics import gan_evaluation

    return gan_evaluation.FIDEvaluator(config)


def _evaluate_during_training(evaluator, state, labels, name, epoch, workdir) -> None:
    """FID/KID/precision-recall per class, logged and appended to `workdir/eval.jsonl`."""
    metrics = evaluator.run(state, labels, seed=evaluator.config.train.seed)
    if jax.process_index() != 0:
        return
    with open(workdir / "eval.jsonl", "a", encoding="utf-8") as file:
        for label in labels:
            prefix = f"{evaluator.class_names[label]}/"
            record = {"gan": name, "epoch": epoch, "class": prefix[:-1], "split": evaluator.split}
            record.update({k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)})
            file.write(json.dumps(record) + "\n")
            logging.info(
                "[%s] epoch %d %s: FID %.2f (N real %d, N generated %d), KID %.4f",
                name,
                epoch,
                record["class"],
                record["fid"],
                record["num_real"],
                record["num_fake"],
                record["kid_mean"],
            )


def _check_finite(metrics: dict[str, float], name: str, step: int, epoch: int, checkpoints) -> None:
    bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
    if bad:
        latest = checkpoints.latest_epoch()
        raise FloatingPointError(
            f"{name}: non-finite {', '.join(f'{k}={v}' for k, v in bad.items())} at step {step} "
            f"(epoch {epoch}). Training stopped; the last good checkpoint is "
            f"{'epoch ' + str(latest) if latest else 'none'} in {checkpoints.directory}. "
            "Lower the learning rates (--config.optim.g_lr / d_lr) and rerun to resume from it."
        )


def save_sample_grids(
    generate, state, latents, labels, class_names, workdir, epoch, *, use_ema
) -> list[str]:
    """One PNG grid per class from the fixed latents; returns the paths."""
    paths = []
    for label in labels:
        label_array = np.full((latents.shape[0],), label, np.int32)
        images = jax.device_get(generate(state, latents, label_array, use_ema=use_ema))
        if jax.process_index() == 0:
            path = workdir / "samples" / class_names[label] / f"epoch_{epoch:04d}.png"
            paths.append(
                viz.save_image_grid(
                    np.asarray(images), path, title=f"{class_names[label]}, epoch {epoch}"
                )
            )
    return paths


def write_summary(config, workdir: pathlib.Path, results: dict[str, GANResult]) -> str:
    """A Markdown page linking the run's grids and curves."""
    lines = [
        "# GAN training run",
        "",
        f"- model: {config.model.kind}, image size {config.data.image_size}, nz {config.model.nz}, "
        f"ngf {config.model.ngf}, ndf {config.model.ndf}",
        f"- data: {config.data.source}; classes {', '.join(sources.class_names(config.data))}",
        f"- optimiser: {config.optim.name}, lr G {config.optim.g_lr} / D {config.optim.d_lr}; "
        f"batch {config.train.batch_size} over {jax.device_count()} device(s)",
        "",
        "| GAN | epochs | steps | time | images/s | loss/d | loss/g | D(real) | D(fake) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results.values():
        m = result.final_metrics
        lines.append(
            f"| {result.name} | {result.epochs} | {result.steps} | "
            f"{reporting.format_duration(result.seconds)} | "
            f"{result.images_per_second or float('nan'):.1f} | "
            f"{m.get('loss/d', float('nan')):.3f} | "
            f"{m.get('loss/g', float('nan')):.3f} | {m.get('d/real_prob', float('nan')):.3f} | "
            f"{m.get('d/fake_prob', float('nan')):.3f} |"
        )
    for result in results.values():
        lines += ["", f"## {result.name}", ""]
        if result.loss_plot:
            lines.append(f"![losses]({os.path.relpath(result.loss_plot, workdir)})")
        if result.sample_grids:
            lines.append(f"![last samples]({os.path.relpath(result.sample_grids[-1], workdir)})")
    path = workdir / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def load_run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a run was trained with (written to `workdir/config.json` at its start)."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: {workdir} is not a training run directory "
            "(python -m experiments.train_gan --workdir=... creates one)."
        )
    return ml_collections.ConfigDict(json.loads(path.read_text()))
