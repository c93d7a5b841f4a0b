"""How fast each GAN learns the data: per-class FID, KID, precision/recall and diversity beside the
real-vs-real floor, against thousands of images shown (kimg) and training wall time.

Every run trains in chunks of `--eval_kimg` thousand images: `gan_loop.train_and_evaluate` with
`num_epochs` raised by a chunk each time (it resumes from the last checkpoint, bit for bit), then
the new checkpoint is scored with the training loop's evaluator (`config.eval`: the train split
as the real side, as many generated images as real ones). A run stops at `--max_kimg` or once its
training time passes `--max_minutes`. Each scored checkpoint is written at once to
`WORKDIR/results.json`, so a killed benchmark rerun with the same flags picks up where it
stopped; finished runs are not trained again.

Arms (`--arms`):
- `dcgan64`: the seeds' DC-cGAN (experiments/configs/dcgan.py: ngf = ndf = 64, one GAN per
  class, BCE, Adam 2e-4 / 0.5 for both, batch 64);
- `demo`: the main job's GAN as it was until 6 December 2026 (experiments/configs/pipeline_demo.py
  without the mode-seeking term it has since: one conditional DC-cGAN, ngf = ndf = 32, D lr
  5e-5, EMA 0.99), so that the runs named `demo` keep their meaning; the main job's GAN of today
  is `--arms=demo --set=train.mode_seeking=0.1 --set=train.mode_seeking_size=16`;
- `sngan`: the SN-ResNet cGAN (experiments/configs/sngan.py: projection D, hinge, two D updates,
  DiffAugment).

Settings (`--settings`):
- `phantom600`: the main job's data (600 phantom train images, both classes);
- `per_class100`: 100 train images per class (the COVID report's set size) of the default
  phantom set.

    python -m experiments.benchmarks.gan_convergence --workdir=/tmp/conv            # all arms
    python -m experiments.benchmarks.gan_convergence --workdir=/tmp/conv --arms=demo \\
        --settings=phantom600 --seeds=0,1 --max_kimg=60 --eval_kimg=6
    python -m experiments.benchmarks.gan_convergence --workdir=/tmp/conv --report_only

`--set=KEY=VALUE` (repeatable) overrides a GAN config key of every chosen arm, e.g.
`--set=optim.d_lr=1e-4`; the overrides are part of the run's name, so variants sit side by side.
The table (`--markdown` adds it in Markdown), `WORKDIR/convergence_<setting>.png` (FID over its
floor against kimg and minutes, per class, one figure per data setting) and the JSON name the CPU.
Results: docs/gan_convergence.md.
"""

import ast
import json
import os
import pathlib
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags

from experiments.benchmarks import processes
from experiments.configs import dcgan as dcgan_config
from experiments.configs import pipeline_demo
from experiments.configs import sngan as sngan_config
from xraygan_jax import gan_loop, pipeline, runs
from xraygan_jax.evaluators import gan_metrics
from xraygan_jax.metrics import diversity

ARMS = ("dcgan64", "demo", "sngan")
SETTINGS = ("phantom600", "per_class100")

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/gan_convergence", "Runs, results.json, plot.")
_ARMS = flags.DEFINE_list("arms", list(ARMS), f"Arms to train, of: {', '.join(ARMS)}.")
_SETTINGS = flags.DEFINE_list(
    "settings", list(SETTINGS), f"Data settings, of: {', '.join(SETTINGS)}."
)
_SEEDS = flags.DEFINE_list("seeds", ["0"], "config.train.seed of each run.")
_EVAL_KIMG = flags.DEFINE_float(
    "eval_kimg",
    6.0,
    "Thousand images shown between evaluations; given again on a resumed run, the spacing from "
    "its next checkpoint on.",
)
_MAX_KIMG = flags.DEFINE_float("max_kimg", 120.0, "Stop a run after this many thousand images.")
_MAX_MINUTES = flags.DEFINE_float(
    "max_minutes", 60.0, "Stop a run once its training time passes this many minutes."
)
_OVERRIDES = flags.DEFINE_multi_string(
    "set", [], "KEY=VALUE overriding a GAN config key of every arm, e.g. optim.d_lr=1e-4."
)
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Print the table and draw the plot from results.json; train nothing."
)
_MARKDOWN = flags.DEFINE_bool(
    "markdown", False, "Also print the table as Markdown (docs/gan_convergence.md's form)."
)

