"""Each update method of the benchmark as one function: a knob sweep -> (knob, bytes, accuracy) points.

Every method trains on the scenario's update data within the same epoch budget, at the learning rate
its tuning chose on a validation split (simulator.bench.tuning), every update is encoded to real bytes,
and every accuracy is that of the model a device rebuilds from those bytes
(publisher.training.reconstruct), measured on the scenario's test split.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import nn

from codec.model_files import read_model_slots
from codec.payload import encode_payload
from codec.records import Record
from publisher.errors import BudgetError, TargetError
from publisher.training.balanced_ranks import balanced_ranks_under_budget
from publisher.training.delta_set import DeltaSet
from publisher.training.factorised import BOTH_FACTORS, DEFAULT_FACTORS, FactorConfig, factorise
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, accuracy, train
from publisher.training.reconstruct import load_file, model_file, updated_model
from publisher.training.spectrum_ranks import allocate_ranks
from publisher.training.targeted import Target, build_targeted
from simulator.bench.baselines import bitdelta, full_finetune, konecny, patch, topk
from simulator.bench.cases import Schedule
from simulator.bench.scenarios import Scenario

OURS = ("factorised", "factorised_uv", "cli_default")
#: Init seeds of successive training seeds are this far apart, so per-layer seeds (init seed + the
#: layer's place among the factored layers) stay distinct on the digits models.
SEED_STRIDE = 16


@dataclass(frozen=True)
class Point:
    method: str
    knob: str
    bytes: int
    accuracy: float


@dataclass(frozen=True)
class Sweeps:
    """The knob values each method is swept over."""

    budgets: tuple[int, ...]
    densities: tuple[float, ...]
    konecny_ranks: tuple[int, ...]
    delta_dtypes: tuple[str, ...] = full_finetune.DELTA_DTYPES
    patch_levels: tuple[int, ...] = patch.PATCH_LEVELS
    calibration_epochs: int = 5
    #: How many weight tensors BitDelta sends at each point; None: every count from one to all.
    bitdelta_counts: tuple[int, ...] | None = None


@dataclass
class Context:
    """What every method of one scenario and model shares."""

    scenario: Scenario
    base: nn.Module
    base_file: bytes
    schedule: Schedule
    sweeps: Sweeps
    #: The learning rate of each trained method (simulator.bench.tuning).
    lrs: dict[str, float]
    warmup: dict[str, torch.Tensor]
    tuned: nn.Module

    @property
    def epochs(self) -> int:
        return self.schedule.epochs

    def config(self, method: str, epochs: int | None = None) -> TrainConfig:
        return TrainConfig(epochs=self.epochs if epochs is None else epochs, lr=self.lrs[method])

    def measure(self, records: list[Record]) -> tuple[int, float]:
        """Payload bytes (format 2, every method alike), and test accuracy of the model a device rebuilds
        from them."""
        payload, length = encode_payload(records, layout=read_model_slots(memoryview(self.base_file)))
        model = updated_model(self.base, self.base_file, payload, length)
        return len(payload), accuracy(model, self.scenario.test.x, self.scenario.test.y)

    def trained_point(self, method: str, knob: str, build: Callable[..., DeltaSet], config: TrainConfig) -> Point:
        """Build (``build(seed=init_seed)``) and fit a delta set once per training seed; the point has the
        mean payload bytes and the mean accuracy of the rebuilt models."""
        sizes, accuracies = [], []
        for seed in range(self.schedule.seeds):
            delta_set = build(seed=SEED_STRIDE * seed)
            fit(delta_set, self.scenario.update.x, self.scenario.update.y, replace(config, seed=seed))
            size, accuracy_ = self.measure(delta_set.records())
            sizes.append(size)
            accuracies.append(accuracy_)
        return Point(method, knob, round(sum(sizes) / len(sizes)), sum(accuracies) / len(accuracies))


def warmup_epochs(epochs: int) -> int:
    """The short full fine-tune that top-k (its mask) and rank allocation (its spectrum) start from."""
    return max(1, epochs // 8)


def context(scenario: Scenario, base: nn.Module, schedule: Schedule, sweeps: Sweeps, lrs: dict[str, float]) -> Context:
    """Fine-tune fully at ``lrs["finetune"]`` (the reference and the source of baselines a-c, f) and run
    the warm-up."""
    data = (scenario.update.x, scenario.update.y)
    tuned = finetune(base, *data, TrainConfig(epochs=schedule.epochs, lr=lrs["finetune"]))
    warm = finetune(base, *data, TrainConfig(epochs=warmup_epochs(schedule.epochs), lr=lrs["finetune"]))
    return Context(scenario, base, model_file(base.state_dict()), schedule, sweeps, dict(lrs),
                   weight_deltas(base, warm), tuned)


def full_model(ctx: Context) -> Iterator[Point]:
    yield Point("full_model", "fp32", *ctx.measure(full_finetune.full_model_records(ctx.tuned)))


def finetune_delta(ctx: Context) -> Iterator[Point]:
    deltas = weight_deltas(ctx.base, ctx.tuned)
    for dtype in ctx.sweeps.delta_dtypes:
        yield Point("finetune_delta", dtype, *ctx.measure(full_finetune.delta_records(deltas, dtype)))


def zstd_patch(ctx: Context) -> Iterator[Point]:
    target = model_file(ctx.tuned.state_dict())
    test = ctx.scenario.test
    for level in ctx.sweeps.patch_levels:
        data = patch.make_patch(ctx.base_file, target, level)
        model = load_file(ctx.base, patch.apply_patch(ctx.base_file, data))
        yield Point("zstd_patch", f"level {level}", len(data), accuracy(model, test.x, test.y))


def topk_sparse(ctx: Context, method: str = "topk_sparse", dtype: str = "i8") -> Iterator[Point]:
    config = ctx.config(method, ctx.epochs - warmup_epochs(ctx.epochs))
    for density in ctx.sweeps.densities:
        positions = topk.topk_positions(ctx.warmup, density)
        build = partial(_topk_set, ctx.base, positions, dtype)
        yield ctx.trained_point(method, f"density {density:g}", build, config)


def konecny_lowrank(ctx: Context, method: str = "konecny", dtype: str = "i8") -> Iterator[Point]:
    for rank in ctx.sweeps.konecny_ranks:
        build = partial(konecny.structured_delta_set, ctx.base, rank, small=False, dtype=dtype)
        yield ctx.trained_point(method, f"rank {rank}", build, ctx.config(method))


def bitdelta_sign(ctx: Context) -> Iterator[Point]:
    deltas = weight_deltas(ctx.base, ctx.tuned)
    ranked = bitdelta.ranked_tensors(ctx.base, deltas)
    calibration = ctx.config("bitdelta", ctx.sweeps.calibration_epochs)
    update = ctx.scenario.update
    for count in ctx.sweeps.bitdelta_counts or range(1, len(ranked) + 1):
        delta_set = bitdelta.sign_delta_set(ctx.base, deltas, ranked[:count])
        parameters = delta_set.trainable_parameters()
        train(delta_set.model, parameters, update.x, update.y, calibration, freeze_norm_statistics=True)
        yield Point("bitdelta", f"{count} tensors", *ctx.measure(delta_set.records()))


def factorised(ctx: Context) -> Iterator[Point]:
    """rankcast's update: each layer's larger factor seeded signs, the smaller one trained and sent as
    trit codes, the largest balanced ranks under each budget (publisher.training.balanced_ranks)."""
    yield from _budget_sweep(ctx, "factorised", DEFAULT_FACTORS, ctx.sweeps.budgets)


def factorised_uv(ctx: Context) -> Iterator[Point]:
    """The paper's form: U and V both trained and sent (trit codes), ranks allocated under each budget."""
    yield from _budget_sweep(ctx, "factorised_uv", BOTH_FACTORS, ctx.sweeps.budgets)


