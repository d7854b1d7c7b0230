"""Disk full during apply: the running model stays, the status says disk-full, the release applies later."""

from __future__ import annotations

import errno
import hashlib
import shutil
from pathlib import Path

import pytest

from device_client.status import LastError
from device_client.store import FileModelStore
from simulator.reliability import disk_full
from simulator.testbed.devices import DeviceHome, install_model
from simulator.testbed.synthetic import random_model_file


@pytest.mark.slow
def test_disk_full_during_apply_keeps_the_model_and_recovers(run_case) -> None:
    outcome, workdir = run_case(disk_full.CASES[0])
    assert outcome.ok, outcome.summary()
    assert outcome.facts["codes"] == ["disk-full"] and outcome.facts["recovered"] == 1
    assert outcome.facts["model_mib"] > outcome.facts["limit_mib"]
    version, sha, on_disk = DeviceHome(workdir / "device").state(disk_full.MODEL)
    assert version == 2 and sha == on_disk


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT])
def test_running_out_of_room_is_reported_as_disk_full(number: int) -> None:
    error = LastError.from_exception(OSError(number, "no room"), "m", 3)
    assert (error.code, error.release, error.model) == ("disk-full", 3, "m")


def test_other_io_errors_stay_io_errors() -> None:
    assert LastError.from_exception(OSError(errno.EIO, "bad sector"), "m", 3).code == "io-error"
    assert LastError.from_exception(PermissionError(errno.EACCES, "denied"), "m", 3).code == "io-error"


def test_a_copy_that_runs_out_of_room_leaves_no_staged_file(tmp_path, monkeypatch) -> None:
    base = random_model_file(0, {"w": (64, 64)})
    install_model(tmp_path / "models", "m", base, 1)
    store = FileModelStore(tmp_path / "models")

    def fill_up(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", fill_up)
    with pytest.raises(OSError) as raised:
        store.stage("m", copy_current=True)
    assert LastError.from_exception(raised.value, "m", 2).code == "disk-full"
    assert not list((tmp_path / "models" / "m").glob(".staged-*"))
    assert store.current("m").sha256 == hashlib.sha256(base).digest()
