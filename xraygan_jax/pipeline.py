"""The main job: data -> GAN(s) -> GAN metrics with floors -> augmentation study -> report.

    pipeline.run_pipeline(config, "runs/demo")      # experiments/configs/pipeline_demo.py

Stages, each resumable; a rerun skips finished stages and resumes the others:
  data      builds the configured data set once (the embedded phantom set needs no download);
  gan       trains the DC-cGAN (`workdir/gan`, a normal run folder);
  fcgan     the fully-connected cGAN too, when `config.train_fcgan` (`workdir/fcgan`);
  evaluate  FID / KID / precision-recall per class and checkpoint, beside real-vs-real floors,
            against the train split; the best checkpoint is the one with the lowest mean
            `fid_matched - fid_floor` over classes (train data only: the test split stays unseen);
  study     the augmentation study on that checkpoint's images (`workdir/study`);
  report    report.md and report.html (self-contained) in `workdir`.

`workdir/pipeline.json` records each stage's status, wall time and error; `workdir/config.json`
the config. A workdir made with another config is refused (the differing fields are named), so
nothing is overwritten.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np

from xraygan_jax import errors, gan_loop, report, study
from xraygan_jax.data import sources
from xraygan_jax.evaluators import drivers
from xraygan_jax.metrics import diversity
from xraygan_jax.train import reporting

STAGES = ("data", "gan", "fcgan", "evaluate", "study", "report")
STATE_FILE = "pipeline.json"
CONFIG_FILE = "config.json"


def gan_config(config: ml_collections.ConfigDict, name: str = "gan") -> ml_collections.ConfigDict:
    """The GAN job config of the pipeline (`config.gan` or `config.fcgan`) with its data."""
    job = config[name].copy_and_resolve_references()
    with job.unlocked():
        job.data = config.data.copy_and_resolve_references()
    return job


def study_config(config: ml_collections.ConfigDict, epoch: int) -> ml_collections.ConfigDict:
    """The study config of the pipeline, with its data and the chosen GAN checkpoint."""
    job = config.study_job.copy_and_resolve_references()
    with job.unlocked():
        job.data = config.data.copy_and_resolve_references()
        job.synthetic.epoch = int(epoch)
    return job


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: list(tree) if isinstance(tree, (list, tuple)) else tree}


def check_workdir(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> None:
    """Raises errors.ConfigError when `workdir` holds a pipeline of another config.

    Only fields that change results are compared; the message names each one with both values.
    """
    path = workdir / CONFIG_FILE
    if not path.exists():
        return
    saved = _flatten(json.loads(path.read_text()))
    current = _flatten(json.loads(config.to_json_best_effort()))
    differing = [
        f"{key}: workdir {saved.get(key)!r}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if saved.get(key) != current.get(key)
    ]
    if differing:
        shown = "; ".join(differing[:8]) + (
            f"; and {len(differing) - 8} more" if len(differing) > 8 else ""
        )
        raise errors.ConfigError(
            f"{workdir} holds a pipeline run with another config ({shown}). Nothing was "
            "overwritten: use a new --workdir, or the same config to resume."
        )


class _State:
    """pipeline.json: per stage {status, seconds, error}, plus the chosen checkpoint."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.data.setdefault("stages", {})

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"status": "pending"})

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=2, allow_nan=True) + "\n")
        os.replace(temporary, self.path)


def best_epoch(records: Sequence[dict]) -> tuple[int, dict[int, float]]:
    """The epoch with the lowest mean over classes of `fid_matched - fid_floor` (train data),
    among the epochs where no class has collapsed (`metrics.diversity`'s rule) if there are any:
    a collapsed template can have the lower FID, and adds no variety to the study.

    Falls back to the mean raw FID when a class has no floor. Returns (epoch, {epoch: score}).
    """
    by_epoch: dict[int, list[float]] = {}
    collapsed: set[int] = set()
    for record in records:
        gap = record.get("fid_matched", float("nan")) - record.get("fid_floor", float("nan"))
        score = gap if np.isfinite(gap) else record["fid"]
        by_epoch.setdefault(int(record["epoch"]), []).append(float(score))
        if diversity.record_collapsed(record):
            collapsed.add(int(record["epoch"]))
    scores = {epoch: float(np.mean(values)) for epoch, values in sorted(by_epoch.items())}
    if not scores:
        raise errors.MissingError("no evaluation records to choose a checkpoint from")
    return min(scores, key=lambda epoch: (epoch in collapsed, scores[epoch])), scores


