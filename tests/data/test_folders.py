"""Tests for xraygan_jax.data.folders: scanning layouts, decoding modes, splitting, bad input."""

import logging
import os
import re

import numpy as np
import pytest
from helpers import CLASS_LEVELS, write_image, write_truncated_jpeg
from PIL import Image

from xraygan_jax.data import folders


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "I;16", "RGBA"])
@pytest.mark.parametrize("label", [0, 1])
def test_load_image_converts_every_mode_to_gray(tmp_path, mode, label):
    path = write_image(tmp_path / "image.png", mode=mode, size=(70, 50), label=label)
    image = folders.load_image(path, 32)
    assert image.shape == (32, 32, 1) and image.dtype == np.uint8
    if mode == "RGBA":
        # The transparent top rows are composited over black; the opaque rest keeps its level.
        assert image[0].max() <= 2
        assert abs(image[16:].mean() - CLASS_LEVELS[label]) < 4
    else:
        assert abs(image.mean() - CLASS_LEVELS[label]) < 4


def test_load_image_scales_16_bit_by_the_image_range(tmp_path):
    ramp = np.linspace(1000, 3000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = folders.load_image(tmp_path / "ramp.png", 64)[..., 0]
    assert image.min() == 0 and image.max() == 255
    # Linear: the middle row sits at the middle of the range.
    assert abs(image[32].mean() - 127.5) < 3


def test_load_image_crops_the_centre_square(tmp_path):
    # 300 x 100: the outer thirds are white and the centre square is black.
    pixels = np.full((100, 300), 255, np.uint8)
    pixels[:, 100:200] = 0
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    image = folders.load_image(tmp_path / "wide.png", 50)
    assert image.shape == (50, 50, 1)
    assert image.max() == 0


def test_load_image_resize_is_antialiased(tmp_path):
    # A one-pixel checkerboard: any point sampling gives 0/255, an anti-aliased resize gives grey.
    board = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    Image.fromarray(board).save(tmp_path / "board.png")
    image = folders.load_image(tmp_path / "board.png", 32)
    assert abs(image.mean() - 127.5) < 2 and image.std() < 2


def test_load_image_upsamples_small_images_with_a_warning(tmp_path, caplog):
    path = write_image(tmp_path / "small.jpeg", mode="L", size=(40, 56), label=1)
    with caplog.at_level(logging.WARNING):
        image = folders.load_image(path, 64)
    assert image.shape == (64, 64, 1)
    assert abs(image.mean() - CLASS_LEVELS[1]) < 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "small.jpeg is 40x56" in warnings[0] and "upsampled to 64 px" in warnings[0]


def test_load_image_rejects_corrupt_files_naming_them(tmp_path):
    truncated = write_truncated_jpeg(tmp_path / "truncated.jpeg")
    with pytest.raises(folders.ImageDecodeError, match=r"truncated\.jpeg.*truncated"):
        folders.load_image(truncated, 32)
    garbage = tmp_path / "garbage.jpeg"
    garbage.write_bytes(b"not an image" * 20)
    with pytest.raises(folders.ImageDecodeError, match=r"cannot decode .*garbage\.jpeg"):
        folders.load_image(garbage, 32)


def test_decode_images_keeps_order_and_reports_failures(tmp_path, caplog):
    paths = [
        str(write_image(tmp_path / f"{i}.png", mode="L", size=(40 + 10 * i, 60), label=i % 2))
        for i in range(5)
    ]
    paths.insert(2, str(write_truncated_jpeg(tmp_path / "bad.jpeg")))
    with caplog.at_level(logging.INFO):
        results = list(folders.decode_images(paths, 32, num_threads=2))
    # The closing count is of decoded images, with the failures named apart.
    assert any(
        re.fullmatch(r"Decoded 5 images in \d+\.\d s \(1 of 6 could not be decoded\)\.", m)
        for m in (r.getMessage() for r in caplog.records)
    )
    assert [r.path for r in results] == paths
    assert results[2].image is None and "truncated" in results[2].error
    good = [r for r in results if r.image is not None]
    assert len(good) == 5 and all(r.error == "" for r in good)
    levels = [round(float(r.image.mean())) for r in good]
    assert [abs(v - CLASS_LEVELS[i % 2]) < 4 for i, v in enumerate(levels)] == [True] * 5


def test_decode_images_logs_progress_with_an_eta(tmp_path, caplog):
    paths = [
        str(write_image(tmp_path / f"{i}.png", mode="L", size=(40, 40), label=0)) for i in range(3)
    ]
    with caplog.at_level(logging.INFO):
        assert len(list(folders.decode_images(paths, 32, log_every_seconds=0.0))) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        re.fullmatch(r"Decoded 1/3 images \(\d+/s\), about \d+ s left\.", m) for m in messages
    )
    assert any(re.fullmatch(r"Decoded 3 images in \d+\.\d s\.", m) for m in messages)


