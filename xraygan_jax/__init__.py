"""xraygan_jax: conditional-GAN data augmentation of chest X-rays in JAX/Flax.

Subpackages and modules, lowest layer first (imports point down only; the contracts in
pyproject.toml, checked by `lint-imports`):
  errors, compiler, files, pixels
             leaves: user-error types, XLA options, atomic .npz writes, the [-1, 1] pixel range.
  data     phantom generator, folder ingestion, TFDS builders, grain pipelines, mixing.
  models   Flax Linen GANs, classifier, the FID Inception port, fast layers.
  pretrained  PyTorch weight files read without torch: the FID Inception's, torchvision ResNets.
  metrics  FID, KID, precision/recall, classification metrics, statistics (maths only).
  train    state pytrees, losses, pure jit steps, sharding, checkpointing, sampling, the
           classifier loop, and `setup`, which builds models and states from a config.
  runs     the run folder: config, checkpoints, GAN names, sampling from a run.
  viz      sample grids and curves as PNG (the only module that imports matplotlib).
  evaluators  Evaluator(fn, **config).run() -> flat metrics: GAN metrics with real-vs-real
           floors from a sampler, a classifier's metrics from its predict_fn; the registry that
           `config.evals` names.
  gan_loop, study, report
             the orchestrators: GAN training, the augmentation study (a package: the run, its
             arms and images, the summary over seeds, the writers), the report;
  pipeline, sweep
             the main job and hyper-parameter sweeps, which run them.
"""

__version__ = "0.1.0"
