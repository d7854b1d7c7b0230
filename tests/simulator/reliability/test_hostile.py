"""Hostile input over a real Mosquitto to a real `rankcast device run` process (simulator.reliability.hostile),
and ids that are not one topic level (simulator.reliability.topic_ids)."""

from __future__ import annotations

import pytest

from codec.topics import manifest_topic, status_topic
from device_client.config import load_config
from device_client.errors import ConfigError
from simulator.reliability import hostile, topic_ids
from simulator.reliability.hostile_attacks import ATTACKS


@pytest.mark.slow
def test_every_attack_is_refused_with_one_of_its_codes_and_the_device_keeps_serving(run_case) -> None:
    outcome, _ = run_case(hostile.CASES[0])
    assert outcome.ok, outcome.summary()
    assert outcome.runs == len(ATTACKS) + 2  # every attack, the release after them, memory
    (codes,) = outcome.facts["codes"]
    assert all(codes[attack.name] in attack.codes for attack in ATTACKS), codes
    assert outcome.facts["applied_after"] == [True]
    assert outcome.facts["rss_growth_mib"][0] < hostile.MEMORY_BOUND_MIB


@pytest.mark.slow
def test_specific_attacks_get_their_own_code(run_case) -> None:
    outcome, _ = run_case(hostile.CASES[0])
    (codes,) = outcome.facts["codes"]
    assert {name: codes[name] for name in ("forged-signature", "replay-older-release", "zstd-bomb", "nan-scale",
                                           "chunk-longer-than-declared", "million-chunks-signed", "foreign-key")} == {
        "forged-signature": "bad-signature", "replay-older-release": "old-version", "zstd-bomb": "over-limit",
        "nan-scale": "non-finite", "chunk-longer-than-declared": "bad-chunk", "million-chunks-signed": "over-limit",
        "foreign-key": "unknown-key"}


def test_every_topic_id_check_holds(run_case) -> None:
    outcome, _ = run_case(topic_ids.CASES[0])
    assert outcome.ok, outcome.summary()
    assert outcome.runs == outcome.facts["refused"] == topic_ids.PLACES * len(topic_ids.BAD_IDS)


@pytest.mark.parametrize("bad", ["a/b", "dev/#", "+", "a+b"])
def test_wildcard_and_slash_ids_raise_with_clear_codes(tmp_path, bad) -> None:
    with pytest.raises(ValueError) as refused:
        manifest_topic(bad)
    assert refused.value.code == "bad-format" and "no '/', '+' or '#'" in str(refused.value)
    with pytest.raises(ValueError) as refused:
        status_topic(bad)
    assert refused.value.code == "bad-format"
    (tmp_path / "k.pub").write_text("x")
    config = tmp_path / "device.toml"
    config.write_text(f'device_id = "{bad}"\nmodel_dir = "m"\ntrusted_keys = ["k.pub"]\nmodels = ["m1"]\n'
                      '[broker]\nurl = "mqtt://127.0.0.1:1"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert refused.value.code == "bad-config" and "device_id" in str(refused.value)
