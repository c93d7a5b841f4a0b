"""GAN-metric records: one per (GAN, epoch, class), the lines of a run's eval.jsonl.

    records.write_records(run.eval_path, evaluator.records(metrics, gan=name, epoch=epoch))
    shown = records.latest_records(records.read_records(run.eval_path))
    lines = records.summary_section(shown)                  # the evaluation part of summary.md

A record is `GANMetricsEvaluator.records`' dict: the protocol's fields (class, reference_split,
resize, batch_stats, ema), `gan_metrics.compare`'s numbers and what the caller adds (gan, epoch;
or images_dir). The file itself is read and rewritten by `runs` (`read_jsonl`, `rewrite_jsonl`),
which also drops the records a resumed run writes again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from xraygan_jax import runs
from xraygan_jax.metrics import diversity
from xraygan_jax.train import reporting

SUMMARY_BEGIN = "<!-- evaluation: written from eval.jsonl -->"
SUMMARY_END = "<!-- end of evaluation -->"
# The fields that make two records the same evaluation: a newer one replaces the older.
_IDENTITY = ("gan", "epoch", "class", "reference_split", "resize", "batch_stats", "num_fake")


def _same_evaluation(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in _IDENTITY)


def write_records(path: str | os.PathLike, records: Sequence[dict]) -> None:
    """Appends records to a JSON-lines file, replacing earlier records of the same evaluation."""
    runs.rewrite_jsonl(
        path, lambda old: not any(_same_evaluation(old, new) for new in records), append=records
    )


def read_records(path: str | os.PathLike) -> list[dict]:
    """The records of an eval.jsonl, in file order; [] when there is none.

    Records written before a field existed (e.g. `diversity`) are returned as they are: readers
    use `record.get` for such fields (metrics.diversity's rule leaves a missing figure out).
    """
    return runs.read_jsonl(path)


def latest_records(records: Sequence[dict]) -> list[dict]:
    """The records of each GAN's latest evaluated epoch, in file order."""
    latest: dict[object, int] = {}
    for record in records:
        gan = record.get("gan")
        latest[gan] = max(latest.get(gan, record["epoch"]), record["epoch"])
    return [r for r in records if r["epoch"] == latest[r.get("gan")]]


def format_record(record: dict) -> str:
    """'NORMAL: FID 301.20 (floor 50.10; N real 24, generated 24), KID 0.4123, precision 0.000,
    recall 0.000, diversity 0.031', the line a person reads in the log."""
    return (
        f"{record['class']}: FID {record['fid']:.2f} (floor "
        f"{record.get('fid_floor', float('nan')):.2f}; N real {record['num_real']}, generated "
        f"{record['num_fake']}), KID {record.get('kid_mean', float('nan')):.4f}, precision "
        f"{record.get('precision', float('nan')):.3f}, {diversity.describe(record)}"
    )


def emit_collapse_warnings(records: Sequence[dict], *, prefix: str = "") -> list[str]:
    """Prints 'PREFIX WARNING: <class> collapsed ...' to standard error for each collapsed record.

    Returns:
      The warnings (without prefix), as metrics.diversity.collapse_warnings.
    """
    found = diversity.collapse_warnings(records)
    for message in found:
        reporting.emit(f"{prefix}WARNING: {message}")
    return found


def summary_section(records: Sequence[dict]) -> list[str]:
    """The evaluation part of a run's summary.md: each GAN's latest evaluated checkpoint, a
    warning per collapsed class first. [] when there are no records."""
    if not records:
        return []
    shown = latest_records(records)
    lines = [SUMMARY_BEGIN, "", "## Evaluation", ""]
    for message in diversity.collapse_warnings(shown):
        lines.append(f"- **WARNING: {message}**")
    if lines[-1] != "":
        lines.append("")
    lines += [
        "Latest evaluated checkpoint of each GAN (`eval.jsonl`). Diversity: the generated "
        "images' mean pairwise Inception-feature distance over the real images' (1: as varied "
        "as the real ones, 0: all alike); coarse: the same for the images averaged down to "
        f"{diversity.COARSE_SIZE} x {diversity.COARSE_SIZE} pixels; {diversity.RULE}.",
        "",
        "| GAN | epoch | class | G BatchNorm | N real | N generated | FID | FID at N/2 (floor) "
        "| KID | precision | recall | diversity | coarse diversity | collapsed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for r in shown:
        lines.append(
            f"| {r.get('gan', '')} | {r['epoch']} | {r['class']} | {r.get('batch_stats', '')} | "
            f"{r['num_real']} | {r['num_fake']} | {r['fid']:.1f} | "
            f"{r.get('fid_matched', nan):.1f} ({r.get('fid_floor', nan):.1f}) | "
            f"{r.get('kid_mean', nan):.4f} | {r.get('precision', nan):.3f} | "
            f"{r.get('recall', nan):.3f} | {diversity.format_score(r.get('diversity'))} | "
            f"{diversity.format_score(r.get('coarse_diversity'))} | "
            f"{'**yes**' if diversity.record_collapsed(r) else 'no'} |"
        )
    return [*lines, "", SUMMARY_END]
