"""`rankcast trust` as an operator types it, without a broker: a ceremony, roots collecting signatures
key by key, and the mistakes refused with a code before anything is written or published."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec.keys import PRIVATE_NAME, PUBLIC_NAME
from codec.root import verify_first_root, verify_next_root
from rankcast.cli import main


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    for name in ("a", "b", "c", "r1", "r2"):
        assert main(["keygen", str(tmp_path / name)]) == 0
    return {name: tmp_path / name for name in ("a", "b", "c", "r1", "r2")}


def _key(keys: dict[str, Path], name: str, private: bool = True) -> list[str]:
    return ["--root-key", str(keys[name] / (PRIVATE_NAME if private else PUBLIC_NAME))]


def test_a_root_collects_signatures_key_by_key_and_is_published_only_when_complete(
    tmp_path: Path, keys, capsys
) -> None:
    trust = str(tmp_path / "trust")
    assert main(["trust", "init", trust, *_key(keys, "a"), *_key(keys, "b"), *_key(keys, "c", private=False),
                 "--threshold", "2", "--release-key", str(keys["r1"] / PUBLIC_NAME)]) == 0
    assert "root v1 is complete" in capsys.readouterr().out
    assert main(["trust", "add-key", trust, "--key", str(keys["r2"] / PUBLIC_NAME), *_key(keys, "a")]) == 0
    assert "root v2 still needs 1 more of root v1's root keys" in capsys.readouterr().out
    publish = ["trust", "publish", trust, "--broker", "mqtt://127.0.0.1:1"]
    assert main(publish) == 1
    assert "[bad-trust]" in capsys.readouterr().err  # refused before connecting: nothing listens on port 1
    assert main(["trust", "show", trust]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out
    assert main(["trust", "sign", trust, *_key(keys, "c", private=False)]) == 1
    assert "public key" in capsys.readouterr().err
    assert main(["trust", "sign", trust, *_key(keys, "b")]) == 0
    assert "root v2 is complete" in capsys.readouterr().out
    first = verify_first_root((tmp_path / "trust" / "root.1").read_bytes())
    second = verify_next_root((tmp_path / "trust" / "root.2").read_bytes(), first).root
    assert len(second.release_keys) == 2 and second.root_keys == first.root_keys


def test_mistakes_are_refused_with_a_code_and_write_nothing(tmp_path: Path, keys, capsys) -> None:
    trust = tmp_path / "trust"
    release = ["--release-key", str(keys["r1"] / PUBLIC_NAME)]
    assert main(["trust", "add-key", str(trust), "--key", str(keys["r2"] / PUBLIC_NAME), *_key(keys, "a")]) == 1
    assert "trust init" in capsys.readouterr().err, "no root yet: says to start with init"
    assert main(["trust", "init", str(trust), *_key(keys, "a"), "--threshold", "2", *release]) == 1
    assert "[bad-trust]" in capsys.readouterr().err and not trust.exists(), "threshold above the keys listed"
    assert main(["trust", "init", str(trust), *_key(keys, "a"), *_key(keys, "b"), "--threshold", "2", *release]) == 0
    assert main(["trust", "add-key", str(trust), "--key", str(keys["r2"] / PUBLIC_NAME)]) == 1
    assert "needs at least one signature" in capsys.readouterr().err
    assert main(["trust", "revoke-key", str(trust), "--key", str(keys["r1"] / PUBLIC_NAME), *_key(keys, "a"),
                 *_key(keys, "b")]) == 1
    assert "add the new key first" in capsys.readouterr().err
    assert main(["trust", "revoke-key", str(trust), "--key", "0123456789abcdef", *_key(keys, "a")]) == 1
    assert "lists no release key" in capsys.readouterr().err
    assert sorted(p.name for p in trust.iterdir()) == ["root.1"]
