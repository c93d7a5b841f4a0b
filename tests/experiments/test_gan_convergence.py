"""The convergence benchmark's tables (experiments/benchmarks/gan_convergence.py)."""

from experiments.benchmarks import gan_convergence
from experiments.configs import pipeline_demo
from xraygan_jax import pipeline


def _point(kimg, fid, coarse=None):
    values = {
        "fid": fid,
        "fid_floor": 40.0,
        "kid_mean": 0.3,
        "precision": 0.0,
        "recall": 0.0,
        "diversity": 0.5,
    }
    if coarse is not None:
        values["coarse_diversity"] = coarse
    return {"kimg": kimg, "train_seconds": 60.0 * kimg, "classes": {"A": values}}


def test_the_markdown_table_gives_the_last_point_the_best_ratio_and_coarse_diversity():
    results = {
        "runs": {
            "phantom600/demo/seed0": {
                "points": [_point(1.0, 200.0, 0.15), _point(2.0, 320.0, 0.125)]
            },
            # Scored before coarse diversity was measured.
            "phantom600/old/seed0": {"points": [_point(3.0, 400.0)]},
            "phantom600/empty/seed0": {"points": []},
        }
    }
    header, rule, *rows = gan_convergence.markdown_table(results)
    assert "A diversity (coarse)" in header and rule.count("---") == 6
    assert rows == [
        "| phantom600/demo/seed0 | 2.0 | 2.0 | 320.0 / 40.0 = 8.0x (5.0x) | 0.00 / 0.00 "
        "| 0.50 (0.125) |",
        "| phantom600/old/seed0 | 3.0 | 3.0 | 400.0 / 40.0 = 10.0x (10.0x) | 0.00 / 0.00 "
        "| 0.50 (n/a) |",
    ]


def test_the_progress_line_names_the_coarse_diversity():
    line = gan_convergence.format_point(_point(2.0, 320.0, 0.125))
    assert line.endswith("A FID  320.0 ( 8.0x floor) recall 0.00 diversity 0.50 (coarse 0.125)")


def test_the_demo_arm_is_the_main_jobs_gan_without_mode_seeking():
    """Runs named `demo` were made before the main job took the mode-seeking term; the arm keeps
    that recipe, and `--set` gives today's main job's GAN."""
    main_job = pipeline.gan_config(pipeline_demo.get_config())
    assert main_job.train.mode_seeking > 0
    demo = gan_convergence.arm_config("demo", "phantom600", 0)
    assert (demo.train.mode_seeking, demo.train.mode_seeking_size) == (0.0, 0)
    today = gan_convergence.arm_config(
        "demo",
        "phantom600",
        0,
        ("train.mode_seeking=0.1", "train.mode_seeking_size=16"),
    )
    for section in ("model", "optim", "train"):
        for key, value in main_job[section].items():
            if key not in ("tensorboard", "seed"):
                assert today[section][key] == value, f"{section}.{key}"
