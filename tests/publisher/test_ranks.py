"""Rank allocation under a byte budget."""

from __future__ import annotations

import pytest
import torch

from publisher.baselines.finetune import finetune, weight_deltas
from publisher.errors import BudgetError, PublisherError
from publisher.factorised import FactorConfig, factor_shapes, factorise, uniform_ranks, view_2d
from publisher.fit import fit
from publisher.ranks import allocate_ranks, planned_bytes, uniform_ranks_under_budget
from publisher.training import TrainConfig


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("budget", [180, 400, 900])
def test_trained_update_fits_the_budget(model, data, budget, seeded):
    config = FactorConfig(seeded=seeded)
    if seeded:
        ranks = uniform_ranks_under_budget(model, budget, config)
    else:
        deltas = weight_deltas(model, finetune(model, *data, TrainConfig(epochs=1)))
        ranks = allocate_ranks(model, deltas, budget, config)
    delta_set = factorise(model, ranks, config)
    fit(delta_set, *data, TrainConfig(epochs=3, lr=1e-2))
    assert len(delta_set.encode()[0]) <= budget
    assert sum(ranks.values()) >= 1


def test_larger_budget_buys_more_rank(mlp, data):
    deltas = weight_deltas(mlp, finetune(mlp, *data, TrainConfig(epochs=1)))
    assert sum(allocate_ranks(mlp, deltas, 600).values()) > sum(allocate_ranks(mlp, deltas, 250).values())


def test_a_seeded_budget_buys_more_rank_than_the_same_budget_with_both_factors_sent(mlp, data):
    deltas = weight_deltas(mlp, finetune(mlp, *data, TrainConfig(epochs=1)))
    both = allocate_ranks(mlp, deltas, 1500)
    seeded = uniform_ranks_under_budget(mlp, 1500, FactorConfig(seeded=True))
    assert sum(seeded.values()) > sum(both.values())


def test_seeded_ranks_are_the_largest_uniform_rank_that_fits(mlp):
    config = FactorConfig(seeded=True)
    for budget in (115, 150, 200):
        ranks = uniform_ranks_under_budget(mlp, budget, config)
        rank = next(iter(ranks.values()))
        assert set(ranks.values()) == {rank} and set(ranks) == set(factor_shapes(mlp))
        assert planned_bytes(mlp, ranks, config) <= budget
        assert planned_bytes(mlp, uniform_ranks(mlp, rank + 1), config) > budget


def test_a_budget_large_enough_for_dense_layers_stops_at_the_largest_factorised_rank(mlp):
    # a seeded layer goes dense at rank max(out, rest); the search stops one below the widest layer's
    widest = max(max(view_2d(shape)) for shape in factor_shapes(mlp).values())
    ranks = uniform_ranks_under_budget(mlp, 10**7, FactorConfig(seeded=True))
    assert set(ranks.values()) == {widest - 1}


def test_no_rank_1_update_within_the_budget_is_refused(mlp):
    with pytest.raises(BudgetError, match="raise the budget"):
        uniform_ranks_under_budget(mlp, 50, FactorConfig(seeded=True))


def test_budget_too_small_is_refused_with_an_actionable_error(mlp, data):
    deltas = {name: torch.ones_like(p) for name, p in mlp.named_parameters()}
    with pytest.raises(BudgetError, match="raise the budget") as caught:
        allocate_ranks(mlp, deltas, 60, FactorConfig(train_small=True))
    assert isinstance(caught.value, PublisherError) and isinstance(caught.value, ValueError)
    assert caught.value.code == "over-budget"
