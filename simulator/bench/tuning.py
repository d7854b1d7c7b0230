"""The benchmark's tuning protocol: every trained method gets the same number of learning rates to try,
chosen on a validation split, never on the test split.

Per case, 20% of each class of the update data is held out (publisher.training.validation, seed 0).
The full fine-tune tries each of FINETUNE_LRS on the other 80% and keeps the best on the held-out part;
its rate also drives the tuning's own warm-up (top-k's mask, the U·V form's ranks) and BitDelta's
signs. Every other trained method then tries each of DELTA_LRS at the middle of its own sweep (one
training seed) on the same 80%, scored by the accuracy of the model a device rebuilds, on the held-out
part. Ties go to the smaller rate. Code widths are not tuned but swept: top-k and Konečný's baselines
are rows in i8 and in trit (``topk_trit``, ``konecny_trit``), each tuned on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn

from publisher.training.finetune import finetune
from publisher.training.loop import TrainConfig, accuracy
from publisher.training.validation import validation_split
from simulator.bench.cases import Schedule
from simulator.bench.datasets import Split
from simulator.bench.methods import METHODS, TRAINED, Context, Sweeps, context
from simulator.bench.scenarios import Scenario

#: Adam rates the full fine-tune tries: the digits models preferred 1e-2, a BN-folded ResNet-8 wants 1e-3.
FINETUNE_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
#: Adam rates every method that trains a delta tries (rankcast's factorised forms included).
DELTA_LRS = (3e-3, 1e-2, 3e-2, 1e-1)


@dataclass(frozen=True)
class Tuning:
    """Each trained method's chosen rate and the validation accuracy of every rate it tried."""

    lrs: dict[str, float]
    tried: dict[str, list[tuple[float, float]]]


def prepare(scenario: Scenario, base: nn.Module, schedule: Schedule, sweeps: Sweeps,
            progress: Callable[[str], None] | None = None) -> tuple[Context, Tuning]:
    """Tune every trained method on a validation split of the update data, then the bench's context on
    all of it at the chosen rates."""
    tuning = tune(scenario, base, schedule, sweeps, progress)
    return context(scenario, base, schedule, sweeps, tuning.lrs), tuning


def tune(scenario: Scenario, base: nn.Module, schedule: Schedule, sweeps: Sweeps,
         progress: Callable[[str], None] | None = None) -> Tuning:
    """The learning rate of every method of TRAINED, chosen as the module says."""
    fit, held = validation_split(scenario.update.x, scenario.update.y)
    probe = Scenario(scenario.name, scenario.base, Split(*fit), Split(*held))
    tried = {"finetune": [(lr, accuracy(finetune(base, *fit, TrainConfig(epochs=schedule.epochs, lr=lr)), *held))
                          for lr in FINETUNE_LRS]}
    lrs = {"finetune": _best(tried["finetune"])}
    ctx = context(probe, base, replace(schedule, seeds=1), middle_of(sweeps, base), lrs)
    for method in TRAINED[1:]:
        tried[method] = [(lr, _probe(replace(ctx, lrs={**ctx.lrs, method: lr}), method)) for lr in DELTA_LRS]
        lrs[method] = _best(tried[method])
        if progress is not None:
            progress(f"tuned {method}: lr {lrs[method]:g}")
    return Tuning(lrs, tried)


def middle_of(sweeps: Sweeps, base: nn.Module) -> Sweeps:
    """``sweeps`` cut to the middle value of every knob (the upper middle of an even count)."""
    tensors = sum(1 for parameter in base.parameters() if parameter.dim() >= 2)
    return replace(sweeps, budgets=_middle(sweeps.budgets), densities=_middle(sweeps.densities),
                   konecny_ranks=_middle(sweeps.konecny_ranks), bitdelta_counts=((tensors + 1) // 2,))


def _probe(ctx: Context, method: str) -> float:
    points = list(METHODS[method](ctx))
    if len(points) != 1:
        raise ValueError(f"tuning {method} at the middle of its sweep gave {len(points)} points, not one: "
                         "widen the sweep so its middle is a real update")
    return points[0].accuracy


def _middle(values: tuple) -> tuple:
    return (values[len(values) // 2],)


def _best(tried: list[tuple[float, float]]) -> float:
    """The rate of the best accuracy; the first (smallest) of equals."""
    return max(tried, key=lambda pair: pair[1])[0]
