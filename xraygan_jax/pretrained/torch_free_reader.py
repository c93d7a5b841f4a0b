"""Read the tensors of a TorchScript archive or a `torch.save`d state dict without PyTorch.

A TorchScript file (`torch.jit.save`) is a zip: `<prefix>/data.pkl` pickles the module tree, and
every tensor's storage is a raw little-endian file `<prefix>/data/<key>`. A state dict saved by
`torch.save` (PyTorch >= 1.6, e.g. torchvision's ImageNet `.pth` files) has the same layout, its
pickle an OrderedDict of tensors; the legacy format (`_use_new_zipfile_serialization=False`) is
one stream: pickles of a magic number, a protocol version and system information, the state dict,
and the list of storage keys, then each storage as an int64 element count and its raw bytes.

The pickles name torch functions and classes, so a plain `pickle.load` would need torch and would
run whatever globals the file names. `_RestrictedUnpickler` instead maps the handful of globals
such files legitimately use to NumPy stand-ins and refuses every other one (`os.system`,
`builtins.eval`, ...) as soon as the pickle names it, before anything is called, so reading an
untrusted file runs no code
(docs/design_notes.md, section "FID Inception network and weights").
"""

import collections
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

# Storage classes that may appear in the pickle, as the NumPy dtype of their raw bytes.
_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

_LIST_BUILDERS = ("build_intlist", "build_doublelist", "build_boollist")


class TorchScriptFormatError(ValueError):
    """The file is not a TorchScript archive this reader understands."""


class StateDictFormatError(TorchScriptFormatError):
    """The file is not a `torch.save`d state dict this reader understands."""


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle names a global outside the few weights files use; nothing was called."""


class ScriptModuleState:
    """Stand-in for a pickled `__torch__.*` module: an attribute holder.

    TorchScript pickles each submodule as `NEWOBJ` of its class followed by `BUILD` with a dict of
    its attributes (parameters, submodules, ints such as `stride`); `__setstate__` keeps that dict.
    """

    torch_class_name = ""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise TorchScriptFormatError(
                f"{self.torch_class_name}: expected a dict of attributes, got {type(state)}"
            )
        self.attributes = dict(state)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, *_):
    """NumPy version of `torch._utils._rebuild_tensor_v2`: a strided view, copied to own memory."""
    del requires_grad, backward_hooks  # Inference only: gradients and hooks do not apply.
    itemsize = storage.dtype.itemsize
    if len(size) != len(stride):
        raise TorchScriptFormatError(f"tensor size {tuple(size)} and stride {tuple(stride)} differ")
    numel_needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if size and min(size) > 0 and numel_needed > storage.size:
        raise TorchScriptFormatError(
            f"a tensor of size {tuple(size)} and stride {tuple(stride)} at offset "
            f"{storage_offset} reads past its storage of {storage.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=tuple(size),
        strides=tuple(s * itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_):
    """NumPy version of `torch._utils._rebuild_parameter`: an nn.Parameter is its tensor."""
    del requires_grad, backward_hooks
    return data


# Reads storage `key` of a dtype and element count: (key, dtype, numel) -> 1-D array.
StorageLoader = Callable[[str, np.dtype, int], np.ndarray]


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript or state-dict pickle with NumPy stand-ins; refuses other globals.

    `load_storage` provides the storages the pickle refers to by persistent id.
    """

    def __init__(self, file: BinaryIO, load_storage: StorageLoader):
        super().__init__(file)
        self._load_storage = load_storage
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:
            # TorchScript wraps typed lists (e.g. a conv's `padding: List[int]`) in these.
            return list
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(
                    name, (ScriptModuleState,), {"torch_class_name": qualified}
                )
            return self._classes[qualified]
        raise ForbiddenGlobalError(
            f"refusing to load global {module}.{name}: a weights file names only torch "
            "storages, _rebuild_tensor_v2, _rebuild_parameter, typed-list builders, OrderedDict "
            "and __torch__ classes"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        # pid = ("storage", dtype tag, key, location, number of elements), and in the legacy
        # format a sixth entry, the view metadata, None unless the storage is a view.
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and (len(pid) == 5 or pid[5] is None)
        ):
            raise TorchScriptFormatError(f"unexpected persistent id {pid!r}")
        dtype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(dtype, np.dtype):
            raise TorchScriptFormatError(f"storage {key!r} has unknown type {dtype!r}")
        return self._load_storage(str(key), dtype, int(numel))


