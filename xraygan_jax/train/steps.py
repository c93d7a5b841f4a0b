"""Pure GAN train steps: `(state, batch, key) -> (state, metrics)`, importable by other code.

STATUS: ready. The API below is stable (StepOptions, discriminator_step, generator_step,
gan_train_step, generate, sample_latents); the training loop builds on it.

A batch is {"image": float32 [B, S, S, 1] in [-1, 1], "label": int32 [B]}. Every step is a pure
function of its arguments; static hyper-parameters are keyword-only. Randomness comes from `key`
alone (callers pass `jax.random.fold_in(base_key, step)`), so a step is reproducible.

One `gan_train_step` is the PyTorch DCGAN tutorial's iteration:
  1. D step: fakes G(z, labels) with G in train mode (batch statistics; G's running statistics are
     not updated here), then D on the real batch and D on the fakes as two separate forward passes
     (each normalised by its own batch statistics, as the tutorial's two netD calls), loss
     BCE(D(x), 1) + BCE(D(G(z)), 0), one optimiser update of D.
  2. G step: the same fakes (the tutorial reuses `fake`; the forward pass of G is kept by
     `jax.vjp` and shared, since XLA does not merge the two passes by itself: docs/performance.md,
     section "Sharing G's forward pass"), non-saturating loss BCE(D(G(z)), 1) through the updated
     D in train mode, one update of G. G's and D's running statistics are updated, as the
     tutorial's forward passes update them.
  The fakes are conditioned on the batch's real labels, so a per-class GAN stays in its class.
  d_updates_per_step = k repeats step 1 k times on the same real batch with fresh z;
  g_updates_per_step = k repeats step 2 (the second report's "double training" for k = 2).

Options for small sets (`StepOptions`, read from config.train; docs/small_data.md compares them):
  - the loss: BCE (default), hinge, least squares or WGAN-GP (xraygan_jax.train.losses);
  - R1 on real images, lazily every r1_every steps (which steps: `StepOptions.at_step`);
  - DiffAugment of every image D sees (real and fake, D and G updates);
  - ADA: the same augmentations, each applied with probability p, p kept in the state and moved
    every ada_interval steps towards E[sign(D(x_real))] = ada_target;
  - ACGAN discriminators' class head: its cross-entropy joins both losses;
  - a mode-seeking term in G's loss against collapse (`mode_seeking_ratio`).

Data parallelism:
  - Global view (what our loops do): jit the step with the state replicated and the batch split
    over a ("data",) mesh (xraygan_jax.train.sharding), no axis_name. Every reduction, BatchNorm
    statistics included, is then over the global batch, so the result does not depend on the
    number of devices.
  - Per-device view: call the step inside `jax.shard_map` / `pmap` with `axis_name=` the mapped
    axis and each device's share of the batch. Gradients and metrics are `pmean`ed and BatchNorm
    averages its statistics over the axis, and each device draws its slice of the same global z,
    so the result equals the global view (tests/train/test_multidevice.py checks both to 1e-5).
    The FC discriminator's dropout masks then differ per device (keyed by device index).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from xraygan_jax.train import diffaugment, losses, sharding
from xraygan_jax.train import state as state_lib

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def sample_latents(key: jax.Array, num: int, nz: int) -> jax.Array:
    """Standard-normal latents, (num, nz) float32, as the DCGAN tutorial's `torch.randn`.

    Args:
        key: a typed PRNG key.
        num: number of latents.
        nz: latent size.

    Returns:
        (num, nz) float32.
    """
    return jax.random.normal(key, (num, nz), jnp.float32)


def _step_latents(key: jax.Array, batch_size: int, nz: int, axis_name: str | None) -> jax.Array:
    """z for a step; under axis_name, this device's slice of the global batch's z."""
    if axis_name is None:
        return sample_latents(key, batch_size, nz)
    num_devices = jax.lax.axis_size(axis_name)
    latents = sample_latents(key, batch_size * num_devices, nz)
    start = jax.lax.axis_index(axis_name) * batch_size
    return jax.lax.dynamic_slice_in_dim(latents, start, batch_size)


def _step_keys(key: jax.Array, axis_name: str | None) -> tuple[jax.Array, jax.Array]:
    """(latent key, dropout key); dropout is keyed per device under axis_name."""
    latent_key, dropout_key = jax.random.split(key)
    if axis_name is not None:
        dropout_key = jax.random.fold_in(dropout_key, jax.lax.axis_index(axis_name))
    return latent_key, dropout_key


def _modules(state: state_lib.GANState, axis_name: str | None):
    """The state's modules, with BatchNorm reducing over axis_name when one is given."""
    if axis_name is None:
        return state.generator, state.discriminator
    return state.generator.clone(axis_name=axis_name), state.discriminator.clone(
        axis_name=axis_name
    )


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """What one training step does beyond the reports' recipe; static (hashable) for jit.

    The defaults are the reports' step: one D and one G update, BCE, no augmentation, no
    penalties, no EMA. `from_config(config.train)` reads them from a job config.

    The options own ADA and the EMA of G: whether they run, and their hyper-parameters. Their
    running values (ADA's p, the EMA's params) live in the state, so that checkpoints keep them;
    `train.setup.make_init` creates the state from these options, and every step refuses a
    state that does not keep what its options update (`check_state`).

    Attributes:
        d_updates_per_step: D updates per iteration (same real batch, fresh z each).
        g_updates_per_step: G updates per iteration (2 = the second report's double training).
        loss: the name of a GAN loss in losses.LOSSES: "bce", "hinge", "least_squares" or
            "wgan_gp"; `gan_loss` is its entry.
        gp_weight: WGAN-GP's penalty weight (used by a loss that needs the gradient penalty;
            the paper's 10).
        r1_weight: R1's gamma on real images; 0 = off.
        r1_every: R1 is computed every r1_every-th step, weighted by r1_every (lazy).
        r1_now: whether this step computes R1; None = decided inside the step from state.step
            by `lax.cond`. `at_step(step)` decides it on the host instead, as the loops do: XLA
            CPU ran the R1 turn inside a conditional 20x slower than outside it, so two compiled
            steps, with R1 and without, chosen per step, are far faster there than one step
            holding a cond (docs/performance.md, section "Gradient penalties").
        diffaugment: DiffAugment policies applied to every image D sees, real and fake, in both
            updates, e.g. "color,translation,cutout" (xraygan_jax.train.diffaugment); "" = none.
        ada: ADA on (Karras et al. 2020): the state keeps p (create_gan_state(ada=True)),
            which the step moves every ada_interval steps.
        ada_augment: the policies ADA applies, each to each image with probability state.ada_p.
        ada_target: the target of r_t = E[sign(D(x_real))]; p rises while r_t is above it.
        ada_interval: steps between adjustments of p.
        ada_kimg: thousands of images shown over which p can move from 0 to 1.
        acgan_weight: weight of the auxiliary classifier's cross-entropy (ACGAN discriminators,
            config.model.conditioning = "acgan").
        ema_decay: decay per G update of the exponential moving average of G's params, which
            the state keeps when it is > 0 (create_gan_state(ema=True)); 0 = no EMA.
        mode_seeking: weight lambda of MSGAN's mode-seeking term (Mao et al. 2019), which adds
            lambda / (ratio + 1e-5) to G's loss, ratio = `mode_seeking_ratio` of the step's
            fakes: how far apart G puts two films of one class per unit of distance between
            their z. A generator that draws one film per class whatever z is has ratio 0;
            the term pushes it to spread. 0 = off.
        mode_seeking_size: the side the fakes are averaged down to (in blocks) before their
            distance is taken, so that the term asks for different films, not for pixel noise
            (which averages out); 0 = full resolution, MSGAN's. It must divide the image size.
    """

    d_updates_per_step: int = 1
    g_updates_per_step: int = 1
    loss: str = "bce"
    gp_weight: float = 10.0
    r1_weight: float = 0.0
    r1_every: int = 16
    r1_now: bool | None = None
    diffaugment: str = ""
    ada: bool = False
    ada_augment: str = "color,translation,cutout"
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0
    acgan_weight: float = 1.0
    ema_decay: float = 0.0
    mode_seeking: float = 0.0
    mode_seeking_size: int = 0

    def check(self) -> None:
        """Raises ValueError naming the `--config.train.` flag of a value that cannot work."""
        losses.check_kind(self.loss)
        diffaugment.parse_policy(self.diffaugment, "--config.train.diffaugment")
        diffaugment.parse_policy(self.ada_augment, "--config.train.ada_augment")
        for name in ("d_updates_per_step", "g_updates_per_step", "r1_every", "ada_interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--config.train.{name}={getattr(self, name)} must be at least 1.")
        if int(self.mode_seeking_size) < 0:
            raise ValueError(
                f"--config.train.mode_seeking_size={self.mode_seeking_size} must be >= 0 "
                "(0: the full resolution)."
            )
        for name in ("r1_weight", "gp_weight", "acgan_weight", "mode_seeking"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(
                    f"--config.train.{name}={getattr(self, name)} must be >= 0 (0 turns it off)."
                )
        if not 0.0 < float(self.ada_target) < 1.0:
            raise ValueError(
                f"--config.train.ada_target={self.ada_target} must lie in (0, 1): it is the "
                "fraction-like target of E[sign(D(x_real))] (StyleGAN2-ADA's 0.6)."
            )
        if not float(self.ada_kimg) > 0:
            raise ValueError(f"--config.train.ada_kimg={self.ada_kimg} must be > 0.")

    def check_state(self, state: state_lib.GANState) -> None:
        """Raises ValueError unless the state keeps exactly what these options update.

        ADA's p and the EMA's params are created with the state; with a state made for other
        options the step could not run ADA or the EMA, or would silently leave them unused.
        `train.setup.make_init` creates the state from `StepOptions.from_config(config.train)`,
        so the two agree.
        """
        if self.ada and state.ada_p is None:
            raise ValueError(
                "StepOptions(ada=True) needs ADA's p in the state, which keeps none: create the "
                "state with create_gan_state(..., ada=True), as train.setup.make_init does with "
                "--config.train.ada=true."
            )
        if not self.ada and state.ada_p is not None:
            raise ValueError(
                "The state keeps ADA's p but StepOptions(ada=False) would leave it unused: pass "
                "ada=True (StepOptions.from_config reads --config.train.ada), or create the state "
                "without ADA."
            )
        if self.ema_decay > 0 and state.ema_g_params is None:
            raise ValueError(
                f"StepOptions(ema_decay={self.ema_decay}) needs the EMA of G's params in the "
                "state, which keeps none: create the state with create_gan_state(..., ema=True), "
                "as train.setup.make_init does with --config.train.ema_decay > 0."
            )
        if not self.ema_decay > 0 and state.ema_g_params is not None:
            raise ValueError(
                f"The state keeps an EMA of G's params but StepOptions(ema_decay={self.ema_decay}) "
                "would leave it frozen: pass the decay (StepOptions.from_config reads "
                "--config.train.ema_decay), or create the state without EMA."
            )

    @functools.cached_property
    def gan_loss(self) -> losses.Loss:
        """The losses.Loss entry that `loss` names, looked up once (ValueError if none)."""
        return losses.get_loss(self.loss)

    def at_step(self, step: int) -> "StepOptions":
        """These options for step number `step` (= state.step before it), R1's turn decided.

        Lazy R1 takes turns: R1 on steps 0, r1_every, 2 * r1_every, ... Without R1 the options
        come back unchanged, so a loop compiles one step; with it, two (R1 on and off).

        Example:
            options = steps.StepOptions(r1_weight=1.0, r1_every=16)
            train_step = compiler.jit(steps.gan_train_step, static_argnames="options")
            for step, batch in enumerate(batches):
                key = jax.random.fold_in(base_key, step)
                state, metrics = train_step(state, batch, key, options=options.at_step(step))
        """
        if not self.r1_weight > 0:
            return self
        return dataclasses.replace(self, r1_now=int(step) % int(self.r1_every) == 0)

    @classmethod
    def from_config(cls, train_config) -> "StepOptions":
        """The options a `config.train` section sets; fields it lacks keep their defaults."""
        values = {
            field.name: train_config[field.name]
            for field in dataclasses.fields(cls)
            if field.name in train_config
        }
        return cls(**values)


def _d_outputs(discriminator, params, batch_stats, images, labels, dropout_key):
    """D in train mode: (logits, class logits or None, updated batch_stats)."""
    outputs, updated = discriminator.apply(
        {"params": params, "batch_stats": batch_stats},
        images,
        labels,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": dropout_key},
    )
    return outputs.logits, outputs.class_logits, updated.get("batch_stats", {})


def _apply_discriminator(discriminator, params, batch_stats, images, labels, dropout_key):
    """D in train mode: (logits, updated batch_stats)."""
    logits, _, batch_stats = _d_outputs(
        discriminator, params, batch_stats, images, labels, dropout_key
    )
    return logits, batch_stats


def _class_loss(class_logits, labels) -> jax.Array:
    """ACGAN's auxiliary cross-entropy; 0 when D has no classifier head."""
    if class_logits is None:
        return jnp.zeros((), jnp.float32)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(class_logits, labels))


