"""Link profiles: the built-ins, TOML profiles and their errors, and --link mixes."""

from __future__ import annotations

import pytest

from simulator.fleet.errors import LinkProfileError
from simulator.fleet.links import BUILTIN, Outage, load_profiles, parse_link_mix, profile_table

NAMES = ("nbiot", "ltem", "gprs", "edge", "3g", "wifi", "geo")


def test_every_builtin_profile_exists_with_a_source():
    assert set(NAMES) <= set(BUILTIN)
    for profile in BUILTIN.values():
        assert profile.source and profile.description
        assert profile.down_bytes_per_s > 0 and profile.up_bytes_per_s > 0


def test_slow_links_are_slower_than_fast_ones():
    assert BUILTIN["nbiot"].down_bytes_per_s < BUILTIN["ltem"].down_bytes_per_s < BUILTIN["wifi"].down_bytes_per_s
    assert BUILTIN["geo"].rtt_s > BUILTIN["ltem"].rtt_s


def test_a_toml_profile_inherits_from_its_base_and_sorts_its_outages(tmp_path):
    path = tmp_path / "links.toml"
    path.write_text(
        '[profiles.edge-nbiot]\nbase = "nbiot"\nlatency_ms = 2500\nloss = 0.02\n'
        "outages = [{at_s = 30, duration_s = 5}, {at_s = 10, duration_s = 2}]\n\n"
        "[profiles.lab]\ndown_bytes_per_s = 1000\nup_bytes_per_s = 500\nsource = \"bench\"\n"
    )
    profiles = load_profiles(path)
    edge = profiles["edge-nbiot"]
    assert edge.down_bytes_per_s == BUILTIN["nbiot"].down_bytes_per_s
    assert edge.latency_s == 2.5 and edge.loss == 0.02
    assert edge.outages == (Outage(10, 2), Outage(30, 5))
    assert "nbiot" in edge.source
    assert profiles["lab"].latency_s == 0 and profiles["lab"].source == "bench"
    assert set(NAMES) <= set(profiles)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[profiles.x]\nbase = "nbiot"\nspeed = 3\n', "unknown key"),
        ('[profiles.x]\nbase = "nope"\n', "base 'nope'"),
        ("[profiles.x]\nlatency_ms = 3\n", "needs down_bytes_per_s"),
        ('[profiles.x]\nbase = "nbiot"\nloss = 0.7\n', "loss"),
        ('[profiles.x]\nbase = "nbiot"\nlatency_ms = "slow"\n', "must be a number"),
        ('[profiles.x]\nbase = "nbiot"\noutages = [{at_s = 1}]\n', "outage"),
        ('[profiles.x]\nbase = "nbiot"\noutage_rate_per_hour = 3\n', "outage_duration_s"),
        ('[profiles.x]\nbase = "nbiot"\ndown_bytes_per_s = 0\n', "positive"),
        ("[other]\n", "profiles"),
        ("[profiles.x\n", "not valid TOML"),
    ],
)
def test_bad_toml_profiles_are_refused_naming_the_problem(tmp_path, text, fragment):
    path = tmp_path / "links.toml"
    path.write_text(text)
    with pytest.raises(LinkProfileError, match=fragment):
        load_profiles(path)


def test_a_link_mix_splits_the_fleet_by_fraction():
    mix = parse_link_mix("nbiot:0.3,ltem:0.5,gprs")
    assigned = mix.assign(10)
    assert [p.name for p in assigned].count("nbiot") == 3
    assert [p.name for p in assigned].count("ltem") == 5
    assert [p.name for p in assigned].count("gprs") == 2
    assert len(parse_link_mix("wifi").assign(7)) == 7


@pytest.mark.parametrize("spec", ["lora", "nbiot:0.7,ltem:0.7", "nbiot:x", "nbiot:0.5", "nbiot,nbiot", "nbiot:1,ltem"])
def test_bad_link_mixes_are_refused(spec):
    with pytest.raises(LinkProfileError):
        parse_link_mix(spec)


def test_the_profile_table_names_every_profile_and_its_source():
    table = profile_table(BUILTIN)
    for name in NAMES:
        assert name in table
    assert table.count("source:") == len(BUILTIN)
