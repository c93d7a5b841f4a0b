"""A run folder: the one place that knows its layout, its config and how to sample from it.

    run = runs.Run("runs/dcgan")
    config = run.load_config()
    sample_fn, epochs = run.sample_fn()                      # latest checkpoint of every class
    images = sample_fn(label=0, num=64, seed=0)              # uint8 [64, S, S, 1]

Layout of `workdir`:
  config.json                     the resolved config (written once the config is validated)
  checkpoints/<gan>/<epoch>/      orbax checkpoints (state, meta with the data position)
  samples/<class>/epoch_XXXX.png  sample grids from fixed latents
  plots/losses_<gan>.png          G's and D's losses against step
  plots/fid_vs_epoch.png          FID against epoch per class, with the floors
  metrics.jsonl                   one record per training step
  eval.jsonl                      one record per (GAN, epoch, class) evaluation
  tensorboard/<gan>/              TensorBoard event files of the same values and the grids
  summary.md                      what was trained
  generated/<class>/*.png         images written by `experiments.generate`

Every path of the layout is named here only: other modules ask a `Run` (`run.summary_path`,
`run.sample_grid_path(class_name, epoch)`, `run.loss_plot_path(gan)`, ...).

`<gan>` is the class name in per-class mode (one GAN per class, as the first report trained) and
`conditional` in joint mode (one GAN conditioned on the label).

Sampling restores the generator alone (its params, BatchNorm statistics and EMA params) from a
checkpoint: no optimiser and no discriminator is built or read.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from xraygan_jax import errors
from xraygan_jax.data import sources
from xraygan_jax.train import checkpointing, sampling, setup, sharding

JOINT_GAN_NAME = "conditional"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
SUMMARY_FILE = "summary.md"
TENSORBOARD_DIR = "tensorboard"
# Key streams derived from a run's seed (typed keys, folded per purpose and per class).
INIT_STREAM, STEP_STREAM, GRID_STREAM = 0, 1, 2


def gan_names(config: ml_collections.ConfigDict) -> list[tuple[str, int | None]]:
    """(name, label) of every GAN a config trains: one per class, or one conditional GAN."""
    if config.train.per_class:
        return [(name, label) for label, name in enumerate(sources.class_names(config.data))]
    return [(JOINT_GAN_NAME, None)]


def gan_key(config: ml_collections.ConfigDict, stream: int, label: int | None) -> jax.Array:
    """The base key of one purpose (init, steps, grids) of one GAN of a run.

    Per-class GANs fold in their class index, so no two classes share initial weights or noise.
    """
    key = jax.random.fold_in(jax.random.key(config.train.seed), stream)
    return key if label is None else jax.random.fold_in(key, label)


def build_models(config: ml_collections.ConfigDict) -> tuple[Any, Any]:
    """The (generator, discriminator) Linen modules of a run's config (`train.setup`)."""
    return setup.make_models(config, num_classes=len(sources.class_names(config.data)))


def _abstract_variables(module, *inputs) -> dict[str, Any]:
    return jax.eval_shape(
        lambda key, *args: module.init(key, *args, train=False), jax.random.key(0), *inputs
    )


