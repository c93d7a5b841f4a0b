"""Hyper-parameter sweeps of GAN training, judged by FID/KID with floors and, optionally, by
the classifier gain their images give.

    sweep.run_sweep(config, "runs/sweep")          # experiments/configs/sweep_dcgan.py

`config.sweep.grid` lists "dotted.key=value1,value2" strings; the sweep runs every combination
(`config.sweep.mode = "grid"`) or the i-th values together (`"list"`). `"arms"` runs named
variants instead, `config.sweep.arms` = ("name: key=value; key=value", ...), where a value may
hold commas ("baseline:" changes nothing): a comparison of options such as
experiments/configs/small_data.py. Each point is a normal GAN
run in `workdir/points/<name>` (evaluate_gan and generate accept it), trained and then evaluated
at its last checkpoint. With `config.sweep.classifier_gain`, a small augmentation study (0% against
`config.sweep.gain_fraction` synthetic) is run on the point's images, and the gain is the accuracy
difference: the first report's wish to choose GAN settings by what they do for the classifier,
not by FID alone.

Points run one after another and resume: a finished point is read back, not rerun. Written:
sweep.csv (one row per point: per-class FID, KID, precision/recall and diversity with floors,
images shown, time, the rank and the collapsed classes), sweep.md (the ranked table in
Markdown), plots/sweep_<parameter>.png, and for arms plots/arms_fid.png and samples.png (every
arm's last sample grid per class, side by side).

Ranking (`rank_points`): by the mean over classes of the gap to the floor, `fid_matched -
fid_floor`, with every point that has a collapsed class (metrics.diversity's rule: recall and
diversity near 0, one template whatever z is) marked and ranked after all the others, so that a
well-placed template cannot come first. Rows written before diversity was measured are read
back and judged by recall alone.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import pathlib
import time
from typing import Any

import ml_collections
import numpy as np

from xraygan_jax import errors, gan_loop, runs, study, viz
from xraygan_jax.evaluators import drivers
from xraygan_jax.metrics import diversity
from xraygan_jax.train import reporting


def parse_grid(config: ml_collections.ConfigDict) -> list[tuple[str, list[Any]]]:
    """[(dotted key, [values])] from `config.sweep.grid`, values typed like the base config's.

    Raises:
      errors.ConfigError: a malformed entry or a key the GAN config does not have.
    """
    parameters = []
    for entry in config.sweep.grid:
        if "=" not in entry:
            raise errors.ConfigError(
                f"--config.sweep.grid entry {entry!r} is not 'dotted.key=value1,value2'."
            )
        key, values = entry.split("=", 1)
        node = config.gan
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if part not in node:
                raise errors.ConfigError(f"--config.sweep.grid: the GAN config has no {key!r}.")
            node = node[part]
        if parts[-1] not in node:
            raise errors.ConfigError(f"--config.sweep.grid: the GAN config has no {key!r}.")
        kind = type(node[parts[-1]])
        try:
            typed = [_convert(value.strip(), kind) for value in values.split(",")]
        except ValueError as error:
            raise errors.ConfigError(f"--config.sweep.grid {key}: {error}") from error
        parameters.append((key.strip(), typed))
    if not parameters:
        raise errors.ConfigError("--config.sweep.grid is empty; give at least one parameter.")
    return parameters


def _convert(value: str, kind: type) -> Any:
    if kind is bool:
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")
        return value.lower() == "true"
    if kind in (int, float, str):
        return kind(value)
    raise ValueError(f"values of type {kind.__name__} cannot be swept")


ARM = "arm"  # the key of an arm's name in its point


def parse_arms(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """[{"arm": name, dotted key: value, ...}] from `config.sweep.arms`.

    Raises:
      errors.ConfigError: a malformed arm, a repeated name, or a key the GAN config lacks.
    """
    arms, names = [], set()
    for entry in config.sweep.arms:
        name, separator, assignments = entry.partition(":")
        name = name.strip()
        if not separator or not name:
            raise errors.ConfigError(
                f"--config.sweep.arms entry {entry!r} is not 'name: key=value; key=value'."
            )
        if name in names:
            raise errors.ConfigError(f"--config.sweep.arms: the name {name!r} is used twice.")
        names.add(name)
        arm: dict[str, Any] = {ARM: name}
        for assignment in filter(str.strip, assignments.split(";")):
            if "=" not in assignment:
                raise errors.ConfigError(
                    f"--config.sweep.arms {name}: {assignment.strip()!r} is not 'key=value'."
                )
            key, value = (part.strip() for part in assignment.split("=", 1))
            kind = type(_lookup(config, key))
            try:
                arm[key] = _convert(value, kind)
            except ValueError as error:
                raise errors.ConfigError(f"--config.sweep.arms {name} {key}: {error}") from error
        arms.append(arm)
    if not arms:
        raise errors.ConfigError("--config.sweep.arms is empty; give at least one arm.")
    return arms


def _lookup(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config.gan
    for part in key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise errors.ConfigError(f"--config.sweep: the GAN config has no {key!r}.")
        node = node[part]
    return node


def points(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """The sweep's points: {dotted key: value} each (arms also carry "arm": name)."""
    if config.sweep.mode == "arms":
        return parse_arms(config)
    parameters = parse_grid(config)
    keys = [key for key, _ in parameters]
    if config.sweep.mode == "grid":
        combos = itertools.product(*[values for _, values in parameters])
    elif config.sweep.mode == "list":
        lengths = {len(values) for _, values in parameters}
        if len(lengths) != 1:
            raise errors.ConfigError(
                "--config.sweep.mode=list needs the same number of values for every parameter, "
                f"got {[len(v) for _, v in parameters]}."
            )
        combos = zip(*[values for _, values in parameters], strict=True)
    else:
        raise errors.ConfigError(
            f"--config.sweep.mode={config.sweep.mode!r} is unknown; use grid, list or arms."
        )
    return [dict(zip(keys, combo, strict=True)) for combo in combos]


