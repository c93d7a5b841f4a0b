"""torchvision ResNet state dicts into the Flax ResNet: key mapping, forward parity with PyTorch,
both `torch.save` formats, refused pickles, wrong keys and shapes.

The PyTorch side is `torch_references.torch_resnet` with its defaults: torchvision's ResNet
(RGB input, 1000 logits) written out with the same module names, as torchvision itself fails to
import with the CPU build of torch.
"""

import io
import pickle
import zipfile

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.benchmarks import torch_references
from xraygan_jax.models import classifier
from xraygan_jax.pretrained import resnet_weights, torch_free_reader


def _randomise_batch_norms(torch, model) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics, as after training."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.copy_(0.1 * torch.randn(size, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                module.num_batches_tracked.fill_(7)


def _abstract_variables(model, image_size: int = 32):
    images = jnp.zeros((1, image_size, image_size, model.in_channels), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))


@pytest.fixture(scope="module")
def torch_resnet18(tmp_path_factory):
    """(torch ResNet-18 in eval mode, its state dict saved by torch.save, legacy-format copy)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch_references.torch_resnet(torch, 18)
    _randomise_batch_norms(torch, model)
    model.eval()
    folder = tmp_path_factory.mktemp("resnet18")
    path, legacy = folder / "resnet18.pth", folder / "resnet18_legacy.pth"
    torch.save(model.state_dict(), path)
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    return model, path, legacy


@pytest.mark.parametrize("depth", [18, 50])  # 152 differs from 50 in block counts only
def test_expected_keys_are_torchvisions_state_dict_minus_fc(depth):
    torch = pytest.importorskip("torch")
    keys = [
        key
        for key in torch_references.torch_resnet(torch, depth).state_dict()
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked")
    ]
    assert list(resnet_weights.expected_keys(depth)) == keys
    # Every mapped path exists in the Flax model, with the transposed shape.
    flat = flax.traverse_util.flatten_dict(_abstract_variables(classifier.resnet(depth)))
    for key, path in resnet_weights.expected_keys(depth).items():
        assert path in flat, key
    assert set(flat) - set(resnet_weights.expected_keys(depth).values()) == {
        ("params", "head", "kernel"),
        ("params", "head", "bias"),
    }


def test_flax_resnet18_matches_torch_on_grey_images(torch_resnet18):
    """Eval mode, the same random weights: Flax on 1 channel (conv1 summed over RGB) against
    torch on the grey image repeated to RGB. Compared: the last block's feature map, and our
    head's logit against the pooled torch features times w plus b."""
    torch = pytest.importorskip("torch")
    torch_model, path, _ = torch_resnet18
    model = classifier.resnet18()
    variables = resnet_weights.load_torchvision_resnet(path, _abstract_variables(model), depth=18)
    rng = np.random.default_rng(0)
    head = {
        "kernel": rng.normal(0, 1, (512, 1)).astype(np.float32),
        "bias": np.array([0.3], np.float32),
    }
    variables["params"]["head"] = jax.tree.map(jnp.asarray, head)
    images = rng.uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)

    @jax.jit
    def forward(variables, images):
        def last_block(module, method_name):
            return module.name == "layer4_1"

        return model.apply(
            variables,
            images,
            train=False,
            capture_intermediates=last_block,
            mutable=["intermediates"],
        )

    logits, state = forward(variables, images)
    (feature_map,) = state["intermediates"]["layer4_1"]["__call__"]
    with torch.no_grad():
        rgb = torch.from_numpy(np.repeat(images.transpose(0, 3, 1, 2), 3, axis=1))
        x = torch_model.maxpool(torch_model.relu(torch_model.bn1(torch_model.conv1(rgb))))
        torch_map = torch_model.layer4(
            torch_model.layer3(torch_model.layer2(torch_model.layer1(x)))
        ).numpy()
    assert feature_map.shape == (4, 1, 1, 512)
    scale = np.abs(torch_map).max()
    np.testing.assert_allclose(
        feature_map, torch_map.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4 * scale
    )
    expected = torch_map.mean(axis=(2, 3)) @ head["kernel"][:, 0] + head["bias"][0]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_legacy_format_loads_the_same_tensors(torch_resnet18):
    _, path, legacy = torch_resnet18
    new, old = torch_free_reader.read_state_dict(path), torch_free_reader.read_state_dict(legacy)
    assert list(new) == list(old)
    for key in new:
        np.testing.assert_array_equal(new[key], old[key])
    assert new["bn1.num_batches_tracked"] == 7 and new["bn1.num_batches_tracked"].dtype == np.int64


