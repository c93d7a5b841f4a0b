"""A binary classifier's test metrics, from the function that predicts its probabilities.

    predict_fn = functools.partial(classifier_loop.predict, state)   # images -> P(class 1)
    evaluator = ClassifierEvaluator(predict_fn, images=test.images, labels=test.labels,
                                    threshold=0.37)       # chosen on validation data
    metrics = evaluator.run()     # {"accuracy": ..., "auc": ..., "accuracy_at_threshold": ...}

The evaluators' contract (`Evaluator(fn, **config).run()`, xraygan_jax.evaluators): the function
is a `predict_fn`, handed in by whoever trained the classifier (the study), so this module never
imports a training loop. The numbers are `metrics.classification.binary_metrics`'.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from xraygan_jax.metrics import classification

PredictFn = Callable[[np.ndarray], np.ndarray]
# binary_metrics' fields that depend on the threshold: all but the threshold-free AUC.
THRESHOLD_METRICS = tuple(name for name in classification.METRIC_NAMES if name != "auc")


class ClassifierEvaluator:
    """Accuracy, sensitivity, specificity, AUC, ... of a classifier on labelled images.

    Args:
      predict_fn: `uint8 images [N, S, S, 1] -> probabilities of class 1 [N]`.
      images: the images scored, e.g. a test split's.
      labels: their labels, 0 or 1 (1 = disease), [N].
      threshold: a second decision threshold, chosen on validation data (never on these
        images): its metrics are reported as `<metric>_at_threshold`, beside those at 0.5, and
        the threshold itself as `threshold`. None: at 0.5 only.
    """

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        images: np.ndarray,
        labels: np.ndarray,
        threshold: float | None = None,
    ):
        self.predict_fn = predict_fn
        self.images = images
        self.labels = classification.check_labels(labels)
        self.threshold = threshold

    def predict(self) -> np.ndarray:
        """The classifier's probabilities of class 1 for every image, [N]."""
        return np.asarray(self.predict_fn(self.images))

    def score(self, probabilities: np.ndarray) -> dict[str, float]:
        """The metrics of `probabilities` (from `predict`), keyed as `run()` returns them.

        Labels of one class give AUC NaN with one `classification.UndefinedAUCWarning`.
        """
        metrics = dict(classification.binary_metrics(self.labels, probabilities))
        if self.threshold is None:
            return metrics
        with warnings.catch_warnings():
            # AUC does not depend on the threshold: it was computed, and warned of, above.
            warnings.simplefilter("ignore", classification.UndefinedAUCWarning)
            at_threshold = classification.binary_metrics(self.labels, probabilities, self.threshold)
        metrics["threshold"] = self.threshold
        metrics.update({f"{k}_at_threshold": at_threshold[k] for k in THRESHOLD_METRICS})
        return metrics

    def run(self) -> dict[str, float]:
        """{"accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "tp", "fp",
        "tn", "fn", "type_i_errors", "type_ii_errors"} at 0.5 (`binary_metrics`), and with a
        threshold "threshold" and each of them but AUC as "<metric>_at_threshold"."""
        return self.score(self.predict())
