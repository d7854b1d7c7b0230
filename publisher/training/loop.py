"""A plain supervised training loop and accuracy, shared by the method and every baseline."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from publisher.errors import ConfigError, DataError

#: Called after each epoch with its number (from 1) and the mean training loss over it.
EpochCallback = Callable[[int, float], None]


class Progress(Protocol):
    """What a long training reports while it runs, to a caller that shows it (`rankcast update build`)."""

    def stage(self, what: str, epochs: int, examples: int) -> None:
        """A training of ``epochs`` epochs on ``examples`` examples begins; ``what`` says what it trains."""

    def epoch(self, epoch: int, loss: float) -> None:
        """Epoch ``epoch`` (from 1) of the current stage ended with this mean training loss."""

    def note(self, line: str) -> None:
        """One line of what was found between trainings (an accuracy measured, a choice made)."""


def epoch_callback(progress: Progress | None) -> EpochCallback | None:
    """What a training calls after each epoch to tell ``progress``, if anyone listens."""
    return None if progress is None else progress.epoch


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
    on_epoch: EpochCallback | None = None,
) -> None:
    """Minimise cross-entropy of ``model(x)`` against labels ``y``, changing only ``parameters``.

    With ``freeze_norm_statistics`` batch-norm layers keep their running statistics (they run in
    evaluation mode): an update changes only what it sends. ``on_epoch`` hears of each epoch's end.
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
    for epoch in range(1, config.epochs + 1):
        total = 0.0
        for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimiser.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
            schedule.step()
            if on_epoch is not None:
                total += loss.item() * len(batch)
        if on_epoch is not None:
            on_epoch(epoch, total / len(x))
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
