"""Training a DeltaSet within an epoch budget, ending with a quantisation-aware finish."""

from __future__ import annotations

from dataclasses import replace

import torch

from publisher.delta_set import DeltaSet
from publisher.errors import ConfigError
from publisher.training import TrainConfig, train

QAT_FRACTION = 0.25
QAT_LR_FACTOR = 0.3


def qat_epochs(epochs: int) -> int:
    """Epochs of the quantised finish within a budget of ``epochs`` (a quarter, at least one)."""
    return max(1, round(QAT_FRACTION * epochs)) if epochs > 0 else 0


def fit(delta_set: DeltaSet, x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> None:
    """Train in float, then train on the exact device arithmetic (codes, straight-through gradients).

    Both phases together take ``config.epochs`` epochs; batch-norm statistics stay as deployed. The
    delta set is left in quantised mode: its outputs are those of the model a device rebuilds from
    ``delta_set.records()``.
    """
    if config.epochs < 1:
        raise ConfigError("an update needs at least one training epoch")
    finish = qat_epochs(config.epochs)
    parameters = delta_set.trainable_parameters()
    delta_set.set_quantised(False)
    float_config = replace(config, epochs=config.epochs - finish)
    train(delta_set.model, parameters, x, y, float_config, freeze_norm_statistics=True)
    delta_set.set_quantised(True)
    finish_config = replace(config, epochs=finish, lr=config.lr * QAT_LR_FACTOR, seed=config.seed + 1)
    train(delta_set.model, parameters, x, y, finish_config, freeze_norm_statistics=True)
