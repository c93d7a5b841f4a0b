"""Rendering speed of the embedded phantom set on ONE CPU core (the requirement is >= 500
images/s at 128x128), for `phantom.generate` and for sequential reads through `PhantomSource`.

    python -m experiments.benchmarks.phantom_rate
    python -m experiments.benchmarks.phantom_rate --sizes=32,64,128,256 --preview=/tmp/phantom.png

`--preview` also writes a grid of 4 NORMAL (top) and 4 PNEUMONIA (bottom) train images at 128x128.
Rates are per second of wall time and per second of this process's CPU time; on a shared
machine the CPU-time rate is the one-core figure. Each is the best of `--repeats` runs.
Results: docs/performance.md, section "Phantom rendering".
"""

import os

# One core: BLAS and OpenMP pools are sized when NumPy is imported, so this comes first.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from xraygan_jax.data import phantom  # noqa: E402

_SIZES = flags.DEFINE_list("sizes", ["64", "128", "256"], "Image sizes to time.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 512, "Images rendered per timing at 128x128.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timings per row; the best is reported.")
_PREVIEW = flags.DEFINE_string("preview", "", "If set, write a preview PNG grid here.")


def _best_rates(render, num_images: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second), each the best of the repeats."""
    render(min(num_images, 16))  # warm the coordinate and upsampler caches
    best_wall = best_cpu = 0.0
    for _ in range(_REPEATS.value):
        wall, cpu = time.perf_counter(), time.process_time()
        render(num_images)
        best_wall = max(best_wall, num_images / (time.perf_counter() - wall))
        best_cpu = max(best_cpu, num_images / (time.process_time() - cpu))
    return best_wall, best_cpu


def _write_preview(path: str) -> None:
    spec = phantom.PhantomSpec(image_size=128)
    images, labels = phantom.generate(spec, "train", 0, 64)
    rows = [np.concatenate(list(images[labels == label][:4, ..., 0]), axis=1) for label in (0, 1)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    print(f"Wrote {path}: 4 NORMAL (top) and 4 PNEUMONIA (bottom) train images, 128x128.")


def main(argv):
    del argv
    print(
        "| image size | generate, wall (images/s) | generate, CPU (images/s) "
        "| PhantomSource sequential, wall | PhantomSource sequential, CPU |"
    )
    print("|---|---|---|---|---|")
    for size in (int(s) for s in _SIZES.value):
        # Keep each timing near the same pixel count, so large sizes stay quick.
        num_images = max(32, _NUM_IMAGES.value * 128 * 128 // (size * size))
        spec = phantom.PhantomSpec(image_size=size, num_train=num_images + 16)

        def render_batch(n, spec=spec):
            phantom.generate(spec, "train", 0, n)

        def read_source(n, spec=spec):
            source = phantom.PhantomSource(spec, "train")
            for i in range(n):
                source[i]

        rates = _best_rates(render_batch, num_images) + _best_rates(read_source, num_images)
        print(f"| {size} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |", flush=True)
    if _PREVIEW.value:
        _write_preview(_PREVIEW.value)


if __name__ == "__main__":
    app.run(main)