def test_scan_kermany_finds_splits_skips_and_ignores(kermany_tree):
    splits, skipped = folders.scan_kermany(kermany_tree.root)
    assert list(splits) == ["train", "val", "test"]
    top = kermany_tree.root / "chest_xray"
    for split, per_class in kermany_tree.counts.items():
        labels = [label for _, label in splits[split]]
        # Corrupt files are still candidates here: they are found out when decoded.
        corrupt = {"train": (1, 0), "test": (0, 1)}.get(split, (0, 0))
        assert labels.count(0) == per_class["NORMAL"] + corrupt[0]
        assert labels.count(1) == per_class["PNEUMONIA"] + corrupt[1]
        for path, label in splits[split]:
            assert os.path.dirname(path) == str(top / split / ("NORMAL", "PNEUMONIA")[label])
    reasons = {os.path.basename(s.path): s.reason for s in skipped}
    assert reasons == {
        "empty.jpeg": "empty file (0 bytes)",
        "notes.txt": reasons["notes.txt"],
    }
    assert reasons["notes.txt"].startswith("not an image file type (.txt")
    everything = " ".join([p for items in splits.values() for p, _ in items] + list(reasons))
    for name in kermany_tree.ignored:
        assert name not in everything


def test_scan_kermany_accepts_chest_xray_itself_and_a_nested_only_tree(kermany_tree, tmp_path):
    from_parent, _ = folders.scan_kermany(kermany_tree.root)
    from_top, _ = folders.scan_kermany(kermany_tree.root / "chest_xray")
    assert from_parent == from_top
    # Only the nested copy (as when the outer folder was emptied): it is found and used.
    nested_only = tmp_path / "only_nested"
    os.makedirs(nested_only / "chest_xray")
    os.rename(kermany_tree.root / "chest_xray/chest_xray", nested_only / "chest_xray/chest_xray")
    splits, _ = folders.scan_kermany(nested_only)
    assert {split: len(items) for split, items in splits.items()} == {
        "train": 2,
        "val": 2,
        "test": 2,
    }
    assert folders.resolve_kermany_root(nested_only) == str(nested_only / "chest_xray/chest_xray")


def test_scan_kermany_without_val_has_no_val_split(tmp_path):
    for split in ("train", "test"):
        for label, name in enumerate(folders.KERMANY_CLASS_NAMES):
            write_image(tmp_path / split / name / "a.png", mode="L", size=(40, 40), label=label)
    splits, _ = folders.scan_kermany(tmp_path)
    assert list(splits) == ["train", "test"]


def test_scan_kermany_bad_layouts_say_what_was_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*missing' does not exist.*--config\.data\.dir"):
        folders.scan_kermany(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"file\.txt' is a file"):
        folders.scan_kermany(tmp_path / "file.txt")
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match=r"No train/val/test folders in .*found: images"):
        folders.scan_kermany(tmp_path)
    root = tmp_path / "chest_xray"
    write_image(root / "train/NORMAL/a.png", mode="L", size=(40, 40), label=0)
    with pytest.raises(ValueError, match=r"has train but no test folder"):
        folders.scan_kermany(tmp_path)
    write_image(root / "test/NORMAL/a.png", mode="L", size=(40, 40), label=0)
    write_image(root / "test/COVID/a.png", mode="L", size=(40, 40), label=1)
    with pytest.raises(
        ValueError,
        match=r"train': missing class folder\(s\) PNEUMONIA\. Found: NORMAL; "
        r"expected: NORMAL, PNEUMONIA",
    ):
        folders.scan_kermany(root)
    write_image(root / "train/PNEUMONIA/a.png", mode="L", size=(40, 40), label=1)
    with pytest.raises(
        ValueError,
        match=r"test': missing class folder\(s\) PNEUMONIA; unexpected class folder\(s\) COVID\. "
        r"Found: COVID, NORMAL",
    ):
        folders.scan_kermany(root)


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    write_image(tmp_path / "COVID/a.png", mode="L", size=(40, 40), label=0)
    (tmp_path / "NORMAL").mkdir()
    (tmp_path / "NORMAL/.DS_Store").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"Class folder '.*NORMAL' has no usable image \(it is"):
        folders.scan_class_folders(tmp_path, ["COVID", "NORMAL"])
    (tmp_path / "NORMAL/zero.jpeg").write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"NORMAL' has no usable image \(1 skipped: zero\.jpeg: empty file"
    ):
        folders.scan_class_folders(tmp_path, ["COVID", "NORMAL"])


