"""`rankcast bench updates`: update bytes against accuracy for every method and case.

For each case (simulator.bench.cases: a scenario on a data set with a model) a base model is trained
on the base data and deployed (batch norm folded), every trained method's learning rate is tuned on a
validation split (simulator.bench.tuning), then every method of simulator.bench.methods produces
updates over its knob sweep. The reference is the tuned full fine-tune; the target accuracy is its test
accuracy minus one percentage point, and each method's figure is the fewest bytes of any point at or
above the target. Writes DIR/bench.json and DIR/bench.png and prints a table.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from publisher.training.loop import TrainConfig, accuracy, train
from simulator.bench.cases import Case, Schedule, select
from simulator.bench.methods import METHODS, OURS, Point, Sweeps
from simulator.bench.models import build_model, deployable
from simulator.bench.scenarios import scenario
from simulator.bench.tuning import prepare

TARGET_MARGIN = 0.01
#: Accuracies are counts over test examples (means of such over seeds), so a point that is exactly at
#: the target can compare a rounding error below it; one image is 1/450 ≈ 2e-3, far above this.
ACCURACY_TOLERANCE = 1e-9
BASELINES = tuple(name for name in METHODS if name not in OURS)


@dataclass(frozen=True)
class BenchConfig:
    #: Per data set. Digits' full run averages two seeds: one seed's luck moves accuracy by about a point
    #: on its 450 test images, as much as the target's margin.
    schedules: dict[str, Schedule]
    sweeps: Sweeps


#: The contenders' knobs are sampled at a similar resolution (budgets about 1.45× apart from about a
#: rank-1 update up, Konečný's ranks about 1.4× from rank 1), so neither gets a finer grid to land
#: just above the target on.
FULL = BenchConfig(
    schedules={"digits": Schedule(40, 60, seeds=2), "mnist": Schedule(15, 30), "mnist1d": Schedule(40, 80)},
    sweeps=Sweeps(
        budgets=(200, 290, 420, 610, 880, 1280, 1850, 2700, 3900, 5600),
        densities=(0.003, 0.01, 0.03, 0.1, 0.3),
        konecny_ranks=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
    ),
)
QUICK = BenchConfig(
    schedules={"digits": Schedule(16, 40), "mnist": Schedule(6, 15), "mnist1d": Schedule(16, 40)},
    sweeps=Sweeps(
        budgets=(200, 400, 800, 1600, 3200, 6400),
        densities=(0.003, 0.01, 0.03, 0.1, 0.3),
        konecny_ranks=(1, 2, 4, 8, 16, 32),
        patch_levels=(19,),
        calibration_epochs=3,
    ),
)


@dataclass(frozen=True)
class CaseResult:
    """One case: bench.json's per-scenario entry (plus a few context figures)."""

    name: str
    model: str
    dataset: str
    role: str
    learning_rates: dict[str, float]
    #: Per trained method, [learning rate, validation accuracy] of every rate its tuning tried.
    tuning: dict[str, list[tuple[float, float]]]
    base_accuracy: float
    full_finetune_accuracy: float
    target_accuracy: float
    full_model_bytes: int
    points: list[Point]
    min_bytes_at_target: dict[str, int | None]
    seconds: float


