"""Rank allocation under a byte budget."""

from __future__ import annotations

import pytest
import torch

from publisher.baselines.finetune import finetune, weight_deltas
from publisher.errors import BudgetError, PublisherError
from publisher.factorised import FactorConfig, factorise
from publisher.fit import fit
from publisher.ranks import allocate_ranks
from publisher.training import TrainConfig


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("budget", [400, 900, 2500])
def test_trained_update_fits_the_budget(model, data, budget, seeded):
    deltas = weight_deltas(model, finetune(model, *data, TrainConfig(epochs=1)))
    config = FactorConfig(seeded=seeded)
    ranks = allocate_ranks(model, deltas, budget, config)
    delta_set = factorise(model, ranks, config)
    fit(delta_set, *data, TrainConfig(epochs=3, lr=1e-2))
    assert len(delta_set.encode()[0]) <= budget
    assert sum(ranks.values()) >= 1


def test_larger_budget_buys_more_rank(mlp, data):
    deltas = weight_deltas(mlp, finetune(mlp, *data, TrainConfig(epochs=1)))
    assert sum(allocate_ranks(mlp, deltas, 3000).values()) > sum(allocate_ranks(mlp, deltas, 600).values())


def test_a_seeded_budget_buys_more_rank_than_the_same_budget_with_both_factors_sent(mlp, data):
    deltas = weight_deltas(mlp, finetune(mlp, *data, TrainConfig(epochs=1)))
    both = allocate_ranks(mlp, deltas, 1500)
    seeded = allocate_ranks(mlp, deltas, 1500, FactorConfig(seeded=True))
    assert sum(seeded.values()) > sum(both.values())


def test_budget_too_small_is_refused_with_an_actionable_error(mlp, data):
    deltas = {name: torch.ones_like(p) for name, p in mlp.named_parameters()}
    with pytest.raises(BudgetError, match="raise the budget") as caught:
        allocate_ranks(mlp, deltas, 60, FactorConfig(train_small=True))
    assert isinstance(caught.value, PublisherError) and isinstance(caught.value, ValueError)
    assert caught.value.code == "over-budget"
