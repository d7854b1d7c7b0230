"""The benchmark's plumbing on a tiny configuration: bench.json's schema, the plot, the table."""

from __future__ import annotations

import json

from simulator import update_bench
from simulator.update_methods import Point, Sweeps

TINY = update_bench.BenchConfig(
    epochs=2,
    base_epochs=2,
    sweeps=Sweeps(
        budgets=(700,), densities=(0.01,), konecny_ranks=(1,), delta_dtypes=("i8",), patch_levels=(3,),
        calibration_epochs=1,
    ),
)


def test_bench_writes_json_in_the_documented_schema_and_a_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(update_bench, "QUICK", TINY)
    assert update_bench.run_update_bench(quick=True, out=tmp_path) == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    names = {(s["name"], s["model"]) for s in document["scenarios"]}
    assert names == {(n, m) for n in ("refine", "drift", "newtask") for m in ("mlp", "cnn")}
    for case in document["scenarios"]:
        assert abs(case["target_accuracy"] - (case["full_finetune_accuracy"] - 0.01)) < 1e-9
        assert {p["method"] for p in case["points"]} == set(case["min_bytes_at_target"])
        assert {"factorised", "factorised_seeded", "konecny"} <= set(case["min_bytes_at_target"])
        for point in case["points"]:
            assert set(point) == {"method", "knob", "bytes", "accuracy"} and isinstance(point["bytes"], int)
    printed = capsys.readouterr().out
    assert "fact/bl" in printed and "seed/bl" in printed and "ours/full" in printed


def test_min_bytes_at_target_is_the_smallest_update_that_reaches_it():
    points = [Point("m", "a", 100, 0.80), Point("m", "b", 300, 0.95), Point("m", "c", 200, 0.96)]
    assert update_bench.min_bytes(points, "m", 0.95) == 200
    assert update_bench.min_bytes(points, "m", 0.99) is None


def test_ratios_compare_the_best_of_ours_with_the_best_reaching_baseline():
    result = update_bench.CaseResult(
        "refine", "mlp", 0.5, 0.9, 0.89, 10_000, [],
        {"factorised": 800, "factorised_seeded": 400, "konecny": 1000, "topk_sparse": None, "full_model": 10_000},
        0.0,
    )
    assert update_bench._ratio(result, "factorised", ("konecny", "topk_sparse")) == "0.800"
    assert update_bench._ratio(result, update_bench.OURS, ("full_model",)) == "0.040"
    assert update_bench._ratio(result, "factorised", ("topk_sparse",)) == "-"
