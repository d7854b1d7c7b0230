"""The benchmark's plumbing on a tiny configuration: bench.json's schema, the plot, the table."""

from __future__ import annotations

import dataclasses
import json

import pytest

from publisher.training.factorised import DEFAULT_FACTORS, factorise, uniform_ranks
from publisher.training.fit import fit
from publisher.training.loop import TrainConfig
from simulator.bench import updates as update_bench
from simulator.bench.cases import Schedule
from simulator.bench.methods import SEED_STRIDE, TRAINED, Point, Sweeps, context
from simulator.bench.models import build_model
from simulator.bench.scenarios import scenario

TINY = update_bench.BenchConfig(
    schedules=dict.fromkeys(("digits", "mnist", "mnist1d"), Schedule(2, 2)),
    sweeps=Sweeps(
        budgets=(700,), densities=(0.01,), konecny_ranks=(1,), delta_dtypes=("i8",), patch_levels=(3,),
        calibration_epochs=1,
    ),
)


@pytest.mark.slow
def test_bench_writes_json_in_the_documented_schema_and_a_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(update_bench, "QUICK", TINY)
    assert update_bench.run_update_bench(quick=True, out=tmp_path, jobs=2, cases="refine") == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    names = {(s["dataset"], s["name"], s["model"], s["role"]) for s in document["scenarios"]}
    assert names == {("digits", "refine", "mlp", "tuned"), ("digits", "refine", "cnn", "tuned"),
                     ("mnist", "refine", "resnet8", "informed"), ("mnist1d", "refine", "cnn1d", "held out")}
    for case in document["scenarios"]:
        assert abs(case["target_accuracy"] - (case["full_finetune_accuracy"] - 0.01)) < 1e-9
        assert set(case["learning_rates"]) == set(case["tuning"]) == set(TRAINED)
        for method, tried in case["tuning"].items():  # the chosen rate is the best one tried
            assert case["learning_rates"][method] == max(tried, key=lambda pair: pair[1])[0]
        pointed = {p["method"] for p in case["points"]}
        assert pointed <= set(case["min_bytes_at_target"])
        assert set(case["min_bytes_at_target"]) - pointed <= {"cli_default"}  # it may refuse: no point then
        assert {"factorised", "factorised_uv", "konecny_trit", "topk_trit"} <= set(case["min_bytes_at_target"])
        for point in case["points"]:
            assert set(point) == {"method", "knob", "bytes", "accuracy"} and isinstance(point["bytes"], int)
    printed = capsys.readouterr().out
    assert "fact/bl" in printed and "uv/bl" in printed and "fact/full" in printed and "dflt/bl" in printed


@pytest.mark.slow
def test_figures_do_not_depend_on_how_many_processes_ran_the_cases(tmp_path, monkeypatch):
    monkeypatch.setattr(update_bench, "QUICK", TINY)
    documents = []
    for jobs in (1, 3):
        assert update_bench.run_update_bench(quick=True, out=tmp_path / str(jobs), jobs=jobs, cases="digits") == 0
        documents.append(json.loads((tmp_path / str(jobs) / "bench.json").read_text()))
    for document in documents:
        for case in document["scenarios"]:
            del case["seconds"]
    assert documents[0]["scenarios"] == documents[1]["scenarios"]


@pytest.mark.slow
def test_a_failing_case_in_a_worker_process_raises_instead_of_hanging(tmp_path, monkeypatch):
    # A budget below the smallest update: the tuning's probe of the factorised form has nothing to train.
    too_small = dataclasses.replace(TINY.sweeps, budgets=(1,))
    monkeypatch.setattr(update_bench, "QUICK", dataclasses.replace(TINY, sweeps=too_small))
    with pytest.raises(ValueError, match="tuning factorised at the middle of its sweep gave 0 points"):
        update_bench.run_update_bench(quick=True, out=tmp_path, jobs=2, cases="digits/refine/mlp,digits/drift/mlp")
    assert not (tmp_path / "bench.json").exists()


def test_min_bytes_at_target_is_the_smallest_update_that_reaches_it():
    points = [Point("m", "a", 100, 0.80), Point("m", "b", 300, 0.95), Point("m", "c", 200, 0.96)]
    assert update_bench.min_bytes(points, "m", 0.95) == 200
    assert update_bench.min_bytes(points, "m", 0.99) is None


def test_a_point_exactly_at_the_target_reaches_it_whatever_the_rounding():
    # two seeds at 400 and 401 of 450 images average exactly a full fine-tune at 405 of 450 minus 1 point
    # (4.5 images), which in floating point comes out a rounding error below it
    at_target = (400 / 450 + 401 / 450) / 2
    target = 405 / 450 - update_bench.TARGET_MARGIN
    assert at_target < target
    points = [Point("m", "a", 300, at_target), Point("m", "b", 200, at_target - 1 / 900)]
    assert update_bench.min_bytes(points, "m", target) == 300
    assert update_bench.min_bytes(points, "m", target + 1 / 900) is None


def test_ratios_compare_a_method_with_the_best_baseline_that_reaches_the_target():
    result = update_bench.CaseResult(
        "refine", "mlp", "digits", "tuned", {}, {}, 0.5, 0.9, 0.89, 10_000, [],
        {"factorised": 400, "factorised_uv": None, "konecny": 1000, "bitdelta": 900, "topk_sparse": None,
         "full_model": 10_000},
        0.0,
    )
    assert update_bench._ratio(result, "factorised", ("konecny", "bitdelta", "topk_sparse")) == "0.444"
    assert update_bench._ratio(result, "factorised", ("full_model",)) == "0.040"
    assert update_bench._ratio(result, "factorised", ("topk_sparse",)) == "-"
    assert update_bench._ratio(result, "factorised_uv", ("konecny",)) == "-"


def test_a_trained_point_averages_fresh_training_runs_over_its_seeds():
    data = scenario("refine")
    base = build_model("mlp")
    ctx = context(data, base, Schedule(2, 2, seeds=2), TINY.sweeps, {"finetune": 1e-2})
    config = TrainConfig(epochs=2, lr=3e-2)
    init_seeds = []

    def build(*, seed: int):
        init_seeds.append(seed)
        return factorise(base, uniform_ranks(base, 2), dataclasses.replace(DEFAULT_FACTORS, seed=seed))

    point = ctx.trained_point("factorised", "rank 2", build, config)
    assert init_seeds == [0, SEED_STRIDE]
    runs = []
    for seed in range(2):
        delta_set = build(seed=SEED_STRIDE * seed)
        fit(delta_set, data.update.x, data.update.y, dataclasses.replace(config, seed=seed))
        runs.append(ctx.measure(delta_set.records()))
    assert point.bytes == round((runs[0][0] + runs[1][0]) / 2)
    assert point.accuracy == (runs[0][1] + runs[1][1]) / 2
