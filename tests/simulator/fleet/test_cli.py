"""`rankcast simulate` on the command line."""

from __future__ import annotations

import json

import pytest

from rankcast.cli import main


def test_list_links_prints_every_builtin_profile(capsys):
    assert main(["simulate", "--list-links"]) == 0
    out = capsys.readouterr().out
    for name in ("nbiot", "ltem", "gprs", "edge", "3g", "wifi", "geo"):
        assert f"\n{name} " in f"\n{out}"


def test_list_links_includes_profiles_from_a_toml_file(tmp_path, capsys):
    links = tmp_path / "links.toml"
    links.write_text('[profiles.farm]\nbase = "nbiot"\nlatency_ms = 3000\nsource = "site survey"\n')
    assert main(["simulate", "--list-links", "--links-file", str(links)]) == 0
    out = capsys.readouterr().out
    assert "farm" in out and "site survey" in out


def test_an_unknown_profile_is_an_operator_error(tmp_path, capsys):
    assert main(["simulate", "--devices", "2", "--link", "lora", "--out", str(tmp_path)]) == 1
    assert "unknown link profile 'lora'" in capsys.readouterr().err


def test_a_time_scale_of_zero_is_an_operator_error(tmp_path, capsys):
    assert main(["simulate", "--devices", "2", "--link", "wifi", "--time-scale", "0", "--out", str(tmp_path)]) == 1
    assert "rankcast: error [bad-fleet-config]" in capsys.readouterr().err


@pytest.mark.slow
def test_simulate_writes_the_report_and_prints_a_table(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["simulate", "--devices", "3", "--link", "wifi", "--compare", "factorised", "--time-scale", "2",
                 "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["devices"] == 3 and report["applied"] == 3
    assert [s["name"] for s in report["strategies"]] == ["factorised"]
    printed = capsys.readouterr().out
    assert "factorised" in printed and "p95" in printed
