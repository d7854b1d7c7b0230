"""`rankcast selftest`: the runner's table, JSON report and exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from simulator.reliability import runner
from simulator.reliability.case import Case, Outcome


def _rankcast(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rankcast", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_every_module_imports_and_every_case_is_listed(tmp_path) -> None:
    cases = runner.all_cases()
    groups = {case.group for case in cases}
    assert {"security", "load", "reliability"} <= groups
    names = [case.name for case in cases]
    assert len(names) == len(set(names))
    listed = _rankcast("selftest", "--list", cwd=tmp_path)
    assert listed.returncode == 0
    assert all(name in listed.stdout for name in names)


def test_quick_run_of_one_case_prints_the_table_and_writes_json(tmp_path) -> None:
    done = _rankcast("selftest", "--quick", "--only", "hostile-topic-ids", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hostile-topic-ids" in done.stdout and "PASS" in done.stdout and "1 of 1 cases held" in done.stdout
    assert "[1/1] hostile-topic-ids" in done.stderr  # progress on stderr
    report = json.loads((tmp_path / "out" / "selftest.json").read_text())
    assert report["ok"] and report["quick"] and [c["name"] for c in report["cases"]] == ["hostile-topic-ids"]
    assert report["cases"][0]["runs"] == report["cases"][0]["held"] > 0


def test_an_unknown_case_is_an_error(tmp_path) -> None:
    done = _rankcast("selftest", "--only", "no-such-case", "--out", "out", cwd=tmp_path)
    assert done.returncode == 2 and "no-such-case" in done.stdout


def test_a_failing_or_raising_case_makes_the_exit_status_1(tmp_path, monkeypatch, capsys) -> None:
    def boom(workdir: Path, quick: bool) -> Outcome:
        raise RuntimeError("broken")

    cases = [Case("fine", "t", lambda w, q: Outcome("fine", 2, 2, "ok")),
             Case("short", "t", lambda w, q: Outcome("short", 3, 2, "one did not hold")),
             Case("boom", "t", boom)]
    monkeypatch.setattr(runner, "all_cases", lambda modules=runner.MODULES: cases)
    assert runner.run_selftest(tmp_path, quick=True) == 1
    report = json.loads((tmp_path / "selftest.json").read_text())
    assert [c["ok"] for c in report["cases"]] == [True, False, False]
    assert report["cases"][2]["detail"] == "raised RuntimeError: broken"
    out = capsys.readouterr().out
    assert "FAIL" in out and "1 of 3 cases held" in out
    assert runner.run_selftest(tmp_path, quick=True, only=["fine"]) == 0
