"""PyTorch reference networks, for the benchmarks and tests that compare this library with PyTorch.

`torch_small_cnn` is `xraygan_jax.models.classifier.SmallCNN` with its parameter names;
`torch_resnet` is torchvision's ResNet written out module for module, so that a state dict of it
has torchvision's names (which is all a state dict records). torchvision itself is not used: its
PyPI wheels need the CUDA build of torch, and with the CPU build `import torchvision` fails
("operator torchvision::nms does not exist").

The functions take the `torch` module as an argument, so importing this module never imports
torch: callers without torch can import it and skip the PyTorch side.
"""


def torch_resnet(
    torch, depth: int, *, in_channels: int = 3, num_outputs: int = 1000, dropout_rate: float = 0.0
):
    """torchvision.models.resnet{18,50,152}() (v1.5), module for module, so that its state dict
    has torchvision's names; `in_channels`, `num_outputs` and a dropout before `fc` let it stand
    for `classifier.ResNet` as well. `forward` returns [B, num_outputs], or [B] for one output.
    The defaults give torchvision's own network: RGB input, [B, 1000] logits (a dropout of rate
    0 has no parameters and changes nothing).
    """
    nn = torch.nn

    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class Bottleneck(nn.Module):
        expansion = 4

        def __init__(self, inplanes, planes, stride, downsample):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = downsample

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    block, layers = {
        18: (BasicBlock, (2, 2, 2, 2)),
        50: (Bottleneck, (3, 4, 6, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }[depth]

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.inplanes = 64
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = self._make_layer(64, layers[0], 1)
            self.layer2 = self._make_layer(128, layers[1], 2)
            self.layer3 = self._make_layer(256, layers[2], 2)
            self.layer4 = self._make_layer(512, layers[3], 2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(dropout_rate)
            self.fc = nn.Linear(512 * block.expansion, num_outputs)

        def _make_layer(self, planes, blocks, stride):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            modules = [block(self.inplanes, planes, stride, downsample)]
            self.inplanes = planes * block.expansion
            modules += [block(self.inplanes, planes, 1, None) for _ in range(1, blocks)]
            return nn.Sequential(*modules)

        def features(self, x):
            """The last block's feature map [B, C, H, W]."""
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

        def forward(self, x):
            out = self.fc(self.dropout(torch.flatten(self.avgpool(self.features(x)), 1)))
            return out.view(-1) if num_outputs == 1 else out

    return ResNet()


def torch_small_cnn(torch, width: int = 16, dropout_rate: float = 0.4):
    """`classifier.SmallCNN` in PyTorch (NCHW), with the same parameter names."""
    nn = torch.nn

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            widths = [1] + [width * 2**index for index in range(4)]
            for index in range(4):
                conv = nn.Conv2d(widths[index], widths[index + 1], 3, 1, 1, bias=False)
                setattr(self, f"conv{index}", conv)
                setattr(self, f"bn{index}", nn.BatchNorm2d(widths[index + 1]))
            self.dropout = nn.Dropout(dropout_rate)
            self.head = nn.Linear(widths[-1], 1)

        def forward(self, x):
            for index in range(4):
                x = getattr(self, f"bn{index}")(getattr(self, f"conv{index}")(x))
                x = nn.functional.max_pool2d(nn.functional.relu(x), 2)
            return self.head(self.dropout(x.mean(dim=(2, 3)))).view(-1)

    return SmallCNN()
