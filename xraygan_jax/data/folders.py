"""Real chest X-ray folders: find the images, decode them the way the reports did, split them.

Two layouts are read:

- Kermany (Kaggle "Chest X-Ray Images (Pneumonia)"):
  ``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``. ``root`` may be ``chest_xray`` itself or
  the folder that holds it. The Kaggle archive also holds a nested duplicate
  ``chest_xray/chest_xray`` tree and a ``__MACOSX`` tree: the shallowest folder that has the split
  folders directly is used, and the nested duplicate below it is ignored (and logged). A set
  without ``val`` (the original Mendeley release) gets no val split.
- One folder per class (the COVID set of the second report): ``root/{class_name}/*``, with the
  class names given by the caller; label ``i`` is ``class_names[i]``. Other folders are ignored.
  Such a set has no splits of its own: `stratified_split` makes them.

Inside a class folder, dotfiles (``.DS_Store``, ``._*`` AppleDouble files) and ``__MACOSX`` are
ignored silently. Everything else that cannot become an image is skipped and listed with a reason
(a sub-folder, a file that is not an image type, a zero-byte file, a corrupt or truncated image);
the rest goes on. Only a class left with no image at all is an error, naming the class folder.

Preprocessing (`load_image`), as the first report's ``open_images.py`` ("cropped and scaled down to
a 128x128 image"):

1. EXIF orientation applied; the image converted to 8-bit grayscale ("L"):
   RGB and palette images by ITU-R 601-2 luma (Pillow's ``convert("L")``); images with alpha (RGBA,
   LA, palette with transparency) composited over black first, since a transparent pixel carries no
   exposure and black is the radiograph's background; 16-bit and 32-bit images ("I;16", "I", "F")
   scaled linearly from the image's own [min, max] to [0, 255], because their stored range varies
   by scanner (12-bit data in 16-bit containers) and a fixed divisor would leave most images dark.
2. Centre crop to a square of side min(width, height).
3. Resize to ``image_size`` x ``image_size`` with Pillow's BICUBIC filter. Pillow widens the
   filter support by the scale factor when it shrinks, so the resize is properly anti-aliased (no
   moire from rib edges when a 1,500 px film becomes 64 px); bicubic is sharper than bilinear and
   rings less than Lanczos, and clean-fid (Parmar et al. 2022) found Pillow's bicubic among the few
   library resizes that anti-alias correctly. An image smaller than the target is upsampled with
   the same filter and a warning naming the file.

The JPEG decoder's DCT scaling (``Image.draft``) is not used: it made decoding a 1,500 px film only
1.7x faster here and changes the pixels, so the full image is decoded.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from absl import logging
from PIL import Image, ImageOps

KERMANY_SPLITS = ("train", "val", "test")
KERMANY_CLASS_NAMES = ("NORMAL", "PNEUMONIA")
# The folder name of the Kaggle archive, also used for its nested duplicate.
KERMANY_FOLDER = "chest_xray"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff")
RESAMPLE = Image.Resampling.BICUBIC
# macOS archive debris: resource-fork trees; dotfiles are ignored separately.
_IGNORED_NAMES = ("__MACOSX",)


class SkippedFile(NamedTuple):
    """A file that was not used, and why."""

    path: str
    reason: str


class DecodedImage(NamedTuple):
    """One result of `decode_images`: ``image`` is None when ``error`` says why it was skipped."""

    path: str
    image: np.ndarray | None
    error: str


class ImageDecodeError(ValueError):
    """An image file that Pillow cannot decode or convert (corrupt, truncated, unknown mode)."""


def is_ignored(name: str) -> bool:
    """True for entries that are never data: dotfiles (.DS_Store, ._name forks) and __MACOSX."""
    return name.startswith(".") or name in _IGNORED_NAMES


def visible_subdirs(path: str | os.PathLike) -> list[str]:
    """The sub-folder names of `path` that are not ignored (see `is_ignored`), sorted."""
    return sorted(
        entry.name for entry in os.scandir(path) if entry.is_dir() and not is_ignored(entry.name)
    )


def _require_dir(path: str, what: str) -> str:
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise NotADirectoryError(f"{what} {path!r} is a file, not a directory.")
        raise FileNotFoundError(
            f"{what} {path!r} does not exist. Point --config.data.dir at the folder of images."
        )
    return path


def list_class_images(class_dir: str | os.PathLike) -> tuple[list[str], list[SkippedFile]]:
    """Candidate image files of one class folder (sorted), and what was skipped there.

    The one rule for what counts as an image in a class folder, used for ingestion, evaluation
    and mixing alike.

    Raises:
      ValueError: the folder has no usable image (names it and what was skipped).
    """
    class_dir = os.fspath(class_dir)
    paths, skipped = [], []
    for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
        if is_ignored(entry.name):
            continue
        if entry.is_dir():
            skipped.append(SkippedFile(entry.path, "a folder inside a class folder (not searched)"))
            continue
        extension = os.path.splitext(entry.name)[1].lower()
        if extension not in IMAGE_EXTENSIONS:
            skipped.append(
                SkippedFile(
                    entry.path,
                    f"not an image file type ({extension or 'no extension'}; "
                    f"expected one of {', '.join(IMAGE_EXTENSIONS)})",
                )
            )
        elif entry.stat().st_size == 0:
            skipped.append(SkippedFile(entry.path, "empty file (0 bytes)"))
        else:
            paths.append(entry.path)
    if not paths:
        listed = "; ".join(f"{os.path.basename(s.path)}: {s.reason}" for s in skipped[:5])
        raise ValueError(
            f"Class folder {class_dir!r} has no usable image"
            + (f" ({len(skipped)} skipped: {listed})" if skipped else " (it is empty)")
            + f". Each class needs at least one {'/'.join(IMAGE_EXTENSIONS)} image."
        )
    return paths, skipped


def _check_class_folders(split_dir: str, class_names: Sequence[str], *, strict: bool) -> None:
    found = visible_subdirs(split_dir)
    missing = [name for name in class_names if name not in found]
    extra = [name for name in found if name not in class_names]
    if missing or (strict and extra):
        problem = []
        if missing:
            problem.append(f"missing class folder(s) {', '.join(missing)}")
        if strict and extra:
            problem.append(f"unexpected class folder(s) {', '.join(extra)}")
        raise ValueError(
            f"{split_dir!r}: {'; '.join(problem)}. Found: {', '.join(found) or 'no folders'}; "
            f"expected: {', '.join(class_names)}."
            + ("" if strict else " Set --config.data.class_names to the class folder names.")
        )
    if extra:
        logging.info(
            "Ignoring folder(s) %s in %s (not in class_names).", ", ".join(extra), split_dir
        )


def resolve_kermany_root(root: str | os.PathLike) -> str:
    """Finds the folder that holds the Kermany split folders.

    Args:
      root: ``chest_xray`` itself or a folder that holds it (possibly ``chest_xray/chest_xray``).

    Returns:
      The shallowest folder among ``root``, ``root/chest_xray``, ``root/chest_xray/chest_xray``
      that has ``train`` and ``test`` folders directly; a nested duplicate below it is ignored.

    Raises:
      FileNotFoundError: ``root`` does not exist.
      ValueError: no such folder, or it lacks ``train`` or ``test``.
    """
    root = _require_dir(root, "Kermany data directory")
    candidate = root
    for _ in range(3):
        present = [s for s in KERMANY_SPLITS if os.path.isdir(os.path.join(candidate, s))]
        if present:
            break
        nested = os.path.join(candidate, KERMANY_FOLDER)
        if not os.path.isdir(nested):
            break
        candidate = nested
    else:
        present = []
    if not present:
        raise ValueError(
            f"No train/val/test folders in {root!r} (nor in a chest_xray folder below it). "
            f"Expected the Kermany layout chest_xray/{{train,val,test}}/{{NORMAL,PNEUMONIA}}; "
            f"found: {', '.join(visible_subdirs(root)) or 'no folders'}."
        )
    missing = [s for s in ("train", "test") if s not in present]
    if missing:
        raise ValueError(
            f"{candidate!r} has {', '.join(present)} but no {' or '.join(missing)} folder; the "
            "Kermany layout needs train and test (val is optional)."
        )
    if candidate != root:
        logging.info("Kermany data: using %s (found below %s).", candidate, root)
    if os.path.isdir(os.path.join(candidate, KERMANY_FOLDER)):
        logging.info(
            "Kermany data: ignoring the nested duplicate %s; using the splits in %s.",
            os.path.join(candidate, KERMANY_FOLDER),
            candidate,
        )
    return candidate


def scan_kermany(
    root: str | os.PathLike,
) -> tuple[dict[str, list[tuple[str, int]]], list[SkippedFile]]:
    """Lists the Kermany set's images per split without decoding them.

    Args:
      root: ``chest_xray`` or the folder holding it (see `resolve_kermany_root`).

    Returns:
      ``(splits, skipped)``: ``splits[split]`` is a list of ``(path, label)`` sorted by path within
      each class, label 0 for NORMAL and 1 for PNEUMONIA; ``val`` is absent when the set has none.
      ``skipped`` lists files that were not taken, with the reason.

    Raises:
      FileNotFoundError: ``root`` does not exist.
      ValueError: the layout is wrong (names the folder and what was found) or a class folder has
        no usable image.
    """
    base = resolve_kermany_root(root)
    splits, skipped = {}, []
    for split in KERMANY_SPLITS:
        split_dir = os.path.join(base, split)
        if not os.path.isdir(split_dir):
            logging.info(
                "Kermany data: no %s folder in %s; the set has no %s split.", split, base, split
            )
            continue
        _check_class_folders(split_dir, KERMANY_CLASS_NAMES, strict=True)
        items = []
        for label, name in enumerate(KERMANY_CLASS_NAMES):
            paths, class_skipped = list_class_images(os.path.join(split_dir, name))
            items.extend((path, label) for path in paths)
            skipped.extend(class_skipped)
        splits[split] = items
    return splits, skipped


def scan_class_folders(
    root: str | os.PathLike, class_names: Sequence[str]
) -> tuple[list[tuple[str, int]], list[SkippedFile]]:
    """Lists the images of a one-folder-per-class set without decoding them.

    Args:
      root: the folder holding one folder per class.
      class_names: the class folder names; label ``i`` is ``class_names[i]``. Other folders in
        ``root`` are ignored (so two classes can be taken from a set with more).

    Returns:
      ``(items, skipped)``: ``(path, label)`` pairs sorted by path within each class, and the files
      not taken with the reason.

    Raises:
      FileNotFoundError: ``root`` does not exist.
      ValueError: ``class_names`` is empty or repeats a name, a class folder is missing (the message
        lists the folders found) or has no usable image.
    """
    root = _require_dir(root, "Class-folder data directory")
    class_names = tuple(class_names)
    if not class_names or len(set(class_names)) != len(class_names):
        raise ValueError(
            f"class_names must be distinct folder names, got {class_names!r}; "
            "e.g. --config.data.class_names=COVID,NORMAL."
        )
    _check_class_folders(root, class_names, strict=False)
    items, skipped = [], []
    for label, name in enumerate(class_names):
        paths, class_skipped = list_class_images(os.path.join(root, name))
        items.extend((path, label) for path in paths)
        skipped.extend(class_skipped)
    return items, skipped


def fingerprint(paths: Iterable[str]) -> dict[str, int]:
    """Number of files and their total size: cheap evidence that a source folder changed.

    Modification times are left out on purpose, so a copy of the same files matches.

    Args:
      paths: files (e.g. every scanned image).

    Returns:
      ``{"num_files": n, "num_bytes": b}``.
    """
    paths = list(paths)
    return {"num_files": len(paths), "num_bytes": sum(os.path.getsize(p) for p in paths)}


def stratified_split(
    items: Sequence[tuple[str, int]],
    test_fraction: float,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[tuple[str, int]]]:
    """Splits ``(path, label)`` items into train / val / test with the class balance kept.

    Each class is sorted by path, shuffled with a generator seeded by ``(seed, label)`` (so the
    result does not depend on listing order or on the other classes), and cut into
    ``round(n * test_fraction)`` test, ``round(n * val_fraction)`` val and the rest train items.

    Args:
      items: ``(path, label)`` pairs.
      test_fraction: share of each class for test, in [0, 1).
      val_fraction: share of each class for val, in [0, 1); test + val < 1.
      seed: the split seed.

    Returns:
      ``{"train": [...], "test": [...]}`` plus ``"val"`` when ``val_fraction > 0``; each list is in
      class order, shuffled within the class.

    Raises:
      ValueError: fractions out of range, or a class too small to keep a training image.
    """
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= val_fraction < 1.0):
        raise ValueError(
            f"test_fraction={test_fraction} and val_fraction={val_fraction} must each be in [0, 1)."
        )
    if test_fraction + val_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + val_fraction = {test_fraction + val_fraction} leaves no training "
            "images; their sum must be below 1."
        )
    by_label = collections.defaultdict(list)
    for path, label in items:
        by_label[int(label)].append(path)
    names = ("train", "val", "test") if val_fraction > 0 else ("train", "test")
    splits = {name: [] for name in names}
    for label in sorted(by_label):
        paths = sorted(by_label[label])
        order = np.random.default_rng([seed, label]).permutation(len(paths))
        shuffled = [paths[i] for i in order]
        num_test = round(len(paths) * test_fraction)
        num_val = round(len(paths) * val_fraction)
        if num_test + num_val >= len(paths):
            raise ValueError(
                f"Class {label} has only {len(paths)} images: test_fraction={test_fraction} and "
                f"val_fraction={val_fraction} leave none for training."
            )
        splits["test"].extend((p, label) for p in shuffled[:num_test])
        if val_fraction > 0:
            splits["val"].extend((p, label) for p in shuffled[num_test : num_test + num_val])
        splits["train"].extend((p, label) for p in shuffled[num_test + num_val :])
    return splits


def _to_grayscale(image: Image.Image) -> Image.Image:
    """8-bit grayscale as described in the module docstring."""
    if image.mode == "L":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        return Image.fromarray(np.round(scaled).astype(np.uint8))
    has_alpha = "A" in image.getbands() or "a" in image.getbands()
    if has_alpha or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    if image.mode in ("1", "P", "RGB"):
        return image.convert("L")
    # CMYK, YCbCr, LAB, ...: through RGB, which Pillow converts all of them to.
    return image.convert("RGB").convert("L")


def _load(path: str, image_size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _to_grayscale(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        # Pillow reports truncation and unknown formats as OSError, broken PNG chunks as
        # SyntaxError, unsupported modes as ValueError.
        raise ImageDecodeError(f"cannot decode {path}: {error}") from error
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side < image_size:
        logging.warning(
            "%s is %dx%d: its %d px square is upsampled to %d px (blurred).",
            path,
            width,
            height,
            side,
            image_size,
        )
    if side != image_size:
        image = image.resize((image_size, image_size), RESAMPLE)
    return np.asarray(image, dtype=np.uint8)[:, :, None]


def load_image(path: str | os.PathLike, image_size: int) -> np.ndarray:
    """Decodes one image file into the models' format (see the module docstring).

    Args:
      path: an image file Pillow can read.
      image_size: side of the square output.

    Returns:
      uint8 array ``[image_size, image_size, 1]``.

    Raises:
      ImageDecodeError: the file is corrupt, truncated, not an image, or in an unsupported mode;
        the message names the file.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    return _load(os.fspath(path), int(image_size))


