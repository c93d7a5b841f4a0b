"""FID Inception feature extraction speed: this library (JAX) against PyTorch, side by side.

Both sides start from the same uint8 NHWC images at 299x299 and end with float32 [N, 2048]
features in host memory: the JAX side is `fid.InceptionFeatureExtractor` (normalisation and
network), the PyTorch side the TorchScript network of the same weights file (normalisation,
NCHW, `torch.no_grad`). Each configuration runs in a process of its own
(experiments/benchmarks/processes.py) and rounds alternate between them, so that a busy machine
slows them alike; the table reports the best and the median round, and the load average (the
machine is shared). First it checks that both give the same features (max abs difference).

    python -m xraygan_jax.pretrained.inception_weights    # the weights, for both sides
    pip install torch==2.13.0                # the PyTorch side only
    python -m experiments.benchmarks.inception_features
    python -m experiments.benchmarks.inception_features --jax_batch_sizes=2,4,8 --num_images=64

Without torch installed it times the JAX side alone. Results: docs/performance.md, section "FID
Inception features against PyTorch".
"""

import importlib.metadata
import io
import os
import statistics

import jax
import numpy as np
from absl import app, flags, logging

from experiments.benchmarks import processes
from xraygan_jax.metrics import fid
from xraygan_jax.pretrained import inception_weights

_NUM_IMAGES = flags.DEFINE_integer("num_images", 48, "Images per timed round.")
_JAX_BATCH_SIZES = flags.DEFINE_list("jax_batch_sizes", ["4", "16", "48"], "JAX batch sizes.")
_TORCH_BATCH_SIZES = flags.DEFINE_list("torch_batch_sizes", ["4", "16", "48"], "Torch batch sizes.")
_ROUNDS = flags.DEFINE_integer("rounds", 6, "Timed rounds per configuration.")
_WEIGHTS_PATH = flags.DEFINE_string("weights_path", None, "A .pt, .whl or .npz weights file.")


def _images(num_images: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (num_images, 299, 299, 3), dtype=np.uint8)


def _torch_network():
    """The TorchScript network of the weights file, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    data = inception_weights.read_source(inception_weights.find_source(download=False))
    return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()


def _torch_features(network, images: np.ndarray, batch_size: int) -> np.ndarray:
    """uint8 NHWC -> float32 features by the TorchScript network, batch by batch."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size])
            batch = (batch.permute(0, 3, 1, 2).float() - 128.0) / 128.0
            outputs.append(network(batch).numpy())
    return np.concatenate(outputs)


def _jax_runner(batch_size: int, num_images: int, weights_path: str | None):
    """Builds the JAX extractor in this process: a function extracting one round's features."""
    extractor = fid.InceptionFeatureExtractor(
        inception_weights.load_params(weights_path), batch_size
    )
    images = _images(num_images)
    return lambda: extractor(images)


def _torch_runner(batch_size: int, num_images: int):
    """Builds the TorchScript network in this process (torch's default threads, 2 here)."""
    network = _torch_network()
    images = _images(num_images)
    return lambda: _torch_features(network, images, batch_size)


def main(argv):
    del argv
    load_before = os.getloadavg()
    num_images = _NUM_IMAGES.value
    factories = {}
    for batch_size in map(int, _JAX_BATCH_SIZES.value):
        args = (batch_size, num_images, _WEIGHTS_PATH.value)
        factories[f"JAX {jax.__version__} (cpu), batch {batch_size}"] = (_jax_runner, args)
    network = _torch_network()
    torch_names = []
    if network is None:
        logging.warning("torch is not installed: timing the JAX side alone")
    else:
        sample = _images(4)
        extractor = fid.InceptionFeatureExtractor(
            inception_weights.load_params(_WEIGHTS_PATH.value)
        )
        difference = np.abs(extractor(sample) - _torch_features(network, sample, 4)).max()
        print(f"max |JAX - PyTorch| over 4 images' features: {difference:.2e}")
        for batch_size in map(int, _TORCH_BATCH_SIZES.value):
            name = f"PyTorch {importlib.metadata.version('torch')} TorchScript, batch {batch_size}"
            factories[name] = (_torch_runner, (batch_size, num_images))
            torch_names.append(name)
    times = processes.time_in_processes(factories, _ROUNDS.value, repeats=1)
    times = {name: [seconds for (seconds,) in runs] for name, runs in times.items()}

    rates = {name: num_images / min(seconds) for name, seconds in times.items()}
    torch_best = max((rates[name] for name in torch_names), default=None)
    print(f"\n{num_images} images of 299x299x3 uint8 per round, {_ROUNDS.value} rounds")
    print(f"load average before: {load_before}, after: {os.getloadavg()}\n")
    print("| implementation | images/s (best) | images/s (median) | vs best PyTorch |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in times.items():
        median = num_images / statistics.median(seconds)
        ratio = f"{rates[name] / torch_best:.2f}x" if torch_best else "-"
        print(f"| {name} | {rates[name]:.1f} | {median:.1f} | {ratio} |")


if __name__ == "__main__":
    app.run(main)
