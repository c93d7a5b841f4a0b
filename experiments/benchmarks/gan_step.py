"""DC-cGAN train step speed: this library (JAX) against PyTorch, side by side in one run.

The step is the first report's: 64x64x1 images, batch 64, nz 100, ngf = ndf = 64 (`--width`), label
conditioning (G: embedding concatenated with z; D: a label plane), BCE, Adam(2e-4, 0.5), one D and
one G update. The PyTorch side is the DCGAN tutorial's training iteration made conditional, as the
report wrote it (nn.Sigmoid + nn.BCELoss, errD_real.backward(), fake.detach(), ...), on CPU with
2 threads. Before timing, the PyTorch networks are loaded with the JAX initial weights and both
forward passes are compared (same architecture, max abs difference printed).

Each implementation runs in a process of its own (experiments/benchmarks/processes.py says why);
rounds alternate between them so that a busy machine slows all alike. Each round times
`--steps_per_round` steps after warm-up; the table gives the median over rounds of each round's
median step time.

    pip install torch==2.13.0        # the PyTorch side only (CPU build)
    python -m experiments.benchmarks.gan_step
    python -m experiments.benchmarks.gan_step --batch_size=64 --rounds=5 --torch_compile=false

The JAX step is compiled as the training loop compiles it, with YNNPACK's reduce fusions on CPU
(BatchNorm's statistics); the row "JAX, no reduce fusion" (`--no_reduce_fusion_row=false` leaves
it out) is the step without them. `--width` sets ngf = ndf of both sides: 64 is the reports', 32
the main job's demo GAN (experiments/configs/pipeline_demo.py):

    python -m experiments.benchmarks.gan_step --width=32 --rounds=5 --steps_per_round=5

Without torch installed it times the JAX side alone. Mixed precision (config.train.compute_dtype)
beside float32, JAX only:

    python -m experiments.benchmarks.gan_step --torch=false --jax_compute_dtypes=float32,bfloat16

The SN-ResNet cGAN (`model.kind` "sngan", experiments/configs/sngan.py: its widths, hinge loss,
two D updates per step, DiffAugment) has a row of its own at the same batch and image size, in
float32; `--sngan=false` leaves it out. It is another model, so its ratio to PyTorch eager's
DC-cGAN step is a cost, not a speed-up; the line below the table gives its step time against the
DC-cGAN's.

    python -m experiments.benchmarks.gan_step --torch=false --rounds=2

The DC-cGAN with G's output noise (`model.output_noise`) and with resize-convolution upsampling
(`model.g_upsample=resize`, docs/models.md) have rows too, at the same width and step;
`--output_noise_row=false` and `--resize_row=false` leave them out. So has the DC-cGAN with
the mode-seeking term in G's loss at the main job's setting (`train.mode_seeking=0.1`,
`train.mode_seeking_size=16`, docs/small_data.md); `--mode_seeking_row=false` leaves it out.
The lines below the table give their step times against the plain DC-cGAN's.
"""

import functools
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.benchmarks import processes
from experiments.configs import dcgan as dcgan_config
from experiments.configs import sngan as sngan_config
from xraygan_jax import compiler
from xraygan_jax.models import gan
from xraygan_jax.train import setup, steps

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per step.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Image side (32, 64 or 128).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Timed rounds per implementation.")
_STEPS_PER_ROUND = flags.DEFINE_integer("steps_per_round", 3, "Steps timed per round.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads.")
_TORCH_COMPILE = flags.DEFINE_bool("torch_compile", True, "Also time torch.compile'd networks.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch reference (needs torch).")
_JAX_COMPUTE_DTYPES = flags.DEFINE_list(
    "jax_compute_dtypes",
    ["float32"],
    "config.train.compute_dtype values to time the JAX step with, each in its own process.",
)
_SNGAN = flags.DEFINE_bool("sngan", True, "Also time the SN-ResNet cGAN (configs/sngan.py).")
_OUTPUT_NOISE = flags.DEFINE_bool(
    "output_noise_row", True, "Also time the DC-cGAN with model.output_noise (same width)."
)
_RESIZE = flags.DEFINE_bool(
    "resize_row", True, "Also time the DC-cGAN with model.g_upsample=resize (same width)."
)
_MODE_SEEKING = flags.DEFINE_bool(
    "mode_seeking_row", True, "Also time the DC-cGAN with the mode-seeking term (same width)."
)
_WIDTH = flags.DEFINE_integer(
    "width", 64, "ngf = ndf of the DC-cGAN (64: the reports'; 32: the main job's demo GAN)."
)
_NO_REDUCE_FUSION = flags.DEFINE_bool(
    "no_reduce_fusion_row",
    True,
    "Also time JAX without YNNPACK's reduce fusions (the training loop compiles with them).",
)
SNGAN_NAME = "JAX sngan (SN-ResNet)"
NO_REDUCE_NAME = "JAX, no reduce fusion"
OUTPUT_NOISE_NAME = "JAX, output noise"
RESIZE_NAME = "JAX, resize upsampling"
MODE_SEEKING_NAME = "JAX, mode seeking"

