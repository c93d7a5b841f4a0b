"""FID and precision of two IDENTICAL Gaussians against the number of real samples.

    python -m experiments.benchmarks.fid_sample_size [--dim=64] [--num_fake=500] [--repeats=5]

Shows why FIDs computed with different N cannot be compared (docs/fid_protocol.md): the two
distributions are the same at every row, only the real count changes. Prints the mean over
`repeats` independent draws.
"""

import warnings

import numpy as np
from absl import app, flags

from xraygan_jax.metrics import fid

_DIM = flags.DEFINE_integer("dim", 64, "Feature dimension.")
_NUM_FAKE = flags.DEFINE_integer("num_fake", 500, "Generated samples.")
_NUM_REAL = flags.DEFINE_list("num_real", ["113", "187", "234", "390", "500"], "Real counts.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Independent draws per row.")


def main(argv):
    del argv
    warnings.simplefilter("ignore", fid.SmallSampleWarning)
    print(
        f"identical N(0, I_{_DIM.value}); {_NUM_FAKE.value} generated samples; "
        f"mean of {_REPEATS.value} draws"
    )
    print(f"{'N real':>7} | {'FID':>6} | {'precision':>9} | {'recall':>6}")
    for num_real in map(int, _NUM_REAL.value):
        rows = []
        for repeat in range(_REPEATS.value):
            rng = np.random.default_rng([num_real, repeat])
            real = rng.normal(size=(num_real, _DIM.value))
            fake = rng.normal(size=(_NUM_FAKE.value, _DIM.value))
            distance = fid.frechet_distance(
                fid.FeatureStats.from_features(real), fid.FeatureStats.from_features(fake)
            )
            precision, recall = fid.precision_recall(real, fake)
            rows.append((distance, precision, recall))
        distance, precision, recall = np.mean(rows, axis=0)
        print(f"{num_real:>7} | {distance:>6.1f} | {precision:>9.2f} | {recall:>6.2f}")


if __name__ == "__main__":
    app.run(main)