def abstract_generator(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Shapes of the generator's variables ({"params", "batch_stats"?}), nothing allocated."""
    generator, _ = build_models(config)
    z = jax.ShapeDtypeStruct((1, config.model.nz), jnp.float32)
    labels = jax.ShapeDtypeStruct((1,), jnp.int32)
    return _abstract_variables(generator, z, labels)


def gan_meta(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Metadata saved with every checkpoint and compared on resume and restore."""
    generator, discriminator = build_models(config)
    size = config.data.image_size
    g_vars = abstract_generator(config)
    d_vars = _abstract_variables(
        discriminator,
        jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32),
        jax.ShapeDtypeStruct((1,), jnp.int32),
    )
    return {
        "model": config.model.to_dict(),
        "image_size": size,
        "num_classes": len(sources.class_names(config.data)),
        "param_shapes": checkpointing.shape_summary({"g": g_vars["params"], "d": d_vars["params"]}),
    }


class Run:
    """One run folder (see the module docstring for its layout).

    Args:
      workdir: the folder; need not exist yet (training creates it).
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = pathlib.Path(workdir)
        self._config: ml_collections.ConfigDict | None = None

    # Paths.
    @property
    def config_path(self) -> pathlib.Path:
        return self.workdir / CONFIG_FILE

    @property
    def metrics_path(self) -> pathlib.Path:
        return self.workdir / METRICS_FILE

    @property
    def eval_path(self) -> pathlib.Path:
        return self.workdir / EVAL_FILE

    @property
    def summary_path(self) -> pathlib.Path:
        return self.workdir / SUMMARY_FILE

    @property
    def tensorboard_dir(self) -> pathlib.Path:
        """`tensorboard --logdir` this: one TensorBoard run per GAN (train.tensorboard_events)."""
        return self.workdir / TENSORBOARD_DIR

    @property
    def plots_dir(self) -> pathlib.Path:
        return self.workdir / "plots"

    @property
    def generated_dir(self) -> pathlib.Path:
        return self.workdir / "generated"

    def samples_dir(self, class_name: str) -> pathlib.Path:
        return self.workdir / "samples" / class_name

    def sample_grid_path(self, class_name: str, epoch: int) -> pathlib.Path:
        """The PNG grid of a class's fixed latents at `epoch`: samples/<class>/epoch_XXXX.png."""
        return self.samples_dir(class_name) / f"epoch_{int(epoch):04d}.png"

    def sample_grids(self, class_name: str) -> list[pathlib.Path]:
        """The class's saved sample grids, oldest first."""
        return sorted(self.samples_dir(class_name).glob("epoch_*.png"))

    def loss_plot_path(self, gan_name: str) -> pathlib.Path:
        """G's and D's losses against step: plots/losses_<gan>.png."""
        return self.plots_dir / f"losses_{gan_name}.png"

    def loss_plots(self) -> list[pathlib.Path]:
        """Every GAN's loss plot that exists, by GAN name."""
        return sorted(self.plots_dir.glob("losses_*.png"))

    @property
    def fid_plot_path(self) -> pathlib.Path:
        """FID against epoch per class, with the floors: plots/fid_vs_epoch.png."""
        return self.plots_dir / "fid_vs_epoch.png"

    def checkpoint_dir(self, gan_name: str) -> pathlib.Path:
        return self.workdir / "checkpoints" / gan_name

    # Config.
    def write_config(self, config: ml_collections.ConfigDict) -> None:
        """Writes config.json (process 0 only); call it once the config is validated."""
        self._config = config
        if jax.process_index() == 0:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.config_path.write_text(config.to_json_best_effort(indent=2) + "\n")

    def load_config(self) -> ml_collections.ConfigDict:
        """The config the run was trained with.

        Raises:
          errors.MissingError: the folder holds no run (names the folder and how to make one).
        """
        if self._config is None:
            if not self.config_path.exists():
                raise errors.MissingError(
                    f"{self.config_path} not found: {self.workdir} is not a training run "
                    "directory (python -m experiments.train_gan --workdir=... creates one); "
                    "check --workdir."
                )
            self._config = ml_collections.ConfigDict(json.loads(self.config_path.read_text()))
        return self._config

    @property
    def class_names(self) -> tuple[str, ...]:
        return sources.class_names(self.load_config().data)

    def gan_names(self) -> list[tuple[str, int | None]]:
        return gan_names(self.load_config())

    def gan_for_label(self, label: int) -> str:
        """The GAN that generates class `label`."""
        config = self.load_config()
        return self.class_names[label] if config.train.per_class else JOINT_GAN_NAME

    # Checkpoints.
    def checkpointer(self, gan_name: str) -> checkpointing.Checkpointer:
        return checkpointing.Checkpointer(self.checkpoint_dir(gan_name))

    def checkpoint_epochs(self, gan_name: str) -> list[int]:
        """Epochs with a complete checkpoint for one GAN, ascending ([] when none)."""
        if not self.checkpoint_dir(gan_name).exists():
            return []
        checkpoints = self.checkpointer(gan_name)
        try:
            return checkpoints.all_epochs()
        finally:
            checkpoints.close()

    def _choose_epoch(self, gan_name: str, epoch: int | None) -> int:
        epochs = self.checkpoint_epochs(gan_name)
        directory = self.checkpoint_dir(gan_name)
        if not epochs:
            raise errors.MissingError(
                f"no checkpoint in {directory}; train first with experiments.train_gan"
            )
        if epoch is None:
            return epochs[-1]
        if epoch not in epochs:
            raise errors.MissingError(
                f"no checkpoint of epoch {epoch} in {directory}; saved epochs: {epochs}"
            )
        return epoch

    def restore_generator(
        self, gan_name: str, epoch: int | None = None
    ) -> tuple[sampling.GeneratorState, int]:
        """The generator of one GAN at `epoch` (default: the latest), ready to sample.

        Reads only the generator's params, BatchNorm statistics and EMA params from the
        checkpoint. With an EMA the statistics are recomputed for the EMA weights.

        Returns:
          (GeneratorState, the epoch restored).

        Raises:
          errors.MissingError: no checkpoint, or not that epoch (names the saved ones).
          ValueError: the checkpoint's architecture differs from the run's config.
        """
        config = self.load_config()
        epoch = self._choose_epoch(gan_name, epoch)
        generator, _ = build_models(config)
        replicated = sharding.replicated(sharding.make_mesh())
        abstract = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=replicated),
            abstract_generator(config),
        )
        part = {"g_params": abstract["params"]}
        if abstract.get("batch_stats"):
            part["g_batch_stats"] = abstract["batch_stats"]
        use_ema = config.train.ema_decay > 0
        if use_ema:
            part["ema_g_params"] = abstract["params"]
        checkpoints = self.checkpointer(gan_name)
        try:
            checkpointing.check_compatible(
                checkpoints.read_meta(epoch), gan_meta(config), checkpoints.directory
            )
            restored = checkpoints.restore_part(epoch, part)
        finally:
            checkpoints.close()
        state = sampling.GeneratorState(
            params=restored["ema_g_params"] if use_ema else restored["g_params"],
            batch_stats=restored.get("g_batch_stats", {}),
            generator=generator,
            nz=int(config.model.nz),
            ema=use_ema,
        )
        if use_ema:
            key = gan_key(config, GRID_STREAM, None)
            state = sampling.recalibrate_batch_stats(state, key)
        return state, epoch

    def sample_fn(
        self,
        epoch: int | Mapping[str, int] | None = None,
        *,
        batch_stats: str | None = None,
    ) -> tuple[sampling.SampleFn, dict[str, int]]:
        """`sample_fn(label, num, seed) -> uint8 images` over every class of the run.

        Args:
          epoch: the checkpoint epoch (one for all GANs, or {gan name: epoch}); default latest.
          batch_stats: "running" or "batch"; default the run's `config.eval.batch_stats`.

        Returns:
          (sample_fn, {class name: epoch of the checkpoint used}).
        """
        config = self.load_config()
        mode = batch_stats or config.eval.get("batch_stats", "running")
        generators: dict[int, sampling.GeneratorState] = {}
        restored: dict[str, tuple[sampling.GeneratorState, int]] = {}
        epochs = {}
        for label, class_name in enumerate(self.class_names):
            name = self.gan_for_label(label)
            if name not in restored:
                wanted = epoch.get(name) if isinstance(epoch, Mapping) else epoch
                restored[name] = self.restore_generator(name, wanted)
            generators[label], epochs[class_name] = restored[name]
        return sampling.make_sample_fn(generators, batch_stats=mode), epochs

    def generate_per_class(
        self,
        num_per_class: int,
        *,
        epoch: int | None = None,
        seed: int = 0,
        batch_stats: str | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """`num_per_class` uint8 images of every class: ({class: [N, S, S, 1]}, {class: epoch})."""
        sample_fn, epochs = self.sample_fn(epoch, batch_stats=batch_stats)
        images = {
            name: sample_fn(label, num_per_class, seed)
            for label, name in enumerate(self.class_names)
        }
        return images, epochs

    # Records.
    def truncate_records(self, restored: Mapping[str, tuple[int, int]]) -> None:
        """Drops records a resumed run will write again (process 0 only).

        A run killed after logging steps past its last checkpoint repeats those steps on resume;
        without this, metrics.jsonl and eval.jsonl would hold them twice.

        Args:
          restored: {gan name: (epoch, step)} each GAN resumes from; (0, 0) = starts afresh.
        """
        if jax.process_index() != 0:
            return
        rewrite_jsonl(
            self.metrics_path,
            lambda r: r.get("gan") not in restored or r.get("step", 0) <= restored[r["gan"]][1],
        )
        rewrite_jsonl(
            self.eval_path,
            lambda r: r.get("gan") not in restored or r.get("epoch", 0) <= restored[r["gan"]][0],
        )


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file of a run, in file order; [] when there is none.

    Blank lines and a last line cut by a kill mid-write (never a complete record) are skipped.
    """
    path = pathlib.Path(path)
    if not path.exists():
        return []
    return [record for _, record in _parsed(path.read_text(encoding="utf-8").splitlines())]


def rewrite_jsonl(
    path: str | os.PathLike, keep: Callable[[dict], bool], *, append: Sequence[dict] = ()
) -> None:
    """Keeps the records of a JSON-lines file for which `keep` holds, then `append` (one atomic
    replace; kept lines are written as they were). A missing file is created when there is
    something to append."""
    path = pathlib.Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = [line for line, record in _parsed(lines) if keep(record)]
    if len(kept) == len(lines) and not append:
        return
    kept += [json.dumps(record) for record in append]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(temporary, path)


def _parsed(lines: Sequence[str]) -> list[tuple[str, dict]]:
    """(line, record) of every complete record among `lines`."""
    parsed = []
    for line in lines:
        if not line.strip():
            continue
        try:
            parsed.append((line, json.loads(line)))
        except json.JSONDecodeError:
            # A line cut by a kill mid-write: it was never a complete record.
            continue
    return parsed