def test_scan_class_folders_labels_in_given_order_and_ignores_other_folders(tmp_path):
    for name, count in (("COVID", 3), ("NORMAL", 2), ("Viral Pneumonia", 1)):
        for i in range(count):
            write_image(tmp_path / name / f"{i}.png", mode="L", size=(40, 40), label=0)
    items, skipped = folders.scan_class_folders(tmp_path, ("NORMAL", "COVID"))
    assert skipped == []
    assert [(os.path.basename(os.path.dirname(p)), label) for p, label in items] == [
        ("NORMAL", 0),
        ("NORMAL", 0),
        ("COVID", 1),
        ("COVID", 1),
        ("COVID", 1),
    ]
    with pytest.raises(
        ValueError,
        match=r"missing class folder\(s\) PNEUMONIA\. Found: COVID, NORMAL, Viral Pneumonia; "
        r"expected: NORMAL, PNEUMONIA\. Set --config\.data\.class_names",
    ):
        folders.scan_class_folders(tmp_path, ("NORMAL", "PNEUMONIA"))
    with pytest.raises(ValueError, match=r"class_names must be distinct folder names"):
        folders.scan_class_folders(tmp_path, ("COVID", "COVID"))


def _items(counts):
    return [(f"/d/{label}/{i:03d}.png", label) for label, n in enumerate(counts) for i in range(n)]


def test_stratified_split_is_stratified_complete_and_deterministic():
    items = _items([10, 30])
    splits = folders.stratified_split(items, 0.2, seed=3)
    assert list(splits) == ["train", "test"]
    counts = {
        s: np.bincount([label for _, label in v], minlength=2).tolist() for s, v in splits.items()
    }
    assert counts == {"train": [8, 24], "test": [2, 6]}
    assert sorted(splits["train"] + splits["test"]) == sorted(items)
    # Same seed, any input order: same split. Another seed: another split.
    assert folders.stratified_split(list(reversed(items)), 0.2, seed=3) == splits
    assert folders.stratified_split(items, 0.2, seed=4)["test"] != splits["test"]
    with_val = folders.stratified_split(items, 0.2, 0.1, seed=3)
    counts = {
        s: np.bincount([label for _, label in v], minlength=2).tolist() for s, v in with_val.items()
    }
    assert counts == {"train": [7, 21], "val": [1, 3], "test": [2, 6]}
    assert with_val["test"] == splits["test"]
    assert not set(with_val["val"]) & set(with_val["train"])


def test_stratified_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match=r"test_fraction=1\.2 and val_fraction=0\.0 must each be"):
        folders.stratified_split(_items([5, 5]), 1.2)
    with pytest.raises(ValueError, match=r"test_fraction \+ val_fraction = 1\.0 leaves no train"):
        folders.stratified_split(_items([5, 5]), 0.5, 0.5)
    with pytest.raises(ValueError, match=r"Class 1 has only 1 images: test_fraction=0\.6"):
        folders.stratified_split(_items([5, 1]), 0.6)


def test_fingerprint_counts_files_and_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"12345")
    (tmp_path / "b").write_bytes(b"678")
    assert folders.fingerprint([tmp_path / "a", tmp_path / "b"]) == {
        "num_files": 2,
        "num_bytes": 8,
    }
