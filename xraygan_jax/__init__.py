"""xraygan_jax: conditional-GAN data augmentation of chest X-rays in JAX/Flax.

Subpackages:
  data     phantom generator, folder ingestion, TFDS builders, grain pipelines, mixing.
  models   Flax Linen GANs, classifier, the FID Inception port, fast layers.
  train    state pytrees, losses, pure jit steps, sharding, checkpointing, loops.
  metrics  Inception weights, FID, KID, precision/recall, classification metrics, statistics.
  evaluators  GAN metrics with real-vs-real floors, built from a config and a sampler.
  runs     the run folder: config, checkpoints, GAN names, sampling from a run.
  study    the augmentation study; pipeline, report, sweep: the main job and its report.
  viz      sample grids and curves as PNG.
"""

__version__ = "0.1.0"