def check_mode_seeking_size(size: int, image_size: int) -> None:
    """Raises ValueError unless `size` (0: off) divides image_size into whole blocks."""
    if size and (size > image_size or image_size % size):
        raise ValueError(
            f"--config.train.mode_seeking_size={size} must divide the image size "
            f"{image_size} (e.g. {image_size // 4} for 4 x 4 blocks), or be 0 for the full "
            "resolution."
        )


def mode_seeking_ratio(
    fakes: jax.Array,
    z: jax.Array,
    labels: jax.Array,
    axis_name: str | None = None,
    *,
    size: int = 0,
) -> jax.Array:
    """MSGAN's ratio: mean image distance over mean latent distance, on pairs of one class.

    The batch is cut into the pairs (0, 1), (2, 3), ...; a pair counts when its two labels are
    equal (a conditional G is asked for spread within a class, not between classes). Distances
    are mean absolute differences, of the images' pixels (averaged down to size x size blocks
    first when size > 0) and of the latents' entries. Under
    axis_name the sums are averaged over devices before they are divided, so the per-device
    view equals the global one when each device's share of the batch is even (pairs then never
    straddle two devices).

    Returns:
        float32 scalar: sum over counted pairs of image distance, over the same sum of latent
        distance; 0 when no pair counts.

    Raises:
        ValueError: a size that does not divide the images' side (`check_mode_seeking_size`).
    """
    if size:
        batch, side, _, channels = fakes.shape
        check_mode_seeking_size(size, side)
        factor = side // size
        fakes = fakes.astype(jnp.float32).reshape(batch, size, factor, size, factor, channels)
        fakes = jnp.mean(fakes, axis=(2, 4))
    pairs = labels.shape[0] // 2 * 2
    first = fakes[0:pairs:2].astype(jnp.float32)
    second = fakes[1:pairs:2].astype(jnp.float32)
    counted = (labels[0:pairs:2] == labels[1:pairs:2]).astype(jnp.float32)
    image_distance = jnp.mean(jnp.abs(first - second), axis=tuple(range(1, first.ndim)))
    latent_distance = jnp.mean(jnp.abs(z[0:pairs:2] - z[1:pairs:2]), axis=-1)
    numerator = sharding.mean_over(jnp.sum(counted * image_distance), axis_name)
    denominator = sharding.mean_over(jnp.sum(counted * latent_distance), axis_name)
    some = denominator > 0
    return jnp.where(some, numerator / jnp.where(some, denominator, 1.0), 0.0)


