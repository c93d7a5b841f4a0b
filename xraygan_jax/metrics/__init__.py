"""Metrics: the FID Inception's weights, FID, KID, precision/recall and their reference statistics.

Modules:
  weights            find, verify, convert (torch-free) and cache the FID Inception weights;
                     `python -m xraygan_jax.metrics.weights` fetches them once.
  torch_free_reader  reads the tensors of a TorchScript file without PyTorch.
  fid                Inception features of images, streaming statistics, FID, KID,
                     precision/recall, `evaluate`.
  reference          real-image statistics cached per data set, split, class, image size, resize.
  diversity          generated over real mean pairwise feature distance; the collapse rule.
  classification     accuracy, sensitivity, specificity, AUC, confusion counts, thresholds.
  statistics         two-level seed-and-image bootstrap, t-intervals, Holm, McNemar, verdicts.
  calibration        simulated studies with a known answer: how often the verdict rule errs.

GAN evaluation of runs lives in xraygan_jax.evaluators (metrics/ imports nothing from train/).
"""
