"""torchvision ResNet state dicts (`.pth`, e.g. the ImageNet weights) into `classifier.ResNet`.

The file is read without torch by `xraygan_jax.pretrained.torch_free_reader.read_state_dict`, which
refuses any pickle global other than the few a state dict uses, so an untrusted file runs no code.
torchvision's names map one to one onto the Flax tree:

    conv1.weight                 params/conv1/kernel             (OIHW -> HWIO)
    bn1.weight, bn1.bias         params/bn1/scale, params/bn1/bias
    bn1.running_mean, _var       batch_stats/bn1/mean, batch_stats/bn1/var
    layer2.0.conv1.weight        params/layer2_0/conv1/kernel
    layer2.0.downsample.0.weight params/layer2_0/downsample_conv/kernel
    layer2.0.downsample.1.*      params|batch_stats/layer2_0/downsample_bn/*

`*.num_batches_tracked` is ignored (Flax's BatchNorm uses a fixed momentum) and so is the 1000-class
ImageNet `fc`: the head (`params/head`) stays as the variables had it.

One-channel input: ImageNet's conv1 takes RGB. For a model with `in_channels=1` the loader sums
conv1's kernel over its three input channels, so that a grey image gives the response the
pretrained network gives to that image repeated to RGB (the usual choice for grey inputs; the
alternative, repeating the image to three channels, costs three times the stem's work for the same
result). The images stay in [-1, 1], not ImageNet's per-channel normalisation: an affine change
of input scale that fine-tuning (conv1 and bn1) absorbs.
"""

import os
from typing import Any, BinaryIO

import flax
import jax.numpy as jnp
import numpy as np

from xraygan_jax import errors
from xraygan_jax.models import classifier
from xraygan_jax.pretrained import torch_free_reader

