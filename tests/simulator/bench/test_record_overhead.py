"""`rankcast bench records`: the overhead a record costs besides its codes, as the bench measures it."""

from __future__ import annotations

import torch

from codec.model_files import read_model_slots
from codec.payload import decode_payload, encode_payload
from publisher.training.factorised import DEFAULT_FACTORS, factorise, uniform_ranks
from publisher.training.reconstruct import model_file
from simulator.bench.record_overhead import code_bytes, format_table, measure_row


def _deep_model() -> torch.nn.Module:
    layers = [module for _ in range(30) for module in (torch.nn.Linear(16, 16), torch.nn.ReLU())]
    return torch.nn.Sequential(*layers)


def test_format_2_costs_under_half_the_bytes_a_record_of_format_1():
    model = _deep_model()
    delta_set = factorise(model, uniform_ranks(model, 1), DEFAULT_FACTORS)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for delta in delta_set.deltas.values():
            for parameter in delta.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    records = delta_set.records()
    base_file = model_file(model.state_dict())
    row = measure_row("seeded", "rank 1", records, base_file)
    assert row.records == 30 and 0 < row.code_bytes < row.format2_bytes < row.format1_bytes
    assert row.format2_overhead < min(6, row.format1_overhead / 2)
    layout = read_model_slots(memoryview(base_file))
    assert row.format2_bytes == len(encode_payload(records, layout=layout)[0])
    assert decode_payload(*encode_payload(records, layout=layout), layout=layout) == records
    table = format_table([row], len(layout))
    assert "60 tensors" in table and f"{row.format2_overhead:.1f}" in table
    assert code_bytes(records) == row.code_bytes
