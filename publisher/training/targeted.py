"""Accuracy-targeted updates: the smallest update that comes within a tolerance of a full fine-tune.

What `rankcast update build` does unless told a rank or a budget. A validation split is carved from the
training data (publisher.training.validation); the reference is a full fine-tune of the deployed model
on the rest, at the best of a short learning-rate search, measured on that split (or a target accuracy
the caller gives). Budgets then double from FIRST_BUDGET, each tried in the seeded form and, while that
misses, in the paper's U·V form, until an update reaches the target; REFINE_STEPS bisections between
the last miss and the first hit look for a smaller one. A candidate reaches the goal when its accuracy
less one standard error does (publisher.training.confidence): the first lucky candidate on a small split
does not win. Every accuracy the search compares is that of the model a device rebuilds (the delta set
trains on the device arithmetic), on examples it never trained on. The chosen ranks are then trained
again on all the training data (the refit: the candidates had four fifths of it, the split being held
out), and that is the update returned; without the refit it is the candidate as measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from codec.compact import Layout
from publisher.errors import BudgetError, ConfigError, TargetError
from publisher.models.folding import fold_batchnorm
from publisher.training.confidence import accuracy_bound, correct, share
from publisher.training.factorised import FactorConfig
from publisher.training.finetune import finetune, weight_deltas
from publisher.training.loop import Progress, TrainConfig, accuracy, epoch_callback
from publisher.training.reconstruct import load_file, model_file
from publisher.training.update import (
    DEFAULT_LR,
    BuiltUpdate,
    Trained,
    file_layout,
    finish_update,
    full_model_bytes,
    rank_planner,
    train_at_ranks,
    train_under_budget,
    warm_up_deltas,
)
from publisher.training.validation import VALIDATION_FRACTION, Data, validation_split

#: Points of validation accuracy an update may lose against the reference by default.
DEFAULT_WITHIN = 1.0
#: Adam rates of the reference fine-tune's search; the digits models preferred 1e-2, a BN-folded
#: ResNet-8 on MNIST collapsed there and wanted 1e-3 (docs/method.md).
REFERENCE_LRS = (1e-3, 3e-3, 1e-2)
#: Adam rates of the factors by form (seeded, U·V), each the best of three on the digits models' validation splits.
FORM_LRS = {True: DEFAULT_LR, False: 1e-2}
#: The first budget tried; each next one is twice the last.
FIRST_BUDGET = 128
#: Bisections between the last budget that missed and the first that reached the target.
REFINE_STEPS = 2
#: By default the search stops at this share of the full model's release: past it an update saves
#: little over sending the model itself.
DEFAULT_MAX_SHARE = 0.1


@dataclass(frozen=True)
class Target:
    """What the update must reach: ``within`` points of the reference, or ``accuracy`` itself (then no
    reference is trained), in at most ``max_bytes`` (default DEFAULT_MAX_SHARE of the full model), trying
    the forms in ``forms`` (True: seeded, False: U·V) in that order; ``refit`` trains the chosen ranks
    again on all the training data."""

    within: float = DEFAULT_WITHIN
    accuracy: float | None = None
    max_bytes: int | None = None
    forms: tuple[bool, ...] = (True, False)
    validation_fraction: float = VALIDATION_FRACTION
    refit: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.within < 100:
            raise ConfigError(f"--within takes points of accuracy from 0 to 100, got {self.within}")
        if self.accuracy is not None and not 0 < self.accuracy <= 1:
            raise ConfigError(f"a target accuracy is a fraction in (0, 1], got {self.accuracy} (0.95 for 95%)")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ConfigError(f"--max-bytes must be positive, got {self.max_bytes}")
        if not self.forms:
            raise ConfigError("the search needs at least one form of update to try")


@dataclass(frozen=True)
class Reference:
    """The full fine-tune the target comes from: its validation accuracy, learning rate, which validation
    examples it gets right, and its accuracy on the evaluation data (trained again on all the training
    data when the update is refit, so both had the same examples)."""

    accuracy: float
    lr: float
    correct: torch.Tensor = field(repr=False, compare=False)
    eval_accuracy: float = 0.0


@dataclass(frozen=True)
class Attempt:
    """One trained candidate: its form, the budget it was planned for, its bytes, validation accuracy and
    that accuracy's lower confidence bound (what is compared with the goal)."""

    seeded: bool
    budget: int
    bytes: int
    accuracy: float
    bound: float

    @property
    def form(self) -> str:
        return form_name(self.seeded)


@dataclass(frozen=True)
class TargetedUpdate:
    """The chosen update, the goal it reached, how it was found, and whether ``built`` is its refit on all
    the training data (else the candidate measured)."""

    built: BuiltUpdate
    goal: float
    reference: Reference | None
    chosen: Attempt
    attempts: tuple[Attempt, ...]
    validation_examples: int
    refit: bool


