"""A trust root for tests, the reliability suite and the docs' walk: root keys, release keys and root
versions written to a trust directory as `rankcast trust` writes them (publisher.trust)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from codec.keys import SigningKey, generate_signing_key
from codec.root import Root, sign_root
from publisher.trust.edits import RootChange, first_root, next_root
from publisher.trust.roots import TrustDir


@dataclass
class TrustSetup:
    """Root keys (``threshold`` of them sign), named release keys, and the roots written so far."""

    trust: TrustDir
    root_keys: list[SigningKey]
    threshold: int
    release: dict[str, SigningKey] = field(default_factory=dict)
    roots: list[Root] = field(default_factory=list)

    @property
    def first(self) -> Path:
        """root.1: what devices are provisioned with (device.toml trust_root)."""
        return self.trust.file(1)

    def envelope(self, version: int) -> bytes:
        return self.trust.file(version).read_bytes()

    def change(self, change: RootChange, signers: list[SigningKey] | None = None) -> bytes:
        """Write root v+1 with ``change``, signed by ``signers`` (default: the first ``threshold`` root keys)."""
        root = next_root(self.roots[-1], change)
        envelope = sign_root(root, self.root_keys[: self.threshold] if signers is None else signers)
        self.trust.write_new(root.version, envelope)
        self.roots.append(root)
        return envelope

    def add_release_key(self, name: str, **options: object) -> SigningKey:
        """A new release key ``name``, listed by the next root."""
        self.release[name] = generate_signing_key()
        self.change(RootChange(add_release=[self.release[name].verify_key], **options))
        return self.release[name]

    def revoke(self, name: str) -> None:
        self.change(RootChange(revoke=[self.release[name].verify_key.key_id]))


def make_trust(directory: Path, root_keys: int = 3, threshold: int = 2, lifetime_s: int = 365 * 86400,
               now: int | None = None) -> TrustSetup:
    """Root v1 in ``directory``: ``root_keys`` root keys of which ``threshold`` sign, release key "k1"."""
    keys = [generate_signing_key() for _ in range(root_keys)]
    release = generate_signing_key()
    root = first_root([k.verify_key for k in keys], threshold, [release.verify_key], lifetime_s=lifetime_s, now=now)
    trust = TrustDir(Path(directory))
    trust.write_new(1, sign_root(root, keys[:threshold]))
    return TrustSetup(trust, keys, threshold, {"k1": release}, [root])
