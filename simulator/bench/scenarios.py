"""The benchmark's update scenarios, built the same way on every data set (simulator.bench.datasets).

Each data set is split once into a training split and a held-out test split that no training or
selection ever sees.

- ``refine``: the base model saw a stratified share of the training split (20%; 10% of MNIST's larger
  one); the update trains on all of it.
- ``drift``: the base model saw clean inputs; the update and the test see them shifted (one pixel right
  and down on 8×8 digits, two on 14×14 MNIST, three samples on MNIST-1D), with compressed contrast and
  noise (a camera that moved and aged; a sensor that drifted).
- ``newtask``: the base model saw classes 0-4 only; the update must recognise all ten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simulator.bench.datasets import SPLIT_SEED, Split, load

SCENARIOS = ("refine", "drift", "newtask")
#: The share of the training split the refine scenario's base model saw, per data set.
REFINE_SHARE = {"digits": 0.2, "mnist": 0.1, "mnist1d": 0.2}
#: How far the drift scenario shifts the inputs, per data set (pixels, or samples of a signal).
DRIFT_SHIFT = {"digits": 1, "mnist": 2, "mnist1d": 3}


@dataclass(frozen=True)
class Scenario:
    """Data for the base model, for the update, and the held-out test of the updated model."""

    name: str
    base: Split
    update: Split
    test: Split


def scenario(name: str, dataset: str = "digits") -> Scenario:
    """One of SCENARIOS on one data set, deterministic."""
    train, test = load(dataset)
    if name == "refine":
        keep = _stratified_subset(train.y.numpy(), REFINE_SHARE[dataset])
        return Scenario(name, Split(train.x[keep], train.y[keep]), train, test)
    if name == "drift":
        shift = DRIFT_SHIFT[dataset]
        return Scenario(name, train, Split(drifted(train.x, shift, seed=1), train.y),
                        Split(drifted(test.x, shift, seed=2), test.y))
    if name == "newtask":
        old = train.y < 5
        return Scenario(name, Split(train.x[old], train.y[old]), train, test)
    raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")


def drifted(x: torch.Tensor, shift: int = 1, seed: int = 0) -> torch.Tensor:
    """Images (n, c, h, w) in [0, 1]: shifted ``shift`` pixels right and down, contrast compressed to
    [0.2, 0.8], Gaussian noise of σ 0.1, clipped to [0, 1]. Signals (height 1, standardised): shifted
    ``shift`` samples right, scaled by 0.6 and offset by 0.2, the same noise, not clipped."""
    signal = x.shape[-2] == 1
    shifted = torch.zeros_like(x)
    if signal:
        shifted[..., shift:] = x[..., :-shift]
    else:
        shifted[..., shift:, shift:] = x[..., :-shift, :-shift]
    moved = 0.2 + 0.6 * shifted + torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * 0.1
    return moved if signal else moved.clamp(0, 1)


def _stratified_subset(y: np.ndarray, fraction: float) -> torch.Tensor:
    rng = np.random.default_rng(SPLIT_SEED)
    keep = [
        rng.choice(np.flatnonzero(y == label), round(fraction * (y == label).sum()), replace=False)
        for label in np.unique(y)
    ]
    return torch.from_numpy(np.sort(np.concatenate(keep)))
