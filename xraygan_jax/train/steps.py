"""Pure GAN train steps: `(state, batch, key) -> (state, metrics)`, importable by other code.

STATUS: ready. The API below is stable (discriminator_step, generator_step, gan_train_step,
generate, sample_latents); the training loop builds on it.

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

from typing import Any

import jax
import jax.numpy as jnp
import optax

from xraygan_jax.train import diffaugment, losses
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


def _mean_over(tree: Any, axis_name: str | None) -> Any:
    """pmean over axis_name, or the tree itself when there is none.

    Under axis_name the steps differentiate the pmean of the per-device losses (the global
    loss) and then pmean the gradients, which is right under both of JAX's autodiff semantics for
    mapped axes. In shard_map with check_vma=True, replicated params are invariant, so their
    gradient of the (invariant) global loss already is the global gradient and the second pmean
    leaves it unchanged. Under pmap or check_vma=False, each device gets d(sum of the per-device
    losses)/d(its copy of the params) divided by the device count, and the pmean of those is the
    global gradient. (Differentiating the local loss and pmean-ing the gradients alone would be
    N times too large with check_vma=True, which sums over devices in the transpose of the
    implicit broadcast of replicated params; Adam hides it in the params but not in its moments.)
    """
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def _apply_discriminator(discriminator, params, batch_stats, images, labels, dropout_key):
    """D in train mode: (logits, updated batch_stats)."""
    logits, updated = discriminator.apply(
        {"params": params, "batch_stats": batch_stats},
        images,
        labels,
        train=True,
        mutable=["batch_stats"],
        rngs={"dropout": dropout_key},
    )
    return logits, updated.get("batch_stats", {})


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


_AUGMENT_STREAM = 7


def _augmented(images, key, policy, which):
    """DiffAugment of the images D sees (`policy` empty: unchanged)."""
    if not policy:
        return images
    return diffaugment.augment(
        jax.random.fold_in(jax.random.fold_in(key, _AUGMENT_STREAM), which), images, policy
    )


def _discriminator_update(state, batch, fakes, key, axis_name, policy=(), gan_loss="bce"):
    _, discriminator = _modules(state, axis_name)
    images, labels = batch["image"], batch["label"]
    _, dropout_key = _step_keys(key, axis_name)
    fakes = _augmented(jax.lax.stop_gradient(fakes), dropout_key, policy, 1)
    images = _augmented(images, dropout_key, policy, 0)
    real_key, fake_key = jax.random.split(dropout_key)

    def loss_fn(d_params):
        real_logits, batch_stats = _apply_discriminator(
            discriminator, d_params, state.d_batch_stats, images, labels, real_key
        )
        fake_logits, batch_stats = _apply_discriminator(
            discriminator, d_params, batch_stats, fakes, labels, fake_key
        )
        loss = _mean_over(losses.discriminator_loss(real_logits, fake_logits, gan_loss), axis_name)
        return loss, (batch_stats, real_logits, fake_logits)

    (loss, (batch_stats, real_logits, fake_logits)), grads = jax.value_and_grad(
        loss_fn, has_aux=True
    )(state.d_params)
    grads = _mean_over(grads, axis_name)
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
    }
    return new_state, _mean_over(metrics, axis_name)


def _generator_update(state, batch, generated, key, axis_name, policy=(), gan_loss="bce"):
    _, discriminator = _modules(state, axis_name)
    labels = batch["label"]
    _, dropout_key = _step_keys(key, axis_name)
    fakes, pullback, g_batch_stats = generated

    def loss_fn(fakes):
        seen = _augmented(fakes, dropout_key, policy, 2)
        fake_logits, d_batch_stats = _apply_discriminator(
            discriminator, state.d_params, state.d_batch_stats, seen, labels, dropout_key
        )
        return _mean_over(losses.generator_loss(fake_logits, gan_loss), axis_name), d_batch_stats

    (loss, d_batch_stats), fakes_grad = jax.value_and_grad(loss_fn, has_aux=True)(fakes)
    (grads,) = pullback(fakes_grad)
    grads = _mean_over(grads, axis_name)
    updates, g_opt_state = state.g_tx.update(grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, updates)
    ema_g_params = state.ema_g_params
    if state.ema_decay > 0:
        ema_g_params = optax.incremental_update(g_params, ema_g_params, 1.0 - state.ema_decay)
    new_state = state.replace(
        g_params=g_params,
        g_batch_stats=g_batch_stats,
        d_batch_stats=d_batch_stats,
        g_opt_state=g_opt_state,
        ema_g_params=ema_g_params,
    )
    return new_state, _mean_over({"loss/g": loss}, axis_name)


def discriminator_step(
    state: state_lib.GANState,
    batch: Batch,
    key: jax.Array,
    *,
    diffaugment_policy: str = "",
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
        axis_name: the mapped axis to average gradients, metrics and BatchNorm statistics over,
            or None for a global-view (jit) call.

    Returns:
        (new state, metrics) with "loss/d", "d/real_prob" (mean sigmoid(D(x))) and "d/fake_prob"
        (mean sigmoid(D(G(z))) before the update), scalars. state.step is unchanged.
    """
    fakes, _, _ = _generate_for_training(state, batch["label"], key, axis_name)
    policy = diffaugment.parse_policy(diffaugment_policy)
    return _discriminator_update(state, batch, fakes, key, axis_name, policy)


