"""A trust directory: the root versions as files ``root.1``, ``root.2``, ... (codec.root envelopes), and
the key files operators give (``rankcast keygen`` writes them): a private key both lists a key and signs,
a public one only lists it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codec.errors import SignatureError, UpdateError
from codec.keys import SigningKey, VerifyKey, load_signing_key, load_verify_key
from codec.root import Root, SignedRoot, read_root, verify_first_root, verify_next_root
from publisher.errors import SigningKeyError, TrustError

ROOT_PREFIX = "root."


@dataclass(frozen=True)
class KeyFile:
    """A key an operator named: its public half, and its private half when the file holds one."""

    path: Path
    public: VerifyKey
    private: SigningKey | None


def load_key_file(path: Path) -> KeyFile:
    """A PEM Ed25519 key, private (``signing.key``) or public (``signing.pub``)."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: {exc.strerror}; give a key file `rankcast keygen DIR` wrote") from None
    try:
        if b"PRIVATE KEY-----" in text[:100]:
            private = load_signing_key(path)
            return KeyFile(Path(path), private.verify_key, private)
        return KeyFile(Path(path), load_verify_key(path), None)
    except SignatureError as exc:
        raise SigningKeyError(f"{exc}; give a key file `rankcast keygen DIR` wrote") from None


@dataclass(frozen=True)
class TrustDir:
    """The root versions kept in ``path``."""

    path: Path

    def versions(self) -> list[int]:
        if not self.path.is_dir():
            return []
        names = (p.name[len(ROOT_PREFIX):] for p in self.path.iterdir() if p.name.startswith(ROOT_PREFIX))
        return sorted(int(n) for n in names if n.isdigit() and not n.startswith("0"))

    def file(self, version: int) -> Path:
        return self.path / f"{ROOT_PREFIX}{version}"

    def read(self, version: int) -> SignedRoot:
        try:
            return read_root(self.file(version).read_bytes())
        except OSError as exc:
            raise TrustError(f"{self.file(version)}: {exc.strerror}") from None
        except UpdateError as exc:
            raise TrustError(f"{self.file(version)} is not a trust root: {exc} [{exc.code}]") from None

    def latest(self) -> SignedRoot:
        """The newest root here (its signatures are not checked: it may still be collecting them)."""
        versions = self.versions()
        if not versions:
            raise TrustError(f"{self.path} holds no trust root: start with `rankcast trust init {self.path}`")
        return self.read(versions[-1])

    def verified_chain(self) -> list[Root]:
        """Every root from v1, each checked as devices check it; raises TrustError at the first that fails
        (typically the newest, still short of signatures)."""
        versions = self.versions()
        if versions != list(range(1, len(versions) + 1)):
            raise TrustError(f"{self.path} holds roots {versions}: versions must run 1, 2, 3, ... without gaps")
        chain: list[Root] = []
        for version in versions:
            envelope = self.file(version).read_bytes()
            try:
                chain.append(verify_first_root(envelope) if not chain else verify_next_root(envelope, chain[-1]).root)
            except UpdateError as exc:
                raise TrustError(f"{self.file(version)}: {exc} [{exc.code}]") from None
        return chain

    def write_new(self, version: int, envelope: bytes) -> Path:
        """Write root ``version``; refuses to overwrite one (a signed root is never changed, only followed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.file(version)
        if target.exists():
            raise TrustError(f"{target} exists: roots are never rewritten; `rankcast trust sign` adds signatures")
        target.write_bytes(envelope)
        return target

    def replace_signed(self, version: int, envelope: bytes) -> Path:
        """Write root ``version`` again with more signatures over the same signed bytes."""
        if read_root(envelope).signed != self.read(version).signed:
            raise TrustError(f"root v{version}'s signed content differs from {self.file(version)}")
        self.file(version).write_bytes(envelope)
        return self.file(version)