def decode_images(
    paths: Iterable[str],
    image_size: int,
    *,
    num_threads: int | None = None,
    log_every_seconds: float = 10.0,
) -> Iterator[DecodedImage]:
    """Decodes many images on a thread pool, in order, logging progress with an ETA.

    Pillow releases the GIL while it decodes and resizes, so threads use every core without the
    cost of sending pixels between processes.

    Args:
      paths: image files.
      image_size: side of the square output.
      num_threads: pool size; None uses every CPU.
      log_every_seconds: how often to log progress (absl INFO).

    Yields:
      `DecodedImage` per path in the given order; a file that cannot be decoded has ``image=None``
      and the reason in ``error`` (it is skipped, not fatal).
    """
    paths = list(paths)
    num_failed = 0
    num_threads = num_threads or os.cpu_count() or 1
    start = last_log = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        pending = collections.deque()
        # A bounded window keeps memory flat on large sets.
        window = 4 * num_threads
        next_index = 0
        for done in range(len(paths)):
            while next_index < len(paths) and len(pending) < window:
                pending.append(pool.submit(_load, paths[next_index], image_size))
                next_index += 1
            future = pending.popleft()
            try:
                image, error = future.result(), ""
            except ImageDecodeError as decode_error:
                image, error = None, str(decode_error.__cause__ or decode_error)
                num_failed += 1
            try:
                yield DecodedImage(paths[done], image, error)
            except GeneratorExit:
                # The consumer stopped early: do not decode what is still queued.
                for queued in pending:
                    queued.cancel()
                raise
            now = time.monotonic()
            if now - last_log >= log_every_seconds and done + 1 < len(paths):
                last_log = now
                rate = (done + 1) / (now - start)
                logging.info(
                    "Decoded %d/%d images (%.0f/s), about %.0f s left.",
                    done + 1,
                    len(paths),
                    rate,
                    (len(paths) - done - 1) / rate,
                )
    if paths:
        elapsed = time.monotonic() - start
        logging.info(
            "Decoded %d images in %.1f s%s.",
            len(paths) - num_failed,
            elapsed,
            f" ({num_failed} of {len(paths)} could not be decoded)" if num_failed else "",
        )


def write_image_folder(
    images: Mapping[str, np.ndarray], out_dir: str | os.PathLike
) -> dict[str, int]:
    """Writes uint8 images as `out_dir/<class>/<class>_00000.png`, ... (what the readers take).

    Args:
      images: {class name: uint8 [N, S, S, 1]}.
      out_dir: the folder (created if missing).

    Returns:
      {class name: number of files written}.
    """
    counts = {}
    for class_name, class_images in images.items():
        folder = os.path.join(os.fspath(out_dir), class_name)
        os.makedirs(folder, exist_ok=True)
        for index, image in enumerate(class_images):
            Image.fromarray(image[..., 0], mode="L").save(
                os.path.join(folder, f"{class_name}_{index:05d}.png")
            )
        counts[class_name] = len(class_images)
    return counts
