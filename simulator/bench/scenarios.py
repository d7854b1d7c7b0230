"""The benchmark's data and models: three update scenarios on scikit-learn's digits, an MLP and a CNN.

Digits (1,797 8×8 images shipped inside scikit-learn, no download) are split once with a fixed seed
into a training split and a held-out test split that no training or selection ever sees.

- ``refine``: the base model saw 20% of the training split; the update trains on all of it.
- ``drift``: the base model saw clean digits; the update and the test see digits shifted by one
  pixel right and down, contrast-compressed and noisy (a camera that moved and aged).
- ``newtask``: the base model saw digits 0-4 only; the update must recognise all ten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SCENARIOS = ("refine", "drift", "newtask")
MODELS = ("mlp", "cnn")
TEST_FRACTION = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Scenario:
    """Data for the base model, for the update, and the held-out test of the updated model."""

    name: str
    base: Split
    update: Split
    test: Split


def digits() -> tuple[Split, Split]:
    """(train, test): images as float32 in [0, 1] of shape (n, 1, 8, 8), stratified fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=data.target
    )
    return _split(x_train, y_train), _split(x_test, y_test)


def scenario(name: str) -> Scenario:
    """One of SCENARIOS, deterministic."""
    train, test = digits()
    if name == "refine":
        keep = _stratified_subset(train.y.numpy(), 0.2)
        return Scenario(name, Split(train.x[keep], train.y[keep]), train, test)
    if name == "drift":
        return Scenario(name, train, Split(drifted(train.x, seed=1), train.y), Split(drifted(test.x, seed=2), test.y))
    if name == "newtask":
        old = train.y < 5
        return Scenario(name, Split(train.x[old], train.y[old]), train, test)
    raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")


def drifted(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Shift one pixel right and down, compress contrast to [0.2, 0.8], add Gaussian noise (σ 0.1)."""
    shifted = torch.zeros_like(x)
    shifted[..., 1:, 1:] = x[..., :-1, :-1]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)) * 0.1
    return (0.2 + 0.6 * shifted + noise).clamp(0, 1)


def mlp() -> nn.Module:
    """64-256-256-10 with ReLU."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def cnn() -> nn.Module:
    """Digits upsampled to 16×16; two 3×3 conv blocks (16, 32 channels) with pooling, then 512-128-10."""
    return nn.Sequential(
        nn.Upsample(size=(16, 16), mode="bilinear", align_corners=False),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A freshly initialised model of MODELS, with a fixed seed (the global RNG is left as it was)."""
    factories = {"mlp": mlp, "cnn": cnn}
    if name not in factories:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factories[name]()


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y).long())


def _stratified_subset(y: np.ndarray, fraction: float) -> torch.Tensor:
    rng = np.random.default_rng(SPLIT_SEED)
    keep = [
        rng.choice(np.flatnonzero(y == label), round(fraction * (y == label).sum()), replace=False)
        for label in np.unique(y)
    ]
    return torch.from_numpy(np.sort(np.concatenate(keep)))
