"""`rankcast bench updates`: update bytes against accuracy for every method, scenario and model.

For each scenario (refine, drift, newtask) and model (MLP, CNN) a base model is trained on the base
data, then every method of simulator.bench.methods produces updates over its knob sweep. The
reference is the full fine-tune; the target accuracy is its accuracy minus one percentage point, and
each method's figure is the fewest bytes of any point at or above the target. Writes DIR/bench.json
and DIR/bench.png and prints a table.
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
from simulator.bench.methods import METHODS, OURS, Point, Sweeps, prepare
from simulator.bench.scenarios import MODELS, SCENARIOS, build_model, scenario

TARGET_MARGIN = 0.01
#: Accuracies are counts over 450 test images (means of such over seeds), so a point that is exactly at
#: the target can compare a rounding error below it; one image is 1/450 ≈ 2e-3, far above this.
ACCURACY_TOLERANCE = 1e-9
BASELINES = tuple(name for name in METHODS if name not in OURS)


@dataclass(frozen=True)
class BenchConfig:
    epochs: int
    base_epochs: int
    sweeps: Sweeps


#: The contenders' knobs are sampled at a similar resolution (budgets about 1.45× apart from about a
#: rank-1 update up, Konečný's ranks about 1.4× from rank 1), so neither gets a finer grid to land
#: just above the target on.
FULL = BenchConfig(
    epochs=40,
    base_epochs=60,
    sweeps=Sweeps(
        budgets=(200, 290, 420, 610, 880, 1280, 1850, 2700, 3900, 5600),
        densities=(0.003, 0.01, 0.03, 0.1, 0.3),
        konecny_ranks=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32),
        uv_budgets=(200, 420, 880, 1850, 3900),
        seeds=2,
    ),
)
QUICK = BenchConfig(
    epochs=16,
    base_epochs=40,
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
    """One scenario and model: bench.json's per-scenario entry (plus a few context figures)."""

    name: str
    model: str
    base_accuracy: float
    full_finetune_accuracy: float
    target_accuracy: float
    full_model_bytes: int
    points: list[Point]
    min_bytes_at_target: dict[str, int | None]
    seconds: float


def run_update_bench(quick: bool, out: Path, jobs: int | None = None) -> int:
    """Run every case in ``jobs`` processes (default: one per CPU core), print the table, write
    OUT/bench.json and OUT/bench.png; returns 0."""
    config = QUICK if quick else FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = [(name, model) for name in SCENARIOS for model in MODELS]
    jobs = min(len(cases), os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    started = time.monotonic()
    with tqdm(total=len(cases) * len(METHODS), desc="bench", unit="method") as bar:
        results = run_cases(cases, config, jobs, bar)
    seconds = time.monotonic() - started
    document = {"quick": quick, "seconds": round(seconds, 1), "scenarios": [asdict(r) for r in results]}
    (out / "bench.json").write_text(json.dumps(document, indent=1) + "\n")
    from simulator.bench.plot import plot_bench

    plot_bench(results, out / "bench.png")
    print(format_table(results))
    print(f"\n{'quick' if quick else 'full'} run: {seconds:.0f} s with {jobs} process(es); "
          f"wrote {out / 'bench.json'} and {out / 'bench.png'}")
    return 0


def run_cases(cases: list[tuple[str, str]], config: BenchConfig, jobs: int, bar: tqdm) -> list[CaseResult]:
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
            return [run_case(name, model, config, advance) for name, model in cases]
        finally:
            torch.set_num_threads(threads)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        finished = manager.Queue()
        futures = [pool.submit(_run_case_in_worker, name, model, config, finished) for name, model in cases]
        while not all(future.done() for future in futures) or not finished.empty():
            try:
                advance(finished.get(timeout=1))
            except queue.Empty:
                continue
        return [future.result() for future in futures]


def _run_case_in_worker(name: str, model_name: str, config: BenchConfig, finished: queue.Queue) -> CaseResult:
    torch.set_num_threads(1)
    return run_case(name, model_name, config, finished.put)


def run_case(name: str, model_name: str, config: BenchConfig, progress: Callable[[str], None]) -> CaseResult:
    """Train the base model, then every method's sweep, for one scenario and model; ``progress`` gets
    "scenario/model/method" as each method finishes."""
    started = time.monotonic()
    data = scenario(name)
    base = build_model(model_name)
    train(base, base.parameters(), data.base.x, data.base.y, TrainConfig(epochs=config.base_epochs, lr=3e-3))
    ctx = prepare(data, base, config.epochs, config.sweeps)
    reference = accuracy(ctx.tuned, data.test.x, data.test.y)
    target = reference - TARGET_MARGIN
    points: list[Point] = []
    for method, run in METHODS.items():
        points.extend(run(ctx))
        progress(f"{name}/{model_name}/{method}")
    return CaseResult(
        name=name,
        model=model_name,
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
    short["factorised_uv"], short["cli_default"] = "fact_uv", "default"
    ratios = {"fact/bl": ("factorised", BASELINES), "uv/bl": ("factorised_uv", BASELINES),
              "fact/full": ("factorised", ("full_model",)), "dflt/bl": ("cli_default", BASELINES)}
    header = f"{'scenario':<9}{'model':<5}{'base':>6}{'ft':>6}{'target':>7}" + "".join(
        f"{short[m]:>10}" for m in METHODS
    ) + "".join(f"{label:>10}" for label in ratios)
    lines = [header, "-" * len(header)]
    for r in results:
        cells = "".join(f"{_bytes(r.min_bytes_at_target[m]):>10}" for m in METHODS)
        cells += "".join(f"{_ratio(r, *spec):>10}" for spec in ratios.values())
        lines.append(
            f"{r.name:<9}{r.model:<5}{r.base_accuracy:>6.3f}{r.full_finetune_accuracy:>6.3f}{r.target_accuracy:>7.3f}{cells}"
        )
    lines.append("bytes at target accuracy (full fine-tune - 1 pt); '-' = never reached. bl = best baseline; "
                 "fact_uv = U and V both trained (the paper's form); default = what `update build` picks with no "
                 "size given ('-': below the target or refused). Targets: fact/bl <= 0.50, fact/full <= 0.033")
    return "\n".join(lines)


def _ratio(result: CaseResult, ours: str, against: tuple[str, ...]) -> str:
    mine = result.min_bytes_at_target[ours]
    others = [b for b in (result.min_bytes_at_target[m] for m in against) if b is not None]
    if mine is None or not others:
        return "-"
    return f"{mine / min(others):.3f}"


def _bytes(value: int | None) -> str:
    return "-" if value is None else str(value)
