"""Shared fixtures: the session's cache, one prepared data set, one trained GAN run, FID weights.

Everything slow that more than one test file needs is a session-scoped fixture here, built once
per session: `data_dir` (the test config's phantom set, prepared), `conditional_run` (the test
config's conditional GAN trained for 2 epochs with FID at epoch 2), `fid_weights_source` and
`fid_params`. `kermany_tree` builds a small copy of the Kaggle Kermany archive with the archive's
quirks; its attributes say what a correct reader must find. Plain helpers are in helpers.py.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import io
import os
import pathlib
import shutil
import tempfile

import pytest
from helpers import write_image, write_truncated_jpeg


def _isolate_the_cache() -> pathlib.Path:
    """Points $XRAYGAN_CACHE at a temporary folder for the whole test session.

    Tests must leave nothing in the user's cache (reference features, prepared data sets). The
    FID weights are the exception that is read, not written: the user's cached files are linked
    in, so tests (and the launchers they start, which inherit the environment) find them.
    """
    user_cache = pathlib.Path(
        os.environ.get("XRAYGAN_CACHE") or os.path.join("~", ".cache", "xraygan_jax")
    ).expanduser()
    session_cache = pathlib.Path(tempfile.mkdtemp(prefix="xraygan-test-cache-"))
    atexit.register(shutil.rmtree, session_cache, ignore_errors=True)
    user_weights = user_cache / "fid_inception"
    if user_weights.is_dir():
        (session_cache / "fid_inception").mkdir()
        for path in user_weights.iterdir():
            (session_cache / "fid_inception" / path.name).symlink_to(path.resolve())
    os.environ["XRAYGAN_CACHE"] = str(session_cache)
    return session_cache


# Set by the first process of a session (pytest itself, or pytest-xdist's controller) and
# inherited by the xdist workers and launchers it starts, so that all of them share one cache.
_SHARED_COMPILATIONS = "XRAYGAN_TEST_COMPILATION_CACHE"


def _share_compilations(session_cache: pathlib.Path) -> None:
    """Points JAX's persistent compilation cache at one folder per session, before JAX is imported.

    The tests train the same tiny networks many times, in this process, in pytest-xdist's other
    workers and in the launchers they start (which inherit the environment); compiling dominates
    each run on the CPU, and the cache compiles each program once per session. Cached
    executables are the ones XLA built, so results are the same bit for bit. The folder is the
    first process's (the xdist controller's), which removes it when the session ends.
    """
    shared = os.environ.setdefault(
        _SHARED_COMPILATIONS, str(session_cache / "jax_compilation_cache")
    )
    os.environ["JAX_COMPILATION_CACHE_DIR"] = shared
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


SESSION_CACHE = _isolate_the_cache()
_share_compilations(SESSION_CACHE)


@dataclasses.dataclass(frozen=True)
class KermanyTree:
    """A Kaggle-like Kermany tree and what a reader must find in it.

    Attributes:
      root: the folder holding ``chest_xray`` (and ``__MACOSX``).
      counts: {split: {class: number of decodable images}}.
      skipped: file names that must be listed as skipped (corrupt, empty, not images).
      ignored: names that must appear nowhere (dotfiles, __MACOSX, the nested duplicate).
      small: the file smaller than 64 px (upsampled with a warning at image_size 64).
    """

    root: pathlib.Path
    counts: dict
    skipped: tuple[str, ...]
    ignored: tuple[str, ...]
    small: pathlib.Path


@pytest.fixture
def kermany_tree(tmp_path) -> KermanyTree:
    """A small Kermany layout with varied sizes and modes, a corrupt file, a .DS_Store, ..."""
    root = tmp_path / "kaggle"
    top = root / "chest_xray"
    files = {
        "train/NORMAL": [("L", (300, 200), "jpeg"), ("RGB", (120, 160), "jpeg"),
                         ("I;16", (90, 70), "png")],
        "train/PNEUMONIA": [("L", (200, 300), "jpeg"), ("RGBA", (100, 80), "png"),
                            ("P", (64, 96), "png"), ("L", (40, 56), "jpeg")],
        "val/NORMAL": [("L", (150, 150), "jpeg")],
        "val/PNEUMONIA": [("RGB", (180, 120), "jpeg")],
        "test/NORMAL": [("L", (100, 140), "jpeg"), ("RGB", (160, 100), "png")],
        "test/PNEUMONIA": [("L", (256, 200), "jpeg"), ("P", (72, 72), "png")],
    }  # fmt: skip
    for folder, specs in files.items():
        label = int(folder.endswith("PNEUMONIA"))
        for index, (mode, size, suffix) in enumerate(specs):
            name = f"{folder.split('/')[1]}-{mode.replace(';', '')}-{index}.{suffix}"
            write_image(top / folder / name, mode=mode, size=size, label=label)
    small = top / "train/PNEUMONIA/PNEUMONIA-L-3.jpeg"
    # The archive's quirks.
    write_truncated_jpeg(top / "train/NORMAL/truncated.jpeg")
    (top / "train/NORMAL/empty.jpeg").write_bytes(b"")
    (top / "train/NORMAL/notes.txt").write_text("not an image")
    (top / "test/PNEUMONIA/garbage.jpeg").write_bytes(b"this is not a JPEG at all" * 10)
    for folder in ("", "train", "train/NORMAL", "test/PNEUMONIA"):
        (top / folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (top / "train/NORMAL/._NORMAL-L-0.jpeg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    macosx = root / "__MACOSX/chest_xray/train/NORMAL"
    macosx.mkdir(parents=True)
    (macosx / "._NORMAL-L-0.jpeg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (top / "train/PNEUMONIA/__MACOSX").mkdir()
    for split in ("train", "val", "test"):
        for label, name in enumerate(("NORMAL", "PNEUMONIA")):
            write_image(
                top / "chest_xray" / split / name / f"duplicate-{name}.jpeg",
                mode="L",
                size=(80, 80),
                label=label,
            )
    return KermanyTree(
        root=root,
        counts={
            "train": {"NORMAL": 3, "PNEUMONIA": 4},
            "val": {"NORMAL": 1, "PNEUMONIA": 1},
            "test": {"NORMAL": 2, "PNEUMONIA": 2},
        },
        skipped=("truncated.jpeg", "empty.jpeg", "notes.txt", "garbage.jpeg"),
        ignored=(".DS_Store", "._NORMAL-L-0.jpeg", "__MACOSX", "duplicate-"),
        small=small,
    )


def _fid_weights_or_skip(load):
    """Returns `load()`; when the FID Inception weights are missing, skips (fails under CI=true).

    The README's test command fetches the weights first
    (`python -m xraygan_jax.pretrained.inception_weights`), so in CI a missing file is a broken
    set-up, not a reason to skip.
    """
    from xraygan_jax.pretrained import inception_weights

    try:
        return load()
    except inception_weights.WeightsNotFoundError as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"FID Inception weights missing in CI: {error}")
        pytest.skip(f"FID Inception weights not available: {error}")


@pytest.fixture(scope="session")
def fid_weights_source() -> pathlib.Path:
    """The FID Inception weights' source file (found, never downloaded), or a skip."""
    from xraygan_jax.pretrained import inception_weights

    return _fid_weights_or_skip(lambda: inception_weights.find_source(download=False))


