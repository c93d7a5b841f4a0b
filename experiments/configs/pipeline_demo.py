"""The README's first command: the whole idea in 8-17 minutes on two CPU cores (8 min 17 s on
an AMD EPYC on 6 December 2026, 16 min 51 s on a Sapphire Rapids Xeon on 3 December; README).

    python -m experiments.pipeline --workdir=runs/demo

A smaller phantom set (600 train images), one DC-cGAN conditioned on the class (narrower than the
report's, ngf = ndf = 32, so it learns in a few minutes on a CPU; D's learning rate 5e-5 and an EMA
of G, which kept more variety across z than the report's settings on this small set: sample
standard deviation across z 7-12 grey levels against 4-6, real images 33), and the mode-seeking
term in G's loss (lambda 0.1 on films averaged down to 16 x 16 pixels, docs/small_data.md),
without which its films of a class became one film (coarse diversity 0.13-0.15 at 18-27
thousand images shown, against 0.80-1.01 with it, at about the same FID: docs/gan_convergence.md,
"Mode seeking"), checkpoints every 10 epochs,
FID/KID per class and checkpoint beside the real-vs-real floor, then the augmentation study with
the small CNN and report.md / report.html. The study trains four arms at ten seeds (40
classifiers): 0%, 20% synthetic, and its two controls with the same counts, 20% duplicate (extra
copies of real train images) and 20% oracle (extra new phantom images, a perfect generator's),
so that the report can say how much of the oracle's gain over duplicates the GAN recovered.

The study's classifier here is the small CNN at width 8 (a quarter to a third of width 16's cost
per step) with dropout 0.2, Adam with a 20-step warm-up and a cosine decay from lr 3e-3 over 300
steps, balanced batches, validation at steps 100, 200 and 300 and the latest weights within one
standard error of the best validation AUC kept (`train.select_rule = "one_se"`): its
0%-synthetic baseline scored 79.8 +- 1.7% test accuracy, specificity 77.9 +- 4.2% at threshold
0.5 over seeds 0-9 (79.8 +- 1.8% and 79.4 +- 5.1% over seeds 0-29)
(`python -m experiments.benchmarks.study_classifiers`; docs/performance.md, "Study classifiers").
"""

import ml_collections

from experiments.configs import pipeline


def get_config() -> ml_collections.ConfigDict:
    config = pipeline.get_config()
    config.data.phantom.num_train = 600
    config.data.phantom.num_val = 100
    config.data.phantom.num_test = 300
    config.gan.train.per_class = False
    config.gan.model.ngf = 32
    config.gan.model.ndf = 32
    config.gan.train.num_epochs = 30
    config.gan.train.checkpoint_every_epochs = 10
    config.gan.train.sample_every_epochs = 10
    config.gan.train.log_every_steps = 50
    config.gan.optim.d_lr = 5e-5
    config.gan.train.ema_decay = 0.99
    config.gan.train.mode_seeking = 0.1
    config.gan.train.mode_seeking_size = 16
    config.train_fcgan = False
    config.study_job.study.fractions = (0.0, 0.2)
    config.study_job.study.controls = ("duplicate", "oracle")
    config.study_job.model.width = 8
    config.study_job.model.dropout_rate = 0.2
    config.study_job.optim.lr = 3e-3
    config.study_job.train.num_steps = 300
    config.study_job.train.eval_every_steps = 100
    return config
