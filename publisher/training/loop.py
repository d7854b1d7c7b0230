"""A plain supervised training loop and accuracy, shared by the method and every baseline."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from publisher.errors import ConfigError, DataError


@dataclass(frozen=True)
class TrainConfig:
    """Adam with a cosine learning-rate decay over ``epochs`` passes of shuffled mini-batches."""

    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"training needs epochs >= 0, batch_size >= 1, lr > 0, weight_decay >= 0: {self}")


def train(
    model: nn.Module,
    parameters: Iterable[nn.Parameter],
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    freeze_norm_statistics: bool = False,
) -> None:
    """Minimise cross-entropy of ``model(x)`` against labels ``y``, changing only ``parameters``.

    With ``freeze_norm_statistics`` batch-norm layers keep their running statistics (they run in
    evaluation mode): an update changes only what it sends.
    """
    check_data(x, y)
    parameters = list(parameters)
    if not parameters or config.epochs == 0:
        return
    optimiser = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    if freeze_norm_statistics:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    for _ in range(config.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimiser.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
            schedule.step()
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in evaluation mode."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` whose arg-max logit equals the label (the count over the size, in float64: a
    float32 mean is off by up to 1e-7, enough to flip a comparison with a target)."""
    check_data(x, y)
    return int((predict(model, x).argmax(dim=1) == y).sum()) / len(y)


def check_data(x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse empty data, mismatched lengths and non-integer labels with an actionable message."""
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"need as many labels as inputs and at least one of each (got {len(x)} and {len(y)})")
    if y.dtype != torch.long:
        raise DataError(f"labels must be int64 class indices, got {y.dtype}")
