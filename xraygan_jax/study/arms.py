"""The arms of the augmentation study, and what one classifier of an arm produced.

    planned = arms.plan_arms(config)      # [Arm(0.0), Arm(0.2), Arm(0.2, "duplicate"), ...]
    result = arms.ArmResult.load(path)    # one classifier: arms/<arm_id>/result.json

An `Arm` says which extra images a training set gets and how many. An `ArmResult` is one
classifier of one arm, seed and real-set size: its row of study.csv (`CSV_COLUMNS +
EXTRA_COLUMNS`, in that order), its validation history and its test probabilities (the rows of
predictions.csv), saved as arms/<arm>/result.json so that a rerun of the study trains it no more.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import ml_collections

from xraygan_jax.metrics import classification

# study.csv: what identifies a classifier, then `binary_metrics` at threshold 0.5 up to the
# confusion counts (type I / II errors are fp / fn).
METRIC_COLUMNS = classification.METRIC_NAMES[: classification.METRIC_NAMES.index("fn") + 1]
CSV_COLUMNS = ("arm", "fraction", "mode", "real_per_class", "seed") + METRIC_COLUMNS
EXTRA_COLUMNS = (
    "threshold_val",
    "accuracy_at_val_threshold",
    "sensitivity_at_val_threshold",
    "specificity_at_val_threshold",
    "num_real",
    "num_synthetic",
    "source",
    "classic",
    "best_step",
    "seconds",
)
# The control arms a study may ask for (`config.study.controls`).
CONTROLS = ("duplicate", "oracle", "classic")
# Where an arm's extra images come from.
SOURCES = ("gan", "duplicate", "oracle")


def arm_name(fraction: float) -> str:
    """'0%', '10%', '100%': the fraction of synthetic images in the training set."""
    return f"{fraction * 100:g}%"


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of the study: which extra images, how many, and whether classic augmentation.

    Attributes:
      fraction: share of extra images in the training set (module `mixing`); 0 = none.
      source: "gan" (synthetic), "duplicate" (copies of real train images) or "oracle" (new
        real images); meaningless at fraction 0.
      classic: the classical augmentation (`config.study.classic_augment`) instead of the
        study's own `config.augment`.
    """

    fraction: float
    source: str = "gan"
    classic: bool = False

    @property
    def name(self) -> str:
        """'0%', '20%', '20% duplicate', '20% oracle', 'classic', '20% + classic'."""
        if self.fraction == 0:
            return "classic" if self.classic else arm_name(0.0)
        name = arm_name(self.fraction)
        if self.source != "gan":
            name += f" {self.source}"
        return name + (" + classic" if self.classic else "")

    @property
    def is_baseline(self) -> bool:
        return self.fraction == 0 and not self.classic

    def arm_id(self, size: int, seed: int) -> str:
        """The arm's folder name; the baseline's and synthetic arms' as before controls existed."""
        kind = "synthetic" if self.source == "gan" else self.source
        suffix = "_classic" if self.classic else ""
        return f"real{size or 'all'}_{kind}{self.fraction * 100:g}{suffix}_seed{seed}"


def plan_arms(config: ml_collections.ConfigDict) -> list[Arm]:
    """The arms of a study config, in the order the report lists them."""
    fractions = sorted({float(f) for f in config.study.fractions})
    controls = tuple(config.study.get("controls", ()))
    controlled = [f for f in fractions if 0 < f < 1]
    arms = [Arm(0.0)]
    if "classic" in controls:
        arms.append(Arm(0.0, classic=True))
    for fraction in controlled:
        arms.append(Arm(fraction))
        arms += [Arm(fraction, source) for source in ("duplicate", "oracle") if source in controls]
        if "classic" in controls:
            arms.append(Arm(fraction, classic=True))
    arms += [Arm(f) for f in fractions if f == 1.0]
    return arms


@dataclasses.dataclass(frozen=True)
class ArmResult:
    """One classifier of one arm, seed and real-set size, scored once on the test split.

    Attributes:
      arm, fraction, mode, real_per_class, seed: what identifies it (real_per_class: the
        per-class size, or "all").
      accuracy ... fn: `binary_metrics` at threshold 0.5 on the test split (METRIC_COLUMNS).
      threshold_val: the decision threshold chosen on validation; accuracy, sensitivity and
        specificity at it follow.
      num_real, num_synthetic: its training set's real and extra images.
      source: "real" (the 0% arms), "gan", "duplicate" or "oracle"; classic: the classical
        augmentation.
      best_step, seconds: the kept weights' step, the training time.
      history: the validation records ({"step", "loss/train", "loss/val", ...}).
      test_probabilities: P(class 1) of every test image, in the test split's order.
    """

    arm: str
    fraction: float
    mode: str
    real_per_class: int | str
    seed: int
    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    auc: float
    tp: int
    fp: int
    tn: int
    fn: int
    threshold_val: float
    accuracy_at_val_threshold: float
    sensitivity_at_val_threshold: float
    specificity_at_val_threshold: float
    num_real: int
    num_synthetic: int
    source: str
    classic: bool
    best_step: int
    seconds: float
    history: list[dict[str, Any]]
    test_probabilities: list[float]

    def row(self) -> list[Any]:
        """Its row of study.csv: the values of CSV_COLUMNS + EXTRA_COLUMNS."""
        return [getattr(self, column) for column in CSV_COLUMNS + EXTRA_COLUMNS]

    def to_json(self) -> dict[str, Any]:
        """The object of its result.json, fields in study.csv's order, then history and the
        test probabilities."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> ArmResult:
        """An ArmResult from a result.json's object.

        Results written before the control arms existed have no `source` and `classic`: they
        are the baseline ("real") or a synthetic arm ("gan"), without classic augmentation.
        """
        defaults = {"source": "real" if float(record["fraction"]) == 0 else "gan", "classic": False}
        return cls(**{**defaults, **record})

    @classmethod
    def load(cls, path: str | os.PathLike) -> ArmResult:
        """Reads arms/<arm>/result.json."""
        return cls.from_json(json.loads(pathlib.Path(path).read_text()))

    def save(self, path: str | os.PathLike) -> None:
        """Writes arms/<arm>/result.json atomically: a killed study leaves none or all of it."""
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.to_json(), allow_nan=True))
        os.replace(temporary, path)
