"""Full fine-tuning of a copy of the deployed model, and the weight deltas it made.

The reference every update is measured against, and the warm-up whose deltas show where a model wants
to move (publisher.training.spectrum_ranks allocates ranks from their spectra).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from publisher.training.loop import EpochCallback, TrainConfig, train


def finetune(
    base: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, on_epoch: EpochCallback | None = None
) -> nn.Module:
    """A copy of ``base`` with every parameter trained on (x, y); batch-norm statistics stay as deployed."""
    model = copy.deepcopy(base)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    train(model, model.parameters(), x, y, config, freeze_norm_statistics=True, on_epoch=on_epoch)
    return model


def weight_deltas(base: nn.Module, tuned: nn.Module) -> dict[str, torch.Tensor]:
    """Parameter name -> ``tuned - base`` for every parameter."""
    base_params = dict(base.named_parameters())
    return {name: (p - base_params[name]).detach() for name, p in tuned.named_parameters()}
