"""Training a DeltaSet within an epoch budget, on the exact arithmetic devices will run.

Quantisation-aware from the first step: every forward pass computes the deltas from their integer
codes exactly as a device does (publisher.training.quantiser), gradients pass straight through the rounding to
the float factors behind the codes. On a validation split this beat training in float and finishing
on the codes (docs/method.md): the model learns to live with its codes all along instead of being
rounded at the end.
"""

from __future__ import annotations

import torch

from publisher.errors import ConfigError
from publisher.training.delta_set import DeltaSet
from publisher.training.loop import EpochCallback, TrainConfig, train


def fit(
    delta_set: DeltaSet, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, on_epoch: EpochCallback | None = None
) -> None:
    """Train the delta set's parameters for ``config.epochs`` epochs on the exact device arithmetic.

    Batch-norm statistics stay as deployed. The delta set is left in quantised mode: its outputs are
    those of the model a device rebuilds from ``delta_set.records()``.
    """
    if config.epochs < 1:
        raise ConfigError("an update needs at least one training epoch")
    delta_set.set_quantised(True)
    train(delta_set.model, delta_set.trainable_parameters(), x, y, config, freeze_norm_statistics=True,
          on_epoch=on_epoch)
