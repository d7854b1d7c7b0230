"""Rank allocation under a byte budget."""

from __future__ import annotations

import pytest
import torch

from publisher.errors import BudgetError, ConfigError, PublisherError
from publisher.training import update
from publisher.training.balanced_ranks import balanced_ranks, balanced_ranks_under_budget
from publisher.training.factorised import FactorConfig, factor_shapes, uniform_ranks, view_2d
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.loop import TrainConfig
from publisher.training.plan_bytes import planned_bytes
from publisher.training.rank_policy import DEFAULT_POLICY, RankPolicy
from publisher.training.spectrum_ranks import allocate_ranks
from publisher.training.update import UpdateConfig, build_update

SCALE_STEPS = DEFAULT_POLICY.scale_steps
WIDEST_MIN_RANK = DEFAULT_POLICY.widest_min_rank


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("budget", [180, 400, 900])
def test_trained_update_fits_the_budget(model, data, budget, seeded):
    config = UpdateConfig(budget=budget, epochs=3, lr=1e-2, factors=FactorConfig(seeded=seeded))
    built = build_update(model, data, data, config)
    assert len(built.payload) <= budget
    assert sum(built.ranks.values()) >= 1


def test_an_update_that_trains_over_its_budget_is_planned_again_smaller(monkeypatch, mlp, data):
    plans = []

    def optimistic(model, budget, config):  # a plan for 25 more bytes than asked
        plans.append(budget)
        return balanced_ranks_under_budget(model, budget + 25, config)

    monkeypatch.setattr(update, "balanced_ranks_under_budget", optimistic)
    built = build_update(mlp, data, data, UpdateConfig(budget=200, epochs=2, lr=1e-2))
    assert len(built.payload) <= 200
    assert plans[0] == 200 and len(plans) >= 2 and plans[1] < 200


def test_an_update_that_never_fits_its_budget_is_refused(monkeypatch, mlp, data):
    monkeypatch.setattr(update, "balanced_ranks_under_budget", lambda model, budget, config: uniform_ranks(model, 20))
    with pytest.raises(BudgetError, match="200 bytes"):
        build_update(mlp, data, data, UpdateConfig(budget=200, epochs=1, lr=1e-2))


def test_larger_budget_buys_more_rank(mlp, data):
    deltas = weight_deltas(mlp, finetune(mlp, *data, TrainConfig(epochs=1)))
    assert sum(allocate_ranks(mlp, deltas, 600).values()) > sum(allocate_ranks(mlp, deltas, 120).values())


def test_a_seeded_budget_buys_more_rank_than_the_same_budget_with_both_factors_sent(mlp, data):
    deltas = weight_deltas(mlp, finetune(mlp, *data, TrainConfig(epochs=1)))
    both = allocate_ranks(mlp, deltas, 1500)
    seeded = balanced_ranks_under_budget(mlp, 1500, FactorConfig(seeded=True))
    assert sum(seeded.values()) > sum(both.values())


def test_seeded_ranks_are_the_largest_balanced_ranks_that_fit(mlp):
    config = FactorConfig(seeded=True)
    for budget in (80, 115, 150, 200, 250):
        ranks = balanced_ranks_under_budget(mlp, budget, config)
        assert planned_bytes(mlp, ranks, config) <= budget
        layers = list(ranks)
        steps = next(k for k in range(1, 10**4) if balanced_ranks(mlp, k / SCALE_STEPS, config, layers) == ranks)
        bigger = next(balanced_ranks(mlp, k / SCALE_STEPS, config, layers) for k in range(steps + 1, 10**4)
                      if balanced_ranks(mlp, k / SCALE_STEPS, config, layers) != ranks)
        assert planned_bytes(mlp, bigger, config) > budget


@pytest.mark.slow
def test_the_widest_layer_waits_until_the_budget_gives_it_the_minimum_rank(mlp):
    # the test MLP's widest rank unit is 3.weight's (24 codes); the others cost 16 and 4 codes a rank
    config = FactorConfig(seeded=True)
    plans = _plans_up_to(mlp, list(factor_shapes(mlp)), 320, config)
    for budget in range(plans[0][0], 320, 15):
        with_widest = [plan for size, plan in _prefix_that_fits(plans, budget)][-1]
        ranks = balanced_ranks_under_budget(mlp, budget, config)
        if with_widest["3.weight"] >= WIDEST_MIN_RANK:
            assert ranks == with_widest
        else:
            assert set(ranks) == {"1.weight", "5.weight"}
    assert "3.weight" not in balanced_ranks_under_budget(mlp, 120, config)
    assert balanced_ranks_under_budget(mlp, 250, config)["3.weight"] >= WIDEST_MIN_RANK


def test_a_budget_below_rank_1_everywhere_still_buys_the_narrower_layers(mlp):
    config = FactorConfig(seeded=True)
    budget = planned_bytes(mlp, uniform_ranks(mlp, 1), config) - 1
    ranks = balanced_ranks_under_budget(mlp, budget, config)
    assert set(ranks) == {"1.weight", "5.weight"} and min(ranks.values()) >= 1
    assert planned_bytes(mlp, ranks, config) <= budget