@pytest.fixture(scope="session")
def fid_params():
    """The FID Inception network's parameters, read once for the session, or a skip."""
    from xraygan_jax.pretrained import inception_weights

    return _fid_weights_or_skip(lambda: inception_weights.load_params(download=False))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """The session's TFDS data dir, with the test config's phantom set prepared in it once.

    Launchers given `--config.data.data_dir=` this folder, and configs whose data section is the
    test config's, read the same prepared set instead of building their own.
    """
    from experiments.configs import test as test_config
    from xraygan_jax.data import sources

    path = str(tmp_path_factory.getbasetemp() / "tfds")
    config = test_config.get_config()
    config.data.data_dir = path
    for split in ("train", "val", "test"):
        sources.get_source(config.data, split)
    return path


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A finished GAN training run of the test config.

    Attributes:
      config: the config it was trained with.
      workdir: its run folder. Shared by every test of the session: read it, or copy it
        (`copy_of_conditional_run`) before anything writes into it.
      results: what `train_and_evaluate` returned.
      log: what training wrote to standard error (the progress lines).
    """

    config: object
    workdir: pathlib.Path
    results: dict
    log: str


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory, data_dir, fid_weights_source) -> TrainedRun:
    """The test config's conditional GAN (one for both classes), 2 epochs, FID after epoch 2.

    A checkpoint and sample grids per epoch, metrics.jsonl, eval.jsonl, TensorBoard events and
    summary.md: the run the GAN loop's resume tests compare against, the evaluators evaluate
    and the study draws its synthetic images from.
    """
    from experiments.configs import test as test_config
    from xraygan_jax import gan_loop

    config = test_config.get_config()
    config.data.data_dir = data_dir
    config.train.per_class = False
    config.evals.fid.every_epochs = 2
    workdir = tmp_path_factory.mktemp("conditional_run")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        results = gan_loop.train_and_evaluate(config, workdir)
    return TrainedRun(config, workdir, results, stderr.getvalue())


def _copy_run(run: TrainedRun, destination: pathlib.Path, *, keep_epochs: int | None = None):
    """A copy of `run`'s folder at `destination`, optionally as if it had stopped earlier.

    Args:
      run: the run to copy.
      destination: the new run folder (must not exist).
      keep_epochs: keep only the checkpoints of epochs up to this one (its records of later
        steps stay, as a stopped run leaves them; resuming truncates them).

    Returns:
      `destination`.
    """
    shutil.copytree(run.workdir, destination)
    if keep_epochs is not None:
        for gan in (destination / "checkpoints").iterdir():
            for epoch in gan.iterdir():
                if epoch.name.isdigit() and int(epoch.name) > keep_epochs:
                    shutil.rmtree(epoch)
    return destination


@pytest.fixture
def copy_of_conditional_run(conditional_run, tmp_path):
    """`_copy_run` bound to the shared conditional run, copies under this test's tmp_path."""
    return lambda name, **kwargs: _copy_run(conditional_run, tmp_path / name, **kwargs)


