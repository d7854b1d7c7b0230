"""Accuracy-targeted updates on sklearn's digits: the validation split, the search and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from codec.apply import apply_to_bytes
from publisher.errors import DataError, TargetError
from publisher.training.factorised import DEFAULT_FACTORS
from publisher.training.finetune import finetune
from publisher.training.loop import TrainConfig, accuracy
from publisher.training.reconstruct import load_file, model_file
from publisher.training.targeted import REFERENCE_LRS, Target, build_targeted
from publisher.training.validation import validation_split


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A 64-32-10 MLP trained on 200 digits (the deployed model), 1,000 digits to update on, the rest to evaluate."""
    data = load_digits()
    x = torch.from_numpy((data.data / 16).astype(np.float32))
    y = torch.from_numpy(data.target.astype(np.int64))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    deployed = finetune(model, x[:200], y[:200], TrainConfig(epochs=5, lr=1e-2))
    return deployed, (x[200:1200], y[200:1200]), (x[1200:], y[1200:])


class _Log:
    """A Progress that keeps what it hears."""

    def __init__(self) -> None:
        self.stages: list[str] = []
        self.notes: list[str] = []

    def stage(self, what: str, epochs: int, examples: int) -> None:
        self.stages.append(what)

    def epoch(self, epoch: int, loss: float) -> None:
        pass

    def note(self, line: str) -> None:
        self.notes.append(line)


def test_the_validation_split_is_stratified_disjoint_and_repeatable():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20 + [3])
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    (fit_x, fit_y), (val_x, val_y) = validation_split(x, y, 0.2)
    assert torch.bincount(val_y, minlength=4).tolist() == [10, 6, 4, 0]  # a class of one stays to train on
    assert sorted(torch.cat([fit_x, val_x]).flatten().tolist()) == x.flatten().tolist()
    assert torch.equal(validation_split(x, y, 0.2)[1][0], val_x)
    assert not torch.equal(validation_split(x, y, 0.2, seed=1)[1][0], val_x)


def test_a_split_too_small_to_choose_on_is_refused():
    y = torch.arange(40) % 4
    with pytest.raises(DataError, match="holds 8, fewer than 20.*--rank or --budget"):
        validation_split(torch.zeros(40, 3), y, 0.2)


def test_the_chosen_update_is_the_smallest_tried_that_reaches_the_reference_less_the_tolerance(digits):
    model, train_data, eval_data = digits
    log = _Log()
    search = build_targeted(model, train_data, eval_data, DEFAULT_FACTORS, Target(within=3.0, refit=False), epochs=8,
                            progress=log)
    assert not search.refit
    fit_data, validation = validation_split(*train_data)
    references = [accuracy(finetune(model, *fit_data, TrainConfig(epochs=8, lr=lr)), *validation)
                  for lr in REFERENCE_LRS]
    assert search.reference.accuracy == max(references)
    assert search.goal == pytest.approx(max(references) - 0.03)
    reaching = [a for a in search.attempts if a.bound >= search.goal - 1e-9]
    assert search.chosen.bound >= search.goal - 1e-9 and search.chosen.accuracy > search.chosen.bound
    assert search.chosen.bytes == min(a.bytes for a in reaching) == len(search.built.payload)
    assert any(a.bound < search.goal for a in search.attempts)  # the search began below the target
    # the accuracy the search compared is the one of the model a device rebuilds from the payload
    base_file = model_file(model.state_dict())
    rebuilt, _ = apply_to_bytes(base_file, search.built.payload, search.built.decompressed_length)
    assert accuracy(load_file(model, rebuilt), *validation) == search.chosen.accuracy
    assert search.built.accuracy_after == accuracy(load_file(model, rebuilt), *eval_data)
    assert search.validation_examples == len(validation[1])
    assert any(note.startswith("chosen: the") for note in log.notes)
    assert sum(stage.startswith("reference") for stage in log.stages) == len(REFERENCE_LRS)


def test_the_refit_trains_the_chosen_ranks_again_on_all_the_training_data(digits):
    model, train_data, eval_data = digits
    log = _Log()
    search = build_targeted(model, train_data, eval_data, DEFAULT_FACTORS, Target(within=3.0), epochs=8,
                            progress=log)
    measured = build_targeted(model, train_data, eval_data, DEFAULT_FACTORS, Target(within=3.0, refit=False),
                              epochs=8)
    assert search.refit and search.chosen == measured.chosen  # the same search chose the same candidate
    assert search.built.ranks == measured.built.ranks
    assert search.built.payload != measured.built.payload  # trained on the split's examples as well
    assert len(search.built.payload) <= int(0.1 * search.built.full_model_bytes)
    assert any("again on all the training data (the refit)" in stage for stage in log.stages)
    assert any(note.startswith(f"refit on all {len(train_data[1]):,} training examples") for note in log.notes)
    # the reference reported beside it had all the training data too
    reference = finetune(model, *train_data, TrainConfig(epochs=8, lr=search.reference.lr))
    assert search.reference.eval_accuracy == accuracy(reference, *eval_data)
    assert search.reference.accuracy == measured.reference.accuracy  # the target still comes from the split


def test_a_given_target_accuracy_trains_no_reference_and_only_the_forms_asked(digits):
    model, train_data, eval_data = digits
    log = _Log()
    search = build_targeted(model, train_data, eval_data, DEFAULT_FACTORS, Target(accuracy=0.88, forms=(False,)),
                            epochs=6, progress=log)
    assert search.reference is None and search.goal == 0.88
    assert search.chosen.bound >= 0.88
    assert {attempt.seeded for attempt in search.attempts} == {False}
    assert not any(stage.startswith("reference") for stage in log.stages)


def test_an_unreachable_target_is_refused_with_the_closest_update_and_what_to_change(digits):
    model, train_data, eval_data = digits
    with pytest.raises(TargetError) as refused:
        build_targeted(model, train_data, eval_data, DEFAULT_FACTORS, Target(accuracy=1.0, max_bytes=300), epochs=2)
    message = str(refused.value)
    assert refused.value.code == "target-not-reached"
    assert "no update of at most 300 bytes reached the target 100.0%" in message
    assert "the closest" in message and "--max-bytes" in message and "--rank or --budget" in message