def run_update_bench(quick: bool, out: Path, jobs: int | None = None, cases: str | None = None) -> int:
    """Run the cases ``cases`` names (simulator.bench.cases.select; default all) in ``jobs`` processes
    (default: one per CPU core), print the table, write OUT/bench.json and OUT/bench.png; returns 0."""
    config = QUICK if quick else FULL
    chosen = select(cases)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = min(len(chosen), os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    started = time.monotonic()
    with tqdm(total=len(chosen) * len(METHODS), desc="bench", unit="method") as bar:
        results = run_cases(chosen, config, jobs, bar)
    seconds = time.monotonic() - started
    document = {"quick": quick, "seconds": round(seconds, 1), "scenarios": [asdict(r) for r in results]}
    (out / "bench.json").write_text(json.dumps(document, indent=1) + "\n")
    from simulator.bench.plot import plot_bench

    plot_bench(results, out / "bench.png")
    print(format_table(results))
    print(f"\n{'quick' if quick else 'full'} run: {seconds:.0f} s with {jobs} process(es); "
          f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def run_cases(cases: list[Case], config: BenchConfig, jobs: int, bar: tqdm) -> list[CaseResult]:
    """Every case's result, in the order of ``cases``.

    Each case runs with one torch thread, in a worker process when there are several jobs: these
    models are so small that two single-threaded processes on two cores train about 1.5× as fast as
    one process with two threads.
    """
    def advance(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update()

    if jobs == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a worker, so the figures do not depend on ``jobs``
        try:
            return [run_case(case, config, advance) for case in cases]
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        finished = manager.Queue()
        futures = [pool.submit(_run_case_in_worker, case, config, finished) for case in cases]
        while not all(future.done() for future in futures) or not finished.empty():
            try:
                advance(finished.get(timeout=1))
            except queue.Empty:
                continue
        return [future.result() for future in futures]


def _run_case_in_worker(case: Case, config: BenchConfig, finished: queue.Queue) -> CaseResult:
    torch.set_num_threads(1)
    return run_case(case, config, finished.put)


def run_case(case: Case, config: BenchConfig, progress: Callable[[str], None]) -> CaseResult:
    """Train and deploy the base model, tune, then run every method's sweep for one case; ``progress``
    gets "dataset/scenario/model/method" as each method finishes."""
    started = time.monotonic()
    schedule = config.schedules[case.dataset]
    data = scenario(case.scenario, case.dataset)
    base = build_model(case.model)
    train(base, base.parameters(), data.base.x, data.base.y, TrainConfig(epochs=schedule.base_epochs, lr=3e-3))
    base = deployable(base)
    ctx, tuning = prepare(data, base, schedule, config.sweeps)
    reference = accuracy(ctx.tuned, data.test.x, data.test.y)
    target = reference - TARGET_MARGIN
    points: list[Point] = []
    for method, run in METHODS.items():
        points.extend(run(ctx))
        progress(f"{case.label}/{method}")
    return CaseResult(
        name=case.scenario,
        model=case.model,
        dataset=case.dataset,
        role=case.role,
        learning_rates=tuning.lrs,
        tuning=tuning.tried,
        base_accuracy=accuracy(base, data.test.x, data.test.y),
        full_finetune_accuracy=reference,
        target_accuracy=target,
        full_model_bytes=next(p.bytes for p in points if p.method == "full_model"),
        points=points,
        min_bytes_at_target={method: min_bytes(points, method, target) for method in METHODS},
        seconds=round(time.monotonic() - started, 1),
    )


def min_bytes(points: list[Point], method: str, target: float) -> int | None:
    """Fewest bytes of any point of ``method`` at or above ``target`` accuracy (None if none reach it)."""
    sizes = [p.bytes for p in points if p.method == method and p.accuracy >= target - ACCURACY_TOLERANCE]
    return min(sizes) if sizes else None


def format_table(results: list[CaseResult]) -> str:
    """Per case: accuracies, each method's bytes at target, and the ratios of rankcast's methods."""
    short = {m: m.replace("finetune_", "ft_").replace("_sparse", "").replace("_model", "") for m in METHODS}
    short.update(factorised_uv="fact_uv", cli_default="default", konecny_trit="kon_trit")
    ratios = {"fact/bl": ("factorised", BASELINES), "uv/bl": ("factorised_uv", BASELINES),
              "fact/full": ("factorised", ("full_model",)), "dflt/bl": ("cli_default", BASELINES)}
    header = f"{'case':<25}{'role':<9}{'base':>6}{'ft':>6}{'target':>7}" + "".join(
        f"{short[m]:>10}" for m in METHODS
    ) + "".join(f"{label:>10}" for label in ratios)
    lines = [header, "-" * len(header)]
    for r in results:
        cells = "".join(f"{_bytes(r.min_bytes_at_target[m]):>10}" for m in METHODS)
        cells += "".join(f"{_ratio(r, *spec):>10}" for spec in ratios.values())
        lines.append(
            f"{r.dataset + '/' + r.name + '/' + r.model:<25}{r.role:<9}{r.base_accuracy:>6.3f}"
            f"{r.full_finetune_accuracy:>6.3f}{r.target_accuracy:>7.3f}{cells}"
        )
    lines.append("bytes at target accuracy (full fine-tune - 1 pt); '-' = never reached. bl = best baseline; "
                 "fact_uv = U and V both trained (the paper's form); default = what `update build` picks with no "
                 "size given ('-': below the target or refused). Targets: fact/bl <= 0.50, fact/full <= 0.033. "
                 "role: tuned = rankcast's rules were chosen on it, informed = only the reference's lr search, "
                 "held out = no choice")
    return "\n".join(lines)


def _ratio(result: CaseResult, ours: str, against: tuple[str, ...]) -> str:
    mine = result.min_bytes_at_target[ours]
    others = [b for b in (result.min_bytes_at_target[m] for m in against) if b is not None]
    if mine is None or not others:
        return "-"
    return f"{mine / min(others):.3f}"


def _bytes(value: int | None) -> str:
    return "-" if value is None else str(value)
