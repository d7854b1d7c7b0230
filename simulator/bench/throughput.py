"""Training throughput on this CPU: a full fine-tune against rankcast's factorised updates, and where the time goes.

For each model (simulator.bench.architectures, batch norm folded as build_update folds it) it trains, on the same
digits upsampled to 1×32×32 with the project's loop (publisher.training.loop, batch 64, Adam):

- ``full``: publisher.training.finetune.finetune, every parameter trained;
- ``factorised``: publisher.training.fit.fit on ``wrap(model, rank=8)``, the defaults (seeded signs, trit codes, QAT);
- ``U·V``: the same with ``FactorConfig(seeded=False)``, both factors trained (the paper's form);
- ``low-rank path``: a prototype (simulator/bench/low_rank_path.py), not in training: the defaults' factors, but
  each ungrouped Conv2d and Linear large enough to gain (out·rest ≥ 2^17 and > 3·r·(out + rest)) computes ``layer(x;
  W) + U·(V·x)`` (for a conv, a rank-r conv then a 1×1 conv) on its activations instead of materialising ``W + U·V``
  every step, so the frozen W needs no weight gradient. Smaller, depthwise and dense-delta layers stay materialised.
  Each moved layer's update equals the materialised one up to float rounding (checked, and the worst relative error
  printed).

Each method's model is prepared once; then the methods train one epoch each in turn, a warm-up round not counted
and the timed rounds after it (so the load of a shared machine falls on all alike), and the median of a method's
timed epochs is reported as seconds per epoch per 1,000 images. Each epoch is one call of the project's function,
so Adam starts afresh each epoch (a few allocations, nothing against an epoch).

A breakdown then times single steps (forward, backward, optimiser), with hooks on every Delta parametrization for
the time spent rebuilding ``W + Δ`` (quantising codes, the product, the add) in the forward pass and in its
backward; and torch.profiler lists the heaviest operators of the first model. The machine is shared and noisy:
compare ratios from one run.

Run from the repository root::

    .venv/bin/python -m simulator.bench.throughput             # 5 models, 1,000 images (about 6-7 minutes on 2 cores)
    .venv/bin/python -m simulator.bench.throughput --quick     # mobilenet_v3_small on 256 images
    .venv/bin/python -m simulator.bench.throughput --models resnet20 mobilenet_v2 --images 2000
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from publisher.models.folding import fold_batchnorm
from publisher.training.delta_set import DeltaSet
from publisher.training.deltas import Delta
from publisher.training.factorised import BOTH_FACTORS
from publisher.training.finetune import finetune
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig, train
from publisher.training.update import DEFAULT_LR, DEFAULT_RANK, wrap
from simulator.bench import architectures
from simulator.bench.low_rank_path import low_rank_mismatch, low_rank_path

MODELS = ("mobilenet_v2", "mobilenet_v3_small", "resnet20", "resnet8", "resnet18")
METHODS = ("full", "factorised", "U·V", "low-rank path")
BATCH = TrainConfig().batch_size
FINETUNE_LR = TrainConfig().lr
BREAKDOWN_WARMUP_STEPS = 2
PROFILED_STEPS = 4
TOP_OPERATORS = 12
def digits_32(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` of scikit-learn's digits (cycled past 1,797) upsampled to 1×32×32 in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    index = torch.arange(count) % len(data.target)
    images = torch.from_numpy(data.images / 16.0).float()[:, None][index]
    return F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False), torch.from_numpy(
        data.target
    ).long()[index]


def build(model_name: str) -> nn.Module:
    """A freshly initialised model of the architectures module, seed 0 (the global RNG is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return getattr(architectures, model_name)()


def prepared(model: nn.Module, method: str) -> tuple[DeltaSet | None, nn.Module]:
    """The delta set (None for the full fine-tune) and the module that ``method`` trains, ready for training."""
    if method == "full":
        return None, fold_batchnorm(model)
    delta_set = wrap(model, DEFAULT_RANK, BOTH_FACTORS) if method == "U·V" else wrap(model, DEFAULT_RANK)
    delta_set.set_quantised(True)
    if method == "low-rank path":
        low_rank_path(delta_set)
    return delta_set, delta_set.model


def train_epoch(method: str, delta_set: DeltaSet | None, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One epoch as the project trains: finetune, fit, or (low-rank path) the loop that fit runs."""
    if delta_set is None:
        finetune(module, x, y, TrainConfig(epochs=1, lr=FINETUNE_LR))
    elif method == "low-rank path":
        train(module, delta_set.trainable_parameters(), x, y, TrainConfig(epochs=1, lr=DEFAULT_LR),
              freeze_norm_statistics=True)
    else:
        fit(delta_set, x, y, TrainConfig(epochs=1, lr=DEFAULT_LR))


def epoch_seconds(model: nn.Module, methods: tuple[str, ...], x: torch.Tensor, y: torch.Tensor, timed: int,
                  name: str) -> dict[str, float]:
    """Median seconds per epoch per 1,000 images of each method, epochs taken in turns after a warm-up round."""
    subjects = {method: prepared(model, method) for method in methods}
    times: dict[str, list[float]] = {method: [] for method in methods}
    for round_ in range(1 + timed):
        for method in methods:
            start = time.perf_counter()
            train_epoch(method, *subjects[method], x, y)
            if round_:
                times[method].append(time.perf_counter() - start)
        progress(f"{name}: round {round_} of {timed} ({'warm-up' if not round_ else 'timed'}) done")
    return {method: statistics.median(seconds) * 1000 / len(x) for method, seconds in times.items()}


class ReconstructionTimer:
    """Time spent rebuilding ``W + Δ`` in the forward pass and in its backward, from hooks on every Delta."""

    def __init__(self, model: nn.Module) -> None:
        self.forward_s = 0.0
        self._started: dict[Delta, float] = {}
        self._backward_started: dict[Delta, float] = {}
        self._backward_ended: dict[Delta, float] = {}
        for delta in (module for module in model.modules() if isinstance(module, Delta)):
            delta.register_forward_pre_hook(self._before)
            delta.register_forward_hook(self._after)
            for parameter in delta.parameters():
                if parameter.requires_grad:
                    parameter.register_post_accumulate_grad_hook(self._accumulated(delta))

    def _before(self, delta: Delta, args: tuple[torch.Tensor, ...]) -> None:
        """Start the forward timer of ``delta``."""
        self._started[delta] = time.perf_counter()

    def _after(self, delta: Delta, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        """Stop it, and start a backward timer when autograd reaches the rebuilt weight's gradient."""
        self.forward_s += time.perf_counter() - self._started[delta]
        output.grad_fn.register_prehook(self._backward_begins(delta))

    def _backward_begins(self, delta: Delta) -> Callable[[tuple[torch.Tensor, ...]], None]:
        """A grad_fn pre-hook noting when the backward of ``delta``'s reconstruction begins."""
        return lambda grads: self._backward_started.__setitem__(delta, time.perf_counter())

    def _accumulated(self, delta: Delta) -> Callable[[torch.Tensor], None]:
        """A post-accumulate-grad hook noting when a gradient of ``delta``'s parameters has landed."""
        return lambda parameter: self._backward_ended.__setitem__(delta, time.perf_counter())

    def take(self) -> tuple[float, float]:
        """(forward, backward) seconds since the last take, and reset."""
        backward = sum(self._backward_ended[d] - start for d, start in self._backward_started.items())
        forward, self.forward_s = self.forward_s, 0.0
        self._backward_started.clear()
        self._backward_ended.clear()
        return forward, backward


@dataclass(frozen=True)
class StepTimes:
    """Median milliseconds per step of BATCH images."""

    forward: float
    forward_rebuild: float
    backward: float
    backward_rebuild: float
    optimiser: float

    @property
    def total(self) -> float:
        """Forward, backward and optimiser together."""
        return self.forward + self.backward + self.optimiser


def trainable(model: nn.Module, delta_set: DeltaSet | None) -> list[nn.Parameter]:
    """What the optimiser changes: every parameter of a full fine-tune, else the deltas' parameters."""
    if delta_set is None:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return list(model.parameters())
    return delta_set.trainable_parameters()


def step_times(model: nn.Module, method: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> StepTimes:
    """Per-phase medians over ``steps`` training steps (after warm-up steps) of the loop's body, timed apart."""
    delta_set, module = prepared(model, method)
    parameters = trainable(module, delta_set)
    optimiser = torch.optim.Adam(parameters, lr=FINETUNE_LR if delta_set is None else DEFAULT_LR)
    total = BREAKDOWN_WARMUP_STEPS + steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    timer = ReconstructionTimer(module)
    module.train()
    rows: list[tuple[float, float, float, float, float]] = []
    batches = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).split(BATCH)
    for index in range(total):
        batch = batches[index % len(batches)]
        start = time.perf_counter()
        loss = F.cross_entropy(module(x[batch]), y[batch])
        forward_end = time.perf_counter()
        loss.backward()
        backward_end = time.perf_counter()
        optimiser.step()
        schedule.step()
        optimiser.zero_grad(set_to_none=True)
        end = time.perf_counter()
        rebuild_forward, rebuild_backward = timer.take()
        if index >= BREAKDOWN_WARMUP_STEPS:
            rows.append((forward_end - start, rebuild_forward, backward_end - forward_end, rebuild_backward,
                         end - backward_end))
    return StepTimes(*(statistics.median(column) * 1000 for column in zip(*rows, strict=True)))


def operator_ms(model: nn.Module, method: str, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], float]:
    """torch.profiler's self CPU ms per step of each operator, and aten calls per step, over PROFILED_STEPS steps."""
    delta_set, module = prepared(model, method)
    optimiser = torch.optim.Adam(trainable(module, delta_set), lr=DEFAULT_LR)
    module.train()

    def one_step(batch: torch.Tensor) -> None:
        """Forward, backward and an Adam step on one batch."""
        F.cross_entropy(module(x[batch]), y[batch]).backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    batches = torch.arange(len(x)).split(BATCH)
    for batch in batches[:BREAKDOWN_WARMUP_STEPS]:
        one_step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for index in range(PROFILED_STEPS):
            one_step(batches[index % len(batches)])
    events = profiler.key_averages()
    return ({event.key: event.self_cpu_time_total / 1000 / PROFILED_STEPS for event in events},
            sum(event.count for event in events if event.key.startswith("aten::")) / PROFILED_STEPS)


def moved_layers(model: nn.Module) -> int:
    """How many of ``model``'s layers the low-rank path takes."""
    return low_rank_path(wrap(model, DEFAULT_RANK))


def methods_for(model: nn.Module) -> tuple[str, ...]:
    """METHODS, without the low-rank path when it takes no layer (it would train exactly as ``factorised``)."""
    return METHODS if moved_layers(model) else METHODS[:-1]


def layer_counts(model: nn.Module) -> str:
    """``convolution and linear layers (of them depthwise or grouped, taken by the low-rank path)``."""
    layers = [m for m in fold_batchnorm(model).modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    grouped = sum(isinstance(m, nn.Conv2d) and m.groups != 1 for m in layers)
    return f"{len(layers)} ({grouped} dw, {moved_layers(model)} lr)"


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A plain left-aligned table on stdout."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def main(argv: list[str] | None = None) -> None:
    """Time every method on every model with its per-step breakdown, then profile the first model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--images", type=int, default=1000, help="training images per epoch (default 1000)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up (default 3)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per breakdown row (default 8)")
    parser.add_argument("--quick", action="store_true",
                        help="mobilenet_v3_small on 256 images, 2 timed epochs, 4 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.images, args.epochs, args.steps = ["mobilenet_v3_small"], 256, 2, 4
    torch.set_num_threads(os.cpu_count() or 1)
    x, y = digits_32(args.images)
    began = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f} at "
          f"start; {args.images} images of 1×32×32, batch {BATCH}, rank {DEFAULT_RANK}; {args.epochs} timed epochs "
          "after one warm-up, median\n")

    rows, breakdowns = [], {}
    for name in args.models:
        model = build(name)
        methods = methods_for(model)
        seconds = epoch_seconds(model, methods, x, y, args.epochs, name)
        progress(f"{name}: " + ", ".join(f"{m} {s:.2f}" for m, s in seconds.items())
                 + f" s/epoch/1k ({time.perf_counter() - began:.0f} s so far)")
        progress(f"{name}: per-step breakdown ...")
        breakdowns[name] = {method: step_times(model, method, x, y, args.steps) for method in methods}
        rows.append([name, f"{sum(p.numel() for p in model.parameters()):,}", layer_counts(model),
                     *(f"{seconds[m]:.2f}" if m in seconds else "-" for m in METHODS),
                     *(f"{seconds[m] / seconds['full']:.2f}" if m in seconds else "-" for m in METHODS[1:]),
                     f"{low_rank_mismatch(model):.1e}" if "low-rank path" in seconds else "-"])
    print("s/epoch/1k = seconds per epoch per 1,000 images; layers: conv + linear (depthwise, taken by the low-rank "
          "path; '-' when it takes none)")
    print_table(["model", "parameters", "layers", "full", "factorised", "U·V", "low-rank path", "fact/full",
                 "U·V/full", "lowrank/full", "lowrank err"], rows)

    print(f"\nPer-step breakdown, median ms per step of {BATCH} images (rebuild = W + Δ: quantise codes, product, add)")
    step_rows = []
    for name, by_method in breakdowns.items():
        for method, t in by_method.items():
            step_rows.append([name, method, f"{t.forward:.1f}", f"{t.forward_rebuild:.1f}", f"{t.backward:.1f}",
                              f"{t.backward_rebuild:.1f}", f"{t.optimiser:.1f}", f"{t.total:.1f}",
                              f"{t.forward - t.forward_rebuild + t.backward - t.backward_rebuild:.1f}"])
    print_table(["model", "method", "forward", "of it rebuild", "backward", "of it rebuild", "optimiser", "total",
                 "fwd+bwd w/o rebuild"], step_rows)

    first = args.models[0]
    progress(f"{first}: profiling ...")
    model = build(first)
    measured = {method: operator_ms(model, method, x, y) for method in methods_for(model) if method != "U·V"}
    profiles = {method: ms for method, (ms, _) in measured.items()}
    heaviest = sorted(set().union(*profiles.values()), key=lambda op: -max(p.get(op, 0.0) for p in profiles.values()))
    print(f"\n{first}: torch.profiler self CPU ms per step, heaviest {TOP_OPERATORS} operators")
    op_rows = [[op, *(f"{p.get(op, 0.0):.2f}" for p in profiles.values())] for op in heaviest[:TOP_OPERATORS]]
    op_rows.append(["all operators", *(f"{sum(p.values()):.2f}" for p in profiles.values())])
    op_rows.append(["aten operator calls per step", *(f"{calls:.0f}" for _, calls in measured.values())])
    print_table(["operator", *profiles], op_rows)
    print(f"\n({time.perf_counter() - began:.0f} s in all)")


if __name__ == "__main__":
    main()
