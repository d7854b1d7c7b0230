"""The benchmark's models: an MLP and a small CNN for the 8×8 digits, ResNet-8 for 14×14 MNIST and a
1-D CNN for MNIST-1D's 40-sample signals."""

from __future__ import annotations

import torch
from torch import nn

from publisher.models.folding import fold_batchnorm
from simulator.bench.architectures import resnet8

MODELS = ("mlp", "cnn", "resnet8", "cnn1d")


def mlp() -> nn.Module:
    """64-256-256-10 with ReLU."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def cnn() -> nn.Module:
    """Digits upsampled to 16×16; two 3×3 conv blocks (16, 32 channels) with pooling, then 512-128-10."""
    return nn.Sequential(
        nn.Upsample(size=(16, 16), mode="bilinear", align_corners=False),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def cnn1d() -> nn.Module:
    """Three 1×k convolutions of 64 channels, each of stride 2 (40 -> 20 -> 10 -> 5 samples), then
    320-128-10: MNIST-1D's reference CNN, wider and with a hidden layer (about 67 k parameters)."""
    def block(inputs: int, kernel: int) -> list[nn.Module]:
        return [nn.Conv2d(inputs, 64, (1, kernel), (1, 2), (0, kernel // 2)), nn.ReLU()]

    return nn.Sequential(*block(1, 5), *block(64, 3), *block(64, 3), nn.Flatten(), nn.Linear(320, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialised model of MODELS, with a fixed seed (the global RNG is left as it was)."""
    factories = {"mlp": mlp, "cnn": cnn, "resnet8": resnet8, "cnn1d": cnn1d}
    if name not in factories:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factories[name]()


def deployable(model: nn.Module) -> nn.Module:
    """The model as it is deployed: in eval mode with every batch norm folded into its convolution."""
    return fold_batchnorm(model.eval())