# What the table and the plot show of each class's record.
_COLUMNS = ("fid", "fid_floor", "kid_mean", "precision", "recall", "diversity", "coarse_diversity")


def _data(setting: str) -> ml_collections.ConfigDict:
    if setting == "phantom600":
        return pipeline_demo.get_config().data
    if setting == "per_class100":
        data = dcgan_config.get_config().data
        data.train_images_per_class = 100
        return data
    raise app.UsageError(f"--settings: {setting!r} is unknown; use {', '.join(SETTINGS)}")


def arm_config(arm: str, setting: str, seed: int, overrides=()) -> ml_collections.ConfigDict:
    """The GAN job config of one run (its data, seed and `--set` overrides applied)."""
    if arm == "dcgan64":
        config = dcgan_config.get_config()
    elif arm == "demo":
        config = pipeline.gan_config(pipeline_demo.get_config())
        config.train.mode_seeking = 0.0  # the arm's recipe before the main job took the term
        config.train.mode_seeking_size = 0
    elif arm == "sngan":
        config = sngan_config.get_config()
    else:
        raise app.UsageError(f"--arms: {arm!r} is unknown; use {', '.join(ARMS)}")
    config.data = _data(setting)
    config.train.seed = int(seed)
    config.train.tensorboard = False
    config.evals.fid.every_epochs = 0
    for override in overrides:
        key, _, text = override.partition("=")
        if not _:
            raise app.UsageError(f"--set={override!r}: write KEY=VALUE, e.g. optim.d_lr=1e-4")
        node = config
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        if leaf not in node:
            raise app.UsageError(f"--set={override!r}: the GAN config has no key {key!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        node[leaf] = type(node[leaf])(value) if node[leaf] is not None else value
    return config


def run_name(arm: str, setting: str, seed: int, overrides=()) -> str:
    suffix = "".join(f",{override}" for override in overrides)
    return f"{setting}/{arm}{suffix}/seed{seed}"


def _images_per_epoch(config, workdir: pathlib.Path) -> int:
    """Images one epoch shows over all of the run's GANs (after a first chunk has trained)."""
    records = [
        json.loads(line)
        for line in runs.Run(workdir).metrics_path.read_text().splitlines()
        if line.strip()
    ]
    total = 0
    for name, _ in runs.gan_names(config):
        first_epoch = [r for r in records if r["gan"] == name and r["epoch"] == 1]
        total += round(1000 * max(r["kimg"] for r in first_epoch))
    return total


def _save(path: pathlib.Path, results: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=1, allow_nan=True))
    os.replace(temporary, path)


