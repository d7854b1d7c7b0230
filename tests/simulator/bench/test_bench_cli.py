"""`rankcast bench` argument checks, before any work starts."""

from __future__ import annotations

import pytest

from rankcast.cli import main


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_jobs_must_be_a_positive_whole_number(jobs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--jobs", jobs, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
