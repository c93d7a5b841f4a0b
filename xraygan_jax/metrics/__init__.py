"""Metrics: FID, KID, precision/recall and their reference statistics, classification statistics.

Modules:
  fid                Inception features of images, streaming statistics, FID, KID,
                     precision/recall, `evaluate`.
  reference          real-image statistics cached per data set, split, class, image size, resize.
  diversity          generated over real mean pairwise feature distance; the collapse rule.
  classification     accuracy, sensitivity, specificity, AUC, confusion counts, thresholds.
  statistics         two-level seed-and-image bootstrap, t-intervals, Holm, McNemar, verdicts.
  calibration        simulated studies with a known answer: how often the verdict rule errs.

Maths only: metrics/ imports models/ and pretrained/ (the Inception and its weights), nothing
from train/ or above; GAN evaluation of runs lives in xraygan_jax.evaluators.
"""