def train_run(config, workdir: pathlib.Path, entry: dict, save) -> None:
    """Trains and scores one run chunk by chunk, appending to entry["points"] (resumable).

    The first chunk is one epoch, which tells how many images an epoch shows; from then on a
    checkpoint every `epochs_per_chunk` epochs (about `--eval_kimg` thousand images) is scored.
    """
    points = entry.setdefault("points", [])
    epoch = runs.Run(workdir).checkpoint_epochs(runs.gan_names(config)[0][0])[-1:] or [0]
    epoch = epoch[0]
    seconds = entry.get("train_seconds", 0.0)
    every = entry.get("epochs_per_chunk")
    if every and _EVAL_KIMG.present:
        # A continuation may be scored at another spacing: --eval_kimg given again rules from
        # the next checkpoint on; the points already scored stay as they are.
        every = max(1, round(1000 * _EVAL_KIMG.value / entry["images_per_epoch"]))
        if every != entry["epochs_per_chunk"]:
            print(f"  scoring every {every} epochs from epoch {epoch} on (--eval_kimg)")
            entry["epochs_per_chunk"] = every
            save()
    if every and epoch and epoch % every == 0 and (not points or points[-1]["epoch"] < epoch):
        _score(config, workdir, entry, epoch, save)  # trained before a kill, not yet scored
    while True:
        every = entry.get("epochs_per_chunk")
        target = 1 if every is None else (epoch // every + 1) * every
        kimg = points[-1]["kimg"] if points else 0.0
        if every is not None and (
            target * entry["images_per_epoch"] > 1000 * _MAX_KIMG.value + 1e-6
            or seconds >= 60 * _MAX_MINUTES.value
        ):
            print(f"  stopped at {kimg:.1f} kimg, {seconds / 60:.1f} training minutes")
            return
        with config.unlocked():
            config.train.num_epochs = target
            config.train.checkpoint_every_epochs = every or 1
            config.train.sample_every_epochs = every or 1
        results = gan_loop.train_and_evaluate(config, workdir)
        # The loop's own time: compilation (a read from the persistent cache after the first
        # chunk), the steps, sample grids and checkpoints; not this benchmark's scoring.
        seconds += sum(result.seconds for result in results.values())
        epoch = target
        entry["train_seconds"] = seconds
        if every is None:
            entry["images_per_epoch"] = _images_per_epoch(config, workdir)
            every = max(1, round(1000 * _EVAL_KIMG.value / entry["images_per_epoch"]))
            entry["epochs_per_chunk"] = every
            save()
        if epoch % every:
            continue
        _score(config, workdir, entry, epoch, save)


def _score(config, workdir: pathlib.Path, entry: dict, epoch: int, save) -> None:
    """Scores the checkpoint of `epoch` with the loop's evaluator; appends the point, saves."""
    sample_fn, _ = runs.Run(workdir).sample_fn(epoch)
    evaluator = gan_metrics.GANMetricsEvaluator(
        sample_fn, config=config, seed=int(config.train.seed)
    )
    began = time.perf_counter()
    records = evaluator.records(evaluator.run(), epoch=epoch)
    point = {
        "epoch": epoch,
        "kimg": epoch * entry["images_per_epoch"] / 1000,
        "train_seconds": entry["train_seconds"],
        "eval_seconds": time.perf_counter() - began,
        "classes": {r["class"]: {k: r.get(k) for k in _COLUMNS} for r in records},
    }
    entry["points"].append(point)
    save()
    print(f"  {format_point(point)}", flush=True)


def _ratio(values: dict) -> float:
    """A class record's FID over its real-vs-real floor."""
    return values["fid"] / values["fid_floor"]


def _best_ratio(entry: dict, class_name: str) -> float:
    """The lowest FID / floor of one class along a run."""
    return min(_ratio(p["classes"][class_name]) for p in entry["points"])


def format_point(point: dict) -> str:
    parts = [f"{point['kimg']:6.1f} kimg {point['train_seconds'] / 60:5.1f} min"]
    for name, values in point["classes"].items():
        ratio = _ratio(values)
        parts.append(
            f"{name} FID {values['fid']:6.1f} ({ratio:4.1f}x floor) recall "
            f"{values['recall']:.2f} diversity {values['diversity']:.2f} (coarse "
            f"{diversity.format_score(values.get('coarse_diversity'))})"
        )
    return " | ".join(parts)


def print_table(results: dict) -> None:
    cpu = results.get("cpu", {})
    print(f"\nCPU: {cpu.get('cpu_model', '?')} ({cpu.get('usable_cpus', '?')} usable CPUs)")
    header = (
        f"{'run':<44} {'kimg':>6} {'min':>6} {'class':<10} {'FID':>6} {'floor':>6} "
        f"{'x floor':>7} {'best x':>6} {'KID':>7} {'prec':>5} {'recall':>6} {'divers':>6} "
        f"{'coarse':>6}"
    )
    print(header)
    for name, entry in results["runs"].items():
        points = entry.get("points", [])
        if not points:
            continue
        last = points[-1]
        for class_name, values in last["classes"].items():
            best = _best_ratio(entry, class_name)
            print(
                f"{name:<44} {last['kimg']:>6.1f} {last['train_seconds'] / 60:>6.1f} "
                f"{class_name:<10} {values['fid']:>6.1f} {values['fid_floor']:>6.1f} "
                f"{_ratio(values):>7.2f} {best:>6.2f} "
                f"{values['kid_mean']:>7.4f} {values['precision']:>5.2f} "
                f"{values['recall']:>6.2f} {values['diversity']:>6.2f} "
                f"{diversity.format_score(values.get('coarse_diversity')):>6}"
            )
    print("(last scored checkpoint of each run; 'best x': the lowest FID / floor along the run)")


def markdown_table(results: dict) -> list[str]:
    """One row per run: its last scored checkpoint, per class FID / floor (the best along the run),
    precision, recall and diversity (coarse diversity in brackets, n/a for points scored before
    it was measured), so that a low FID of a collapsed run is seen as such."""
    entries = {n: e for n, e in results["runs"].items() if e.get("points")}
    if not entries:
        return []
    class_names = list(next(iter(entries.values()))["points"][-1]["classes"])
    header = ["run", "kimg", "train min"]
    for class_name in class_names:
        header += [
            f"{class_name} FID / floor (best)",
            f"{class_name} precision / recall",
            f"{class_name} diversity (coarse)",
        ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in entries.items():
        last = entry["points"][-1]
        cells = [name, f"{last['kimg']:.1f}", f"{last['train_seconds'] / 60:.1f}"]
        for class_name in class_names:
            values = last["classes"][class_name]
            best = _best_ratio(entry, class_name)
            cells += [
                f"{values['fid']:.1f} / {values['fid_floor']:.1f} = "
                f"{_ratio(values):.1f}x ({best:.1f}x)",
                f"{values['precision']:.2f} / {values['recall']:.2f}",
                f"{values['diversity']:.2f} "
                f"({diversity.format_score(values.get('coarse_diversity'))})",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(results: dict, path: pathlib.Path, setting: str) -> str | None:
    """FID / floor against kimg (top) and training minutes (bottom), a column per class, for the
    runs of one data setting; a colour per arm (and override), a line style per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = {
        n: e for n, e in results["runs"].items() if e.get("points") and e["setting"] == setting
    }
    if not entries:
        return None
    class_names = list(next(iter(entries.values()))["points"][0]["classes"])
    figure, axes = plt.subplots(
        2, len(class_names), figsize=(6 * len(class_names), 8), squeeze=False
    )
    variants = sorted({name.rsplit("/", 1)[0] for name in entries})
    colours = {variant: f"C{index % 10}" for index, variant in enumerate(variants)}
    styles = ("-", "--", ":", "-.")
    for name, entry in entries.items():
        points = entry["points"]
        variant = name.rsplit("/", 1)[0]
        for column, class_name in enumerate(class_names):
            ratio = [_ratio(p["classes"][class_name]) for p in points]
            recall = [p["classes"][class_name]["recall"] for p in points]
            for row, x in enumerate(
                ([p["kimg"] for p in points], [p["train_seconds"] / 60 for p in points])
            ):
                axes[row][column].plot(
                    x,
                    ratio,
                    styles[entry["seed"] % len(styles)],
                    marker="o",
                    markersize=3,
                    color=colours[variant],
                    label=f"{variant.split('/', 1)[1]}, seed {entry['seed']}",
                )
                # Checkpoints with recall above 0.1 get a large marker.
                kept = np.asarray(recall) > 0.1
                axes[row][column].plot(
                    np.asarray(x)[kept],
                    np.asarray(ratio)[kept],
                    "o",
                    color=colours[variant],
                    markersize=8,
                )
    for column, class_name in enumerate(class_names):
        for row, label in enumerate(("thousand images shown (kimg)", "training minutes")):
            axis = axes[row][column]
            axis.set_yscale("log")
            axis.axhline(1.0, color="black", linewidth=0.8)
            for target in (2.0, 4.0):
                axis.axhline(target, color="grey", linestyle=":", linewidth=0.8)
            axis.set_xlabel(label)
            axis.set_ylabel("FID / real-vs-real floor")
            axis.set_title(f"{class_name} (large dots: recall > 0.1; dotted: 2x and 4x)")
    axes[0][0].legend(fontsize=7)
    cpu = results.get("cpu", {})
    figure.suptitle(f"GAN convergence, {setting}, on {cpu.get('cpu_model', '?')}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return str(path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = pathlib.Path(_WORKDIR.value)
    workdir.mkdir(parents=True, exist_ok=True)
    # Each chunk builds its step again: the persistent cache turns its compilation into a read.
    jax.config.update("jax_compilation_cache_dir", str(workdir / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    path = workdir / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    results["cpu"] = processes.cpu_description()
    if not _REPORT_ONLY.value:
        for setting in _SETTINGS.value:
            for arm in _ARMS.value:
                for seed in _SEEDS.value:
                    overrides = tuple(_OVERRIDES.value)
                    name = run_name(arm, setting, int(seed), overrides)
                    config = arm_config(arm, setting, int(seed), overrides)
                    entry = results["runs"].setdefault(
                        name,
                        {
                            "arm": arm,
                            "setting": setting,
                            "seed": int(seed),
                            "overrides": list(overrides),
                        },
                    )
                    print(f"{name}:", flush=True)
                    train_run(config, workdir / name, entry, lambda: _save(path, results))
        _save(path, results)
    print_table(results)
    if _MARKDOWN.value:
        print("\n".join(markdown_table(results)))
    for setting in SETTINGS:
        drawn = plot(results, workdir / f"convergence_{setting}.png", setting)
        if drawn:
            print(f"plot: {drawn}")


if __name__ == "__main__":
    app.run(main)
