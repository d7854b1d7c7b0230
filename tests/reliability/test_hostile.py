"""Hostile input over a real Mosquitto to a real `rankcast device run` process (simulator.selftest.hostile)."""

from __future__ import annotations

import pytest

from codec.topics import manifest_topic, status_topic
from device_client.config import load_config
from device_client.errors import ConfigError
from simulator.fleet import SimBroker
from simulator.selftest import hostile


def test_every_attack_is_refused_and_the_device_keeps_serving(run_case) -> None:
    outcome, _ = run_case(hostile.CASES[0])
    assert outcome.ok, outcome.detail
    assert outcome.runs == len(hostile.ATTACKS) + 2  # every attack, the release after them, memory


def test_specific_attacks_leave_their_code_the_model_and_bounded_memory(tmp_path) -> None:
    chosen = {a.name: a for a in hostile.ATTACKS}
    attacks = tuple(chosen[n] for n in ("forged-signature", "replay-older-release", "zstd-bomb", "nan-scale",
                                        "chunk-longer-than-declared", "million-chunks-signed"))
    with SimBroker(tmp_path / "broker", ["hostile-t1"]) as broker:
        result = hostile.run_round(tmp_path / "dev", broker, "hostile-t1", attacks)
    codes = {r.attack: r.code for r in result.attacks}
    assert codes == {"forged-signature": "bad-signature", "replay-older-release": "old-version",
                     "zstd-bomb": "over-limit", "nan-scale": "non-finite",
                     "chunk-longer-than-declared": "bad-chunk", "million-chunks-signed": "over-limit"}
    assert all(r.model_kept and r.alive for r in result.attacks)
    assert result.applied_after
    assert result.rss_growth_mib < hostile.MEMORY_BOUND_MIB


def test_every_topic_id_check_holds(run_case) -> None:
    outcome, _ = run_case(hostile.CASES[1])
    assert outcome.ok, outcome.detail
    assert outcome.runs == 7 * len(hostile.BAD_IDS)


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
