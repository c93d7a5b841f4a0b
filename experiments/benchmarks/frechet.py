"""FID's Frechet distance from features against from moments, side by side in one run.

`fid.evaluate` computes FID of two small feature sets (N_r N_g <= 2048^2) in their own span,
from the singular values of the centred cross product (`fid.frechet_distance_from_features`),
and otherwise from the D x D moments (`FeatureStats` and `fid.frechet_distance_from_moments`,
two 2048 x 2048 eigendecompositions). This times both on random 2048-d features at the sizes of
one class's evaluation, rounds alternating, and prints the median seconds per FID and the
difference between the two values.

    python -m experiments.benchmarks.frechet
    python -m experiments.benchmarks.frechet --sizes=48,300,1000 --rounds=5
"""

import time

import numpy as np
from absl import app, flags

from xraygan_jax.metrics import fid

_SIZES = flags.DEFINE_list("sizes", ["48", "300", "1000"], "Samples per set (both sets).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per form and size.")


def _features(rng: np.random.Generator, num: int, offset: float) -> np.ndarray:
    # Correlated, non-negative-ish float32 features, as Inception's pool features are.
    mixing = rng.standard_normal((64, fid.FEATURE_DIM)) / 8
    return (offset + rng.standard_normal((num, 64)) @ mixing).astype(np.float32)


def _from_moments(real: np.ndarray, fake: np.ndarray) -> float:
    a, b = fid.FeatureStats.from_features(real), fid.FeatureStats.from_features(fake)
    return fid.frechet_distance_from_moments(a.mean, a.cov, b.mean, b.cov)


def _timed(function, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    print("| N per set | from features (s) | from moments (s) | ratio | |difference| |")
    print("|---|---|---|---|---|")
    for num in map(int, _SIZES.value):
        real, fake = _features(rng, num, 0.3), _features(rng, num, 0.4)
        times = {"features": [], "moments": []}
        values = {}
        for _ in range(_ROUNDS.value):
            for name, function in (
                ("features", fid.frechet_distance_from_features),
                ("moments", _from_moments),
            ):
                seconds, values[name] = _timed(function, real, fake)
                times[name].append(seconds)
        features_s, moments_s = (float(np.median(times[k])) for k in ("features", "moments"))
        print(
            f"| {num} | {features_s:.3f} | {moments_s:.3f} | {moments_s / features_s:.0f}x "
            f"| {abs(values['features'] - values['moments']):.2e} |"
        )


if __name__ == "__main__":
    app.run(main)
