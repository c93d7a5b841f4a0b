"""Simulated studies with a known answer: how often the study's verdict rule is wrong.

A study compares classifiers over seeds on one test split. `simulate_arm_scores` draws such
classifiers from a model with the three sources of noise a real study has:

- the test images: each image has a difficulty shared by every classifier (some films are hard
  for all of them), drawn once per simulated study;
- the seed: each classifier has a skill of its own (initialisation and data order), so its
  accuracy varies from seed to seed with a chosen standard deviation (in accuracy points);
- seed-by-image noise: which particular images a classifier gets wrong.

Classifier c is right on image i when `skill_c + effect - difficulty_i + noise_ci > 0`, and its
probability of the true class is the sigmoid of that margin. Two arms drawn with the same effect
differ only by chance (a null study); an arm drawn with a positive effect is truly better by the
accuracy gain `effect_for_gain` computes. `verdict_rates` runs many such studies through
`statistics.compare_with_baseline`, the function the study itself calls, and counts how often
each verdict comes out. docs/study_statistics.md has the table and the command.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.optimize
import scipy.stats

from xraygan_jax.metrics import statistics

# Standard deviation of the seed-by-image noise, relative to the image difficulty's (1): a
# classifier's errors are mostly the hard images, partly its own.
INTERACTION_SD = 0.6
# Mean margin of the baseline: about 84% accuracy, the phantom design's small-CNN range.
BASE_MARGIN = 1.15


@dataclasses.dataclass(frozen=True)
class Setting:
    """One simulated design.

    Attributes:
      num_seeds: classifiers per arm (paired by seed across arms).
      num_test: test images (about 40% NORMAL, as the phantom test split).
      seed_sd_points: seed-to-seed standard deviation of accuracy, in points.
      gain_points: the true accuracy gain of the compared arm, in points (0 = a null study).
    """

    num_seeds: int
    num_test: int
    seed_sd_points: float
    gain_points: float = 0.0


def _accuracy(margin: float, skill_sd: float) -> float:
    """Expected accuracy at a mean margin, over images, seeds and interaction noise."""
    return float(scipy.stats.norm.cdf(margin / np.sqrt(1.0 + INTERACTION_SD**2 + skill_sd**2)))


def skill_sd_for(seed_sd_points: float) -> float:
    """The skill spread (margin units) that gives accuracy this sd (points) from seed to seed."""
    if seed_sd_points <= 0:
        return 0.0
    scale = np.sqrt(1.0 + INTERACTION_SD**2)
    density = scipy.stats.norm.pdf(BASE_MARGIN / scale) / scale
    return float(seed_sd_points / 100.0 / density)


def effect_for_gain(gain_points: float, skill_sd: float) -> float:
    """The shift in mean margin that raises expected accuracy by `gain_points`."""
    if gain_points == 0:
        return 0.0
    target = _accuracy(BASE_MARGIN, skill_sd) + gain_points / 100.0
    return float(
        scipy.optimize.brentq(lambda m: _accuracy(m, skill_sd) - target, BASE_MARGIN, 10.0)
        - BASE_MARGIN
    )


def simulate_arms(
    setting: Setting, gains_points: dict[str, float], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels [N], {arm: scores [S, N]}) of one simulated study: arms on one test split.

    Every arm is drawn with the seed-to-seed spread of `setting` and its own true accuracy gain
    (points) over a baseline; all share the test images and their difficulties.
    """
    labels = (rng.random(setting.num_test) >= 0.4).astype(np.int64)
    labels[:2] = (0, 1)  # both classes present, however small the split
    difficulty = rng.standard_normal(setting.num_test)
    skill_sd = skill_sd_for(setting.seed_sd_points)
    scores = {}
    for name, gain in gains_points.items():
        shift = effect_for_gain(gain, skill_sd)
        skill = BASE_MARGIN + shift + skill_sd * rng.standard_normal((setting.num_seeds, 1))
        noise = INTERACTION_SD * rng.standard_normal((setting.num_seeds, setting.num_test))
        margin = skill - difficulty[None, :] + noise
        correct_probability = 1.0 / (1.0 + np.exp(-margin))
        scores[name] = np.where(
            labels[None, :] == 1, correct_probability, 1.0 - correct_probability
        )
    return labels, scores


def simulate_study(setting: Setting, rng: np.random.Generator):
    """(labels [N], baseline scores [S, N], arm scores [S, N]): the arm `setting.gain_points`
    better than the baseline."""
    labels, scores = simulate_arms(setting, {"base": 0.0, "arm": setting.gain_points}, rng)
    return labels, scores["base"], scores["arm"]


