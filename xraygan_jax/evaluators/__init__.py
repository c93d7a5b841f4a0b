"""Evaluators: built from a config plus a function they call, they return flat metrics.

    evaluator = gan_metrics.GANMetricsEvaluator(config, sample_fn)   # sample_fn(label, num, seed)
    metrics = evaluator.run()              # {"NORMAL/fid": ..., "NORMAL/fid_floor": ..., ...}

An evaluator never imports a training loop: the trainer (or a script) hands it the function that
makes what is judged: a sampler of uint8 images for GAN metrics, a `predict_fn` for classifiers.
Compiled functions (the Inception network) and real-image features are cached at module level,
so an evaluator built every few epochs compiles once and reads the real images once.

Modules:
  gan_metrics  FID, KID and precision/recall per class with a real-vs-real floor: the evaluator,
               the features it compares and the checks of `config.eval`.
  records      its records, one per (GAN, epoch, class): eval.jsonl, the log line, the collapse
               warnings and the evaluation part of a run's summary.md.
  drivers      what is on disk: every checkpoint of a run (`evaluate_run`), a folder of images
               from any tool (`evaluate_folder`); the FID-against-epoch plot.
"""