@pytest.mark.parametrize("outputs", [12, 4], ids=["one width", "two layers"])
def test_the_widest_layer_stays_unless_two_narrower_layers_remain(outputs):
    model = torch.nn.Sequential(torch.nn.Linear(12, 12), torch.nn.ReLU(), torch.nn.Linear(12, outputs))
    config = FactorConfig(seeded=True)
    smallest = planned_bytes(model, uniform_ranks(model, 1), config)
    assert balanced_ranks_under_budget(model, smallest, config) == {"0.weight": 1, "2.weight": 1}
    with pytest.raises(BudgetError, match="every layer"):
        balanced_ranks_under_budget(model, smallest - 1, config)


def test_a_budget_of_exactly_rank_1_everywhere_gets_that_plan_even_where_the_first_scale_step_is_more():
    # the output layer's weight is sqrt(512 / 4) > 8: a quarter step of scale already gives it rank 2
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 4))
    config = FactorConfig(seeded=True)
    assert balanced_ranks(model, 1 / SCALE_STEPS, config) == {"0.weight": 1, "2.weight": 2}
    budget = planned_bytes(model, uniform_ranks(model, 1), config)
    ranks = balanced_ranks_under_budget(model, budget, config)
    assert planned_bytes(model, ranks, config) <= budget
    assert ranks == {"0.weight": 1, "2.weight": 1}


def test_balanced_ranks_favour_layers_whose_rank_is_cheap(mlp):
    # seeded, the test MLP's rank units cost 16 (16->24), 24 (24->24) and 4 (24->4) codes: weights
    # sqrt(24/16), 1 and sqrt(24/4) times the widest layer's rank
    ranks = balanced_ranks(mlp, 8, FactorConfig(seeded=True))
    assert ranks == {"1.weight": 9, "3.weight": 8, "5.weight": 19}
    assert balanced_ranks(mlp, 0.25, FactorConfig(seeded=True)) == dict.fromkeys(ranks, 1)
    # without the widest layer, 1.weight (16 codes a rank) is the reference: 5.weight gets sqrt(16/4) times its rank
    without_widest = balanced_ranks(mlp, 8, FactorConfig(seeded=True), ["1.weight", "5.weight"])
    assert without_widest == {"1.weight": 8, "5.weight": 16}


def test_a_policy_of_ones_own_changes_the_plan_it_is_given_to(mlp):
    config = FactorConfig(seeded=True)
    assert balanced_ranks(mlp, 8, config, policy=RankPolicy(balance=0.0)) == dict.fromkeys(factor_shapes(mlp), 8)
    # at 120 B the default leaves the widest layer out; a policy that lets it join from rank 1 keeps it
    assert "3.weight" not in balanced_ranks_under_budget(mlp, 120, config)
    assert "3.weight" in balanced_ranks_under_budget(mlp, 120, config, RankPolicy(widest_min_rank=1))


@pytest.mark.parametrize("bad", [dict(balance=1.5), dict(scale_steps=0), dict(widest_min_rank=0),
                                 dict(zero_fractions=()), dict(zero_fractions=(1.0,)), dict(record_overhead=-1),
                                 dict(uniform_share=2.0)])
def test_a_policy_out_of_range_is_refused_with_a_config_error(bad):
    with pytest.raises(ConfigError):
        RankPolicy(**bad)


def test_a_budget_large_enough_for_dense_layers_stops_at_every_layers_largest_factorised_rank(mlp):
    # a seeded layer goes dense at rank max(out, rest); each layer stops one below its own
    ranks = balanced_ranks_under_budget(mlp, 10**7, FactorConfig(seeded=True))
    assert ranks == {name: max(view_2d(shape)) - 1 for name, shape in factor_shapes(mlp).items()}


def test_no_rank_1_update_within_the_budget_is_refused(mlp):
    with pytest.raises(BudgetError, match="raise the budget"):
        balanced_ranks_under_budget(mlp, 40, FactorConfig(seeded=True))


def test_budget_too_small_is_refused_with_an_actionable_error(mlp, data):
    deltas = {name: torch.ones_like(p) for name, p in mlp.named_parameters()}
    with pytest.raises(BudgetError, match="raise the budget") as caught:
        allocate_ranks(mlp, deltas, 60, FactorConfig(train_small=True))
    assert isinstance(caught.value, PublisherError) and isinstance(caught.value, ValueError)
    assert caught.value.code == "over-budget"


def _plans_up_to(model, layers, limit, config):
    """(worst-case bytes, plan) of the distinct balanced plans of ``layers`` up the scale grid, until one
    passes ``limit`` bytes."""
    plans = []
    for k in range(1, 10**4):
        plan = balanced_ranks(model, k / SCALE_STEPS, config, layers)
        if not plans or plans[-1][1] != plan:
            plans.append((planned_bytes(model, plan, config), plan))
            if plans[-1][0] > limit:
                return plans
    return plans


def _prefix_that_fits(plans, budget):
    """The plans up to (not including) the first one over ``budget``."""
    prefix = []
    for size, plan in plans:
        if size > budget:
            break
        prefix.append((size, plan))
    return prefix