def run_pipeline(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    command: str = "",
) -> str:
    """Runs (or resumes) every stage and writes the report. Returns the path of report.md.

    Raises:
      errors.ConfigError: the workdir holds another config.
      Whatever a stage raised, after pipeline.json and the report record which stage failed.
    """
    workdir = pathlib.Path(workdir)
    check_workdir(config, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / CONFIG_FILE).write_text(config.to_json_best_effort(indent=2) + "\n")
    state = _State(workdir / STATE_FILE)
    if command:
        state.data["command"] = command
    stages: list[tuple[str, Callable[[], dict]]] = [
        ("data", lambda: _data_stage(config)),
        ("gan", lambda: _gan_stage(config, workdir, "gan")),
    ]
    if config.train_fcgan:
        stages.append(("fcgan", lambda: _gan_stage(config, workdir, "fcgan")))
    stages += [
        ("evaluate", lambda: _evaluate_stage(config, workdir)),
        ("study", lambda: _study_stage(config, workdir, state)),
    ]
    started = time.perf_counter()
    for index, (name, run) in enumerate(stages, start=1):
        record = state.stage(name)
        if record["status"] == "done":
            reporting.emit(f"[pipeline] stage {index}/{len(stages)} {name}: done before, kept")
            continue
        reporting.emit(f"[pipeline] stage {index}/{len(stages)} {name} ...")
        stage_started = time.perf_counter()
        record.update(status="running", error="")
        state.save()
        try:
            outcome = run()
        except BaseException as error:
            record.update(
                status="failed",
                seconds=record.get("seconds", 0.0) + time.perf_counter() - stage_started,
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(limit=8),
            )
            state.save()
            try:
                report.write_report(config, workdir, state.data)
            except Exception:  # noqa: BLE001 - the stage's error is the one to show
                pass
            raise
        record.update(
            status="done",
            seconds=record.get("seconds", 0.0) + time.perf_counter() - stage_started,
            **(outcome or {}),
        )
        state.save()
        reporting.emit(
            f"[pipeline] {name} done in {reporting.format_duration(record['seconds'])}; "
            f"total {reporting.format_duration(time.perf_counter() - started)}"
        )
    stage_started = time.perf_counter()
    path = report.write_report(config, workdir, state.data)
    state.stage("report").update(status="done", seconds=time.perf_counter() - stage_started)
    state.save()
    report.write_report(config, workdir, state.data)  # with the report stage's own time
    reporting.emit(f"[pipeline] report: {path}")
    return path


def _data_stage(config) -> dict:
    prepared = sources.prepare(config.data)
    return {"summary": prepared.format() if hasattr(prepared, "format") else str(prepared)}


def _gan_stage(config, workdir: pathlib.Path, name: str) -> dict:
    results = gan_loop.train_and_evaluate(gan_config(config, name), workdir / name)
    return {
        "gans": {
            gan: {"steps": r.steps, "seconds": r.seconds, "images_per_second": r.images_per_second}
            for gan, r in results.items()
        }
    }


def _evaluate_stage(config, workdir: pathlib.Path) -> dict:
    outcome = {}
    for name in ("gan", "fcgan"):
        if name == "fcgan" and not config.train_fcgan:
            continue
        records = drivers.evaluate_run(workdir / name)
        epoch, scores = best_epoch(records)
        outcome[name] = {"best_epoch": epoch, "scores": {str(k): v for k, v in scores.items()}}
    return {"evaluation": outcome}


def _study_stage(config, workdir: pathlib.Path, state: _State) -> dict:
    epoch = state.stage("evaluate")["evaluation"]["gan"]["best_epoch"]
    job = study_config(config, epoch)
    study.run_study(job, workdir / "study", gan_workdir=workdir / "gan")
    return {"gan_epoch": epoch}
