"""Load: devices taking three releases back to back (simulator.selftest.load)."""

from __future__ import annotations

from simulator.selftest import load


def test_quick_load_case_holds(run_case) -> None:
    outcome, _ = run_case(load.CASES[0])
    assert outcome.ok, outcome.detail
    assert outcome.runs == 100 and "0 seen in a mixed state" in outcome.detail


def test_every_device_ends_on_the_last_version_and_none_is_mixed(tmp_path) -> None:
    result = load.run_load(tmp_path, 20, wall_limit_s=90.0)
    assert not result.timed_out
    assert result.on_last == 20 and result.mixed == 0 and not result.bad_devices
    assert result.observations >= 2 * 20  # a sweep before publishing and at least one after


def test_the_versions_chain(tmp_path) -> None:
    import hashlib

    files, (public, *releases) = load.build_versions(tmp_path)
    assert public.exists() and len(set(files.values())) == 4
    assert [r.manifest.version for r in releases] == [2, 3, 4]
    assert [r.manifest.payload_kind for r in releases] == ["delta", "delta", "full"]
    assert releases[1].manifest.base_sha256 == hashlib.sha256(files[2]).digest()
    assert releases[2].manifest.target_sha256 == hashlib.sha256(files[4]).digest()
