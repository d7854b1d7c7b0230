"""The method's mechanics: start at the deployed model, end at exactly the model devices rebuild."""

from __future__ import annotations

import pytest
import torch

from codec.arrays import WireArray
from codec.records import DenseRecord, LowRankRecord
from codec.seeded import SeededSigns
from publisher.training.deltas import LowRankDelta, rank_damping
from publisher.training.factorised import BOTH_FACTORS, FactorConfig, factorise, uniform_ranks
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, predict
from publisher.training.reconstruct import model_file, updated_model


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("train_small", [False, True])
@pytest.mark.parametrize("quantised", [False, True])
def test_training_starts_at_the_base_models_outputs(model, data, train_small, quantised, seeded):
    delta_set = factorise(model, uniform_ranks(model, 2), FactorConfig(train_small=train_small, seeded=seeded))
    delta_set.set_quantised(quantised)
    assert torch.equal(predict(delta_set.model, data[0]), predict(model, data[0]))


@pytest.mark.parametrize("seeded", [False, True])
@pytest.mark.parametrize("dtype", ["b1", "trit", "i4", "i8"])
@pytest.mark.parametrize("train_small", [False, True])
@pytest.mark.parametrize("rank", [2, 12])  # 12: a damped seeded factor (publisher.training.deltas.rank_damping)
def test_rebuilt_model_gives_the_outputs_of_the_quantised_trained_model(model, data, dtype, train_small, seeded, rank):
    config = FactorConfig(dtype=dtype, train_small=train_small, seeded=seeded)
    delta_set = factorise(model, uniform_ranks(model, rank), config)
    fit(delta_set, *data, TrainConfig(epochs=4, lr=1e-2))
    payload, length = delta_set.encode()
    rebuilt = updated_model(model, model_file(model.state_dict()), payload, length)
    trained = predict(delta_set.model, data[0])
    assert not torch.equal(trained, predict(model, data[0]))
    assert torch.equal(predict(rebuilt, data[0]), trained)


def test_training_changes_only_the_factors(model, data):
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    delta_set = factorise(model, uniform_ranks(model, 2))
    fit(delta_set, *data, TrainConfig(epochs=2))
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
    originals = {n: p for n, p in delta_set.model.named_parameters() if n.endswith(".original")}
    assert originals and not any(p.requires_grad for p in originals.values())


def test_depthwise_kernels_travel_dense_and_grouped_ones_as_factors(cnn):
    model = cnn
    records = {r.name: r for r in factorise(model, uniform_ranks(model, 5), BOTH_FACTORS).records()}
    assert isinstance(records["5.weight"], DenseRecord)  # depthwise: 8 × 9, rank 5 would be no saving
    assert isinstance(records["3.weight"], LowRankRecord)  # grouped: 8 × 36, factors of 5 × (8 + 36)
    assert records["3.weight"].rank == 5


def test_by_default_only_the_smaller_factor_is_trained_and_sent_as_trit_codes(mlp, data):
    delta_set = factorise(mlp, uniform_ranks(mlp, 3))
    fixed_before = {name: getattr(d, d.fixed).clone() for name, d in delta_set.deltas.items()}
    fit(delta_set, *data, TrainConfig(epochs=2, lr=1e-2))
    for record in delta_set.records():
        out, rest = record.u.shape[0], record.v.shape[1]
        seeded, sent = (record.u, record.v) if out >= rest else (record.v, record.u)
        assert isinstance(seeded, SeededSigns) and isinstance(sent, WireArray) and sent.dtype == "trit"
        assert sent.shape == ((3, rest) if out >= rest else (out, 3))
    for name, delta in delta_set.deltas.items():
        assert torch.equal(getattr(delta, delta.fixed), fixed_before[name])


def test_seeded_layers_go_dense_only_when_the_sent_side_is_no_smaller_than_the_tensor(cnn):
    plain = {r.name: r for r in factorise(cnn, uniform_ranks(cnn, 8), BOTH_FACTORS).records()}
    seeded = {r.name: r for r in factorise(cnn, uniform_ranks(cnn, 8), FactorConfig(seeded=True)).records()}
    assert isinstance(plain["5.weight"], DenseRecord)  # depthwise 8 × 9: 8 × (8 + 9) codes > 72
    assert isinstance(seeded["5.weight"], LowRankRecord)  # seeded: 8 × 8 sent codes < 72
    at_nine = {r.name: r for r in factorise(cnn, uniform_ranks(cnn, 9), FactorConfig(seeded=True)).records()}
    assert isinstance(at_nine["5.weight"], DenseRecord)  # 9 × 8 sent codes = 72


def test_seeded_factors_above_rank_8_are_damped_so_steps_do_not_grow_with_rank():
    assert [rank_damping(rank) for rank in (1, 8, 32, 128)] == [1.0, 1.0, 0.5, 0.25]
    wide = LowRankDelta((4, 64), 32, "trit", fixed="v")  # fixed V: 1/sqrt(rest) before damping
    tall = LowRankDelta((64, 4), 32, "trit", fixed="u")  # fixed U: 1/sqrt(rank) before damping
    assert wide.fixed_scale == pytest.approx(0.5 / 8) and tall.fixed_scale == pytest.approx(0.5 / 32**0.5)
    assert torch.equal(wide.v.abs(), torch.full_like(wide.v, wide.fixed_scale))


def test_a_rank_past_what_devices_decode_is_never_planned_as_factors():
    from codec.limits import DEFAULT_LIMITS
    from publisher.training.factorised import largest_factor_rank, sends_dense

    assert largest_factor_rank((10, 4096), seeded=True) == DEFAULT_LIMITS.max_rank  # 4,095 by code count alone
    assert sends_dense((10, 4096), DEFAULT_LIMITS.max_rank + 1, seeded=True)
