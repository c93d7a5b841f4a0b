"""Pretrained weights from PyTorch files, read without PyTorch, into this package's Flax models.

Modules:
  torch_free_reader  reads the tensors of a TorchScript file or a `torch.save`d state dict
                     without PyTorch, refusing any pickle global a weights file does not need.
  inception_weights  find, verify, convert and cache the FID Inception weights;
                     `python -m xraygan_jax.pretrained.inception_weights` fetches them once.
  resnet_weights     torchvision ResNet state dicts (ImageNet `.pth`) into `classifier.ResNet`.

A layer just above `models` (it fills their variables) and below `metrics` and `train`, which load
weights through it (the import contracts in pyproject.toml).
"""
