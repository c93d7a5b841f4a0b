"""Read the tensors of a TorchScript archive without PyTorch.

A TorchScript file (`torch.jit.save`) is a zip: `<prefix>/data.pkl` pickles the module tree, and
every tensor's storage is a raw little-endian file `<prefix>/data/<key>`. The pickle names torch
functions and classes, so a plain `pickle.load` would need torch and would run whatever globals the
file names. `_RestrictedUnpickler` instead maps the handful of globals such a file legitimately
uses to NumPy stand-ins and refuses every other one, so reading an untrusted file runs no code
(FACTS.md, "FID Inception weights").
"""

import collections
import pickle
import zipfile
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


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript `data.pkl` with NumPy stand-ins; refuses any other global."""

    def __init__(self, file: BinaryIO, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
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
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a TorchScript weights file names only "
            "torch storages, _rebuild_tensor_v2, typed-list builders, OrderedDict and __torch__ "
            "classes"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        # pid = ("storage", dtype tag, key, location, number of elements).
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchScriptFormatError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _, numel = pid
        if not isinstance(dtype, np.dtype):
            raise TorchScriptFormatError(f"storage {key!r} has unknown type {dtype!r}")
        member = f"{self._prefix}/data/{key}"
        try:
            raw = self._archive.read(member)
        except KeyError as error:
            raise TorchScriptFormatError(f"storage member {member} is missing") from error
        if len(raw) != numel * dtype.itemsize:
            raise TorchScriptFormatError(
                f"storage member {member} holds {len(raw)} bytes, expected "
                f"{numel} x {dtype.itemsize}"
            )
        return np.frombuffer(raw, dtype=dtype)


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
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise TorchScriptFormatError(
                f"{file} holds {len(pickles)} */data.pkl members, expected exactly one"
            )
        prefix = pickles[0][: -len("/data.pkl")]
        with archive.open(pickles[0]) as pickled:
            root = _RestrictedUnpickler(pickled, archive, prefix).load()
        tensors: dict[str, np.ndarray] = {}
        attributes: dict[str, Any] = {}
        _flatten(root, "", tensors, attributes)
    return tensors, attributes