def _generate_for_training(
    state: state_lib.GANState, labels: jax.Array, key: jax.Array, axis_name: str | None
):
    """G's train-mode forward pass for a step: (fakes, pullback to g_params, new batch_stats).

    `jax.vjp` keeps what the backward pass needs, so the D step and the G step of one iteration
    share this forward pass, as the tutorial's G step reuses the D step's `fake`: XLA does not
    merge the two identical forward passes of separate calls by itself (docs/performance.md,
    section "Sharing G's forward pass").
    """
    generator, _ = _modules(state, axis_name)
    latent_key, _ = _step_keys(key, axis_name)
    z = _step_latents(latent_key, labels.shape[0], state.nz, axis_name)

    def forward(g_params):
        fakes, updated = generator.apply(
            {"params": g_params, "batch_stats": state.g_batch_stats},
            z,
            labels,
            train=True,
            mutable=["batch_stats"],
        )
        return fakes, updated.get("batch_stats", {})

    fakes, pullback, g_batch_stats = jax.vjp(forward, state.g_params, has_aux=True)
    return fakes, pullback, g_batch_stats


# fold_in streams of a step's dropout key.
_AUGMENT_STREAM = 7
_ADA_STREAM = 8
_PENALTY_STREAM = 9


def _seen(state, images, key, options: StepOptions, which: int):
    """The images as D sees them: DiffAugment, then ADA's augmentations with probability p.

    `which` (0 real, 1 fake in the D step, 2 fake in the G step) gives each its own draws.
    """
    policy = diffaugment.parse_policy(options.diffaugment)
    if policy:
        stream = jax.random.fold_in(key, _AUGMENT_STREAM)
        images = diffaugment.augment(jax.random.fold_in(stream, which), images, policy)
    if options.ada:
        stream = jax.random.fold_in(key, _ADA_STREAM)
        images = diffaugment.augment(
            jax.random.fold_in(stream, which), images, options.ada_augment, state.ada_p
        )
    return images