def generator_step(
    state: state_lib.GANState,
    batch: Batch,
    key: jax.Array,
    *,
    diffaugment_policy: str = "",
    axis_name: str | None = None,
) -> tuple[state_lib.GANState, Metrics]:
    """One update of G with the non-saturating loss through D, D held fixed.

    The fakes take the batch's labels; only batch["label"] and the batch size are used.

    Example:
        step = jax.jit(steps.generator_step)
        gan_state, metrics = step(gan_state, {"image": x, "label": y}, jax.random.key(0))
        metrics["loss/g"]

    Args:
        state: the GANState.
        batch: {"image": [B, S, S, 1], "label": int32 [B]} (this device's share under axis_name).
        key: PRNG key of this step; the same key as a discriminator_step gives the same z.
        axis_name: the mapped axis to average gradients, metrics and BatchNorm statistics over,
            or None for a global-view (jit) call.

    Returns:
        (new state, {"loss/g": scalar}). G's and D's running statistics move (both ran in train
        mode); ema_g_params follows the new params when ema_decay > 0. state.step is unchanged.
    """
    generated = _generate_for_training(state, batch["label"], key, axis_name)
    policy = diffaugment.parse_policy(diffaugment_policy)
    return _generator_update(state, batch, generated, key, axis_name, policy)


def gan_train_step(
    state: state_lib.GANState,
    batch: Batch,
    key: jax.Array,
    *,
    d_updates_per_step: int = 1,
    g_updates_per_step: int = 1,
    diffaugment_policy: str = "",
    gan_loss: str = "bce",
    axis_name: str | None = None,
) -> tuple[state_lib.GANState, Metrics]:
    """One GAN iteration: D step(s), then G step(s); state.step += 1.

    Example (global view, data parallel over every device):
        from xraygan_jax import compiler
        from xraygan_jax.train import sharding, steps
        mesh = sharding.make_mesh()
        train_step = compiler.jit(  # jax.jit plus XLA options that are faster on CPU
            functools.partial(steps.gan_train_step, g_updates_per_step=2),
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
        d_updates_per_step: D updates per iteration (same real batch, fresh z each).
        g_updates_per_step: G updates per iteration (2 = the second report's double training).
        diffaugment_policy: DiffAugment policies applied to every image D sees, real and fake,
            in both updates, e.g. "color,translation,cutout" (xraygan_jax.train.diffaugment);
            "" = none.
        gan_loss: "bce" (the reports'), "hinge" or "least_squares" (xraygan_jax.train.losses).
        axis_name: the mapped axis under shard_map/pmap, or None (see the module docstring).

    Returns:
        (new state, metrics): "loss/d", "d/real_prob", "d/fake_prob" (means over the D steps) and
        "loss/g" (mean over the G steps), scalars.
    """
    # D step 0 and G step 0 share a key, so the same z and, since the D steps leave G's params
    # alone, the same forward pass of G (the tutorial's reuse of `fake`).
    policy = diffaugment.parse_policy(diffaugment_policy)
    losses.check_kind(gan_loss)
    first_key = jax.random.fold_in(key, 0)
    first_generated = _generate_for_training(state, batch["label"], first_key, axis_name)
    d_metrics = []
    for index in range(d_updates_per_step):
        step_key = jax.random.fold_in(key, index)
        if index == 0:
            fakes = first_generated[0]
        else:
            fakes, _, _ = _generate_for_training(state, batch["label"], step_key, axis_name)
        state, metrics = _discriminator_update(
            state, batch, fakes, step_key, axis_name, policy, gan_loss
        )
        d_metrics.append(metrics)
    g_metrics = []
    for index in range(g_updates_per_step):
        step_key = jax.random.fold_in(key, index)
        if index == 0:
            generated = first_generated
        else:
            generated = _generate_for_training(state, batch["label"], step_key, axis_name)
        state, metrics = _generator_update(
            state, batch, generated, step_key, axis_name, policy, gan_loss
        )
        g_metrics.append(metrics)
    metrics = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *d_metrics)
    metrics.update(jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *g_metrics))
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
