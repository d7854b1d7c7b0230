"""A validation split carved from the training data: what accuracy-targeted updates are chosen on."""

from __future__ import annotations

import torch

from publisher.errors import DataError
from publisher.training.loop import check_data

#: The share of each class's training examples held out to choose an update on.
VALIDATION_FRACTION = 0.2
#: Fewer validation examples than this say too little about accuracy to choose an update on.
MIN_VALIDATION_EXAMPLES = 20

Data = tuple[torch.Tensor, torch.Tensor]


def validation_split(x: torch.Tensor, y: torch.Tensor, fraction: float = VALIDATION_FRACTION,
                     seed: int = 0) -> tuple[Data, Data]:
    """(fit, validation): ``fraction`` of every class's examples, drawn with ``seed``, held out; a class
    of one example stays in the fit part. The same data and seed always give the same split."""
    check_data(x, y)
    if not 0 < fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(y), dtype=torch.bool)
    for label in torch.unique(y):
        members = torch.nonzero(y == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = min(len(members) - 1, round(fraction * len(members)))
        held[members[:count]] = True
    if int(held.sum()) < MIN_VALIDATION_EXAMPLES:
        raise DataError(f"a {fraction:.0%} validation split of {len(y)} training examples holds {int(held.sum())}, "
                        f"fewer than {MIN_VALIDATION_EXAMPLES}: give more training data, or choose the size "
                        "yourself with --rank or --budget")
    return (x[~held], y[~held]), (x[held], y[held])
