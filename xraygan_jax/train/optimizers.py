"""optax optimisers for G and D from a config's `optim` section.

The default is the DCGAN paper's and both reports': Adam, lr 2e-4, b1 0.5 (b2 0.999, eps 1e-8 as
PyTorch's). G and D get their own learning rates (`g_lr`, `d_lr`).
"""

import ml_collections
import optax

NAMES = ("adam", "adamw", "rmsprop", "sgd")


def make_optimizer(
    optim_config: ml_collections.ConfigDict, which: str
) -> optax.GradientTransformation:
    """The optimiser of the generator (`which="g"`) or the discriminator (`which="d"`).

    Args:
        optim_config: name (adam | adamw | rmsprop | sgd), g_lr, d_lr, b1, b2 (adam, adamw),
            weight_decay (adamw), momentum (sgd, rmsprop; 0 = none).
        which: "g" or "d": picks g_lr or d_lr.

    Returns:
        An optax.GradientTransformation.

    Raises:
        ValueError: an unknown optimiser name or `which`.
    """
    if which not in ("g", "d"):
        raise ValueError(f"which must be 'g' (generator) or 'd' (discriminator), got {which!r}")
    learning_rate = optim_config.g_lr if which == "g" else optim_config.d_lr
    name = optim_config.name
    momentum = optim_config.get("momentum", 0.0)
    if name == "adam":
        return optax.adam(learning_rate, b1=optim_config.b1, b2=optim_config.b2)
    if name == "adamw":
        return optax.adamw(
            learning_rate,
            b1=optim_config.b1,
            b2=optim_config.b2,
            weight_decay=optim_config.weight_decay,
        )
    if name == "rmsprop":
        return optax.rmsprop(learning_rate, momentum=momentum or None)
    if name == "sgd":
        return optax.sgd(learning_rate, momentum=momentum or None)
    raise ValueError(f"optimizer {name!r} is unknown; use one of: {', '.join(NAMES)}")