def cli_default(ctx: Context) -> Iterator[Point]:
    """What `rankcast update build` picks when told no size (publisher.training.targeted): one point, chosen
    on a validation split of the update data, measured on the test split; none when it refuses."""
    update, test = ctx.scenario.update, ctx.scenario.test
    try:
        search = build_targeted(ctx.base, (update.x, update.y), (test.x, test.y), DEFAULT_FACTORS, Target(),
                                epochs=ctx.epochs, base_file=ctx.base_file)
    except TargetError:
        return
    chosen, built = search.chosen, search.built  # accuracy_after: the rebuilt model on the test split
    yield Point("cli_default", f"{chosen.form} under {chosen.budget} B", len(built.payload), built.accuracy_after)


def _budget_sweep(ctx: Context, method: str, factor_config: FactorConfig, budgets: tuple[int, ...]) -> Iterator[Point]:
    """Ranks per budget: seeded updates take the largest balanced ranks and every epoch; the others
    spend the warm-up's epochs on a spectrum allocation (publisher.training.spectrum_ranks)."""
    seeded = factor_config.seeded
    config = ctx.config(method, ctx.epochs if seeded else ctx.epochs - warmup_epochs(ctx.epochs))
    for budget in budgets:
        try:
            if seeded:
                ranks = balanced_ranks_under_budget(ctx.base, budget, factor_config)
            else:
                ranks = allocate_ranks(ctx.base, ctx.warmup, budget, factor_config)
        except BudgetError:
            continue  # below the smallest possible update: no point
        build = partial(_factorised_set, ctx.base, ranks, factor_config)
        yield ctx.trained_point(method, f"budget {budget}", build, config)


def _factorised_set(base: nn.Module, ranks: dict[str, int], config: FactorConfig, *, seed: int) -> DeltaSet:
    return factorise(base, ranks, replace(config, seed=seed))


def _topk_set(base: nn.Module, positions: dict, dtype: str, *, seed: int) -> DeltaSet:
    """Top-k's values start at zero: only the order of the training data depends on the seed."""
    return topk.sparse_delta_set(base, positions, small=False, dtype=dtype)


#: Every method that trains, with its learning rate tuned per case (simulator.bench.tuning).
TRAINED = ("finetune", "topk_sparse", "topk_trit", "konecny", "konecny_trit", "bitdelta", "factorised",
           "factorised_uv")
METHODS: dict[str, Callable[[Context], Iterator[Point]]] = {
    "full_model": full_model,
    "finetune_delta": finetune_delta,
    "zstd_patch": zstd_patch,
    "topk_sparse": topk_sparse,
    "topk_trit": partial(topk_sparse, method="topk_trit", dtype="trit"),
    "konecny": konecny_lowrank,
    "konecny_trit": partial(konecny_lowrank, method="konecny_trit", dtype="trit"),
    "bitdelta": bitdelta_sign,
    "factorised": factorised,
    "factorised_uv": factorised_uv,
    "cli_default": cli_default,
}
