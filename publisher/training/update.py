"""Building an update for a user's model: wrap, train (or bring your own loop), export, measure.

Bring-your-own-loop use::

    delta_set = wrap(model, rank=4)                 # frozen W, trainable U·V per Linear/Conv2d
    delta_set.set_quantised(True)                   # train on the codes devices get (QAT), from the start
    ... train delta_set.model on delta_set.trainable_parameters() ...
    payload, length = delta_set.encode()            # exactly what devices apply

``build_update`` does all of that with publisher.training.fit and reports the accuracy of the rebuilt model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from codec.apply import apply_to_bytes
from codec.compact import Layout, layout_shapes
from codec.model_files import read_model_slots
from codec.payload import encode_payload
from codec.quantise import full_record
from publisher.errors import BudgetError, ConfigError
from publisher.models.folding import fold_batchnorm
from publisher.training.balanced_ranks import balanced_ranks_under_budget
from publisher.training.delta_set import DeltaSet
from publisher.training.factorised import DEFAULT_FACTORS, FactorConfig, factorise, uniform_ranks
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.fit import fit
from publisher.training.loop import Progress, TrainConfig, accuracy, epoch_callback
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
    #: The deployed file's tensors (name, shape), which the payload's records refer to by position.
    tensors: tuple[tuple[str, tuple[int, ...]], ...] = ()


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
    layout = file_layout(base_file)
    train_config = TrainConfig(epochs=config.epochs, lr=config.lr)
    if config.budget is None:
        trained = train_at_ranks(deployed, train_data, uniform_ranks(model, config.rank or DEFAULT_RANK),
                                 config.factors, train_config, progress, layout=layout)
        return finish_update(model, base_file, trained, eval_data)
    warm = None
    if not config.factors.seeded:
        warm = warm_up_deltas(model, train_data, config.epochs, config.lr, progress)
        train_config = TrainConfig(epochs=config.epochs - warm_up_epochs(config.epochs), lr=config.lr)
    planner = rank_planner(model, config.factors, warm)
    trained = train_under_budget(deployed, train_data, config.budget, planner, config.factors, train_config, progress,
                                 layout)
    return finish_update(model, base_file, trained, eval_data)


def file_layout(model_file_bytes: bytes) -> Layout:
    """The tensors of a deployed RCW or .tflite file in file order: what its updates' records refer to."""
    return read_model_slots(memoryview(model_file_bytes))


@dataclass(frozen=True)
class Trained:
    """A trained delta set (in quantised mode: its outputs are the rebuilt model's) and its payload."""

    delta_set: DeltaSet
    payload: bytes
    decompressed_length: int
    ranks: dict[str, int]


def rank_planner(model: nn.Module, factors: FactorConfig,
                 deltas: Mapping[str, torch.Tensor] | None = None) -> Callable[[int], dict[str, int]]:
    """Budget -> ranks: the largest balanced ranks for a seeded update, else ranks from the spectrum of
    ``deltas`` (a fine-tune's weight deltas, needed then)."""
    if factors.seeded:
        return partial(balanced_ranks_under_budget, model, config=factors)
    if deltas is None:
        raise ConfigError("ranks of an update with both factors under a budget need a fine-tune's weight deltas")
    return partial(allocate_ranks, model, deltas, config=factors)


def train_at_ranks(deployed: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], ranks: dict[str, int],
                   factors: FactorConfig, train_config: TrainConfig, progress: Progress | None = None,
                   note: str = "", layout: Layout | None = None) -> Trained:
    """Factors of these ranks on the deployed model, trained on the device arithmetic, and encoded for the
    deployed file whose tensors are ``layout`` (default: the model's RCW file)."""
    if progress is not None:
        progress.stage(f"training factors of ranks {describe_ranks(ranks)}{note}", train_config.epochs,
                       len(train_data[0]))
    delta_set = factorise(deployed, ranks, factors)
    fit(delta_set, *train_data, train_config, epoch_callback(progress))
    payload, length = delta_set.encode(layout)
    return Trained(delta_set, payload, length, ranks)