def verdict_rates(
    setting: Setting,
    *,
    num_studies: int = 200,
    metric: str = "accuracy",
    num_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Shares of `num_studies` simulated studies whose verdict was better / worse / neither.

    Returns:
      {"better", "worse", "no detectable difference", "called" (better + worse),
      "t_called" (the paired t-interval alone excluding zero), "mean_mde"}.
    """
    rng = np.random.default_rng(seed)
    counts = {statistics.BETTER: 0, statistics.WORSE: 0, statistics.NO_DETECTABLE_DIFFERENCE: 0}
    t_called, mdes = 0, []
    for study in range(num_studies):
        labels, base, arm = simulate_study(setting, rng)
        result = statistics.compare_with_baseline(
            labels, base, {"arm": arm}, metric, num_resamples=num_resamples, seed=study
        )["arm"]
        counts[result["verdict"]] += 1
        t_called += int(result["t_low"] > 0 or result["t_high"] < 0)
        mdes.append(result["mde"])
    rates = {word: count / num_studies for word, count in counts.items()}
    rates["called"] = rates[statistics.BETTER] + rates[statistics.WORSE]
    rates["t_called"] = t_called / num_studies
    rates["mean_mde"] = float(np.mean(mdes))
    return rates


def bracket_coverage(
    setting: Setting,
    *,
    oracle_gain_points: float,
    gan_gain_points: float,
    num_studies: int = 200,
    num_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """How often the interval of the recovered share covers its true value.

    Each simulated study has a duplicate arm (no gain over the baseline it stands for), an oracle
    arm `oracle_gain_points` better and a GAN arm `gan_gain_points` better, so the true share is
    about gan_gain / oracle_gain (exactly so on the margin scale, which is what is simulated).
    Studies where the oracle's gain is not detected are counted apart: the study reports no share
    there.

    Returns:
      {"coverage" (among studies with a share), "defined" (share of studies with one),
      "true_share"}.
    """
    rng = np.random.default_rng(seed)
    skill_sd = skill_sd_for(setting.seed_sd_points)
    oracle_effect = effect_for_gain(oracle_gain_points, skill_sd)
    gan_effect = effect_for_gain(gan_gain_points, skill_sd)
    truth_points = {
        name: _accuracy(BASE_MARGIN + effect, skill_sd)
        for name, effect in (("duplicate", 0.0), ("oracle", oracle_effect), ("gan", gan_effect))
    }
    true_share = (truth_points["gan"] - truth_points["duplicate"]) / (
        truth_points["oracle"] - truth_points["duplicate"]
    )
    covered = defined = 0
    for study in range(num_studies):
        labels, scores = simulate_arms(
            setting,
            {"duplicate": 0.0, "oracle": oracle_gain_points, "gan": gan_gain_points},
            rng,
        )
        points, replicates = statistics.seed_image_bootstrap(
            labels,
            scores,
            "accuracy",
            num_resamples=num_resamples,
            seed=study,
        )
        ceiling = statistics.interval_from_replicates(
            points["oracle"] - points["duplicate"],
            replicates["oracle"] - replicates["duplicate"],
            setting.num_seeds,
        )
        if ceiling["low"] <= 0:
            continue
        defined += 1
        share = statistics.recovered_share(points, replicates, setting.num_seeds)
        covered += int(share["low"] <= true_share <= share["high"])
    return {
        "coverage": covered / defined if defined else float("nan"),
        "defined": defined / num_studies,
        "true_share": float(true_share),
    }


def accuracy_interval_coverage(
    setting: Setting, *, num_studies: int = 200, num_resamples: int = 1000, seed: int = 0
) -> float:
    """How often one arm's two-level accuracy interval covers its expected accuracy.

    The expected accuracy is over new seeds and new test images from the same population, the
    quantity the interval in the study's arm table claims to cover.
    """
    rng = np.random.default_rng(seed)
    truth = _accuracy(BASE_MARGIN, skill_sd_for(setting.seed_sd_points))
    covered = 0
    for study in range(num_studies):
        labels, scores = simulate_arms(setting, {"arm": 0.0}, rng)
        points, replicates = statistics.seed_image_bootstrap(
            labels, scores, "accuracy", num_resamples=num_resamples, seed=study
        )
        interval = statistics.interval_from_replicates(
            points["arm"], replicates["arm"], setting.num_seeds
        )
        covered += int(interval["low"] <= truth <= interval["high"])
    return covered / num_studies


def calibration_table(
    *,
    seeds: tuple[int, ...] = (3, 5, 10),
    seed_sds_points: tuple[float, ...] = (2.0, 5.0, 9.0),
    gain_points: float = 5.0,
    num_test: int = 300,
    num_studies: int = 400,
    num_resamples: int = 1000,
    progress=None,
) -> list[dict[str, float]]:
    """False-difference rate and power of the verdict rule over a grid of designs.

    Returns:
      One row per (seeds, seed sd): "num_seeds", "seed_sd_points", "false_rate" (share of null
      studies with a verdict), "t_false_rate" (the paired t-interval alone), "power" (share of
      studies with a true `gain_points` gain called better), "t_power", "mde_points" (mean
      minimum detectable effect in points).
    """
    rows = []
    for num_seeds in seeds:
        for seed_sd in seed_sds_points:
            null = verdict_rates(
                Setting(num_seeds, num_test, seed_sd),
                num_studies=num_studies,
                num_resamples=num_resamples,
                seed=1,
            )
            gain = verdict_rates(
                Setting(num_seeds, num_test, seed_sd, gain_points),
                num_studies=num_studies,
                num_resamples=num_resamples,
                seed=2,
            )
            rows.append(
                {
                    "num_seeds": num_seeds,
                    "seed_sd_points": seed_sd,
                    "false_rate": null["called"],
                    "t_false_rate": null["t_called"],
                    "power": gain[statistics.BETTER],
                    "t_power": gain["t_called"],
                    "mde_points": 100 * null["mean_mde"],
                }
            )
            if progress is not None:
                progress(rows[-1])
    return rows
