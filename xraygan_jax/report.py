"""The pipeline's report: report.md (Markdown with linked PNGs) and report.html (self-contained).

Written from what the stages left in the workdir (run folders, eval.jsonl, the study's files)
and `pipeline.json`, so it can be rewritten at any time, also after a stage failed.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import pathlib
import platform
import re
from importlib import metadata

import jax
import markdown
import ml_collections

from xraygan_jax import runs, viz
from xraygan_jax.data import sources
from xraygan_jax.evaluators import records
from xraygan_jax.metrics import diversity
from xraygan_jax.train import reporting

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "scipy")
# Marks the page with how many of its images decoded, so a headless browser can check them all.
_IMAGE_CHECK = (
    "<script>window.addEventListener('load', () => { const images = [...document.images]; "
    "document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0)"
    ".length + '/' + images.length; });</script>"
)
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
p > img { max-width: 49%; vertical-align: top; }
p > img:only-child { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
code { background: #f6f6f6; padding: 0 0.2em; }
.failed { color: #b00; font-weight: bold; }
"""


def _rel(path: str | os.PathLike, workdir: pathlib.Path) -> str:
    return os.path.relpath(path, workdir)


def _versions() -> list[str]:
    lines = [f"Python {platform.python_version()} on {platform.platform()}"]
    for name in _PACKAGES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            names = [
                line.split(":", 1)[1].strip() for line in file if line.startswith("model name")
            ]
        if names:
            cpu = f"{names[0]} ({len(names)} logical cores)"
    except OSError:
        pass
    lines.append(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; CPU: {cpu}")
    return lines


def _real_grids(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> dict[str, str]:
    """A grid of real train images per class, for comparison with the generated ones."""
    directory = workdir / "figures"
    names = sources.class_names(config.data)
    existing = {name: directory / f"real_{name}.png" for name in names}
    if all(path.exists() for path in existing.values()):
        return {name: str(path) for name, path in existing.items()}
    source = sources.get_source(config.data, "train")
    images, labels = sources.sample_per_class(source, len(names), 16, seed=0)
    return viz.save_class_grids(images, labels, names, directory, prefix="real_", nrow=8)


def _stage_table(state: dict) -> list[str]:
    lines = ["| stage | status | wall time |", "|---|---|---|"]
    total = 0.0
    for name, record in state.get("stages", {}).items():
        seconds = float(record.get("seconds", 0.0))
        total += seconds
        status = record.get("status", "pending")
        if status == "failed":
            status = f"**failed**: {record.get('error', '')}"
        lines.append(f"| {name} | {status} | {reporting.format_duration(seconds)} |")
    lines.append(f"| all | | {reporting.format_duration(total)} |")
    return lines


def _budget(job) -> str:
    """'201 epochs', or the image budget when the run had one."""
    if float(job.train.get("num_images", 0)) > 0:
        return f"{job.train.num_images:g} thousand images shown"
    return f"{job.train.num_epochs} epochs"


def _gan_section(config, workdir: pathlib.Path, name: str, title: str, state: dict) -> list[str]:
    run = runs.Run(workdir / name)
    if not run.config_path.exists():
        return []
    lines = [f"## {title}", ""]
    job = run.load_config()
    lines.append(
        f"`{job.model.kind}`, {job.data.image_size}x{job.data.image_size}, nz {job.model.nz}, "
        f"{'one GAN per class' if job.train.per_class else 'one GAN conditioned on the class'}, "
        f"{_budget(job)}, batch {job.train.batch_size}, {job.optim.name} lr "
        f"G {job.optim.g_lr} / D {job.optim.d_lr}. Run folder: `{_rel(run.workdir, workdir)}`."
    )
    lines.append("")
    real = _real_grids(config, workdir) if name == "gan" else {}
    for class_name in run.class_names:
        grids = run.sample_grids(class_name)
        if not grids:
            continue
        lines.append(f"**{class_name}**: generated (last epoch)" + (" | real" if real else ""))
        lines.append("")
        row = f"![{class_name} generated]({_rel(grids[-1], workdir)})"
        if class_name in real:
            row += f" ![{class_name} real]({_rel(real[class_name], workdir)})"
        lines += [row, ""]
    for plot in run.loss_plots():
        lines += [f"![G and D loss]({_rel(plot, workdir)})", ""]
    evaluation = state.get("stages", {}).get("evaluate", {}).get("evaluation", {}).get(name)
    evaluated = _eval_records(run)
    if evaluated:
        lines += [
            "FID against epoch; the dashed lines are each class's real-vs-real floor (two "
            "disjoint halves of its real train images):",
            "",
        ]
        fid_plot = run.fid_plot_path
        if fid_plot.exists():
            lines += [f"![FID against epoch]({_rel(fid_plot, workdir)})", ""]
        best = evaluation["best_epoch"] if evaluation else max(r["epoch"] for r in evaluated)
        shown = [r for r in evaluated if r["epoch"] == best]
        lines += [
            f"Checkpoint used by the study: **epoch {best}**, the lowest mean gap "
            "`fid_matched - fid_floor` over classes, measured on train data only, among the "
            "checkpoints with no collapsed class if there are any."
            if evaluation
            else f"Latest evaluated checkpoint: epoch {best}.",
            "",
        ]
        warnings = diversity.collapse_warnings(shown)
        if warnings:
            lines += [f"- **WARNING: {message}**" for message in warnings]
            lines += [
                "",
                "A collapsed GAN draws one image per class whatever its input: its synthetic "
                "images add no variety to the study, whatever its FID.",
                "",
            ]
        lines += [
            "| class | epoch | N real | N generated | FID | FID at N/2 (matched) | floor at N/2 | "
            "KID | KID floor | precision | recall | diversity | coarse diversity | collapsed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in shown:
            lines.append(
                f"| {r['class']} | {r['epoch']} | {r['num_real']} | {r['num_fake']} | "
                f"{r['fid']:.1f} | {r['fid_matched']:.1f} | {r['fid_floor']:.1f} | "
                f"{r['kid_mean']:.4f} | {r['kid_floor']:.4f} | {r['precision']:.3f} | "
                f"{r['recall']:.3f} | {diversity.format_score(r.get('diversity'))} | "
                f"{diversity.format_score(r.get('coarse_diversity'))} | "
                f"{'**yes**' if diversity.record_collapsed(r) else 'no'} |"
            )
        lines += [
            "",
            f"Reference: the {evaluated[0]['reference_split']} split; resize "
            f"`{evaluated[0]['resize']}`; G sampled with `{evaluated[0]['batch_stats']}` BatchNorm "
            "statistics. FIDs of different N are not comparable: read each against its floor. "
            "Diversity: the generated images' mean pairwise Inception-feature distance over the "
            "real images' (1: as varied, 0: all alike); coarse: the same for the images averaged "
            f"down to {diversity.COARSE_SIZE} x {diversity.COARSE_SIZE} pixels, the films' layout "
            f"without their grain; {diversity.RULE}.",
            "",
        ]
    return lines


def _eval_records(run: runs.Run) -> list[dict]:
    """The last record of each (GAN, epoch, class) of the run's eval.jsonl, by epoch and class."""
    latest = {}
    for record in records.read_records(run.eval_path):
        latest[(record.get("gan"), record["epoch"], record["class"])] = record
    return sorted(latest.values(), key=lambda r: (r["epoch"], r["class"]))


def _study_section(workdir: pathlib.Path) -> list[str]:
    study_md = workdir / "study" / "study.md"
    if not study_md.exists():
        return []
    text = study_md.read_text(encoding="utf-8")
    text = re.sub(r"^# .*\n", "", text, count=1)
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.MULTILINE)
    text = re.sub(r"\]\((plots/[^)]+)\)", r"](study/\1)", text)
    text = text.replace("Files: `study.csv`", "Files in `study/`: `study.csv`")
    return ["## Augmentation study", "", text.strip(), ""]


def build_markdown(config: ml_collections.ConfigDict, workdir: pathlib.Path, state: dict) -> str:
    """The report's Markdown (image links relative to `workdir`)."""
    failed = [n for n, r in state.get("stages", {}).items() if r.get("status") == "failed"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# xraygan_jax pipeline report", "", f"Written {now}."]
    if failed:
        record = state["stages"][failed[0]]
        lines += [
            "",
            f"**Stage `{failed[0]}` failed**: {record.get('error', '')}. The earlier stages' "
            "results below are kept; fix the cause and rerun the same command to resume.",
        ]
    lines += ["", "## What ran", ""]
    lines += _stage_table(state)
    command = state.get("command") or "python -m experiments.pipeline --workdir=" + str(workdir)
    lines += [
        "",
        "The exact command:",
        "",
        "```",
        command,
        "```",
        "",
        "Each stage's own config is saved beside its results (`gan/config.json`, "
        "`study/config.json`); these commands work on the folders as they are:",
        "",
        "```",
        f"python -m experiments.evaluate_gan --workdir={workdir}/gan",
        f"python -m experiments.generate --workdir={workdir}/gan --num_per_class=50",
        "```",
        "",
    ]
    data = config.data
    lines += [
        "## Data",
        "",
        f"`{data.source}`, {data.image_size}x{data.image_size}, classes "
        f"{', '.join(sources.class_names(data))}."
        + (
            f" Phantom sizes: {data.phantom.num_train} train, {data.phantom.num_val} val, "
            f"{data.phantom.num_test} test; difficulty {data.phantom.difficulty}."
            if data.source == "cxr_phantom"
            else ""
        ),
        "",
    ]
    data_summary = state.get("stages", {}).get("data", {}).get("summary")
    if data_summary:
        lines += ["```", data_summary.strip(), "```", ""]
    lines += _gan_section(config, workdir, "gan", "DC-cGAN", state)
    lines += _gan_section(config, workdir, "fcgan", "Fully-connected cGAN", state)
    lines += _study_section(workdir)
    lines += ["## Environment", ""] + [f"- {line}" for line in _versions()] + [""]
    lines += [
        "## Config",
        "",
        "```json",
        config.to_json_best_effort(indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)


def _inline_images(page: str, workdir: pathlib.Path) -> str:
    def data_uri(match: re.Match) -> str:
        src = html.unescape(match.group(1))
        path = workdir / src
        if not path.is_file():
            return match.group(0)
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{encoded}"'

    return re.sub(r'src="([^"]+\.png)"', data_uri, page)


def build_html(text: str, workdir: pathlib.Path) -> str:
    """Self-contained HTML of the Markdown: tables rendered, every PNG inlined as data."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    body = _inline_images(body, workdir)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        "<title>xraygan_jax pipeline report</title>"
        f"<style>{_CSS}</style>{_IMAGE_CHECK}</head><body>\n{body}\n</body></html>\n"
    )


def write_report(config: ml_collections.ConfigDict, workdir: str | os.PathLike, state: dict) -> str:
    """Writes report.md and report.html into `workdir`; returns the path of report.md.

    Raises:
      OSError: the disk is full or not writable (names the file; the stages' results are kept).
    """
    workdir = pathlib.Path(workdir)
    text = build_markdown(config, workdir, state)
    page = build_html(text, workdir)
    written = []
    for name, content in (("report.md", text), ("report.html", page)):
        path = workdir / name
        temporary = path.with_suffix(path.suffix + ".tmp")
        try:
            temporary.write_text(content, encoding="utf-8")
            os.replace(temporary, path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            raise OSError(
                error.errno,
                f"could not write {path}: {error.strerror or error}. Every stage's results are "
                "kept; free disk space and rerun the same command to write the report",
            ) from error
        written.append(path)
    return str(written[0])


def referenced_images(text: str) -> list[str]:
    """The image paths a Markdown text links (for checks that every one exists)."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


__all__ = ["build_html", "build_markdown", "referenced_images", "write_report"]