def build_targeted(
    model: nn.Module,
    train_data: Data,
    eval_data: Data,
    factors: FactorConfig,
    target: Target,
    epochs: int = 20,
    lr: float | None = None,
    base_file: bytes | None = None,
    progress: Progress | None = None,
) -> TargetedUpdate:
    """The smallest update found that reaches ``target`` on a validation split of ``train_data``, measured
    on ``eval_data`` as well; TargetError when none within the byte limit does. ``factors`` gives codes and
    small tensors (its ``seeded`` is each form's); ``lr`` overrides every form's rate."""
    model = fold_batchnorm(model)
    base_file = model_file(model.state_dict()) if base_file is None else base_file
    deployed = load_file(model, base_file)
    fit_data, validation = validation_split(*train_data, target.validation_fraction)
    limit = target.max_bytes or max(FIRST_BUDGET, int(DEFAULT_MAX_SHARE * full_model_bytes(base_file)))
    _note(progress, f"validation split: {len(validation[1]):,} of {len(train_data[1]):,} training examples "
                    f"(one is {100 / len(validation[1]):.2g} points), the other {len(fit_data[1]):,} train")
    reference, tuned = None, None
    if target.accuracy is None:
        reference, tuned = _reference(deployed, fit_data, validation, eval_data, epochs, progress)
        goal = reference.accuracy - target.within / 100
        _note(progress, f"target: {goal:.1%} = the full fine-tune's {reference.accuracy:.1%} "
                        f"(lr {reference.lr:g}) - {points_text(target.within)}")
    else:
        goal = target.accuracy
    deltas = None
    if False in target.forms:  # the U·V form's ranks come from a fine-tune's spectrum
        deltas = (weight_deltas(deployed, tuned) if tuned is not None
                  else warm_up_deltas(deployed, fit_data, epochs, REFERENCE_LRS[0], progress))
    search = _Search(deployed, file_layout(base_file), fit_data, validation, factors, epochs, lr, goal, progress,
                     None if reference is None else reference.correct, deltas)
    chosen = search.smallest(target.forms, limit)
    if chosen is None:
        raise TargetError(_missed(search.attempts, goal, limit, reference, target, len(validation[1])))
    _note(progress, f"chosen: the {chosen.form} update of {chosen.bytes:,} bytes, {chosen.accuracy:.1%} on the "
                    f"validation split, at least {chosen.bound:.1%} ({len(search.attempts)} trainings tried)")
    shipped = search.trained[chosen]
    if target.refit:
        shipped = search.refit(chosen, train_data, limit) or shipped
        if reference is not None:
            reference = _refit_reference(deployed, reference, train_data, eval_data, epochs, progress)
    return TargetedUpdate(
        built=finish_update(model, base_file, shipped, eval_data), goal=goal, reference=reference,
        chosen=chosen, attempts=tuple(search.attempts), validation_examples=len(validation[1]),
        refit=shipped is not search.trained[chosen],
    )


