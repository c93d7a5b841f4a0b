"""The study's files: study.csv, predictions.csv, summary.json, plots/*.png and study.md.

    summaries = writers.write_outputs(config, workdir, results, data)

study.csv has one row per classifier (arm, seed and size; the columns `arms.CSV_COLUMNS` then
`arms.EXTRA_COLUMNS`), predictions.csv one per test image and classifier (anyone can recompute
every statistic from it), summary.json the numbers of `summary.summarise`, and study.md the
tables with intervals and p-values, the plots, and a verdict paragraph written from the numbers.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from xraygan_jax import viz
from xraygan_jax.metrics import statistics
from xraygan_jax.study import arms, images, summary

# How study.md and the plots name each endpoint of summary.ENDPOINTS.
ENDPOINT_TITLES = {
    "auc": "AUC",
    "accuracy": "accuracy at 0.5",
    "accuracy_at_val_threshold": "accuracy at the validation threshold",
    "sensitivity": "sensitivity at 0.5",
    "specificity": "specificity at 0.5",
}


def write_outputs(
    config, workdir: pathlib.Path, results: Sequence[arms.ArmResult], data: images.StudyData
) -> list[dict[str, Any]]:
    """study.csv, predictions.csv, summary.json, study.md and plots/ in `workdir`.

    Returns:
      The summaries of `summary.summarise` (summary.json's).
    """
    with open(workdir / "study.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(arms.CSV_COLUMNS + arms.EXTRA_COLUMNS)
        for result in results:
            writer.writerow(result.row())
    with open(workdir / "predictions.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["arm", "fraction", "mode", "real_per_class", "seed", "image", "label", "probability"]
        )
        for result in results:
            for index, (label, probability) in enumerate(
                zip(data.test.labels, result.test_probabilities, strict=True)
            ):
                writer.writerow(
                    [
                        result.arm,
                        result.fraction,
                        result.mode,
                        result.real_per_class,
                        result.seed,
                        index,
                        int(label),
                        f"{probability:.6f}",
                    ]
                )
    summaries = summary.summarise(config, results, data.test.labels, data.class_names)
    (workdir / "summary.json").write_text(json.dumps(summaries, indent=1, allow_nan=True))
    plots = write_plots(workdir, results, summaries, config.study.get("primary_metric", "auc"))
    write_markdown(config, workdir, summaries, data, plots)
    return summaries


def write_plots(
    workdir: pathlib.Path,
    results: Sequence[arms.ArmResult],
    summaries: Sequence[dict[str, Any]],
    primary: str = "auc",
) -> dict[str, str]:
    """Metrics against fraction (error bars), differences from 0% with their intervals, against
    real-set size, and training curves."""
    plots = {}
    by_size = _by_size(summaries)
    plots["by_fraction"] = viz.plot_study_by_fraction(
        by_size, workdir / "plots" / "metrics_by_fraction.png"
    )
    if any(f"d_{primary}" in s for s in summaries):
        plots["differences"] = viz.plot_study_differences(
            by_size, primary, ENDPOINT_TITLES[primary], workdir / "plots" / "differences.png"
        )
    if len(by_size) > 1:
        plots["by_size"] = viz.plot_study_by_size(
            by_size, workdir / "plots" / "metrics_by_real_size.png"
        )
    curves = {}
    for result in results:
        if result.seed == results[0].seed and result.real_per_class == results[-1].real_per_class:
            history = result.history
            curves[result.arm] = (
                [h["step"] for h in history],
                [h["loss/train"] for h in history],
                [h["loss/val"] for h in history],
            )
    plots["curves"] = viz.plot_training_curves(curves, workdir / "plots" / "training_curves.png")
    return plots


def _by_size(summaries: Sequence[dict[str, Any]]) -> dict[Any, list[dict[str, Any]]]:
    """{real_per_class: [its arms' summaries]}, sizes in the order summarised."""
    by_size: dict[Any, list[dict[str, Any]]] = {}
    for entry in summaries:
        by_size.setdefault(entry["real_per_class"], []).append(entry)
    return by_size


def _format_mean_std(s, metric, scale=100.0, digits=1) -> str:
    mean, std = s[f"{metric}_mean"], s[f"{metric}_std"]
    if not np.isfinite(mean):
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if np.isfinite(std):
        text += f" ± {std * scale:.{digits}f}"
    return text


def _points(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value * 100:+.1f}"


def _interval(low: float, high: float) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    return f"[{low * 100:+.1f}, {high * 100:+.1f}]"


def _p(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.3g}"


def _inference_paragraph(config, num_compared: int) -> str:
    primary = config.study.get("primary_metric", "auc")
    alpha = float(config.study.get("alpha", 0.05))
    return (
        f"Primary endpoint: **{ENDPOINT_TITLES[primary]}** (`study.primary_metric`), on which "
        "each classifier's weights were also chosen on validation. Every arm is compared with "
        "the 0% arm on the same seeds and test images. Δ is the seed-averaged difference (arm "
        "minus 0%, in points). Its interval is the primary one: a two-level bootstrap (seeds "
        "drawn again, then test images) whose spread is put on Student's t scale for the "
        f"number of seeds. p (Holm) adjusts the p-values for the {num_compared} arms compared "
        f"at each real-set size (Holm's step-down method). An arm is called better or worse "
        f"only when that adjusted p-value is below {alpha:g}. Otherwise the table gives the "
        "smallest difference that could have gone undetected (detectable: at 80% power, "
        "unadjusted). The paired t-interval and the sign-flip test over seeds stand beside it; "
        "they ignore the test images' sampling noise. The other endpoints are secondary: "
        "intervals only, not adjusted, no verdict. These are statements about this run: its "
        "seeds, its test split and the machine it ran on."
    )


def write_markdown(config, workdir: pathlib.Path, summaries, data: images.StudyData, plots) -> str:
    """study.md: the tables with intervals and p-values, the plots and a verdict paragraph."""
    primary = config.study.get("primary_metric", "auc")
    test_counts = np.bincount(data.test.labels, minlength=len(data.class_names))
    seeds = list(config.study.seeds)
    lines = ["# Augmentation study", ""]
    blocked = summary.why_no_claim(data.test.labels, data.class_names)
    for note in (blocked, summary.seed_note(len(seeds))):
        if note:
            lines += [f"**{note}**", ""]
    lines += [
        f"Classifier `{config.model.kind}`, {config.train.num_steps} steps per arm (batch "
        f"{config.train.batch_size}, {config.optim.name} lr {config.optim.lr}), mode "
        f"`{config.study.mode}`, {len(seeds)} seeds {seeds}. Test split: "
        + ", ".join(f"{n} {c}" for c, n in zip(data.class_names, test_counts, strict=True))
        + f"; validation (weights and threshold chosen on it): {len(data.val)} images carved "
        "from the real train split. Positive class: "
        f"{data.class_names[1]}. Threshold 0.5 unless noted.",
        "",
    ]
    by_size = _by_size(summaries)
    num_compared = max((sum("verdict" in s for s in rows) for rows in by_size.values()), default=0)
    if num_compared:
        lines += [_inference_paragraph(config, num_compared), ""]
    secondary = [e for e in summary.ENDPOINTS if e != primary]
    for size, rows in by_size.items():
        lines += [
            f"## Real images per class: {size}",
            "",
            "Mean ± sd over seeds; accuracy's interval is the two-level one (seeds and test "
            "images).",
            "",
            "| arm | train images (real + extra) | AUC | accuracy % [95% CI] | sensitivity % | "
            "specificity % | type I (FP) | type II (FN) | accuracy % at val threshold |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in rows:
            interval = _interval(s["accuracy_low"], s["accuracy_high"]).replace("+", "")
            lines.append(
                f"| {s['arm']} | {s['num_real']} + {s['num_synthetic']} | "
                f"{_format_mean_std(s, 'auc', scale=1.0, digits=3)} | "
                f"{_format_mean_std(s, 'accuracy')} {interval} | "
                f"{_format_mean_std(s, 'sensitivity')} | {_format_mean_std(s, 'specificity')} | "
                f"{_format_mean_std(s, 'fp', scale=1.0)} | "
                f"{_format_mean_std(s, 'fn', scale=1.0)} | "
                f"{_format_mean_std(s, 'accuracy_at_val_threshold')} |"
            )
        compared = [s for s in rows if "verdict" in s]
        if compared:
            lines += [
                "",
                f"Primary endpoint, {ENDPOINT_TITLES[primary]}, against 0%:",
                "",
                "| arm | Δ points [95% CI] | p | p (Holm) | detectable | paired t over seeds | "
                "sign-flip p | verdict |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for s in compared:
                d = f"d_{primary}"
                lines.append(
                    f"| {s['arm']} | {_points(s.get(d, np.nan))} "
                    f"{_interval(s.get(d + '_low', np.nan), s.get(d + '_high', np.nan))} | "
                    f"{_p(s.get(d + '_p', np.nan))} | {_p(s['p_holm'])} | "
                    f"{_detectable(s, primary)} | "
                    f"{_interval(s.get(d + '_t_low', np.nan), s.get(d + '_t_high', np.nan))} | "
                    f"{_p(s.get(d + '_sign_p', np.nan))} | {s['verdict']} |"
                )
            lines += [
                "",
                "Secondary endpoints against 0% (Δ points [95% CI], not adjusted, no verdict), "
                "and McNemar's exact test per seed at 0.5:",
                "",
                "| arm | "
                + " | ".join(ENDPOINT_TITLES[e] for e in secondary)
                + " | McNemar p per seed |",
                "|---|" + "---|" * (len(secondary) + 1),
            ]
            for s in compared:
                cells = [
                    f"{_points(s.get(f'd_{e}', np.nan))} "
                    f"{_interval(s.get(f'd_{e}_low', np.nan), s.get(f'd_{e}_high', np.nan))}"
                    for e in secondary
                ]
                p_values = ", ".join(f"{p:.3g}" for p in s["mcnemar_p"])
                lines.append(f"| {s['arm']} | " + " | ".join(cells) + f" | {p_values} |")
        brackets = [bracket_sentence(s, primary) for s in rows if "recovered" in s]
        if brackets:
            lines += ["", *brackets]
        lines.append("")
    lines += ["## Verdict", "", verdict_paragraph(summaries, primary), ""]
    lines += ["## Plots", ""]
    for title, key in [
        ("Metrics against the synthetic fraction", "by_fraction"),
        (f"Differences from 0% in {ENDPOINT_TITLES[primary]}, 95% CI", "differences"),
        ("Metrics against the real-set size", "by_size"),
        ("Training curves (first seed, largest real set)", "curves"),
    ]:
        if key in plots:
            lines.append(f"![{title}]({os.path.relpath(plots[key], workdir)})")
            lines.append("")
    lines += [
        "Files: `study.csv` (one row per arm, seed and size), `predictions.csv` (every test "
        "probability), `summary.json` (the numbers of these tables).",
        "",
    ]
    path = workdir / "study.md"
    path.write_text("\n".join(lines))
    return str(path)


def _detectable(s: dict, endpoint: str) -> str:
    mde = s.get(f"d_{endpoint}_mde", np.nan)
    return "n/a" if not np.isfinite(mde) else f"{mde * 100:.1f}"


def bracket_sentence(s: dict, primary: str) -> str:
    """How a synthetic arm reads against its duplicate and oracle controls, in one sentence."""
    title = ENDPOINT_TITLES[primary]
    ceiling = (
        f"the oracle's gain over duplicates in {title}: {_points(s['oracle_gain'])} points "
        f"{_interval(s['oracle_gain_low'], s['oracle_gain_high'])}"
    )
    if s["recovered_defined"]:
        return (
            f"**{s['arm']} synthetic, {s['real_per_class']} real per class:** the GAN images "
            f"recovered {s['recovered'] * 100:.0f}% [{s['recovered_low'] * 100:.0f}%, "
            f"{s['recovered_high'] * 100:.0f}%] of the oracle's gain over duplicate ({ceiling}). "
            "0% would mean no more than extra looks at real images, 100% as much as new real "
            "images."
        )
    return (
        f"**{s['arm']} synthetic, {s['real_per_class']} real per class:** new real images did "
        f"not detectably beat duplicates of the real ones ({ceiling}), so at this size no share "
        "of a gain can be read: even a perfect generator's images would not be shown to help."
    )


def verdict_paragraph(summaries: Sequence[dict], primary: str = "auc") -> str:
    """One paragraph from the numbers: which arms differ from 0% on the primary endpoint."""
    compared = [s for s in summaries if "verdict" in s]
    if not compared:
        return "Only the baseline was trained; there is nothing to compare."
    title = ENDPOINT_TITLES[primary]
    if all(s["verdict"] == statistics.NOT_ENOUGH_DATA for s in compared):
        return (
            "Not enough data for any verdict (see the note at the top): the differences in the "
            "tables are shown, but none is called."
        )

    def describe(s):
        d = f"d_{primary}"
        return (
            f"{s['arm']} with {s['real_per_class']} real images per class "
            f"({_points(s[d])} points, 95% CI {_points(s[d + '_low'])} to "
            f"{_points(s[d + '_high'])}, Holm p {_p(s['p_holm'])})"
        )

    sentences = []
    groups = {
        word: [s for s in compared if s["verdict"] == word]
        for word in (statistics.BETTER, statistics.WORSE, statistics.NO_DETECTABLE_DIFFERENCE)
    }
    if groups[statistics.BETTER]:
        sentences.append(
            f"{title} rose beyond noise for "
            + "; ".join(map(describe, groups[statistics.BETTER]))
            + "."
        )
    else:
        sentences.append(
            f"No arm beat the 0% baseline in {title} beyond noise: no gain is claimed."
        )
    if groups[statistics.WORSE]:
        sentences.append(
            "It fell beyond noise for " + "; ".join(map(describe, groups[statistics.WORSE])) + "."
        )
    if groups[statistics.NO_DETECTABLE_DIFFERENCE]:
        sentences.append(
            "No detectable difference for "
            + "; ".join(
                f"{describe(s)}: a difference under {_detectable(s, primary)} points could "
                "have gone undetected"
                for s in groups[statistics.NO_DETECTABLE_DIFFERENCE]
            )
            + "."
        )
    sentences.append(
        "An arm counts as better or worse only when its Holm-adjusted p-value on the primary "
        "endpoint is below the study's alpha, i.e. its two-level interval excludes zero after "
        "the adjustment for the arms compared."
    )
    return " ".join(sentences)