def train_under_budget(deployed: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], budget: int,
                       planner: Callable[[int], dict[str, int]], factors: FactorConfig, train_config: TrainConfig,
                       progress: Progress | None = None, layout: Layout | None = None) -> Trained:
    """The update ``planner`` plans for ``budget``, trained; planned again smaller while trained codes
    compress worse than the plan's (at most BUDGET_ATTEMPTS trainings). BudgetError if none fits."""
    planned, note = budget, ""
    ranks = planner(planned)
    for attempt in range(1, BUDGET_ATTEMPTS + 1):
        trained = train_at_ranks(deployed, train_data, ranks, factors, train_config, progress, note, layout)
        if len(trained.payload) <= budget:
            return trained
        note = f" again, smaller (the last took {len(trained.payload)} bytes of a {budget}-byte budget)"
        smaller = _smaller_plan(planner, planned, len(trained.payload) - budget, trained.ranks)
        if smaller is None or attempt == BUDGET_ATTEMPTS:
            break
        planned, ranks = smaller
    raise BudgetError(
        f"no trained update fitted in {budget} bytes after {attempt} training{'s' * (attempt > 1)} (the last "
        f"took {len(trained.payload)} bytes); raise the budget"
    )


def _smaller_plan(planner: Callable[[int], dict[str, int]], planned: int, over: int,
                  ranks: dict[str, int]) -> tuple[int, dict[str, int]] | None:
    """The plan for ``planned`` less ``over`` bytes, or less twice, four times... that until the ranks
    differ from ``ranks``; None when no smaller plan exists."""
    step = over
    while step < planned:
        try:
            plan = planner(planned - step)
        except BudgetError:
            return None
        if plan != ranks:
            return planned - step, plan
        step *= 2
    return None


def finish_update(model: nn.Module, base_file: bytes, trained: Trained,
                  eval_data: tuple[torch.Tensor, torch.Tensor]) -> BuiltUpdate:
    """The built update: the payload applied to ``base_file`` as a device applies it, and the accuracy of
    the deployed and the rebuilt model on ``eval_data``."""
    target_file, _ = apply_to_bytes(base_file, trained.payload, trained.decompressed_length)
    return BuiltUpdate(
        payload=trained.payload,
        decompressed_length=trained.decompressed_length,
        target_file=target_file,
        ranks=trained.ranks,
        accuracy_before=accuracy(load_file(model, base_file), *eval_data),
        accuracy_after=accuracy(load_file(model, target_file), *eval_data),
        full_model_bytes=full_model_bytes(target_file),
        tensors=layout_shapes(file_layout(base_file)),
    )


def full_model_bytes(model_file_bytes: bytes) -> int:
    """The payload of a full release of this model file: what an update is measured against."""
    return len(encode_payload([full_record(model_file_bytes)])[0])


def warm_up_epochs(epochs: int) -> int:
    """The epochs of the short fine-tune whose spectrum plans U·V ranks: an eighth of the budget."""
    return max(1, epochs // 8)


def warm_up_deltas(model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], epochs: int, lr: float,
                   progress: Progress | None = None) -> dict[str, torch.Tensor]:
    """The weight deltas of a short full fine-tune (warm_up_epochs of ``epochs``): their spectra plan the
    ranks of an update with both factors."""
    config = TrainConfig(epochs=warm_up_epochs(epochs), lr=lr)
    if progress is not None:
        progress.stage("warm-up fine-tune (its spectrum sets the U·V ranks)", config.epochs, len(train_data[0]))
    return weight_deltas(model, finetune(model, *train_data, config, epoch_callback(progress)))


def describe_ranks(ranks: Mapping[str, int]) -> str:
    """``fc1=8, fc2=4`` (layer=rank; a long list as its range over the layers)."""
    if len(ranks) <= 6:
        return ", ".join(f"{name}={rank}" for name, rank in ranks.items())
    return f"{min(ranks.values())}..{max(ranks.values())} over {len(ranks)} layers"