# torch BatchNorm name -> (collection, Flax name).
_BATCH_NORM = {
    "weight": ("params", "scale"),
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_KEYS = ("fc.weight", "fc.bias")


class ResNetWeightsError(errors.UserError, ValueError):
    """A weights file that is not a torchvision ResNet of the asked depth."""


def _layer_names(depth: int) -> list[tuple[str, str, str]]:
    """(torch module prefix, Flax module path, kind) for every conv and BN of torchvision's
    ResNet-`depth`, in the state dict's order; kind is "conv" or "bn"."""
    stage_sizes, block = classifier.RESNET_ARCHITECTURES[depth]
    layers = [("conv1", "conv1", "conv"), ("bn1", "bn1", "bn")]
    num_convs = 2 if block is classifier.BasicBlock else 3
    for stage, num_blocks in enumerate(stage_sizes):
        for index in range(num_blocks):
            torch_block, flax_block = f"layer{stage + 1}.{index}", f"layer{stage + 1}_{index}"
            for conv in range(1, num_convs + 1):
                layers.append((f"{torch_block}.conv{conv}", f"{flax_block}/conv{conv}", "conv"))
                layers.append((f"{torch_block}.bn{conv}", f"{flax_block}/bn{conv}", "bn"))
            # The first block of every stage projects its shortcut, except stage 1 of a
            # BasicBlock ResNet, whose shapes already match.
            if index == 0 and (stage > 0 or block is classifier.Bottleneck):
                layers.append(
                    (f"{torch_block}.downsample.0", f"{flax_block}/downsample_conv", "conv")
                )
                layers.append((f"{torch_block}.downsample.1", f"{flax_block}/downsample_bn", "bn"))
    return layers


def expected_keys(depth: int) -> dict[str, tuple[str, ...]]:
    """torchvision ResNet-`depth` state-dict keys we load -> Flax variable path.

    Args:
      depth: 18, 50 or 152.

    Returns:
      Dict such as `{"layer1.0.conv1.weight": ("params", "layer1_0", "conv1", "kernel"), ...}`,
      without `fc.*` and `*.num_batches_tracked` (which the loader skips).
    """
    if depth not in classifier.RESNET_ARCHITECTURES:
        raise ResNetWeightsError(
            f"depth={depth} is not one of {sorted(classifier.RESNET_ARCHITECTURES)}"
        )
    keys = {}
    for torch_name, flax_name, kind in _layer_names(depth):
        path = tuple(flax_name.split("/"))
        if kind == "conv":
            keys[f"{torch_name}.weight"] = ("params", *path, "kernel")
        else:
            for torch_leaf, (collection, flax_leaf) in _BATCH_NORM.items():
                keys[f"{torch_name}.{torch_leaf}"] = (collection, *path, flax_leaf)
    return keys


def _is_ignored(key: str) -> bool:
    return key in _IGNORED_KEYS or key.endswith(_IGNORED_SUFFIXES)


def convert_state_dict(
    state_dict: dict[str, np.ndarray], variables: dict[str, Any], *, depth: int
) -> dict[str, Any]:
    """Maps a torchvision ResNet state dict (NumPy arrays) onto `classifier.ResNet` variables.

    Args:
      state_dict: names to arrays in PyTorch's layout (`torch_free_reader.read_state_dict`).
      variables: the model's `{"params": ..., "batch_stats": ...}`; their shapes are checked and
        their head (and anything else torchvision has no counterpart for) is kept.
      depth: 18, 50 or 152.

    Returns:
      New variables with every backbone tensor from `state_dict`, as float32 jax arrays.

    Raises:
      ResNetWeightsError: keys missing or unexpected (the first few of each are listed), or a
        tensor's shape does not fit the model (e.g. another depth or width).
    """
    expected = expected_keys(depth)
    given = [key for key in state_dict if not _is_ignored(key)]
    unexpected = [key for key in given if key not in expected]
    missing = [key for key in expected if key not in state_dict]
    if unexpected or missing:
        hint = (
            " (a DataParallel 'module.' prefix? strip it before saving)"
            if any(key.startswith("module.") for key in unexpected)
            else ""
        )
        raise ResNetWeightsError(
            f"not a torchvision ResNet-{depth} state dict{hint}: {len(unexpected)} unexpected "
            f"keys {unexpected[:5]}, {len(missing)} missing keys {missing[:5]}"
        )
    flat = flax.traverse_util.flatten_dict({name: dict(tree) for name, tree in variables.items()})
    for key, path in expected.items():
        if path not in flat:
            raise ResNetWeightsError(
                f"{key} has no counterpart {'/'.join(path)} in the variables: build the model "
                f"with classifier.resnet{depth}()"
            )
        value = np.asarray(state_dict[key], np.float32)
        if path[-1] == "kernel":
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            if path[1] == "conv1" and flat[path].shape[2] == 1 and value.shape[2] == 3:
                # ImageNet's RGB stem on grey input: the module docstring says why.
                value = value.sum(axis=2, keepdims=True)
        if value.shape != flat[path].shape:
            raise ResNetWeightsError(
                f"{key} has shape {value.shape} (Flax layout), the model's {'/'.join(path)} "
                f"{flat[path].shape}: build the model with classifier.resnet{depth}() and "
                "num_filters=64"
            )
        flat[path] = jnp.asarray(value)
    return flax.traverse_util.unflatten_dict(flat)


def load_torchvision_resnet(
    path: str | os.PathLike | BinaryIO, variables: dict[str, Any], *, depth: int
) -> dict[str, Any]:
    """Loads a torchvision ResNet `.pth` state dict into `classifier.ResNet` variables, torch-free.

    Args:
      path: the `.pth` file (`torch.save(model.state_dict())`, zip or legacy format), e.g.
        torchvision's `resnet18-f37072fd.pth`.
      variables: the model's `{"params": ..., "batch_stats": ...}` (`classifier.init_variables`);
        the head is kept.
      depth: 18, 50 or 152, the file's architecture.

    Returns:
      New variables holding the file's backbone weights.

    Raises:
      ResNetWeightsError: not a ResNet-`depth` state dict, or shapes that do not fit `variables`.
      torch_free_reader.StateDictFormatError: not a state dict file at all.
      torch_free_reader.ForbiddenGlobalError: the pickle names a global other than the few a
        state dict uses (e.g. `os.system`); nothing was run.
    """
    return convert_state_dict(torch_free_reader.read_state_dict(path), variables, depth=depth)
