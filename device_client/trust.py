"""Whom a device takes releases from: a fixed list of keys (simple mode) or a trust root it walks forward.

In root mode the device is provisioned with a root (device.toml ``trust_root``) and follows the retained
roots on ``{prefix}/trust/root/<version>`` (codec.topics.root_topic). Each root is taken only as the next
version of the one it holds, signed by a threshold of that root's keys and of its own (codec.root), so
a device offline across several rotations walks them in order; it never goes back, and after a restart
it walks again, from the provisioned root through the ones it kept, so nothing on disk is trusted unread.
Keys an earlier root listed and the current one does not are revoked: their manifests are refused as
revoked-key, and a model already running such a release keeps running and is named in the status.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path

from codec.errors import UpdateError
from codec.keys import ReleaseKeys, VerifyKey
from codec.root import Root, verify_first_root, verify_next_root
from device_client.files import write_atomic
from device_client.status import sanitised
from device_client.timefloor import TimeFloor

log = logging.getLogger("rankcast.device")
#: Roots newer than the next one kept while waiting for the versions between (retained roots arrive in
#: any order); each is at most codec.root.MAX_ROOT_BYTES.
MAX_PENDING = 32


class DeviceTrust:
    """The release keys a device trusts now, the root they come from, and the time floor."""

    def __init__(self, directory: Path, time_floor: TimeFloor, *, keys: Mapping[str, VerifyKey] | None = None,
                 provisioned: bytes | None = None) -> None:
        """Exactly one of ``keys`` (simple mode) and ``provisioned`` (a root envelope) is given; roots walked
        before are read from ``directory`` and checked again in order."""
        if (keys is None) == (provisioned is None):
            raise ValueError("give the trusted keys or a provisioned root, not both")
        self.directory, self.time = Path(directory), time_floor
        self._keys = None if keys is None else ReleaseKeys(dict(keys))
        self.root: Root | None = None
        self.revoked: set[str] = set()
        #: The last root the device could not take (version, code, sha256 prefix of its envelope), for the status.
        self.refused: tuple[int, str, str] | None = None
        self._pending: dict[int, bytes] = {}
        if provisioned is not None:
            self._take(verify_first_root(provisioned))
            self._walk_kept()

    @property
    def uses_root(self) -> bool:
        return self.root is not None

    def release_keys(self) -> ReleaseKeys:
        """The keys manifests are checked against; raises ExpiredError once the current root expired."""
        if self.root is None:
            return self._keys
        self.root.check_fresh(self.time.now())
        return self.root.release_trust(self.revoked)

    def on_root(self, version: int, envelope: bytes) -> bool:
        """A retained root arrived on root ``version``'s topic; True when the device's root moved forward."""
        if self.root is None or version <= self.root.version:
            return False  # older roots stay retained for devices behind; this one has walked past them
        if len(self._pending) >= MAX_PENDING and version not in self._pending:
            self._pending.pop(max(self._pending))
        self._pending[version] = envelope
        return self._advance()

    def _advance(self) -> bool:
        moved = False
        while self.root.version + 1 in self._pending:
            envelope = self._pending.pop(self.root.version + 1)
            try:
                signed = verify_next_root(envelope, self.root)
            except UpdateError as exc:
                self.refused = (self.root.version + 1, exc.code, hashlib.sha256(envelope).hexdigest()[:16])
                log.warning("trust root v%d refused [%s]: %s", self.root.version + 1, exc.code, sanitised(str(exc)))
                break
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomic(self.directory / f"root.{signed.root.version}", envelope)
            self._take(signed.root)
            self.refused, moved = None, True
            log.info("trust root v%d taken (%d release key(s), %d revoked)", self.root.version,
                     len(self.root.release_keys), len(self.revoked))
        for stale in [v for v in self._pending if v <= self.root.version]:
            del self._pending[stale]
        return moved

    def _take(self, root: Root) -> None:
        if self.root is not None:
            self.revoked |= set(self.root.release_keys)
        self.revoked -= set(root.release_keys)
        self.root = root
        self.time.witness(root.created)

    def _walk_kept(self) -> None:
        """Walk the roots kept from earlier runs, each checked as the next version; a damaged one ends it."""
        while (path := self.directory / f"root.{self.root.version + 1}").exists():
            try:
                self._take(verify_next_root(path.read_bytes(), self.root).root)
            except UpdateError as exc:
                log.warning("%s is not a valid next root (%s); the device goes on from v%d", path, exc,
                            self.root.version)
                return

    def note_install(self, model: str, sha256: bytes, key_id: str) -> None:
        """Remember which key signed the release a model now runs (for revoked_running)."""
        signers = self._signers()
        signers[model] = {"sha256": sha256.hex(), "key_id": key_id}
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.directory / "signers.json", json.dumps(signers, sort_keys=True).encode())

    def revoked_running(self, running: Mapping[str, tuple[int, bytes]]) -> list[str]:
        """Models running a release whose signing key the current root revoked (they keep running it)."""
        signers = self._signers()
        return sorted(model for model, (_, sha256) in running.items()
                      if model in signers and signers[model]["sha256"] == sha256.hex()
                      and signers[model]["key_id"] in self.revoked)

    def status(self, running: Mapping[str, tuple[int, bytes]]) -> dict | None:
        """What the status says about trust in root mode: the root version and the revoked releases run."""
        if self.root is None:
            return None
        revoked, status = self.revoked_running(running), {"root": self.root.version}
        if revoked:
            status["revoked"] = revoked
        if self.refused is not None:
            version, code, digest = self.refused
            status["refused_root"] = {"version": version, "code": code, "sha256": digest}
        return status

    def _signers(self) -> dict:
        path = self.directory / "signers.json"
        try:
            return json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            return {}

