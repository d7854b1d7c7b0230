"""`rankcast bench runtimes` on this machine alone: every model, its figures, and the canary default."""

from __future__ import annotations

import json
import sys

import pytest

from simulator.bench.runtimes import run_runtimes_bench


@pytest.mark.slow
def test_the_same_runtime_agrees_to_the_bit_and_the_report_has_every_model(tmp_path, capsys) -> None:
    assert run_runtimes_bench([sys.executable], tmp_path, epochs=1) == 0
    report = json.loads((tmp_path / "runtimes.json").read_text())
    assert report["atol"] == 1e-5 and report["rtol"] == 1e-4
    assert [s["model"] for s in report["spreads"]] == ["mlp", "cnn", "wide", "mobile"]
    assert all(s["max_abs_diff"] == 0 and s["default_holds"] for s in report["spreads"])
    assert next(s for s in report["spreads"] if s["model"] == "mobile")["max_abs_output"] > 10
    assert "canary default" in capsys.readouterr().out
