"""FID Inception feature extraction speed: this library (JAX) against PyTorch, side by side.

Both sides start from the same uint8 NHWC images at 299x299 and end with float32 [N, 2048]
features in host memory: the JAX side is `fid.InceptionFeatureExtractor` (normalisation and
network), the PyTorch side the TorchScript network of the same weights file (normalisation,
NCHW, `torch.no_grad`). Rounds alternate between all configurations so that a busy machine
slows them alike; the table reports the best and the median round, and the load average
(the machine is shared). Also checks that both give the same features (max abs difference).

    python -m xraygan_jax.metrics.weights    # the weights, for both sides
    pip install torch==2.13.0                # the PyTorch side only
    python -m experiments.benchmarks.inception_features
    python -m experiments.benchmarks.inception_features --jax_batch_sizes=2,4,8 --num_images=64

Without torch installed it times the JAX side alone.

Measured on the project's shared 2-core machine (defaults, best of 6 rounds; the network is
11.06 GFLOP per image by XLA's count): JAX batch 4 24.1 images/s, batch 48 20.0; PyTorch batch 4
22.0, batch 16 17.7, batch 48 13.3. On a quiet moment the two are close at small batches; under
load from other processes JAX's median held at 15.6 images/s while PyTorch's fell to 2-7.
Features agree to 8e-6.
"""

import io
import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags, logging

from xraygan_jax.metrics import fid, weights

_NUM_IMAGES = flags.DEFINE_integer("num_images", 48, "Images per timed round.")
_JAX_BATCH_SIZES = flags.DEFINE_list("jax_batch_sizes", ["4", "16", "48"], "JAX batch sizes.")
_TORCH_BATCH_SIZES = flags.DEFINE_list("torch_batch_sizes", ["4", "16", "48"], "Torch batch sizes.")
_ROUNDS = flags.DEFINE_integer("rounds", 6, "Timed rounds per configuration.")
_WEIGHTS_PATH = flags.DEFINE_string("weights_path", None, "A .pt, .whl or .npz weights file.")


def _torch_runners(batch_sizes: list[int]) -> dict:
    """The TorchScript network as functions uint8 NHWC -> float32 features, one per batch size."""
    try:
        import torch
    except ImportError:
        logging.warning("torch is not installed: timing the JAX side alone")
        return {}
    data = weights.read_source(weights.find_source(download=False))
    network = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()

    def runner(batch_size):
        def run(images: np.ndarray) -> np.ndarray:
            outputs = []
            with torch.no_grad():
                for start in range(0, len(images), batch_size):
                    batch = torch.from_numpy(images[start : start + batch_size])
                    batch = (batch.permute(0, 3, 1, 2).float() - 128.0) / 128.0
                    outputs.append(network(batch).numpy())
            return np.concatenate(outputs)

        return run

    note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    return {f"PyTorch TorchScript ({note}), batch {b}": runner(b) for b in batch_sizes}


def main(argv):
    del argv
    load_before = os.getloadavg()
    images = np.random.default_rng(0).integers(
        0, 256, (_NUM_IMAGES.value, 299, 299, 3), dtype=np.uint8
    )
    variables = weights.load_params(_WEIGHTS_PATH.value)
    runners = {}
    for batch_size in map(int, _JAX_BATCH_SIZES.value):
        extractor = fid.InceptionFeatureExtractor(variables, batch_size=batch_size)
        runners[f"JAX {jax.__version__} ({jax.default_backend()}), batch {batch_size}"] = extractor
    torch_runners = _torch_runners([int(b) for b in _TORCH_BATCH_SIZES.value])
    runners.update(torch_runners)

    for run in runners.values():  # warm up (compiles every JAX batch size) before timing
        run(images[:8])
    times = {name: [] for name in runners}
    for _ in range(_ROUNDS.value):
        # Alternating configurations, one round each, so that load from other processes
        # spreads over all of them.
        for name, run in runners.items():
            start = time.perf_counter()
            run(images)
            times[name].append(time.perf_counter() - start)

    rates = {name: _NUM_IMAGES.value / min(seconds) for name, seconds in times.items()}
    torch_best = max((rates[name] for name in torch_runners), default=None)
    print(f"\n{_NUM_IMAGES.value} images of 299x299x3 uint8 per round, {_ROUNDS.value} rounds")
    print(f"load average before: {load_before}, after: {os.getloadavg()}\n")
    print("| implementation | images/s (best) | images/s (median) | vs best PyTorch |")
    print("| --- | ---: | ---: | ---: |")
    for name, seconds in times.items():
        median = _NUM_IMAGES.value / statistics.median(seconds)
        ratio = f"{rates[name] / torch_best:.2f}x" if torch_best else "-"
        print(f"| {name} | {rates[name]:.1f} | {median:.1f} | {ratio} |")
    if torch_runners:
        sample = images[:4]
        jax_features = next(iter(runners.values()))(sample)
        difference = np.abs(jax_features - next(iter(torch_runners.values()))(sample)).max()
        print(f"\nmax |JAX - PyTorch| over 4 images' features: {difference:.2e}")


if __name__ == "__main__":
    app.run(main)
