"""How often the study's verdict rule is wrong, on simulated studies with a known answer.

    python -m experiments.study_calibration                 # the table in docs/study_statistics.md
    python -m experiments.study_calibration --num_studies=1000 --seeds=10 --seed_sds=2,9

Each simulated study has the study's design (paired seeds, one shared test split) and classifiers
whose accuracy varies from seed to seed by the given standard deviation. Null studies draw both
arms from one distribution (every verdict is false); the others give the arm a true gain. The
verdicts come from `statistics.compare_with_baseline`, the function the study calls. Prints a
Markdown table. This file is intentionally kept short: the simulation is
xraygan_jax.metrics.calibration.
"""

import time

from absl import app, flags

from xraygan_jax.metrics import calibration

_SEEDS = flags.DEFINE_list("seeds", ["3", "5", "10"], "Seeds per arm, one row group each.")
_SEED_SDS = flags.DEFINE_list("seed_sds", ["2", "5", "9"], "Seed-to-seed sd of accuracy, points.")
_GAIN = flags.DEFINE_float("gain", 5.0, "The true gain of the power rows, in points.")
_NUM_TEST = flags.DEFINE_integer("num_test", 300, "Test images per study.")
_NUM_STUDIES = flags.DEFINE_integer("num_studies", 400, "Simulated studies per cell.")
_NUM_RESAMPLES = flags.DEFINE_integer("num_resamples", 1000, "Bootstrap resamples per study.")


def main(argv):
    del argv
    started = time.perf_counter()
    cells = len(_SEEDS.value) * len(_SEED_SDS.value)
    done = []

    def progress(row):
        done.append(row)
        elapsed = time.perf_counter() - started
        eta = elapsed / len(done) * (cells - len(done))
        print(
            f"[calibration] {len(done)}/{cells}: {row['num_seeds']} seeds, sd "
            f"{row['seed_sd_points']:g}: false {row['false_rate']:.3f}, power "
            f"{row['power']:.3f} ({elapsed:.0f} s, ETA {eta:.0f} s)",
            flush=True,
        )

    rows = calibration.calibration_table(
        seeds=tuple(int(s) for s in _SEEDS.value),
        seed_sds_points=tuple(float(s) for s in _SEED_SDS.value),
        gain_points=_GAIN.value,
        num_test=_NUM_TEST.value,
        num_studies=_NUM_STUDIES.value,
        num_resamples=_NUM_RESAMPLES.value,
        progress=progress,
    )
    print()
    print(
        f"{_NUM_STUDIES.value} simulated studies per cell, {_NUM_TEST.value} test images, "
        f"true gain {_GAIN.value:g} points for power; nominal false rate 5%."
    )
    print()
    print(
        "| seeds | seed sd (points) | false-difference rate | paired t alone | "
        f"power at +{_GAIN.value:g} | paired t alone | detectable (points) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['num_seeds']} | {row['seed_sd_points']:g} | {row['false_rate']:.1%} | "
            f"{row['t_false_rate']:.1%} | {row['power']:.1%} | {row['t_power']:.1%} | "
            f"{row['mde_points']:.1f} |"
        )


if __name__ == "__main__":
    app.run(main)