def point_name(point: dict[str, Any]) -> str:
    """A folder name: the arm's name, or 'optim.g_lr=0.0001_model.nz=64', unsafe characters
    replaced."""
    text = point.get(ARM) or "_".join(f"{key}={value}" for key, value in point.items())
    return "".join(c if c.isalnum() or c in "._=-" else "-" for c in text)


def point_config(config: ml_collections.ConfigDict, point: dict[str, Any]):
    """The GAN job config of one point: `config.gan` with the data and the point's values."""
    job = config.gan.copy_and_resolve_references()
    with job.unlocked():
        job.data = config.data.copy_and_resolve_references()
        for key, value in point.items():
            if key == ARM:
                continue
            node = job
            *parents, last = key.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
    return job


def run_sweep(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
    """Trains and evaluates every point (resuming), writes sweep.csv and the plots."""
    workdir = pathlib.Path(workdir)
    planned = points(config)
    for point in planned:  # every point's config is valid before anything is written
        gan_loop.validate(point_config(config, point))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    finished = {
        point_name(point)
        for point in planned
        if (workdir / "points" / point_name(point) / "point.json").exists()
    }
    if finished:
        reporting.emit(
            f"[sweep] {len(finished)} of {len(planned)} points read back from {workdir}/points: "
            + ", ".join(sorted(finished))
        )
    # Progress, rate and ETA count the points trained by this call, not those read back.
    progress = reporting.Progress(
        len(planned) - len(finished), 1, "[sweep]", every_steps=1, unit="point", counted="points"
    )
    rows, done = [], 0
    for point in planned:
        rows.append(_run_point(config, workdir, point))
        if point_name(point) not in finished:
            done += 1
            collapsed = collapsed_classes(rows[-1])
            progress.update(
                done,
                f"{point_name(point)}: mean FID {rows[-1]['fid_mean']:.1f}, gap to floor "
                f"{fid_gap(rows[-1]):.1f}"
                + (f" | COLLAPSED: {', '.join(collapsed)}" if collapsed else ""),
            )
    write_outputs(workdir, rows, [key for key in planned[0]])
    return rows


def _last_epochs(folder: pathlib.Path) -> list[int]:
    """Each GAN's last checkpoint epoch (with an image budget they need not be num_epochs)."""
    run = runs.Run(folder)
    return sorted({run.checkpoint_epochs(name)[-1] for name, _ in run.gan_names()})


def _run_point(config, workdir: pathlib.Path, point: dict[str, Any]) -> dict[str, Any]:
    folder = workdir / "points" / point_name(point)
    result_path = folder / "point.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    job = point_config(config, point)
    started = time.perf_counter()
    results = gan_loop.train_and_evaluate(job, folder)
    train_seconds = time.perf_counter() - started
    records = drivers.evaluate_run(folder, epochs=_last_epochs(folder))
    row: dict[str, Any] = {"point": point_name(point), **point}
    for record in records:
        name = record["class"]
        for key in _RECORD_FIELDS:
            row[f"{name}/{key}"] = record[key]
    row["fid_mean"] = float(np.mean([r["fid"] for r in records]))
    row["kimg"] = float(sum(result.kimg for result in results.values()))
    row["samples"] = {
        name: os.path.relpath(path, workdir) for name, path in _last_grids(folder).items()
    }
    row["fid_gap_mean"] = float(np.mean([r["fid_matched"] - r["fid_floor"] for r in records]))
    row["train_seconds"] = train_seconds
    row["images_per_second"] = float(
        np.mean([r.images_per_second or np.nan for r in results.values()])
    )
    if config.sweep.classifier_gain:
        study_job = config.study_job.copy_and_resolve_references()
        with study_job.unlocked():
            study_job.data = job.data.copy_and_resolve_references()
            study_job.study.fractions = (0.0, float(config.sweep.gain_fraction))
            # The gain of a GAN setting against 0% only: the control arms would not change it.
            study_job.study.controls = ()
        outcome = study.run_study(study_job, folder / "study", gan_workdir=folder)
        accuracy = {}
        for result in outcome:
            accuracy.setdefault(result.fraction, []).append(result.accuracy)
        row["classifier_gain"] = float(
            np.mean(accuracy[float(config.sweep.gain_fraction)]) - np.mean(accuracy[0.0])
        )
    row["seconds"] = time.perf_counter() - started
    result_path.write_text(json.dumps(row, allow_nan=True))
    return row


_RECORD_FIELDS = (
    "fid",
    "fid_floor",
    "fid_matched",
    "kid_mean",
    "kid_floor",
    "precision",
    "recall",
    "diversity",
    "coarse_diversity",
    "num_real",
)


def _last_grids(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """{class name: the run's last sample grid}, read from its folder, so that a point whose
    training was resumed (and sampled nothing new) still shows its grids."""
    run = runs.Run(folder)
    grids = {}
    for name in run.class_names:
        saved = run.sample_grids(name)
        if saved:
            grids[name] = saved[-1]
    return grids


def row_classes(row: dict) -> list[str]:
    """The classes a sweep row has metrics for, sorted."""
    return sorted({key.split("/")[0] for key in row if key.endswith("/fid")})


def collapsed_classes(row: dict) -> list[str]:
    """The classes of a sweep row that metrics.diversity's rule calls collapsed.

    A row read back from a point.json written before diversity was measured has no
    `<class>/diversity`: the rule then judges that class by recall alone.
    """
    return [
        name
        for name in row_classes(row)
        if diversity.is_collapsed(
            row.get(f"{name}/recall"),
            row.get(f"{name}/diversity"),
            row.get(f"{name}/coarse_diversity"),
        )
    ]


def fid_gap(row: dict) -> float:
    """The row's mean over classes of `fid_matched - fid_floor` (NaN when a floor is missing)."""
    if "fid_gap_mean" in row:
        return float(row["fid_gap_mean"])
    gaps = [
        row.get(f"{name}/fid_matched", float("nan")) - row.get(f"{name}/fid_floor", float("nan"))
        for name in row_classes(row)
    ]
    return float(np.mean(gaps)) if gaps else float("nan")


def rank_points(rows: list[dict]) -> list[dict]:
    """The rows best first: the points with no collapsed class by their gap to the floor, then the
    collapsed ones by theirs; a NaN gap comes last in its group.

    Returns:
      New dicts, each row with `rank` (1 = best) and `collapsed` (the collapsed classes,
      space-separated; "" for none) added.
    """

    def key(row: dict) -> tuple[bool, bool, float]:
        gap = fid_gap(row)
        return (bool(collapsed_classes(row)), not np.isfinite(gap), gap if np.isfinite(gap) else 0)

    return [
        {**row, "rank": rank, "collapsed": " ".join(collapsed_classes(row))}
        for rank, row in enumerate(sorted(rows, key=key), start=1)
    ]


RANKING_NOTE = (
    "Ranked by the mean gap to the floor over classes (`fid_matched - fid_floor`, lower is "
    "better); a point with a collapsed class (" + diversity.RULE + "; diversity: the generated "
    "images' mean pairwise Inception-feature distance over the real ones', 1 = as varied) is "
    "marked **collapsed** and ranked after every point that is not."
)


def arms_table(rows: list[dict]) -> str:
    """A Markdown table of a sweep, ranked (`rank_points`, collapsed points last and marked): per
    point the gap to the floor, the images shown and the training time; per class FID (the
    matched-size score and the floor), KID, precision and recall, and diversity (coarse
    diversity in brackets)."""
    ranked = rank_points(rows)
    classes = sorted({name for row in ranked for name in row_classes(row)})
    header = ["rank (collapsed last)", "arm" if any(ARM in r for r in ranked) else "point"]
    header += ["collapsed", "mean FID gap to floor", "kimg", "train time"]
    for name in classes:
        header += [
            f"{name} FID",
            f"{name} FID at floor size (floor)",
            f"{name} KID (floor)",
            f"{name} precision / recall",
            f"{name} diversity (coarse)",
        ]
    gains = any("classifier_gain" in row for row in ranked)
    if gains:
        header.append("classifier gain")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in ranked:
        cells = [
            str(row["rank"]),
            str(row.get(ARM) or row.get("point", "")),
            f"**collapsed: {', '.join(row['collapsed'].split())}**" if row["collapsed"] else "no",
            f"{fid_gap(row):.1f}",
            f"{row.get('kimg', float('nan')):g}",
            reporting.format_duration(row.get("train_seconds", float("nan"))),
        ]
        for name in classes:
            cells += [
                f"{row[f'{name}/fid']:.1f}",
                f"{row[f'{name}/fid_matched']:.1f} ({row[f'{name}/fid_floor']:.1f})",
                f"{row[f'{name}/kid_mean']:.3f} ({row[f'{name}/kid_floor']:.3f})",
                f"{row[f'{name}/precision']:.2f} / {row[f'{name}/recall']:.2f}",
                f"{diversity.format_score(row.get(f'{name}/diversity'))} "
                f"({diversity.format_score(row.get(f'{name}/coarse_diversity'))})",
            ]
        if gains:
            gain = row.get("classifier_gain")
            cells.append("" if gain is None else f"{gain:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(workdir: pathlib.Path, rows: list[dict], parameters: list[str]) -> None:
    """sweep.csv (in planned order, with each point's rank and collapsed classes), sweep.md (the
    ranked table) and the plots: one per parameter (FID, gap to floor, wall time, classifier
    gain) for grids and lists; per-class FID beside its floor and the sample grids for arms."""
    by_name = {row["point"]: row for row in rank_points(rows)}
    in_order = [by_name[row["point"]] for row in rows]
    columns = [key for key in dict.fromkeys(k for row in in_order for k in row) if key != "samples"]
    with open(workdir / "sweep.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(in_order)
    (workdir / "sweep.md").write_text(f"{RANKING_NOTE}\n\n{arms_table(rows)}")
    if ARM in parameters:
        viz.plot_arms(rows, workdir / "plots" / "arms_fid.png")
        grids = [
            {name: workdir / grid for name, grid in row.get("samples", {}).items()} for row in rows
        ]
        viz.image_table([row[ARM] for row in rows], grids, workdir / "samples.png")
        return
    for parameter in parameters:
        viz.plot_sweep(rows, parameter, workdir / "plots" / f"sweep_{parameter}.png")
