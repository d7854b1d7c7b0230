"""(a) and (b): the updates a full fine-tune makes, the whole model and the dense delta.

(a) the full model is one codec ``full`` record holding the fine-tuned RCW file; (b) the delta
``W_ft - W_base`` is a dense ``add`` record per tensor, as f32 or as codes (one scale per row). The
fine-tune itself is publisher.training.finetune's, the reference every method is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from codec.quantise import dense_record, full_record
from codec.records import Record
from publisher.training.reconstruct import model_file

DELTA_DTYPES = ("f32", "i16", "i8", "i4")


def full_model_records(tuned: nn.Module) -> list[Record]:
    """(a) The fine-tuned model file as one ``full`` record."""
    return [full_record(model_file(tuned.state_dict()))]


def delta_records(deltas: Mapping[str, torch.Tensor], dtype: str) -> list[Record]:
    """(b) One dense ``add`` record per changed tensor; codes use a bfloat16 scale per row (per tensor
    for 1-D), as trained records do."""
    if dtype not in DELTA_DTYPES:
        raise ValueError(f"delta dtype must be one of {DELTA_DTYPES}")
    return [
        dense_record(name, delta.numpy(), "add", dtype, per_row=delta.dim() > 1 and dtype != "f32",
                     bfloat16_scales=True)
        for name, delta in deltas.items()
        if bool(delta.any())
    ]
