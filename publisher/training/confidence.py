"""How sure a validation split is of an accuracy: a lower confidence bound, paired with a reference when
there is one.

A size search compares many candidates on one split and keeps the first that reaches the goal, so a
candidate that is lucky on those examples wins. The search therefore compares a bound, not the
accuracy itself: the accuracy less CONFIDENCE_Z standard errors. Against a reference the error is that
of the paired difference (only the examples the two disagree on count: sqrt(b + c) / n for b lost and
c won, plus one to stay cautious when they agree everywhere on a small split); against a given accuracy
it is the binomial one.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from publisher.training.loop import predict

#: Standard errors below the measured accuracy that a candidate must still reach the goal by.
CONFIDENCE_Z = 1.0


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example, whether ``model``'s arg-max class is the label."""
    return predict(model, x).argmax(dim=1) == y


def share(correct_examples: torch.Tensor) -> float:
    """The accuracy of per-example ``correct`` flags (in float64, as loop.accuracy counts)."""
    return int(correct_examples.sum()) / len(correct_examples)


def accuracy_bound(candidate: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """The candidate's accuracy (from its per-example ``correct``) less CONFIDENCE_Z standard errors: of its
    difference from ``reference`` (same examples) when given, else of the accuracy itself."""
    n = len(candidate)
    right = int(candidate.sum())
    if reference is None:
        spread = math.sqrt(right * (n - right) / n + 1)
    else:
        disagree = int((candidate != reference).sum())
        spread = math.sqrt(disagree + 1)
    return (right - CONFIDENCE_Z * spread) / n
