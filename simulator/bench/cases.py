"""The benchmark's cases: a scenario on a data set with a model, the schedule it trains on, and what part
it took in choosing rankcast's rules.

rankcast's rules (code width, step, damping, the balance exponent, WIDEST_MIN_RANK, the factors' and the
search's learning rates, the default's search) were chosen on validation splits of the six digits cases:
those are marked ``tuned``. The MNIST ResNet-8 cases are ``informed``: a full fine-tune collapsing there
at lr 1e-2 is why the reference's learning-rate search starts at 1e-3; nothing else was chosen on them.
The MNIST-1D cases are ``held out``: they took no part in any choice, and must not.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.bench.scenarios import SCENARIOS

ROLES = {
    "tuned": "rankcast's rules were chosen on its validation split",
    "informed": "it showed why the reference's learning-rate search starts at 1e-3; nothing else was chosen on it",
    "held out": "it took no part in any choice",
}


@dataclass(frozen=True)
class Schedule:
    """Epochs of the base model and of every update, and training seeds per trained point."""

    epochs: int
    base_epochs: int
    seeds: int = 1


@dataclass(frozen=True)
class Case:
    scenario: str
    dataset: str
    model: str
    role: str

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.scenario}/{self.model}"


CASES = (
    *(Case(name, "digits", model, "tuned") for name in SCENARIOS for model in ("mlp", "cnn")),
    *(Case(name, "mnist", "resnet8", "informed") for name in SCENARIOS),
    *(Case(name, "mnist1d", "cnn1d", "held out") for name in SCENARIOS),
)


def select(names: str | None) -> list[Case]:
    """The cases whose data set (``mnist``), model (``resnet8``), scenario (``drift``) or label
    (``mnist/drift/resnet8``) is in the comma-separated ``names``; every case when None."""
    if names is None:
        return list(CASES)
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    known = {field for case in CASES for field in (case.dataset, case.scenario, case.model, case.label)}
    if unknown := sorted(wanted - known):
        raise ValueError(f"unknown bench case {', '.join(unknown)}; name a data set, scenario, model or "
                         f"DATASET/SCENARIO/MODEL ({', '.join(c.label for c in CASES)})")
    return [case for case in CASES if wanted & {case.dataset, case.scenario, case.model, case.label}]
