"""bench.png names what a reader needs: the target line, and each panel's bytes to reach it."""

from __future__ import annotations

from pathlib import Path

from simulator.bench.plot import _at_target, plot_bench
from simulator.bench.updates import CaseResult, Point


def _case(reached: dict) -> CaseResult:
    points = [Point("factorised", "r1", 300, 0.9), Point("factorised", "r4", 2000, 0.96),
              Point("topk", "k", 20000, 0.96), Point("full_model", "-", 300000, 0.97)]
    return CaseResult("drift", "mlp", "digits", "tuned", {}, {}, 0.7, 0.97, 0.96, 300000, points, reached, 1.0)


def test_each_panel_says_how_many_bytes_reach_the_target(tmp_path: Path) -> None:
    case = _case({"factorised": 2000, "topk": 20000, "full_model": 300000})
    assert _at_target(case) == ("bytes to the target: factorised 2,000 B (10.0x fewer)\n"
                                "best baseline 20,000 B; full model 300,000 B")
    assert "factorised: not reached" in _at_target(_case({"factorised": None, "topk": None, "full_model": 300000}))
    plot_bench([case], tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 10_000