def _lazy_r1(step: jax.Array, options: StepOptions, penalty) -> jax.Array:
    """penalty() on R1's turns, else 0: decided by options.r1_now, or by a cond on step."""
    if options.r1_now is None:
        return jax.lax.cond(
            step % options.r1_every == 0, penalty, lambda: jnp.zeros((), jnp.float32)
        )
    return penalty() if options.r1_now else jnp.zeros((), jnp.float32)


def _discriminator_update(state, batch, fakes, key, axis_name, options: StepOptions):
    _, discriminator = _modules(state, axis_name)
    labels = batch["label"]
    _, dropout_key = _step_keys(key, axis_name)
    fakes = _seen(state, jax.lax.stop_gradient(fakes), dropout_key, options, 1)
    images = _seen(state, batch["image"], dropout_key, options, 0)
    real_key, fake_key = jax.random.split(dropout_key)
    penalty_key = jax.random.fold_in(dropout_key, _PENALTY_STREAM)

    def loss_fn(d_params):
        real_logits, real_classes, batch_stats = _d_outputs(
            discriminator, d_params, state.d_batch_stats, images, labels, real_key
        )
        fake_logits, fake_classes, batch_stats = _d_outputs(
            discriminator, d_params, batch_stats, fakes, labels, fake_key
        )
        loss = options.gan_loss.d_loss(real_logits, fake_logits)
        loss += options.acgan_weight * (
            _class_loss(real_classes, labels) + _class_loss(fake_classes, labels)
        )

        def logits_of(x):
            # Penalty passes: D as in the step; their statistics updates are not kept.
            return _apply_discriminator(
                discriminator, d_params, state.d_batch_stats, x, labels, penalty_key
            )[0]

        extra = {}
        if options.gan_loss.needs_gradient_penalty:
            extra["d/gp"] = losses.gradient_penalty(logits_of, images, fakes, penalty_key)
            loss += options.gp_weight * extra["d/gp"]
        if options.r1_weight > 0:
            # Lazy R1: every r1_every-th step, weighted r1_every times (0 on the other steps).
            extra["d/r1"] = _lazy_r1(
                state.step, options, lambda: losses.r1_penalty(logits_of, images)
            )
            loss += 0.5 * options.r1_weight * options.r1_every * extra["d/r1"]
        loss = sharding.mean_over(loss, axis_name)
        return loss, (batch_stats, real_logits, fake_logits, extra)

    (loss, (batch_stats, real_logits, fake_logits, extra)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(state.d_params)
    grads = sharding.mean_over(grads, axis_name)
    updates, d_opt_state = state.d_tx.update(grads, state.d_opt_state, state.d_params)
    new_state = state.replace(
        d_params=optax.apply_updates(state.d_params, updates),
        d_batch_stats=batch_stats,
        d_opt_state=d_opt_state,
    )
    metrics = {
        "loss/d": loss,
        "d/real_prob": jnp.mean(jax.nn.sigmoid(real_logits)),
        "d/fake_prob": jnp.mean(jax.nn.sigmoid(fake_logits)),
        **extra,
    }
    if options.ada:
        metrics["d/real_sign"] = jnp.mean(jnp.sign(real_logits))
    return new_state, sharding.mean_over(metrics, axis_name)


def _generator_update(state, batch, generated, key, axis_name, options: StepOptions):
    _, discriminator = _modules(state, axis_name)
    labels = batch["label"]
    latent_key, dropout_key = _step_keys(key, axis_name)
    fakes, pullback, g_batch_stats = generated

    def loss_fn(fakes):
        seen = _seen(state, fakes, dropout_key, options, 2)
        fake_logits, fake_classes, d_batch_stats = _d_outputs(
            discriminator, state.d_params, state.d_batch_stats, seen, labels, dropout_key
        )
        loss = options.gan_loss.g_loss(fake_logits)
        loss += options.acgan_weight * _class_loss(fake_classes, labels)
        loss = sharding.mean_over(loss, axis_name)
        extra = {}
        if options.mode_seeking > 0:
            # The z that made `fakes` (the same key, so XLA computes it once).
            z = _step_latents(latent_key, labels.shape[0], state.nz, axis_name)
            extra["g/mode_seeking_ratio"] = mode_seeking_ratio(
                fakes, z, labels, axis_name, size=options.mode_seeking_size
            )
            loss += options.mode_seeking / (extra["g/mode_seeking_ratio"] + 1e-5)
        return loss, (d_batch_stats, extra)

    (loss, (d_batch_stats, extra)), fakes_grad = jax.value_and_grad(loss_fn, has_aux=True)(fakes)
    (grads,) = pullback(fakes_grad)
    grads = sharding.mean_over(grads, axis_name)
    updates, g_opt_state = state.g_tx.update(grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    ema_g_params = state.ema_g_params
    if options.ema_decay > 0:
        ema_g_params = optax.incremental_update(g_params, ema_g_params, 1.0 - options.ema_decay)
    new_state = state.replace(
        g_params=g_params,
        g_batch_stats=g_batch_stats,
        d_batch_stats=d_batch_stats,
        g_opt_state=g_opt_state,
        ema_g_params=ema_g_params,
    )
    return new_state, sharding.mean_over({"loss/g": loss, **extra}, axis_name)


def _adapt_augmentation(state, real_sign, global_batch: int, options: StepOptions):
    """ADA's controller: every ada_interval steps, p moves by sign(r_t - target) times a step.

    r_t is the mean of E[sign(D(x_real))] over the interval's steps; the step is
    global_batch * ada_interval / (ada_kimg * 1000), so p can cross [0, 1] in ada_kimg thousand
    images (StyleGAN2-ADA's heuristic r_t and its adjustment).
    """
    signs = state.ada_signs + real_sign
    adjust = (state.step + 1) % options.ada_interval == 0
    r_t = signs / options.ada_interval
    # A Python constant, so that every compilation rounds the adjustment alike.
    size = float(global_batch * options.ada_interval / (options.ada_kimg * 1000.0))
    change = jnp.sign(r_t - options.ada_target) * jnp.float32(size)
    p = jnp.where(adjust, jnp.clip(state.ada_p + change, 0.0, 1.0), state.ada_p)
    return state.replace(ada_p=p, ada_signs=jnp.where(adjust, 0.0, signs))


def discriminator_step(
    state: state_lib.GANState,
    batch: Batch,
    key: jax.Array,
    *,
    options: StepOptions = StepOptions(),
    axis_name: str | None = None,
) -> tuple[state_lib.GANState, Metrics]:
    """One update of D on a real batch and as many fakes, G held fixed.

    G runs in train mode (batch statistics, as the tutorial's netG) but its running statistics
    are left to the G step, so that they move once per iteration as in the tutorial.

    Example:
        step = jax.jit(steps.discriminator_step)
        gan_state, metrics = step(gan_state, {"image": x, "label": y}, jax.random.key(0))
        metrics["loss/d"], metrics["d/real_prob"], metrics["d/fake_prob"]

    Args:
        state: the GANState.
        batch: {"image": [B, S, S, 1] in [-1, 1], "label": int32 [B]} (this device's share under
            axis_name).
        key: PRNG key of this step (z, dropout).
        options: loss, penalties, augmentation, ADA (StepOptions; update counts are ignored).
        axis_name: the mapped axis to average gradients, metrics and BatchNorm statistics over,
            or None for a global-view (jit) call.

    Returns:
        (new state, metrics) with "loss/d", "d/real_prob" (mean sigmoid(D(x))) and "d/fake_prob"
        (mean sigmoid(D(G(z))) before the update), scalars, plus "d/gp", "d/r1" and
        "d/real_sign" when those are on. state.step and ADA's p are unchanged.

    Raises:
        ValueError: a state that does not keep what the options update (`check_state`).
    """
    options.check_state(state)
    fakes, _, _ = _generate_for_training(state, batch["label"], key, axis_name)
    return _discriminator_update(state, batch, fakes, key, axis_name, options)


def generator_step(
    state: state_lib.GANState,
    batch: Batch,
    key: jax.Array,
    *,
    options: StepOptions = StepOptions(),
    axis_name: str | None = None,
) -> tuple[state_lib.GANState, Metrics]:
    """One update of G through D, D held fixed.

    The fakes take the batch's labels; only batch["label"] and the batch size are used.

    Example:
        step = jax.jit(steps.generator_step)
        gan_state, metrics = step(gan_state, {"image": x, "label": y}, jax.random.key(0))
        metrics["loss/g"]

    Args:
        state: the GANState.
        batch: {"image": [B, S, S, 1], "label": int32 [B]} (this device's share under axis_name).
        key: PRNG key of this step; the same key as a discriminator_step gives the same z.
        options: loss, augmentation, ADA, EMA (StepOptions; update counts are ignored).
        axis_name: the mapped axis to average gradients, metrics and BatchNorm statistics over,
            or None for a global-view (jit) call.

    Returns:
        (new state, {"loss/g": scalar}). G's and D's running statistics move (both ran in train
        mode); ema_g_params follows the new params when options.ema_decay > 0. state.step is
        unchanged.

    Raises:
        ValueError: a state that does not keep what the options update (`check_state`).
    """
    options.check_state(state)
    generated = _generate_for_training(state, batch["label"], key, axis_name)
    return _generator_update(state, batch, generated, key, axis_name, options)


def gan_train_step(
    state: state_lib.GANState,
    batch: Batch,
    key: jax.Array,
    *,
    options: StepOptions = StepOptions(),
    axis_name: str | None = None,
) -> tuple[state_lib.GANState, Metrics]:
    """One GAN iteration: D step(s), then G step(s), then ADA's p; state.step += 1.

    Example (global view, data parallel over every device):
        from xraygan_jax import compiler
        from xraygan_jax.train import sharding, steps
        mesh = sharding.make_mesh()
        options = steps.StepOptions(g_updates_per_step=2, diffaugment="translation")
        train_step = compiler.jit(  # jax.jit plus XLA options that are faster on CPU
            functools.partial(steps.gan_train_step, options=options),
            in_shardings=(sharding.replicated(mesh), sharding.batch_sharding(mesh),
                          sharding.replicated(mesh)),
            donate_argnums=0)
        for step, batch in enumerate(batches):
            key = jax.random.fold_in(base_key, step)
            gan_state, metrics = train_step(gan_state, sharding.shard_batch(batch, mesh), key)

    Args:
        state: the GANState.
        batch: {"image": float32 [B, S, S, 1] in [-1, 1], "label": int32 [B]}.
        key: PRNG key of this iteration, e.g. fold_in(base_key, step).
        options: update counts, loss, penalties, augmentation, ADA, EMA (StepOptions).
        axis_name: the mapped axis under shard_map/pmap, or None (see the module docstring).

    Returns:
        (new state, metrics): "loss/d", "d/real_prob", "d/fake_prob" (means over the D steps),
        "loss/g" (mean over the G steps), scalars; with WGAN-GP "d/gp" (unweighted penalty),
        with R1 "d/r1" (unweighted mean squared gradient norm, 0 on the steps lazy R1 skips),
        with ADA "d/real_sign" (mean sign of D on real images) and "ada/p" (p after the step).

    Raises:
        ValueError: options that cannot work (`StepOptions.check`), or a state that does not
            keep what they update (`check_state`).
    """
    # D step 0 and G step 0 share a key, so the same z and, since the D steps leave G's params
    # alone, the same forward pass of G (the tutorial's reuse of `fake`).
    options.check()
    options.check_state(state)
    first_key = jax.random.fold_in(key, 0)
    first_generated = _generate_for_training(state, batch["label"], first_key, axis_name)
    d_metrics = []
    for index in range(options.d_updates_per_step):
        step_key = jax.random.fold_in(key, index)
        if index == 0:
            fakes = first_generated[0]
        else:
            fakes, _, _ = _generate_for_training(state, batch["label"], step_key, axis_name)
        state, metrics = _discriminator_update(state, batch, fakes, step_key, axis_name, options)
        d_metrics.append(metrics)
    g_metrics = []
    for index in range(options.g_updates_per_step):
        step_key = jax.random.fold_in(key, index)
        if index == 0:
            generated = first_generated
        else:
            generated = _generate_for_training(state, batch["label"], step_key, axis_name)
        state, metrics = _generator_update(state, batch, generated, step_key, axis_name, options)
        g_metrics.append(metrics)
    metrics = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *d_metrics)
    metrics.update(jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *g_metrics))
    if options.ada:
        global_batch = batch["label"].shape[0]
        if axis_name is not None:
            global_batch *= int(jax.lax.axis_size(axis_name))
        state = _adapt_augmentation(state, metrics["d/real_sign"], global_batch, options)
        metrics["ada/p"] = state.ada_p
    return state.replace(step=state.step + 1), metrics


def generate(
    state: state_lib.GANState, z: jax.Array, labels: jax.Array, *, use_ema: bool = True
) -> jax.Array:
    """Images from G in eval mode (running BatchNorm statistics).

    Example:
        z = steps.sample_latents(jax.random.key(1), 64, gan_state.nz)
        images = jax.jit(steps.generate)(gan_state, z, jnp.full((64,), 1, jnp.int32))

    Args:
        state: the GANState.
        z: (N, nz) latents.
        labels: int32 (N,) class labels.
        use_ema: use ema_g_params when the state keeps them (else g_params).

    Returns:
        (N, S, S, 1) float32 in [-1, 1].
    """
    params = state.ema_g_params if use_ema and state.ema_g_params is not None else state.g_params
    return state.generator.apply(
        {"params": params, "batch_stats": state.g_batch_stats}, z, labels, train=False
    )