def _archive_storage_loader(archive: zipfile.ZipFile, prefix: str) -> StorageLoader:
    """Reads storage `key` from the zip member `<prefix>/data/<key>`."""

    def load(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        member = f"{prefix}/data/{key}"
        try:
            raw = archive.read(member)
        except KeyError as error:
            raise TorchScriptFormatError(f"storage member {member} is missing") from error
        if len(raw) != numel * dtype.itemsize:
            raise TorchScriptFormatError(
                f"storage member {member} holds {len(raw)} bytes, expected "
                f"{numel} x {dtype.itemsize}"
            )
        return np.frombuffer(raw, dtype=dtype)

    return load


def _single_pickle(archive: zipfile.ZipFile, file: Any, error: type[Exception]) -> str:
    """The prefix of the archive's one `<prefix>/data.pkl`."""
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise error(f"{file} holds {len(pickles)} */data.pkl members, expected exactly one")
    return pickles[0][: -len("/data.pkl")]


def _flatten(node: Any, prefix: str, tensors: dict, attributes: dict) -> None:
    """Collects tensors and plain attributes of a module tree under dotted names."""
    if isinstance(node, ScriptModuleState):
        for name, value in node.attributes.items():
            _flatten(value, f"{prefix}.{name}" if prefix else name, tensors, attributes)
    elif isinstance(node, np.ndarray):
        tensors[prefix] = node
    else:
        attributes[prefix] = node


def read_torchscript(file: str | BinaryIO) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads every tensor and plain attribute of a TorchScript module archive, torch-free.

    Args:
      file: path or binary file object of a `torch.jit.save` archive (a zip).

    Returns:
      `(tensors, attributes)`: dicts keyed by dotted module paths such as
      `net.layers.conv.weight`; tensors are NumPy arrays in PyTorch's layout (conv kernels OIHW),
      attributes hold the non-tensor state (`training`, `stride`, `padding`, ...).

    Raises:
      TorchScriptFormatError: the file is not such an archive.
      pickle.UnpicklingError: the pickle names a global outside the allowed few.
    """
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as error:
        raise TorchScriptFormatError(f"{file} is not a zip archive ({error})") from error
    with archive:
        prefix = _single_pickle(archive, file, TorchScriptFormatError)
        with archive.open(f"{prefix}/data.pkl") as pickled:
            root = _RestrictedUnpickler(pickled, _archive_storage_loader(archive, prefix)).load()
        tensors: dict[str, np.ndarray] = {}
        attributes: dict[str, Any] = {}
        _flatten(root, "", tensors, attributes)
    return tensors, attributes


# The legacy format's first pickles (torch/serialization.py).
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001


def _check_state_dict(root: Any, file: Any) -> dict[str, np.ndarray]:
    if not isinstance(root, dict) or not all(
        isinstance(key, str) and isinstance(value, np.ndarray) for key, value in root.items()
    ):
        raise StateDictFormatError(
            f"{file} does not hold a state dict (a mapping of names to tensors) but a "
            f"{type(root).__name__}; save `model.state_dict()`"
        )
    return dict(root)


def _read_legacy_state_dict(stream: BinaryIO, file: Any) -> dict[str, np.ndarray]:
    """Reads the legacy (non-zip) `torch.save` format from a seekable binary stream."""

    def no_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        raise StateDictFormatError(f"{file}: a storage appears outside the state dict")

    def load_pickle(load_storage: StorageLoader = no_storage) -> Any:
        try:
            return _RestrictedUnpickler(stream, load_storage).load()
        except (ForbiddenGlobalError, TorchScriptFormatError):
            raise
        except Exception as error:  # a malformed or truncated pickle, whatever pickle raised
            raise StateDictFormatError(
                f"{file} is neither a zip archive nor a readable legacy torch.save file "
                f"({type(error).__name__}: {error})"
            ) from error

    if load_pickle() != _LEGACY_MAGIC_NUMBER:
        raise StateDictFormatError(f"{file} is neither a zip archive nor a torch.save file")
    protocol, system = load_pickle(), load_pickle()
    if protocol != _LEGACY_PROTOCOL_VERSION or not (
        isinstance(system, dict) and system.get("little_endian") is True
    ):
        raise StateDictFormatError(
            f"{file}: unsupported legacy torch.save protocol {protocol!r} or byte order "
            f"{system!r}; re-save it with a recent torch.save"
        )
    state_start = stream.tell()
    # Step over the state dict's pickle without running it: the storage keys follow it.
    try:
        for _ in pickletools.genops(stream):
            pass
    except ValueError as error:
        raise StateDictFormatError(
            f"{file}: the state dict's pickle is malformed ({error})"
        ) from error
    keys = load_pickle()
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys)):
        raise StateDictFormatError(f"{file}: the storage key list is malformed")
    storages_start = stream.tell()
    # Each storage is an int64 element count and count x itemsize bytes, the itemsize known only
    # from the state dict's pickle: read it once (restricted, as always) to learn the dtypes.
    dtypes: dict[str, np.dtype] = {}
    file_size = stream.seek(0, 2)

    def record(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        if numel * dtype.itemsize > file_size:  # so a forged count cannot exhaust memory
            raise StateDictFormatError(f"{file}: storage {key} is larger than the file")
        dtypes[key] = dtype
        return np.zeros(numel, dtype)

    stream.seek(state_start)
    load_pickle(record)
    stream.seek(storages_start)
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in dtypes:
            raise StateDictFormatError(f"{file}: storage {key} is not used by the state dict")
        count = stream.read(8)
        if len(count) != 8:
            raise StateDictFormatError(f"{file} is truncated (storage {key})")
        (numel,) = struct.unpack("<q", count)
        raw = stream.read(numel * dtypes[key].itemsize)
        if len(raw) != numel * dtypes[key].itemsize:
            raise StateDictFormatError(f"{file} is truncated (storage {key})")
        storages[key] = np.frombuffer(raw, dtypes[key])

    def load(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
        if key not in storages or storages[key].size != numel:
            raise StateDictFormatError(f"{file}: storage {key} is missing or of the wrong size")
        return storages[key]

    stream.seek(state_start)
    return _check_state_dict(load_pickle(load), file)


def read_state_dict(file: str | os.PathLike | BinaryIO) -> dict[str, np.ndarray]:
    """Reads a `torch.save`d state dict (zip or legacy format), torch-free.

    Args:
      file: path or seekable binary file object of a `torch.save(model.state_dict(), ...)` file.

    Returns:
      Dict from names such as `layer1.0.conv1.weight` to NumPy arrays in PyTorch's layout
      (conv kernels OIHW), in the file's order.

    Raises:
      StateDictFormatError: the file is not such a state dict (or is big-endian or truncated).
      ForbiddenGlobalError (a pickle.UnpicklingError): the pickle names a global outside the
        allowed few; nothing it names has been called.
    """
    stream = open(file, "rb") if isinstance(file, str | os.PathLike) else file
    try:
        if not zipfile.is_zipfile(stream):
            stream.seek(0)
            return _read_legacy_state_dict(stream, file)
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            prefix = _single_pickle(archive, file, StateDictFormatError)
            if f"{prefix}/byteorder" in archive.namelist():
                byteorder = archive.read(f"{prefix}/byteorder").decode(errors="replace")
                if byteorder != "little":
                    raise StateDictFormatError(
                        f"{file} stores {byteorder}-endian tensors; only little-endian is read"
                    )
            with archive.open(f"{prefix}/data.pkl") as pickled:
                loader = _archive_storage_loader(archive, prefix)
                root = _RestrictedUnpickler(pickled, loader).load()
        return _check_state_dict(root, file)
    finally:
        if stream is not file:
            stream.close()
