"""The method's mechanics: start at the deployed model, end at exactly the model devices rebuild."""

from __future__ import annotations

import pytest
import torch

from codec.records import DenseRecord, LowRankRecord
from publisher.factorised import FactorConfig, factorise, uniform_ranks
from publisher.fit import fit
from publisher.reconstruct import model_file, updated_model
from publisher.training import TrainConfig, predict


@pytest.mark.parametrize("train_small", [False, True])
@pytest.mark.parametrize("quantised", [False, True])
def test_training_starts_at_the_base_models_outputs(model, data, train_small, quantised):
    delta_set = factorise(model, uniform_ranks(model, 2), FactorConfig(train_small=train_small))
    delta_set.set_quantised(quantised)
    assert torch.equal(predict(delta_set.model, data[0]), predict(model, data[0]))


@pytest.mark.parametrize("dtype", ["i4", "i8"])
@pytest.mark.parametrize("train_small", [False, True])
def test_rebuilt_model_gives_the_outputs_of_the_quantised_trained_model(model, data, dtype, train_small):
    delta_set = factorise(model, uniform_ranks(model, 2), FactorConfig(dtype=dtype, train_small=train_small))
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
    records = {r.name: r for r in factorise(model, uniform_ranks(model, 5)).records()}
    assert isinstance(records["5.weight"], DenseRecord)  # depthwise: 8 × 9, rank 5 would be no saving
    assert isinstance(records["3.weight"], LowRankRecord)  # grouped: 8 × 36, factors of 5 × (8 + 36)
    assert records["3.weight"].rank == 5
