"""What a record costs besides its codes, in payload formats 1 and 2, on a 53-layer MobileNetV2.

A BN-folded MobileNetV2 (width 0.5, 53 factorisable layers) is trained on scikit-learn's digits
(upsampled to 32×32); updates are then trained on the device arithmetic at rank 1, rank 8 and budgets
of 1, 2 and 4 KB, seeded (rankcast's form) and U·V (the paper's). The same records are encoded in
both formats. A record's overhead is the payload's bytes less those of its codes alone (every factor's
and value's data, concatenated and compressed by zstd at the payload's level, without a dictionary)
and less the format's fixed cost (the bytes of a payload of no records), divided by the number of
records. Prints a table and writes OUT/record_overhead.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import zstandard
from torch import nn

from codec.model_files import read_model_slots
from codec.payload import DEFAULT_LEVEL, encode_payload
from codec.records import LowRankRecord, Record, SparseRecord
from codec.seeded import SeededSigns
from publisher.models.folding import fold_batchnorm
from publisher.training.balanced_ranks import balanced_ranks_under_budget
from publisher.training.factorised import BOTH_FACTORS, DEFAULT_FACTORS, FactorConfig, factorise, uniform_ranks
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, train
from publisher.training.reconstruct import model_file
from publisher.training.spectrum_ranks import allocate_ranks
from simulator.bench.architectures import mobilenet_v2
from simulator.bench.scenarios import scenario

SIZE = 32
RANKS = (1, 8)
BUDGETS = (1024, 2048, 4096)
#: The issue's target: at most this many bytes a record besides its codes, after zstd.
TARGET_OVERHEAD = 6.0


@dataclass(frozen=True)
class OverheadRow:
    form: str
    knob: str
    records: int
    code_bytes: int
    format1_bytes: int
    format2_bytes: int
    format1_fixed: int
    format2_fixed: int

    @property
    def format1_overhead(self) -> float:
        return (self.format1_bytes - self.code_bytes - self.format1_fixed) / self.records

    @property
    def format2_overhead(self) -> float:
        return (self.format2_bytes - self.code_bytes - self.format2_fixed) / self.records


def code_bytes(records: list[Record], level: int = DEFAULT_LEVEL) -> int:
    """The records' codes and values alone (what no format can save), compressed by zstd."""
    pieces = []
    for record in records:
        if isinstance(record, LowRankRecord):
            pieces += [factor.data for factor in (record.u, record.v) if not isinstance(factor, SeededSigns)]
        else:
            pieces += [record.gaps.data] if isinstance(record, SparseRecord) else []
            pieces.append(record.values.data)
    return len(zstandard.ZstdCompressor(level=level).compress(b"".join(pieces)))


def measure_row(form: str, knob: str, records: list[Record], base_file: bytes) -> OverheadRow:
    """One update's records in both formats."""
    layout = read_model_slots(memoryview(base_file))
    return OverheadRow(form, knob, len(records), code_bytes(records), len(encode_payload(records)[0]),
                       len(encode_payload(records, layout=layout)[0]), len(encode_payload([])[0]),
                       len(encode_payload([], layout=layout)[0]))


def digits_at(size: int, name: str = "refine") -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The refine scenario's base and update data, images upsampled to ``size`` × ``size``."""
    data = scenario(name)

    def grown(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)

    return (grown(data.base.x), data.base.y), (grown(data.update.x), data.update.y)


def run_record_overhead(epochs: int, examples: int, out: Path) -> int:
    """`rankcast bench records`: print the overhead table and write OUT/record_overhead.json. Updates train
    ``epochs`` on the first ``examples`` of the update data (the codes' statistics, not accuracy, matter)."""
    torch.manual_seed(0)
    (base_x, base_y), (update_x, update_y) = digits_at(SIZE)
    update_x, update_y = update_x[:examples], update_y[:examples]
    base = mobilenet_v2()
    print(f"training the MobileNetV2 base on {len(base_y)} digits ({epochs} epochs) ...", flush=True)
    train(base, base.parameters(), base_x, base_y, TrainConfig(epochs=epochs, lr=3e-3))
    base = fold_batchnorm(base.eval())
    base_file = model_file(base.state_dict())
    warm = weight_deltas(base, finetune(base, update_x, update_y, TrainConfig(epochs=1, lr=1e-3)))
    forms = {"seeded": DEFAULT_FACTORS, "U·V": BOTH_FACTORS}
    rows = []
    for form, factors in forms.items():
        plans = {f"rank {rank}": uniform_ranks(base, rank) for rank in RANKS}
        for budget in BUDGETS:
            planner = balanced_ranks_under_budget if factors.seeded else _spectrum(warm)
            plans[f"{budget // 1024} KB"] = planner(base, budget, config=factors)
        for knob, ranks in plans.items():
            print(f"  training {form} at {knob} ...", flush=True)
            delta_set = factorise(base, ranks, factors)
            fit(delta_set, update_x, update_y, TrainConfig(epochs=epochs, lr=3e-2 if factors.seeded else 1e-2))
            rows.append(measure_row(form, knob, delta_set.records(), base_file))
    print(format_table(rows, len(read_model_slots(memoryview(base_file)))))
    out.mkdir(parents=True, exist_ok=True)
    report = [asdict(row) | {"format1_overhead": row.format1_overhead, "format2_overhead": row.format2_overhead}
              for row in rows]
    summary = {"epochs": epochs, "examples": len(update_y), "rows": report}
    (out / "record_overhead.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'record_overhead.json'}")
    return 0


def _spectrum(warm: dict[str, torch.Tensor]):  # noqa: ANN202 - a planner like balanced_ranks_under_budget
    def planner(model: nn.Module, budget: int, config: FactorConfig) -> dict[str, int]:
        return allocate_ranks(model, warm, budget, config)

    return planner


def format_table(rows: list[OverheadRow], tensors: int) -> str:
    fixed = f"{rows[0].format1_fixed} and {rows[0].format2_fixed} B" if rows else "-"
    lines = [f"MobileNetV2 ({tensors} tensors): bytes a record costs besides its codes, after zstd "
             f"(target: at most {TARGET_OVERHEAD:g}); a payload of no records takes {fixed} (formats 1, 2)",
             f"  {'form':7} {'update':7} {'records':>7} {'codes':>7} {'format 1':>9} {'format 2':>9} "
             f"{'f1/record':>9} {'f2/record':>9}"]
    for row in rows:
        lines.append(f"  {row.form:7} {row.knob:7} {row.records:>7} {row.code_bytes:>7,} {row.format1_bytes:>9,} "
                     f"{row.format2_bytes:>9,} {row.format1_overhead:>9.1f} {row.format2_overhead:>9.1f}")
    return "\n".join(lines)
