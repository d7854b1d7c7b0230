"""Standard CNNs written as people write them, for the exporter, the benchmarks and the README's walk-through.

There is no torchvision here, so these follow the papers: MobileNetV2 (Sandler et al. 2018: inverted
residuals, ReLU6, a linear bottleneck), a MobileNetV3-small-style net (Howard et al. 2019: hard-swish,
squeeze-excite with a hard sigmoid gate), ResNet-18 (He et al. 2016, with the ImageNet stem: a 7×7
stride-2 convolution and a padded max pool) and the CIFAR ResNets (ResNet-8/20: three stages, 1×1
projection shortcuts). Each keeps batch norm, functional calls, ``x.view(x.size(0), -1)`` and in-place
adds the way the usual code does; the exporter folds and lowers them. Every factory runs with no
arguments (``--arch simulator.bench.architectures:mobilenet_v2``), for one-channel 32×32 inputs and ten
classes unless told otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _divisible(channels: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of ``divisor``, never below 90% of the request (as both MobileNets do)."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def _conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1,
             activation: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(outputs)]
    return nn.Sequential(*layers, activation()) if activation is not None else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand (1×1), depthwise 3×3, project (1×1, linear); a residual when shapes allow."""

    def __init__(self, inputs: int, outputs: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inputs * expansion
        layers = [_conv_bn(inputs, hidden, 1)] if expansion != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, outputs, 1, activation=None)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier; 53 convolution and linear layers."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))  # expansion, channels, blocks, first stride

    def __init__(self, classes: int = 10, in_channels: int = 1, width: float = 0.5, last: int = 1280) -> None:
        super().__init__()
        channels = _divisible(32 * width)
        layers: list[nn.Module] = [_conv_bn(in_channels, channels, 3, 2)]
        for expansion, wanted, blocks, stride in self.SETTINGS:
            outputs = _divisible(wanted * width)
            for index in range(blocks):
                layers.append(InvertedResidual(channels, outputs, stride if index == 0 else 1, expansion))
                channels = outputs
        layers.append(_conv_bn(channels, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcite(nn.Module):
    """Channel gates from the global average: 1×1 conv, ReLU, 1×1 conv, hard sigmoid, times the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = _divisible(channels // 4)
        self.fc1, self.fc2 = nn.Conv2d(channels, squeezed, 1), nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.fc2(F.relu(self.fc1(scale), inplace=True))
        return x * F.hardsigmoid(scale, inplace=True)


class MobileNetV3Block(nn.Module):
    """Expand, depthwise k×k (with squeeze-excite), project; ReLU or hard-swish; a residual when shapes allow."""

    def __init__(self, inputs: int, kernel: int, hidden: int, outputs: int, excite: bool, swish: bool,
                 stride: int) -> None:
        super().__init__()
        activation = nn.Hardswish if swish else nn.ReLU
        layers = [] if hidden == inputs else [_conv_bn(inputs, hidden, 1, activation=activation)]
        layers.append(_conv_bn(hidden, hidden, kernel, stride, groups=hidden, activation=activation))
        if excite:
            layers.append(SqueezeExcite(hidden))
        layers.append(_conv_bn(hidden, outputs, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and inputs == outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.residual:
            out += x
        return out


class MobileNetV3Small(nn.Module):
    """MobileNetV3-small's layout (kernel, expansion, outputs, squeeze-excite, hard-swish, stride per block)."""

    SETTINGS = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
                (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
                (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
                (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1))

    def __init__(self, classes: int = 10, in_channels: int = 1, width: float = 0.5, last: int = 1024) -> None:
        super().__init__()
        channels = _divisible(16 * width)
        layers: list[nn.Module] = [_conv_bn(in_channels, channels, 3, 2, activation=nn.Hardswish)]
        for kernel, hidden, outputs, excite, swish, stride in self.SETTINGS:
            outputs = _divisible(outputs * width)
            layers.append(MobileNetV3Block(channels, kernel, _divisible(hidden * width), outputs, excite, swish,
                                           stride))
            channels = outputs
        layers.append(_conv_bn(channels, _divisible(576 * width), 1, activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(_divisible(576 * width), last), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(last, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        return self.classifier(x.view(x.size(0), -1))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm; the shortcut a 1×1 projection when the shape changes."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inputs != outputs:
            self.downsample = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """A ResNet of BasicBlocks: ``blocks`` per stage, channels doubling from ``width`` at each stride-2 stage."""

    def __init__(self, blocks: tuple[int, ...], classes: int = 10, in_channels: int = 1, width: int = 64,
                 imagenet_stem: bool = True) -> None:
        super().__init__()
        if imagenet_stem:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(inplace=True))
        stages, channels = [], width
        for index, count in enumerate(blocks):
            outputs = width * 2 ** index
            stages += [BasicBlock(channels if n == 0 else outputs, outputs, 2 if index and n == 0 else 1)
                       for n in range(count)]
            channels = outputs
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(x.view(x.size(0), -1))


def mobilenet_v2(classes: int = 10, in_channels: int = 1, width: float = 0.5) -> nn.Module:
    """MobileNetV2, width 0.5 by default (about 0.7 M parameters)."""
    return MobileNetV2(classes, in_channels, width)


def mobilenet_v3_small(classes: int = 10, in_channels: int = 1, width: float = 0.5) -> nn.Module:
    """A MobileNetV3-small-style net, width 0.5 by default."""
    return MobileNetV3Small(classes, in_channels, width)


def resnet18(classes: int = 10, in_channels: int = 1, width: int = 64) -> nn.Module:
    """ResNet-18 with the ImageNet stem (about 11 M parameters at width 64)."""
    return ResNet((2, 2, 2, 2), classes, in_channels, width)


def resnet_cifar(depth: int = 20, classes: int = 10, in_channels: int = 1, width: int = 16) -> nn.Module:
    """The CIFAR ResNets: depth 6n + 2 (8, 14, 20, ...), three stages of n blocks from 16 channels."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n + 2, not {depth}")
    return ResNet(((depth - 2) // 6,) * 3, classes, in_channels, width, imagenet_stem=False)


def resnet20() -> nn.Module:
    """ResNet-20 (about 0.27 M parameters)."""
    return resnet_cifar(20)


def resnet8() -> nn.Module:
    """ResNet-8 (about 0.08 M parameters)."""
    return resnet_cifar(8)