@dataclasses.dataclass(frozen=True)
class DrawnAxes:
    """What one axes of a saved figure shows.

    Attributes:
      title, xlabel, ylabel: its texts.
      series: {label: [(x, y), ...]} for each labelled line, error bar (its points) and bar
        series (each bar's centre and height), in drawing order.
      images: how many images it shows.
    """

    title: str
    xlabel: str
    ylabel: str
    series: dict
    images: int


@pytest.fixture
def plotted(monkeypatch) -> dict[str, list[DrawnAxes]]:
    """{file name: [DrawnAxes of each axes]} of every figure saved during the test.

    Read from the figure as it is saved (matplotlib's `Figure.savefig`), so a test can check
    what a plot shows, not only that a PNG exists.
    """
    import matplotlib.figure
    from matplotlib.container import BarContainer, ErrorbarContainer

    drawn = {}
    savefig = matplotlib.figure.Figure.savefig

    def recording(figure, path, *args, **kwargs):
        axes_drawn = []
        for axes in figure.axes:
            series = {}
            for line in axes.get_lines():
                if not line.get_label().startswith("_"):
                    series[line.get_label()] = [tuple(p) for p in line.get_xydata().tolist()]
            for container in axes.containers:
                if isinstance(container, ErrorbarContainer):
                    points = container.lines[0].get_xydata().tolist()
                    series[container.get_label()] = [tuple(p) for p in points]
                elif isinstance(container, BarContainer):
                    series[container.get_label()] = [
                        (bar.get_x() + bar.get_width() / 2, bar.get_height())
                        for bar in container.patches
                    ]
            axes_drawn.append(
                DrawnAxes(
                    axes.get_title(),
                    axes.get_xlabel(),
                    axes.get_ylabel(),
                    series,
                    len(axes.get_images()),
                )
            )
        drawn[pathlib.Path(os.fspath(path)).name] = axes_drawn
        return savefig(figure, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return drawn
