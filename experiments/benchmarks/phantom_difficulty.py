"""How hard is the embedded phantom set? Test accuracy of a small CNN per difficulty.

The set is meant to be learnable but not trivial: a small CNN trained on 200 images per class
should land around 80-90% test accuracy at the default difficulty (0.5), not 100%. This trains
one (3 conv layers + dense, Adam, 64x64, 200 NORMAL + 200 PNEUMONIA train images, 100 + 100 test
images) per difficulty and seed and prints a table. It takes a few minutes on two CPU cores.
Results: docs/performance.md, section "Phantom difficulty".

    python -m experiments.benchmarks.phantom_difficulty
    python -m experiments.benchmarks.phantom_difficulty --difficulties=0.2,0.5,0.8 --seeds=0,1
"""

import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from xraygan_jax.data import phantom

_DIFFICULTIES = flags.DEFINE_list("difficulties", ["0.2", "0.5", "0.8"], "Phantom difficulties.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Data and initialisation seeds per difficulty.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Image side in pixels.")
_NUM_PER_CLASS = flags.DEFINE_integer("num_per_class", 200, "Training images per class.")
_NUM_TEST_PER_CLASS = flags.DEFINE_integer("num_test_per_class", 100, "Test images per class.")
_NUM_EPOCHS = flags.DEFINE_integer("num_epochs", 12, "Training epochs.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")


class SmallCNN(nn.Module):
    """Three 3x3 convolutions with ReLU and 2x2 max pooling, then a dense layer and a logit."""

    @nn.compact
    def __call__(self, x):
        for features in (16, 32, 64):
            x = nn.relu(nn.Conv(features, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
        return nn.Dense(1)(x)[:, 0]


def _load(spec: phantom.PhantomSpec, split: str):
    images, labels = phantom.generate(spec, split, 0, spec.num_examples(split))
    return images.astype(np.float32) / 127.5 - 1.0, labels.astype(np.float32)


def _accuracy(difficulty: float, seed: int) -> float:
    spec = phantom.PhantomSpec(
        image_size=_IMAGE_SIZE.value,
        difficulty=difficulty,
        seed=seed,
        num_train=2 * _NUM_PER_CLASS.value,
        num_val=0,
        num_test=2 * _NUM_TEST_PER_CLASS.value,
        train_normal_fraction=0.5,
        test_normal_fraction=0.5,
    )
    train_images, train_labels = _load(spec, "train")
    test_images, test_labels = _load(spec, "test")
    model = SmallCNN()
    key = jax.random.key(seed)
    params = model.init(key, train_images[:1])
    optimizer = optax.adam(_LEARNING_RATE.value)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, images, labels):
        def loss_fn(params):
            logits = model.apply(params, images)
            return optax.sigmoid_binary_cross_entropy(logits, labels).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    batch = _BATCH_SIZE.value
    num_steps = len(train_images) // batch
    for epoch in range(_NUM_EPOCHS.value):
        order = np.random.default_rng((seed, epoch)).permutation(len(train_images))
        for step in range(num_steps):
            rows = order[step * batch : (step + 1) * batch]
            params, opt_state = train_step(
                params, opt_state, train_images[rows], train_labels[rows]
            )
    logits = jax.jit(model.apply)(params, test_images)
    return float(jnp.mean((logits > 0) == (test_labels > 0.5)))


def main(argv):
    del argv
    difficulties = [float(d) for d in _DIFFICULTIES.value]
    seeds = [int(s) for s in _SEEDS.value]
    print(
        f"Small CNN, {_IMAGE_SIZE.value}x{_IMAGE_SIZE.value}, {_NUM_PER_CLASS.value} train and "
        f"{_NUM_TEST_PER_CLASS.value} test images per class, {_NUM_EPOCHS.value} epochs"
    )
    print(f"| difficulty | {' | '.join(f'seed {s}' for s in seeds)} | mean | seconds |")
    print(f"|---|{'---|' * len(seeds)}---|---|")
    for difficulty in difficulties:
        start = time.perf_counter()
        accuracies = [_accuracy(difficulty, seed) for seed in seeds]
        cells = " | ".join(f"{100 * a:.1f}%" for a in accuracies)
        print(
            f"| {difficulty:.2f} | {cells} | {100 * np.mean(accuracies):.1f}% | "
            f"{time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
