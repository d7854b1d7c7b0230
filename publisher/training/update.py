"""Building an update for a user's model: wrap, train (or bring your own loop), export, measure.

Bring-your-own-loop use::

    delta_set = wrap(model, rank=4)                 # frozen W, trainable U·V per Linear/Conv2d
    delta_set.set_quantised(True)                   # train on the codes devices get (QAT), from the start
    ... train delta_set.model on delta_set.trainable_parameters() ...
    payload, length = delta_set.encode()            # exactly what devices apply

``build_update`` does all of that with publisher.training.fit and reports the accuracy of the rebuilt model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from codec.apply import apply_to_bytes
from codec.payload import encode_payload
from codec.quantise import full_record
from publisher.errors import BudgetError, ConfigError
from publisher.models.folding import fold_batchnorm
from publisher.training.balanced_ranks import balanced_ranks_under_budget
from publisher.training.delta_set import DeltaSet
from publisher.training.factorised import DEFAULT_FACTORS, FactorConfig, factorise, uniform_ranks
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.fit import fit
from publisher.training.loop import Progress, TrainConfig, accuracy
from publisher.training.reconstruct import load_file, model_file
from publisher.training.spectrum_ranks import allocate_ranks

DEFAULT_RANK = 8
#: Adam's learning rate for the factors: the best of {1e-2, 3e-2, 1e-1} on a validation split (docs/method.md).
DEFAULT_LR = 3e-2
#: Trainings an update under a budget may take: a plan is checked with worst-case codes
#: (publisher.training.plan_bytes), but if trained codes still compress worse, it is planned again that much smaller.
BUDGET_ATTEMPTS = 3


@dataclass(frozen=True)
class UpdateConfig:
    """One rank for every layer, or a byte budget the payload must fit: the largest balanced ranks
    that fit, more rank on layers whose rank is cheap (with both factors trained, ranks allocated per
    layer from a warm-up fine-tune's spectrum)."""

    rank: int | None = None
    budget: int | None = None
    epochs: int = 20
    lr: float = DEFAULT_LR
    factors: FactorConfig = field(default=DEFAULT_FACTORS)

    def __post_init__(self) -> None:
        if self.rank is not None and self.budget is not None:
            raise ConfigError("give a rank or a byte budget, not both")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"rank must be at least 1, got {self.rank}")
        if self.budget is not None and self.budget < 1:
            raise ConfigError(f"the byte budget must be positive, got {self.budget}")
        if self.epochs < 1:
            raise ConfigError(f"an update needs at least one training epoch, got {self.epochs}")


@dataclass(frozen=True)
class BuiltUpdate:
    """The payload, the model file it produces, and what was measured on the evaluation data."""

    payload: bytes
    decompressed_length: int
    target_file: bytes
    ranks: dict[str, int]
    accuracy_before: float
    accuracy_after: float
    full_model_bytes: int


def wrap(model: nn.Module, rank: int = DEFAULT_RANK, config: FactorConfig = DEFAULT_FACTORS) -> DeltaSet:
    """A copy of ``model``, batch norm folded as in its .tflite file, with rank-``rank`` factors on every
    Linear and Conv2d (outputs unchanged)."""
    model = fold_batchnorm(model)
    return factorise(model, uniform_ranks(model, rank), config)


def build_update(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    eval_data: tuple[torch.Tensor, torch.Tensor],
    config: UpdateConfig,
    base_file: bytes | None = None,
    progress: Progress | None = None,
) -> BuiltUpdate:
    """Train factors on ``train_data`` and measure the device-rebuilt model on ``eval_data``.

    Batch norm is folded first, as the exporter folds it. ``base_file`` is the deployed RCW or .tflite
    file (it must hold the folded model's weights); by default it is written from that model's state.
    ``progress`` hears of each training and each of its epochs.
    """
    model = fold_batchnorm(model)
    base_file = model_file(model.state_dict()) if base_file is None else base_file
    deployed = load_file(model, base_file)
    train_config = TrainConfig(epochs=config.epochs, lr=config.lr)
    plan = partial(balanced_ranks_under_budget, model, config=config.factors)
    examples, on_epoch = len(train_data[0]), None if progress is None else progress.epoch
    if config.budget is not None and not config.factors.seeded:
        warm_config = TrainConfig(epochs=max(1, config.epochs // 8), lr=config.lr)
        if progress is not None:
            progress.stage("warm-up fine-tune (its spectrum sets the ranks)", warm_config.epochs, examples)
        warm = finetune(model, *train_data, warm_config, on_epoch)
        plan = partial(allocate_ranks, model, weight_deltas(model, warm), config=config.factors)
        train_config = TrainConfig(epochs=config.epochs - warm_config.epochs, lr=config.lr)
    budget, over = config.budget, ""
    for _ in range(BUDGET_ATTEMPTS):
        ranks = uniform_ranks(model, config.rank or DEFAULT_RANK) if budget is None else plan(budget=budget)
        if progress is not None:
            progress.stage(f"training factors of ranks {describe_ranks(ranks)}{over}", train_config.epochs, examples)
        delta_set = factorise(deployed, ranks, config.factors)
        fit(delta_set, *train_data, train_config, on_epoch)
        payload, length = delta_set.encode()
        if config.budget is None or len(payload) <= config.budget:
            break
        over = f" again, smaller (the last took {len(payload)} bytes of a {config.budget}-byte budget)"
        budget -= len(payload) - config.budget  # plan again, as much smaller as this one was over
    else:
        raise BudgetError(
            f"no trained update fitted in {config.budget} bytes after {BUDGET_ATTEMPTS} trainings (the last took "
            f"{len(payload)} bytes); raise the budget"
        )
    target_file, _ = apply_to_bytes(base_file, payload, length)
    return BuiltUpdate(
        payload=payload,
        decompressed_length=length,
        target_file=target_file,
        ranks=ranks,
        accuracy_before=accuracy(deployed, *eval_data),
        accuracy_after=accuracy(load_file(model, target_file), *eval_data),
        full_model_bytes=len(encode_payload([full_record(target_file)])[0]),
    )


def describe_ranks(ranks: Mapping[str, int]) -> str:
    """``fc1=8, fc2=4`` (layer=rank; a long list as its range over the layers)."""
    if len(ranks) <= 6:
        return ", ".join(f"{name}={rank}" for name, rank in ranks.items())
    return f"{min(ranks.values())}..{max(ranks.values())} over {len(ranks)} layers"
