"""Baselines: each update is real codec bytes, and the rebuilt model is exactly the trained one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from codec.arrays import WireArray, unpack
from codec.payload import decode_payload, encode_payload
from codec.records import LowRankRecord
from codec.seeded import SeededSigns, factor_codes
from publisher.training.deltas import LowRankDelta
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, predict, train
from publisher.training.reconstruct import load_file, model_file, updated_model
from simulator.bench.baselines import bitdelta, full_finetune, konecny, patch, topk


def _rebuilt(model, delta_set):
    payload, length = delta_set.encode()
    return updated_model(model, model_file(model.state_dict()), payload, length)


def test_structured_update_is_rebuilt_exactly_from_its_payload(model, data):
    delta_set = konecny.structured_delta_set(model, 2, small=False)
    assert torch.equal(predict(delta_set.model, data[0]), predict(model, data[0]))
    fit(delta_set, *data, TrainConfig(epochs=3, lr=1e-2))
    trained = predict(delta_set.model, data[0])
    assert not torch.equal(trained, predict(model, data[0]))
    assert torch.equal(predict(_rebuilt(model, delta_set), data[0]), trained)
    payload, length = encode_payload(delta_set.records())
    assert sum(isinstance(r, LowRankRecord) for r in decode_payload(payload, length)) >= 1


def test_structured_records_carry_the_fixed_factor_as_the_seed_of_the_codecs_signs(mlp):
    delta_set = konecny.structured_delta_set(mlp, 2, small=False, seed=7)
    records = {record.name: record for record in delta_set.records()}
    factored = {name: delta for name, delta in delta_set.deltas.items() if isinstance(delta, LowRankDelta)}
    assert {delta.fixed for delta in factored.values()} == {"u", "v"}  # 24 × 16 and 24 × 24 fix U, 4 × 24 fixes V
    seeds = set()
    for name, delta in factored.items():
        record = records[name]
        fixed, scale = (record.u, record.u_scale) if delta.fixed == "u" else (record.v, record.v_scale)
        sent = record.v if delta.fixed == "u" else record.u
        assert isinstance(fixed, SeededSigns) and isinstance(sent, WireArray) and sent.dtype == "i8"
        assert unpack(scale).tolist() == [1.0]  # the sent factor's scale carries the fixed one's 1/√k
        codes = torch.from_numpy(factor_codes(fixed).astype(np.float32))
        fixed_scale = np.float32(1 / math.sqrt(fixed.shape[1]))  # 1/√k: rank for U, rest for V
        assert torch.equal(getattr(delta, delta.fixed), codes * float(fixed_scale))
        seeds.add(fixed.seed)
    assert len(seeds) == len(factored) and min(seeds) >= 7


def test_sparse_update_is_rebuilt_exactly(model, data):
    deltas = weight_deltas(model, finetune(model, *data, TrainConfig(epochs=1)))
    delta_set = topk.sparse_delta_set(model, topk.topk_positions(deltas, 0.1))
    fit(delta_set, *data, TrainConfig(epochs=3, lr=1e-2))
    assert torch.equal(predict(_rebuilt(model, delta_set), data[0]), predict(delta_set.model, data[0]))


def test_sign_delta_is_rebuilt_exactly(model, data):
    tuned = finetune(model, *data, TrainConfig(epochs=2))
    deltas = weight_deltas(model, tuned)
    ranked = bitdelta.ranked_tensors(model, deltas)
    delta_set = bitdelta.sign_delta_set(model, deltas, ranked[:2])
    train(delta_set.model, delta_set.trainable_parameters(), *data, TrainConfig(epochs=2), freeze_norm_statistics=True)
    assert torch.equal(predict(_rebuilt(model, delta_set), data[0]), predict(delta_set.model, data[0]))


@pytest.mark.parametrize("dtype", full_finetune.DELTA_DTYPES)
def test_dense_delta_payload_applies(model, data, dtype):
    tuned = finetune(model, *data, TrainConfig(epochs=2))
    records = full_finetune.delta_records(weight_deltas(model, tuned), dtype)
    payload, length = encode_payload(records)
    rebuilt = updated_model(model, model_file(model.state_dict()), payload, length)
    error = (predict(rebuilt, data[0]) - predict(tuned, data[0])).abs().max()
    assert error < (1e-5 if dtype == "f32" else 0.5)  # base + (tuned - base) rounds once in float32


def test_patch_from_round_trips_the_fine_tuned_file(model, data):
    tuned = finetune(model, *data, TrainConfig(epochs=1))
    base_file, target_file = model_file(model.state_dict()), model_file(tuned.state_dict())
    data_patch = patch.make_patch(base_file, target_file)
    assert patch.apply_patch(base_file, data_patch) == target_file
    assert torch.equal(predict(load_file(model, target_file), data[0]), predict(tuned, data[0]))