NUM_CLASSES = 2


def _dcgan_config(
    width: int,
    output_noise: bool = False,
    g_upsample: str = "transposed",
    mode_seeking: bool = False,
):
    """The reports' DC-cGAN config with ngf = ndf = width (and G's options if asked)."""
    config = dcgan_config.get_config()
    config.model.ngf = config.model.ndf = width
    config.model.output_noise = output_noise
    config.model.g_upsample = g_upsample
    if mode_seeking:
        config.train.mode_seeking = 0.1
        config.train.mode_seeking_size = 16
    return config


def _jax_side(
    config,
    batch_size: int,
    image_size: int,
    compute_dtype: str = "float32",
    reduce_fusion: bool = True,
):
    """(initial GANState, a function running one step and waiting for it).

    The step is compiled as the training loop compiles it (YNNPACK's reduce fusions on CPU)
    unless `reduce_fusion` is False.
    """
    config.data.image_size = image_size
    config.train.compute_dtype = compute_dtype
    initial_state = jax.jit(setup.make_init(config, NUM_CLASSES))(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {
        "image": jnp.asarray(
            rng.uniform(-1, 1, (batch_size, image_size, image_size, 1)), jnp.float32
        ),
        "label": jnp.asarray(rng.integers(0, NUM_CLASSES, batch_size), jnp.int32),
    }
    options = steps.StepOptions.from_config(config.train)
    train_step = compiler.jit(
        functools.partial(steps.gan_train_step, options=options),
        donate_argnums=0,
        reduce_fusion=reduce_fusion,
    )
    base_key = jax.random.key(1)
    # A copy to donate; initial_state stays for the parity check.
    holder = {"state": jax.tree.map(jnp.copy, initial_state), "step": 0}

    def run_step():
        key = jax.random.fold_in(base_key, holder["step"])
        holder["state"], metrics = train_step(holder["state"], batch, key)
        jax.block_until_ready(metrics)
        holder["step"] += 1

    return initial_state, batch, run_step


def _torch_modules(torch, config, image_size: int):
    """The report's conditional DCGAN in PyTorch (the tutorial's layers, NCHW)."""
    nn = torch.nn
    nz, ngf, ndf, embed_dim = (
        config.model.nz,
        config.model.ngf,
        config.model.ndf,
        config.model.embed_dim,
    )
    num_up = gan.num_up_convs(image_size)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.label_embedding = nn.Embedding(NUM_CLASSES, embed_dim)
            width = ngf * 2 ** (num_up - 1)
            layers = [
                nn.ConvTranspose2d(nz + embed_dim, width, 4, 1, 0, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(True),
            ]
            for _ in range(num_up - 1):
                layers += [
                    nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(width // 2),
                    nn.ReLU(True),
                ]
                width //= 2
            layers += [nn.ConvTranspose2d(width, 1, 4, 2, 1, bias=False), nn.Tanh()]
            self.main = nn.Sequential(*layers)

        def forward(self, z, labels):
            x = torch.cat([z, self.label_embedding(labels)], 1)
            return self.main(x[:, :, None, None])

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.label_plane = nn.Embedding(NUM_CLASSES, image_size * image_size)
            layers = [nn.Conv2d(2, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
            width = ndf
            for _ in range(num_up - 1):
                layers += [
                    nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(width * 2),
                    nn.LeakyReLU(0.2, inplace=True),
                ]
                width *= 2
            layers += [nn.Conv2d(width, 1, 4, 1, 0, bias=False), nn.Sigmoid()]
            self.main = nn.Sequential(*layers)

        def forward(self, images, labels):
            plane = self.label_plane(labels).view(-1, 1, image_size, image_size)
            return self.main(torch.cat([images, plane], 1))

    return Generator(), Discriminator()


def _load_jax_weights(torch, generator, discriminator, state) -> None:
    """Copies the JAX initial parameters into the PyTorch modules (NHWC/HWIO -> NCHW/OIHW)."""

    def tensor(array):
        return torch.from_numpy(np.array(array))

    g_params, d_params = state.g_params, state.d_params
    with torch.no_grad():
        generator.label_embedding.weight.copy_(tensor(g_params["label_embedding"]["embedding"]))
        convs = [m for m in generator.main if isinstance(m, torch.nn.ConvTranspose2d)]
        norms = [m for m in generator.main if isinstance(m, torch.nn.BatchNorm2d)]
        project = np.asarray(g_params["project"]["kernel"])
        width = convs[0].weight.shape[1]
        # Dense column (i*4 + j)*F + f is tap (i, j) of feature f (tests/models/test_layers.py).
        convs[0].weight.copy_(tensor(project.reshape(-1, 4, 4, width).transpose(0, 3, 1, 2)))
        for index, conv in enumerate(convs[1:]):
            kernel = np.asarray(g_params[f"UpConv2x_{index}"]["kernel"])
            conv.weight.copy_(tensor(kernel.transpose(2, 3, 0, 1)))
        for index, norm in enumerate(norms):
            norm.weight.copy_(tensor(g_params[f"BatchNorm_{index}"]["scale"]))
            norm.bias.copy_(tensor(g_params[f"BatchNorm_{index}"]["bias"]))
        discriminator.label_plane.weight.copy_(tensor(d_params["label_plane"]["embedding"]))
        convs = [m for m in discriminator.main if isinstance(m, torch.nn.Conv2d)]
        norms = [m for m in discriminator.main if isinstance(m, torch.nn.BatchNorm2d)]
        names = [f"DownConv2x_{index}" for index in range(len(convs) - 1)] + ["Conv_0"]
        for name, conv in zip(names, convs, strict=True):
            kernel = np.asarray(d_params[name]["kernel"])
            conv.weight.copy_(tensor(kernel.transpose(3, 2, 0, 1)))
        for index, norm in enumerate(norms):
            norm.weight.copy_(tensor(d_params[f"BatchNorm_{index}"]["scale"]))
            norm.bias.copy_(tensor(d_params[f"BatchNorm_{index}"]["bias"]))


def _parity(torch, generator, discriminator, state, batch) -> tuple[float, float]:
    """Max |JAX - PyTorch| of G's images and D's probabilities, train mode, same inputs."""
    z = np.array(steps.sample_latents(jax.random.key(2), batch["label"].shape[0], state.nz))
    labels = np.array(batch["label"])
    variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
    jax_images, _ = state.generator.apply(variables, z, labels, train=True, mutable=["batch_stats"])
    variables = {"params": state.d_params, "batch_stats": state.d_batch_stats}
    jax_outputs, _ = state.discriminator.apply(
        variables, batch["image"], labels, train=True, mutable=["batch_stats"]
    )
    jax_logits = jax_outputs.logits
    generator.train(), discriminator.train()
    with torch.no_grad():
        torch_images = generator(torch.from_numpy(z), torch.from_numpy(labels).long())
        images = torch.from_numpy(np.asarray(batch["image"]).transpose(0, 3, 1, 2).copy())
        torch_probs = discriminator(images, torch.from_numpy(labels).long()).view(-1)
    image_difference = np.max(
        np.abs(np.asarray(jax_images).transpose(0, 3, 1, 2) - torch_images.numpy())
    )
    prob_difference = np.max(np.abs(np.asarray(jax.nn.sigmoid(jax_logits)) - torch_probs.numpy()))
    return float(image_difference), float(prob_difference)


def _torch_step_fn(torch, config, generator, discriminator, batch, nz: int):
    """The tutorial's training iteration (conditional), as a function of no arguments."""
    criterion = torch.nn.BCELoss()
    betas = (config.optim.b1, config.optim.b2)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.optim.d_lr, betas=betas)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.optim.g_lr, betas=betas)
    images = torch.from_numpy(np.asarray(batch["image"]).transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(np.array(batch["label"])).long()
    batch_size = images.shape[0]
    real_label, fake_label = 1.0, 0.0

    def step():
        discriminator.zero_grad()
        target = torch.full((batch_size,), real_label)
        output = discriminator(images, labels).view(-1)
        error_real = criterion(output, target)
        error_real.backward()
        noise = torch.randn(batch_size, nz)
        fake = generator(noise, labels)
        target.fill_(fake_label)
        output = discriminator(fake.detach(), labels).view(-1)
        error_fake = criterion(output, target)
        error_fake.backward()
        optimizer_d.step()
        generator.zero_grad()
        target.fill_(real_label)
        output = discriminator(fake, labels).view(-1)
        error_g = criterion(output, target)
        error_g.backward()
        optimizer_g.step()
        return error_real.item() + error_fake.item(), error_g.item()

    return step


def _jax_runner(
    batch_size: int,
    image_size: int,
    width: int,
    compute_dtype: str = "float32",
    reduce_fusion: bool = True,
    output_noise: bool = False,
    g_upsample: str = "transposed",
    mode_seeking: bool = False,
):
    """Builds the JAX step in this process: a function running one step."""
    config = _dcgan_config(width, output_noise, g_upsample, mode_seeking)
    _, _, run_step = _jax_side(config, batch_size, image_size, compute_dtype, reduce_fusion)
    return run_step


def _sngan_runner(batch_size: int, image_size: int):
    """Builds the SN-ResNet cGAN's step (its config's step options) in this process."""
    _, _, run_step = _jax_side(sngan_config.get_config(), batch_size, image_size)
    return run_step


def _jax_name(compute_dtype: str) -> str:
    return "JAX (xraygan_jax, jit)" if compute_dtype == "float32" else f"JAX {compute_dtype}"


def _torch_runner(
    batch_size, image_size, width: int, torch_weights, threads: int, compile_modules: bool
):
    """Builds the PyTorch step in this process from the JAX initial weights."""
    import torch

    config = _dcgan_config(width)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    generator, discriminator = _torch_modules(torch, config, image_size)
    generator.load_state_dict(torch_weights[0])
    discriminator.load_state_dict(torch_weights[1])
    if compile_modules:
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (batch_size, image_size, image_size, 1)).astype(np.float32),
        "label": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
    }
    return _torch_step_fn(torch, config, generator, discriminator, batch, config.model.nz)


def _torch_weights(config, batch_size: int, image_size: int):
    """PyTorch state dicts holding the JAX initial weights, after a same-weights forward check.

    Returns None when torch is not installed.
    """
    try:
        import torch
    except ImportError:
        print("torch is not installed: timing the JAX side only")
        return None
    initial_state, batch, _ = _jax_side(config, batch_size, image_size)
    generator, discriminator = _torch_modules(torch, config, image_size)
    _load_jax_weights(torch, generator, discriminator, initial_state)
    image_difference, prob_difference = _parity(
        torch, generator, discriminator, initial_state, batch
    )
    print(
        f"torch {torch.__version__}; same weights, train-mode forward: max |G(z) diff| "
        f"{image_difference:.1e}, max |D(x) diff| {prob_difference:.1e}"
    )
    return generator.state_dict(), discriminator.state_dict()


def main(argv):
    del argv
    width = _WIDTH.value
    config = _dcgan_config(width)
    batch_size, image_size = _BATCH_SIZE.value, _IMAGE_SIZE.value
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}; batch {batch_size}, "
        f"{image_size}x{image_size}, nz {config.model.nz}, ngf {config.model.ngf}, "
        f"ndf {config.model.ndf}"
    )
    for compute_dtype in _JAX_COMPUTE_DTYPES.value:
        gan.compute_dtype(compute_dtype)  # an unknown name fails here, before any process starts
    torch_weights = _torch_weights(config, batch_size, image_size) if _TORCH.value else None
    factories = {
        _jax_name(compute_dtype): (_jax_runner, (batch_size, image_size, width, compute_dtype))
        for compute_dtype in _JAX_COMPUTE_DTYPES.value
    }
    if _NO_REDUCE_FUSION.value:
        args = (batch_size, image_size, width, "float32", False)
        factories[NO_REDUCE_NAME] = (_jax_runner, args)
    if _OUTPUT_NOISE.value:
        args = (batch_size, image_size, width, "float32", True, True)
        factories[OUTPUT_NOISE_NAME] = (_jax_runner, args)
    if _RESIZE.value:
        args = (batch_size, image_size, width, "float32", True, False, "resize")
        factories[RESIZE_NAME] = (_jax_runner, args)
    if _MODE_SEEKING.value:
        args = (batch_size, image_size, width, "float32", True, False, "transposed", True)
        factories[MODE_SEEKING_NAME] = (_jax_runner, args)
    if _SNGAN.value:
        factories[SNGAN_NAME] = (_sngan_runner, (batch_size, image_size))
    if torch_weights is not None:
        for name, compile_modules in (("PyTorch eager", False), ("PyTorch torch.compile", True)):
            if compile_modules and not _TORCH_COMPILE.value:
                continue
            args = (
                batch_size,
                image_size,
                width,
                torch_weights,
                _TORCH_THREADS.value,
                compile_modules,
            )
            factories[name] = (_torch_runner, args)
    times = processes.time_in_processes(factories, _ROUNDS.value, _STEPS_PER_ROUND.value)
    rounds = {name: [statistics.median(round_) for round_ in runs] for name, runs in times.items()}

    medians = {name: statistics.median(seconds) for name, seconds in rounds.items()}
    eager = medians.get("PyTorch eager")
    print()
    header = f"{'implementation':<24} {'ms/step':>8} {'rounds (min-max)':>17} {'images/s':>9}"
    print(f"{header} {'vs PyTorch eager':>17}")
    for name, seconds in medians.items():
        spread = f"{1000 * min(rounds[name]):.0f}-{1000 * max(rounds[name]):.0f}"
        ratio = f"{eager / seconds:.2f}x" if eager else "-"
        print(
            f"{name:<24} {1000 * seconds:>8.0f} {spread:>17} {batch_size / seconds:>9.1f} "
            f"{ratio:>17}"
        )
    print(
        "(ratio > 1: faster than PyTorch eager; median over rounds of per-round medians; "
        "each implementation in its own process)"
    )
    float32 = medians.get(_jax_name("float32"))
    if SNGAN_NAME in medians and float32:
        sngan = sngan_config.get_config()
        seconds = medians[SNGAN_NAME]
        print(
            f"sngan (ngf {sngan.model.ngf}, ndf {sngan.model.ndf}, "
            f"{sngan.train.d_updates_per_step} D updates, {sngan.train.loss}, DiffAugment "
            f"{sngan.train.diffaugment!r}) against the DC-cGAN: {1000 * seconds:.0f} against "
            f"{1000 * float32:.0f} ms/step, {seconds / float32:.2f}x its time"
        )
    for name, option in (
        (OUTPUT_NOISE_NAME, "model.output_noise"),
        (RESIZE_NAME, "model.g_upsample=resize"),
        (MODE_SEEKING_NAME, "train.mode_seeking=0.1, mode_seeking_size=16"),
    ):
        if name in medians and float32:
            seconds = medians[name]
            print(
                f"{option} against the DC-cGAN: {1000 * seconds:.0f} against "
                f"{1000 * float32:.0f} ms/step, {seconds / float32:.2f}x its time"
            )
    for compute_dtype in _JAX_COMPUTE_DTYPES.value:
        if compute_dtype != "float32" and float32:
            seconds = medians[_jax_name(compute_dtype)]
            print(
                f"JAX {compute_dtype} against float32: {1000 * seconds:.0f} against "
                f"{1000 * float32:.0f} ms/step, {float32 / seconds:.2f}x float32's speed"
            )


if __name__ == "__main__":
    app.run(main)