def test_loading_keeps_rgb_conv1_for_three_channel_models(torch_resnet18):
    torch_model, path, _ = torch_resnet18
    variables = resnet_weights.load_torchvision_resnet(
        path, _abstract_variables(classifier.resnet18(in_channels=3)), depth=18
    )
    weight = torch_model.conv1.weight.detach().numpy()
    np.testing.assert_array_equal(
        variables["params"]["conv1"]["kernel"], weight.transpose(2, 3, 1, 0)
    )
    bn = torch_model.layer2[0].downsample[1]
    np.testing.assert_array_equal(
        variables["batch_stats"]["layer2_0"]["downsample_bn"]["var"], bn.running_var.numpy()
    )


def _write_pickle_archive(path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


class _RunsCommand:
    """What an attacker pickles: unpickling it calls `os.system(command)`."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


@pytest.mark.parametrize(
    "payload, refused",
    [
        (lambda marker: b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR.", "os.system"),
        (lambda marker: pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=4), "posix.system"),
        (
            lambda marker: b"cbuiltins\neval\n(V" + f"open('{marker}', 'w')".encode() + b"\ntR.",
            "builtins.eval",
        ),
    ],
)
@pytest.mark.parametrize("legacy", [False, True])
def test_a_pickle_naming_another_global_is_refused_before_it_runs(
    tmp_path, payload, refused, legacy
):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    if legacy:  # the legacy format starts with a pickle: make that one the attack
        path.write_bytes(payload(marker))
    else:
        _write_pickle_archive(path, payload(marker))
    variables = _abstract_variables(classifier.resnet18())
    with pytest.raises(torch_free_reader.ForbiddenGlobalError, match=f"global {refused}"):
        resnet_weights.load_torchvision_resnet(path, variables, depth=18)
    assert not marker.exists()


def _numpy_state_dict(depth: int) -> dict[str, np.ndarray]:
    """A state dict of the right keys and shapes (zeros), without torch."""
    variables = _abstract_variables(classifier.resnet(depth, in_channels=3))
    flat = flax.traverse_util.flatten_dict(variables)
    state = {}
    for key, path in resnet_weights.expected_keys(depth).items():
        shape = flat[path].shape
        state[key] = np.zeros(shape if len(shape) == 1 else (shape[3], shape[2], *shape[:2]))
    state["fc.weight"], state["fc.bias"] = np.zeros((1000, 512)), np.zeros(1000)
    return state


def test_wrong_keys_are_listed():
    state = _numpy_state_dict(18)
    state["layer1.0.conv3.weight"] = state.pop("layer1.0.conv2.weight")
    state["module.bn1.weight"] = state.pop("bn1.weight")
    del state["layer4.1.bn2.running_var"]
    variables = _abstract_variables(classifier.resnet18())
    with pytest.raises(resnet_weights.ResNetWeightsError) as raised:
        resnet_weights.convert_state_dict(state, variables, depth=18)
    message = str(raised.value)
    assert "not a torchvision ResNet-18 state dict (a DataParallel 'module.' prefix?" in message
    assert "2 unexpected keys ['layer1.0.conv3.weight', 'module.bn1.weight']" in message
    assert (
        "3 missing keys ['bn1.weight', 'layer1.0.conv2.weight', 'layer4.1.bn2.running_var']"
        in message
    )


def test_another_depth_is_named():
    variables = _abstract_variables(classifier.resnet50())
    with pytest.raises(resnet_weights.ResNetWeightsError, match="not a torchvision ResNet-50"):
        resnet_weights.convert_state_dict(_numpy_state_dict(18), variables, depth=50)


def test_a_narrower_model_is_named_with_the_shapes():
    variables = _abstract_variables(classifier.resnet18(num_filters=32))
    with pytest.raises(
        resnet_weights.ResNetWeightsError,
        match=r"conv1.weight has shape \(7, 7, 1, 64\) .* \(7, 7, 1, 32\)",
    ):
        resnet_weights.convert_state_dict(_numpy_state_dict(18), variables, depth=18)


def test_a_file_that_is_not_a_state_dict_is_named(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(torch_free_reader.StateDictFormatError, match="not hold a state dict"):
        torch_free_reader.read_state_dict(path)
    text = tmp_path / "text.pth"
    text.write_text("not a weights file")
    with pytest.raises(torch_free_reader.StateDictFormatError, match="neither a zip archive"):
        torch_free_reader.read_state_dict(io.BytesIO(text.read_bytes()))


def test_a_truncated_file_is_named(torch_resnet18, tmp_path):
    _, path, legacy = torch_resnet18
    for source, message in ((legacy, "is truncated"), (path, "neither a zip archive")):
        cut = tmp_path / f"cut_{source.name}"
        cut.write_bytes(source.read_bytes()[:-100])
        with pytest.raises(torch_free_reader.StateDictFormatError, match=message):
            resnet_weights.load_torchvision_resnet(
                cut, _abstract_variables(classifier.resnet18()), depth=18
            )
