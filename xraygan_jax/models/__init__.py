"""models: Flax Linen GANs (gan.py), fast layers (layers.py), classifier, the FID Inception port.

from xraygan_jax.models import gan
generator, discriminator = gan.make_gan(config.model, image_size=64, num_classes=2)
"""
