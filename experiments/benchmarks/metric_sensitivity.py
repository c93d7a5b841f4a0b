"""What the GAN metrics punish: FID over its floor, precision, recall and diversity of fresh REAL
phantom images, clean and with one small change each, against a GAN run's real reference.

A GAN's FID is read against the real-vs-real floor, its recall against 0, and its diversity and
coarse diversity (docs/fid_protocol.md, "Collapse") against 1. Which differences
from the data move them, and how far? This scores real images a generator has never seen (the
phantom set drawn again under another seed, the same sizes and class counts as the reference),
as the evaluator scores a GAN (`gan_metrics.compare`: as many images as the class's real
reference, the same floor), once clean and once per perturbation:

- `blur<s>`: a Gaussian blur of s pixels (a generator that renders the anatomy but not the
  detector's sharpness);
- `noise<a>`: white Gaussian noise of a grey levels (a generator with extra grain);
- `pixelate2`: every 2x2 block set to its top-left pixel (nearest-neighbour upsampling from
  half resolution, the blockiness of a generator whose last layers copy pixels);
- `contrast<c>`: the grey levels scaled by c about the image's mean (a washed-out film).

    python -m experiments.benchmarks.metric_sensitivity
    python -m experiments.benchmarks.metric_sensitivity --perturbations=clean,blur0.7,pixelate2

Results: docs/gan_convergence.md, "What the metrics punish".
"""

import time

import numpy as np
from absl import app, flags
from scipy import ndimage

from experiments.configs import pipeline_demo
from xraygan_jax import pipeline
from xraygan_jax.data import sources
from xraygan_jax.evaluators import gan_metrics

PERTURBATIONS = ("clean", "blur0.5", "blur0.7", "noise6", "noise15", "pixelate2", "contrast0.8")

_PERTURBATIONS = flags.DEFINE_list(
    "perturbations",
    list(PERTURBATIONS),
    "Changes to apply, of: clean, blur<sigma>, noise<grey levels>, pixelate2, contrast<factor>.",
)
_FRESH_SEED = flags.DEFINE_integer(
    "fresh_seed", 1, "data.phantom.seed of the fresh real images (the reference's is 0)."
)


def perturb(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """uint8 images [N, S, S, 1] with one named change (module docstring), uint8 again.

    Raises:
      ValueError: a name that is not one of the forms above (the message lists them).
    """
    x = images.astype(np.float32)
    if name == "clean":
        out = x
    elif name == "pixelate2":
        out = np.repeat(np.repeat(x[:, ::2, ::2], 2, axis=1), 2, axis=2)
    else:
        kind = name.rstrip("0123456789.")
        try:
            amount = float(name[len(kind) :])
        except ValueError:
            amount = None
        if kind == "blur" and amount:
            out = ndimage.gaussian_filter(x, (0, amount, amount, 0))
        elif kind == "noise" and amount:
            out = x + np.random.default_rng(seed).normal(0.0, amount, x.shape)
        elif kind == "contrast" and amount:
            mean = x.mean(axis=(1, 2, 3), keepdims=True)
            out = mean + amount * (x - mean)
        else:
            raise ValueError(
                f"--perturbations: {name!r} is unknown; use clean, pixelate2, blur<sigma>, "
                "noise<grey levels> or contrast<factor>, e.g. blur0.7, noise6, contrast0.8"
            )
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def main(argv):
    del argv
    for name in _PERTURBATIONS.value:
        perturb(np.zeros((1, 2, 2, 1), np.uint8), name)  # refuse a bad name before any work
    config = pipeline.gan_config(pipeline_demo.get_config())
    fresh = config.data.copy_and_resolve_references()
    fresh.phantom.seed = _FRESH_SEED.value
    sources.prepare(fresh)
    source = sources.get_source(fresh, "train")
    labels = np.array([int(source[i]["label"]) for i in range(len(source))])
    extractor = gan_metrics.extractor_for()
    print(
        f"Fresh phantom train images (seed {_FRESH_SEED.value}) against the main job's reference "
        "(seed 0), as many per class as the reference holds."
    )
    print(
        "| change | class | N | FID / floor | precision | recall | diversity | coarse diversity |"
    )
    print("|---|---|---|---|---|---|---|---|")
    start = time.time()
    for label, class_name in enumerate(sources.class_names(config.data)):
        real = gan_metrics.real_features(config.data, "train", label, extractor)
        reference_images = gan_metrics.real_images(config.data, "train", label)
        indices = np.flatnonzero(labels == label)[: len(real)]
        images = np.stack([np.asarray(source[int(i)]["image"]) for i in indices])
        for name in _PERTURBATIONS.value:
            changed = perturb(images, name)
            metrics = gan_metrics.compare(
                real,
                extractor(changed),
                seed=0,
                real_images=reference_images,
                fake_images=changed,
            )
            print(
                f"| {name} | {class_name} | {len(images)} | {metrics['fid']:.1f} / "
                f"{metrics['fid_floor']:.1f} = {metrics['fid'] / metrics['fid_floor']:.1f}x | "
                f"{metrics['precision']:.2f} | {metrics['recall']:.2f} | "
                f"{metrics['diversity']:.2f} | {metrics['coarse_diversity']:.2f} |",
                flush=True,
            )
    print(f"({time.time() - start:.0f} s)")


if __name__ == "__main__":
    app.run(main)