@dataclass
class _Search:
    """Candidates trained on the fit part and measured on the validation split, keyed by their attempt."""

    deployed: nn.Module
    layout: Layout
    fit_data: Data
    validation: Data
    factors: FactorConfig
    epochs: int
    lr: float | None
    goal: float
    progress: Progress | None
    reference: torch.Tensor | None
    deltas: dict[str, torch.Tensor] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    trained: dict[Attempt, Trained] = field(default_factory=dict)
    planned: dict[tuple[bool, tuple[tuple[str, int], ...]], Attempt] = field(default_factory=dict)

    def smallest(self, forms: tuple[bool, ...], limit: int) -> Attempt | None:
        """The smallest update found that reaches the goal within ``limit`` bytes, or None."""
        missed, budget = 0, min(FIRST_BUDGET, limit)
        while (hit := self._first_hit(budget, forms)) is None:
            if budget >= limit:
                return None
            missed, budget = budget, min(2 * budget, limit)
        for _ in range(REFINE_STEPS if missed else 0):
            middle = round(math.sqrt(missed * hit.budget))
            if hit.budget - middle < max(16, hit.budget // 16):
                break  # too close to the last miss to buy anything
            found = self._first_hit(middle, forms)
            if found is None:
                missed = middle
            elif found.bytes <= hit.bytes:
                hit = found
        return hit

    def refit(self, chosen: Attempt, train_data: Data, limit: int) -> Trained | None:
        """``chosen``'s ranks trained on all of ``train_data``; None (with a note) when the refit's codes
        compress past ``limit``."""
        factors, config = self._training(chosen.seeded)
        trained = train_at_ranks(self.deployed, train_data, self.trained[chosen].ranks, factors, config,
                                 self.progress, " again on all the training data (the refit)", self.layout)
        if len(trained.payload) > limit:
            _note(self.progress, f"the refit took {len(trained.payload):,} bytes, past the limit of {limit:,}: "
                                 f"the candidate as measured ships")
            return None
        _note(self.progress, f"refit on all {len(train_data[1]):,} training examples: {len(trained.payload):,} bytes")
        return trained

    def _training(self, seeded: bool) -> tuple[FactorConfig, TrainConfig]:
        """The factors and training of one form: its rate unless the caller gave one."""
        return (replace(self.factors, seeded=seeded),
                TrainConfig(epochs=self.epochs, lr=self.lr or FORM_LRS[seeded]))

    def _first_hit(self, budget: int, forms: tuple[bool, ...]) -> Attempt | None:
        """Train each form under ``budget`` in turn until one reaches the goal."""
        for seeded in forms:
            attempt = self._attempt(budget, seeded)
            if attempt is not None and self._reaches(attempt):
                return attempt
        return None

    def _reaches(self, attempt: Attempt) -> bool:
        return attempt.bound >= self.goal - 1e-9  # a float rounding below an exact count is not a miss

    def _attempt(self, budget: int, seeded: bool) -> Attempt | None:
        """One candidate trained and measured; None when no update of this form fits the budget."""
        factors, config = self._training(seeded)
        try:
            planner = rank_planner(self.deployed, factors, self.deltas)
            plan = (seeded, tuple(planner(budget).items()))
            if plan in self.planned:  # training is deterministic: the same plan trains the same update
                _note(self.progress, f"{budget:,} B, {form_name(seeded)}: the ranks of the "
                                     f"{self.planned[plan].budget:,} B candidate")
                return self.planned[plan]
            trained = train_under_budget(self.deployed, self.fit_data, budget, planner, factors, config,
                                         self.progress, self.layout)
        except BudgetError as exc:
            _note(self.progress, f"{budget:,} B, {form_name(seeded)}: {exc}")
            return None
        right = correct(trained.delta_set.model, *self.validation)
        attempt = Attempt(seeded, budget, len(trained.payload), share(right),
                          accuracy_bound(right, self.reference))
        self.attempts.append(attempt)
        self.trained[attempt] = trained
        self.planned[plan] = attempt
        verdict = "reaches" if self._reaches(attempt) else "misses"
        _note(self.progress, f"{budget:,} B, {attempt.form}: {attempt.bytes:,} bytes, {attempt.accuracy:.1%} on the "
                             f"validation split, at least {attempt.bound:.1%}: {verdict} {self.goal:.1%}")
        return attempt


def _reference(deployed: nn.Module, fit_data: Data, validation: Data, eval_data: Data, epochs: int,
               progress: Progress | None) -> tuple[Reference, nn.Module]:
    """The best full fine-tune of REFERENCE_LRS on the validation split, and the fine-tuned model."""
    found = []
    for lr in REFERENCE_LRS:
        if progress is not None:
            progress.stage(f"reference: a full fine-tune at lr {lr:g}", epochs, len(fit_data[1]))
        tuned = finetune(deployed, *fit_data, TrainConfig(epochs=epochs, lr=lr), epoch_callback(progress))
        right = correct(tuned, *validation)
        found.append((Reference(share(right), lr, right), tuned))
        _note(progress, f"full fine-tune at lr {lr:g}: {found[-1][0].accuracy:.1%} on the validation split")
    best, tuned = max(found, key=lambda pair: pair[0].accuracy)  # the first best: the smallest rate
    return replace(best, eval_accuracy=accuracy(tuned, *eval_data)), tuned


def _refit_reference(deployed: nn.Module, reference: Reference, train_data: Data, eval_data: Data, epochs: int,
                     progress: Progress | None) -> Reference:
    """``reference`` with the evaluation accuracy of a full fine-tune at its rate on all of ``train_data``."""
    if progress is not None:
        progress.stage(f"reference again on all the training data, at lr {reference.lr:g}", epochs,
                       len(train_data[1]))
    tuned = finetune(deployed, *train_data, TrainConfig(epochs=epochs, lr=reference.lr), epoch_callback(progress))
    return replace(reference, eval_accuracy=accuracy(tuned, *eval_data))


def _missed(attempts: list[Attempt], goal: float, limit: int, reference: Reference | None, target: Target,
            examples: int) -> str:
    """Why no update was chosen, and what to change, in one line."""
    goal_text = (f"{goal:.1%} (the full fine-tune's {reference.accuracy:.1%} - {points_text(target.within)})"
                 if reference is not None else f"the target {goal:.1%}")
    closest = max(attempts, key=lambda attempt: attempt.bound, default=None)
    best = "" if closest is None else (f"; the closest, {closest.accuracy:.1%} (at least {closest.bound:.1%}), took "
                                       f"{closest.bytes:,} bytes ({closest.form})")
    widen = "widen --within" if reference is not None else "lower --target-accuracy"
    if closest is not None and closest.accuracy - closest.bound >= target.within / 200:
        error = 100 * (closest.accuracy - closest.bound)
        best += f"; on {examples:,} validation examples one standard error is {error:.2g} points, more data narrows it"
    return (f"no update of at most {limit:,} bytes reached {goal_text} on the validation split{best}: raise "
            f"--max-bytes, {widen}, or choose the size yourself with --rank or --budget")


def form_name(seeded: bool) -> str:
    """How the search names a form: ``seeded`` or ``U·V``."""
    return "seeded" if seeded else "U·V"


def points_text(points: float) -> str:
    """1 as ``1 point``, 2.5 as ``2.5 points`` (rounded past float noise)."""
    points = round(points, 6)
    return f"{points:g} point{'' if points == 1 else 's'}"


def _note(progress: Progress | None, line: str) -> None:
    if progress is not None:
        progress.note(line)
