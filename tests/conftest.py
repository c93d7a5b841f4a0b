"""Shared fixtures: real image files written with Pillow into tmp_path.

`write_image` writes one file of a given mode and size whose gray level tells its class (dark for
label 0, bright for label 1), so tests can check labels from pixels. `kermany_tree` builds a small
copy of the Kaggle Kermany archive with the archive's quirks; its attributes say what a correct
reader must find.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image


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


SESSION_CACHE = _isolate_the_cache()
# Mean gray level of each class's images before any conversion.
CLASS_LEVELS = (60, 190)
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_launcher(module: str, *args: str, env: dict | None = None, timeout: int = 300):
    """`python -m module args...` from the repository root, as a user runs a launcher.

    Args:
        module: e.g. "experiments.train_gan".
        *args: its command-line arguments.
        env: variables added to this process's environment.
        timeout: seconds before the run counts as hung.

    Returns:
        The `subprocess.CompletedProcess`, with text stdout and stderr.
    """
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_image(path, *, mode: str, size: tuple[int, int], label: int) -> pathlib.Path:
    """Writes an image file (format from the suffix) whose content encodes ``label``.

    Args:
      path: the file to write (parents created).
      mode: Pillow mode: "L", "RGB", "RGBA" (top 10 rows transparent), "P" or "I;16".
      size: (width, height).
      label: 0 gives a dark image (mean ~60), 1 a bright one (~190).

    Returns:
      The path.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rng = np.random.default_rng([width, height, label, len(mode)])
    gray = CLASS_LEVELS[label] + rng.integers(-20, 21, (height, width))
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    if mode == "L":
        image = Image.fromarray(gray)
    elif mode in ("RGB", "P"):
        # Equal channels keep luma == gray; P quantises it to a 64-colour palette.
        image = Image.fromarray(np.repeat(gray[..., None], 3, axis=-1))
        if mode == "P":
            image = image.quantize(64)
    elif mode == "RGBA":
        alpha = np.full((height, width), 255, np.uint8)
        alpha[:10] = 0
        rgba = np.concatenate([np.repeat(gray[..., None], 3, axis=-1), alpha[..., None]], -1)
        image = Image.fromarray(rgba)
    elif mode == "I;16":
        # A 12-bit detector range in a 16-bit container. One black and one white pixel span the
        # full 0..4095 range, so scaling by the image's own range gives back about `gray`.
        wide = ((gray.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)
        wide[0, 0], wide[-1, -1] = 0, 4095
        image = Image.fromarray(wide)
    else:
        raise ValueError(f"write_image: unsupported mode {mode}")
    image.save(path)
    return path


def write_truncated_jpeg(path, *, size=(120, 100)) -> pathlib.Path:
    """A JPEG cut after 40% of its bytes (a broken download)."""
    path = pathlib.Path(path)
    write_image(path, mode="L", size=size, label=0)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


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


def read_events(directory):
    """TensorBoard's own reader over one TensorBoard run folder, every event kept.

    The `tensorboard` package (the dev extra) reads event files without TensorFlow; what it
    returns is what TensorBoard shows, after its purge of events a restart superseded.
    """
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    every = {event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    return event_accumulator.EventAccumulator(str(directory), size_guidance=every).Reload()


def fid_weights_or_skip(load):
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
