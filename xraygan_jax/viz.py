"""Pictures as PNG files: image grids (samples, data previews).

Images come as NHWC arrays, either uint8 in [0, 255] or floats in [-1, 1] (the models' range,
mapped back by `pixels.to_uint8`). Grids are drawn with
matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # Files only; also safe on headless machines.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xraygan_jax import pixels  # noqa: E402

# Pixels between tiles and the figure resolution.
_PADDING = 2
_DPI = 100


def tile(images: np.ndarray, *, nrow: int | None = None) -> np.ndarray:
    """Tiles NHWC images into one HWC uint8 mosaic, row-major, with a black border.

    Args:
      images: [N, H, W, C] uint8 or float in [-1, 1]; C is 1 or 3.
      nrow: images per row; default ceil(sqrt(N)).

    Returns:
      uint8 [rows * (H + pad) + pad, nrow * (W + pad) + pad, C].
    """
    images = pixels.to_uint8(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.shape[0] == 0:
        raise ValueError(
            f"Expected a non-empty NHWC batch with 1 or 3 channels, got shape {images.shape}."
        )
    count, height, width, channels = images.shape
    nrow = nrow or math.ceil(math.sqrt(count))
    rows = math.ceil(count / nrow)
    mosaic = np.zeros(
        (rows * (height + _PADDING) + _PADDING, nrow * (width + _PADDING) + _PADDING, channels),
        np.uint8,
    )
    for index, image in enumerate(images):
        top = _PADDING + (index // nrow) * (height + _PADDING)
        left = _PADDING + (index % nrow) * (width + _PADDING)
        mosaic[top : top + height, left : left + width] = image
    return mosaic


def save_image_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    *,
    nrow: int | None = None,
    title: str | None = None,
) -> str:
    """Writes a grid of images to a PNG file, at one screen pixel per image pixel.

    Args:
      images: [N, H, W, C] uint8 or float in [-1, 1]; C is 1 (drawn in gray) or 3.
      path: the PNG file; parent folders are created.
      nrow: images per row; default ceil(sqrt(N)).
      title: drawn above the grid when given.

    Returns:
      The path written, as a string.
    """
    mosaic = tile(images, nrow=nrow)
    height, width = mosaic.shape[:2]
    # Small grids are scaled up (by whole pixels, so tiles stay crisp) to a readable size.
    scale = max(1, math.ceil(256 / width))
    image_width, image_height = width * scale, height * scale
    title_height = 24 if title else 0
    figure_height = image_height + title_height
    figure = plt.figure(figsize=(image_width / _DPI, figure_height / _DPI), dpi=_DPI)
    figure_width = image_width
    if title:
        text = figure.text(0.5, 1 - 4 / figure_height, title, ha="center", va="top")
        # Widen the figure (not the tiles) when the title is wider than the grid.
        text_width = text.get_window_extent(figure.canvas.get_renderer()).width + 16
        if text_width > image_width:
            figure_width = math.ceil(text_width)
            figure.set_size_inches(figure_width / _DPI, figure_height / _DPI)
    axes = figure.add_axes(
        (
            (figure_width - image_width) / 2 / figure_width,
            0,
            image_width / figure_width,
            image_height / figure_height,
        )
    )
    axes.imshow(
        mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic,
        cmap="gray",
        vmin=0,
        vmax=255,
        interpolation="nearest",
    )
    axes.set_axis_off()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def save_class_grids(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    directory: str | os.PathLike,
    *,
    prefix: str = "",
    nrow: int | None = None,
    title: str | None = None,
) -> dict[str, str]:
    """Writes one grid per class present in ``labels``: ``directory/{prefix}{class name}.png``.

    Args:
      images: [N, H, W, C] uint8 or float in [-1, 1].
      labels: [N] class indices into ``class_names``.
      class_names: label ``i`` is ``class_names[i]``.
      directory: where the PNG files go (created).
      prefix: file name prefix, e.g. ``"train_"``.
      nrow: images per row.
      title: prefix of each grid's title (the class name and count follow).

    Returns:
      ``{class name: path}`` for every class with at least one image.
    """
    labels = np.asarray(labels)
    paths = {}
    for label, name in enumerate(class_names):
        selected = np.asarray(images)[labels == label]
        if len(selected) == 0:
            continue
        caption = f"{title + ' ' if title else ''}{name} ({len(selected)} images)"
        paths[name] = save_image_grid(
            selected,
            os.path.join(os.fspath(directory), f"{prefix}{name}.png"),
            nrow=nrow,
            title=caption,
        )
    return paths


def plot_loss_curves(
    records: Sequence[dict],
    path: str | os.PathLike,
    *,
    title: str = "Generator and discriminator loss during training",
    keys: Sequence[tuple[str, str]] = (("loss/g", "G"), ("loss/d", "D")),
) -> str:
    """Plots losses against training step, like the first report's figures 3 and 4.

    Args:
      records: metric records with a "step" and the keys to plot (e.g. `metrics.jsonl` rows).
      path: the PNG file; parent folders are created.
      title: the plot's title.
      keys: (record key, legend label) pairs.

    Returns:
      The path written, as a string.
    """
    steps = np.array([r["step"] for r in records])
    figure, axes = plt.subplots(figsize=(8, 4), dpi=_DPI)
    for key, label in keys:
        values = np.array([r.get(key, np.nan) for r in records], dtype=np.float64)
        axes.plot(steps, values, label=label, linewidth=0.8)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_metric_by_epoch(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    ylabel: str,
    title: str,
    floors: dict[str, float] | None = None,
) -> str:
    """One line per named series of (epochs, values), e.g. FID against epoch per class.

    Args:
      series: {name: (epochs, values)}.
      path: the PNG to write.
      ylabel, title: axis label and title.
      floors: {series name: value} drawn as a dashed horizontal line in the series' colour
        (e.g. the real-vs-real FID floor).

    Returns:
      The path written, as a string.
    """
    figure, axes = plt.subplots(figsize=(7, 4), dpi=_DPI)
    for name, (epochs, values) in series.items():
        (line,) = axes.plot(epochs, values, marker="o", label=name)
        if floors and name in floors:
            axes.axhline(
                floors[name], color=line.get_color(), linestyle="--", label=f"{name}: floor"
            )
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    return _save(figure, path)


_STUDY_METRICS = ("accuracy", "sensitivity", "specificity")


def _series_name(row: dict) -> str:
    """The line a study arm belongs to: GAN, duplicate, oracle, each with or without classic."""
    name = {"real": "GAN", "gan": "GAN"}.get(row.get("source", "gan"), row.get("source", "gan"))
    return name + (" + classic" if row.get("classic") else "")


def plot_study_by_fraction(by_size: dict, path: str | os.PathLike) -> str:
    """Accuracy, sensitivity and specificity (%) against the extra-image fraction, mean ± sd.

    One line per real-set size and kind of extra images (GAN, duplicate, oracle, + classic);
    every line starts from its size's baseline (0%, or "classic" for the classic lines).

    Args:
      by_size: {real images per class: [summaries with fraction, source, classic,
        <metric>_mean, <metric>_std]}.
    """
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=_DPI, sharey=True)
    for size, rows in by_size.items():
        series: dict[str, list[dict]] = {}
        for row in rows:
            if row["fraction"] > 0:
                series.setdefault(_series_name(row), []).append(row)
        for name, members in series.items():
            start = [
                r
                for r in rows
                if r["fraction"] == 0 and bool(r.get("classic")) == ("classic" in name)
            ]
            members = sorted(start + members, key=lambda r: r["fraction"])
            fractions = [100 * r["fraction"] for r in members]
            for axis, metric in zip(axes, _STUDY_METRICS, strict=True):
                axis.errorbar(
                    fractions,
                    [100 * r[f"{metric}_mean"] for r in members],
                    yerr=[100 * np.nan_to_num(r[f"{metric}_std"]) for r in members],
                    marker="o",
                    capsize=3,
                    label=f"{name}, {size} real/class",
                )
    for axis, metric in zip(axes, _STUDY_METRICS, strict=True):
        axis.set_title(metric)
        axis.set_xlabel("extra images in the training set (%)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test split (%)")
    axes[-1].legend(fontsize=7)
    return _save(figure, path)


def plot_study_differences(
    by_size: dict, endpoint: str, title: str, path: str | os.PathLike
) -> str:
    """Each arm's difference from 0% on one endpoint with its 95% interval, per real-set size.

    A forest plot: one row per arm, one marker per size; with several sizes a second panel draws
    each arm's difference against the real-set size, so one sees where, if anywhere, the oracle
    helps and where the GAN does.

    Args:
      by_size: {real images per class: [summaries with d_<endpoint>, d_<endpoint>_low/_high]}.
      endpoint: the summary key, e.g. "auc".
      title: the endpoint's name for the axis.
    """
    key = f"d_{endpoint}"
    arms = []
    for rows in by_size.values():
        for row in rows:
            if key in row and row["arm"] not in arms:
                arms.append(row["arm"])
    panels = 2 if len(by_size) > 1 else 1
    figure, axes = plt.subplots(
        1, panels, figsize=(6 * panels, 0.5 * len(arms) + 1.8), dpi=_DPI, squeeze=False
    )
    forest = axes[0, 0]
    offsets = np.linspace(-0.2, 0.2, len(by_size)) if len(by_size) > 1 else [0.0]
    for offset, (size, rows) in zip(offsets, by_size.items(), strict=True):
        rows = {r["arm"]: r for r in rows if key in r}
        ys = [arms.index(a) + offset for a in rows]
        values = np.array([100 * r[key] for r in rows.values()])
        low = np.array([100 * r[f"{key}_low"] for r in rows.values()])
        high = np.array([100 * r[f"{key}_high"] for r in rows.values()])
        forest.errorbar(
            values,
            ys,
            xerr=[np.nan_to_num(values - low), np.nan_to_num(high - values)],
            fmt="o",
            capsize=3,
            label=f"{size} real/class",
        )
    forest.axvline(0.0, color="black", linewidth=0.8)
    forest.set_yticks(range(len(arms)), arms)
    forest.invert_yaxis()
    forest.set_xlabel(f"{title}: arm minus 0% (points)")
    forest.grid(alpha=0.3, axis="x")
    if len(by_size) > 1:
        forest.legend(fontsize=8)
        trend = axes[0, 1]
        for arm in arms:
            points = []
            for size, rows in by_size.items():
                for row in rows:
                    if row["arm"] == arm and key in row:
                        points.append((row["num_real"] if size == "all" else size, row))
            points.sort(key=lambda p: p[0])
            values = np.array([100 * p[1][key] for p in points])
            trend.errorbar(
                [p[0] for p in points],
                values,
                yerr=[
                    np.nan_to_num(values - [100 * p[1][f"{key}_low"] for p in points]),
                    np.nan_to_num([100 * p[1][f"{key}_high"] for p in points] - values),
                ],
                marker="o",
                capsize=3,
                label=arm,
            )
        trend.axhline(0.0, color="black", linewidth=0.8)
        trend.set_xscale("log")
        trend.set_xlabel("real train images per class")
        trend.set_ylabel(f"{title}: arm minus 0% (points)")
        trend.grid(alpha=0.3)
        trend.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def plot_study_by_size(by_size: dict, path: str | os.PathLike) -> str:
    """Accuracy, sensitivity and specificity (%) against the real-set size, one line per arm."""
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=_DPI, sharey=True)
    arms: dict[str, list[tuple[int, dict]]] = {}
    for size, rows in by_size.items():
        for row in rows:
            arms.setdefault(row["arm"], []).append(
                (row["num_real"] if size == "all" else size, row)
            )
    for arm, points in arms.items():
        points.sort(key=lambda p: p[0])
        for axis, metric in zip(axes, _STUDY_METRICS, strict=True):
            axis.errorbar(
                [p[0] for p in points],
                [100 * p[1][f"{metric}_mean"] for p in points],
                yerr=[100 * np.nan_to_num(p[1][f"{metric}_std"]) for p in points],
                marker="o",
                capsize=3,
                label=arm,
            )
    for axis, metric in zip(axes, _STUDY_METRICS, strict=True):
        axis.set_title(metric)
        axis.set_xscale("log")
        axis.set_xlabel("real train images per class")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test split (%)")
    axes[-1].legend(fontsize=8)
    return _save(figure, path)


def plot_training_curves(curves: dict, path: str | os.PathLike) -> str:
    """Training and validation loss against step, one colour per arm (solid train, dashed val).

    Args:
      curves: {arm name: (steps, train losses, validation losses)}.
    """
    figure, axes = plt.subplots(figsize=(7, 4), dpi=_DPI)
    for arm, (steps, train, val) in curves.items():
        (line,) = axes.plot(steps, train, label=f"{arm} train")
        axes.plot(steps, val, linestyle="--", color=line.get_color(), label=f"{arm} val")
    axes.set_xlabel("step")
    axes.set_ylabel("BCE loss")
    axes.set_title("Classifier training curves per arm")
    axes.legend(fontsize=8, ncol=2)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_sweep(rows: Sequence[dict], parameter: str, path: str | os.PathLike) -> str:
    """Mean FID (and its gap to the floor), training time and classifier gain per value.

    Args:
      rows: sweep.csv's rows (dicts with `parameter`, fid_mean, fid_gap_mean, train_seconds and,
        optionally, classifier_gain).
      parameter: the swept key to put on the x axis (other parameters' values are averaged).
    """
    panels = [
        ("fid_mean", "mean FID"),
        ("fid_gap_mean", "FID minus floor"),
        ("train_seconds", "training time (s)"),
    ]
    if any("classifier_gain" in row for row in rows):
        panels.append(("classifier_gain", "classifier gain (accuracy)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5), dpi=_DPI)
    values = sorted({row[parameter] for row in rows}, key=lambda v: (str(type(v)), v))
    positions = range(len(values))
    for axis, (key, label) in zip(axes, panels, strict=True):
        means = [
            float(np.mean([row[key] for row in rows if row[parameter] == value and key in row]))
            for value in values
        ]
        axis.plot(list(positions), means, marker="o")
        axis.set_xticks(list(positions), [str(v) for v in values])
        axis.set_xlabel(parameter)
        axis.set_title(label)
        axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_arms(rows: Sequence[dict], path: str | os.PathLike) -> str:
    """Per-class FID of each arm of a comparison as bars, each class's real-vs-real floor dashed.

    Args:
      rows: sweep.csv's rows of an arms sweep ("arm", "<class>/fid", "<class>/fid_floor").
    """
    arms = [str(row["arm"]) for row in rows]
    classes = sorted({key.split("/")[0] for row in rows for key in row if key.endswith("/fid")})
    width = 0.8 / max(1, len(classes))
    figure, axis = plt.subplots(figsize=(max(6, 0.9 * len(arms) + 2), 4), dpi=_DPI)
    for index, name in enumerate(classes):
        positions = np.arange(len(arms)) + (index - (len(classes) - 1) / 2) * width
        values = [float(row.get(f"{name}/fid", np.nan)) for row in rows]
        bars = axis.bar(positions, values, width, label=f"{name} FID")
        floor = np.nanmean([float(row.get(f"{name}/fid_floor", np.nan)) for row in rows])
        if np.isfinite(floor):
            axis.axhline(
                floor,
                linestyle="--",
                color=bars.patches[0].get_facecolor(),
                linewidth=1,
                label=f"{name} real-vs-real floor",
            )
    axis.set_xticks(np.arange(len(arms)), arms, rotation=30, ha="right")
    axis.set_ylabel("FID (lower is better)")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def image_table(
    row_labels: Sequence[str],
    cells: Sequence[dict[str, str | os.PathLike]],
    path: str | os.PathLike,
) -> str:
    """A table of existing PNGs: one row per label, one column per key of the cells' dicts.

    Args:
      row_labels: the rows' names, e.g. the arms of a comparison.
      cells: per row, {column name: PNG path}; a missing one leaves its cell empty.
      path: where to write the table.
    """
    columns = sorted({name for row in cells for name in row})
    figure, axes = plt.subplots(
        len(row_labels),
        max(1, len(columns)),
        figsize=(3 * max(1, len(columns)), 3 * len(row_labels)),
        dpi=_DPI,
        squeeze=False,
    )
    for row_index, (label, row) in enumerate(zip(row_labels, cells, strict=True)):
        for column_index, name in enumerate(columns):
            axis = axes[row_index][column_index]
            axis.set_xticks([])
            axis.set_yticks([])
            if name in row and os.path.exists(row[name]):
                axis.imshow(plt.imread(os.fspath(row[name])))
            if row_index == 0:
                axis.set_title(name)
            if column_index == 0:
                axis.set_ylabel(label)
    return _save(figure, path)


def _save(figure, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path
