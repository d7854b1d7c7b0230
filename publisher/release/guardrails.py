"""What a publisher checks against the broker's retained releases before it publishes anything.

Refused, each with its own code (publisher.errors) and nothing sent: a version not above the current
one, a different payload under the current version, a delta whose base is no file a retained release
makes or starts from (the flashed first version is the base of the first delta), a key other than the
one that signed the current release (unless the broker holds a trust root: then a key that root does not
let sign the model, or too few keys for its threshold), another fleet than the one the current release
names (its devices would refuse it: wrong-fleet), the current version signed again at an earlier time than its current
signing (a clock behind: devices would report replayed), and a first release of a model id the broker has never seen,
without ``new_model`` (a typo would make a topic tree nobody follows). Publishing the current release
again with the same payload is allowed: that is how a staged rollout widens. ``force`` skips the
checks of an existing model for deliberate exceptions (going back to an older model as a new version
is not one: publish it as a higher version).
"""

from __future__ import annotations

from collections.abc import Sequence

from codec.errors import SignatureError
from codec.manifest import Manifest, iso_time, read_manifest
from codec.root import Root
from publisher.errors import (
    ClockBehindError,
    NewModelError,
    OtherFleetError,
    UnknownBaseError,
    UntrustedKeyError,
    VersionNotNewerError,
    VersionTakenError,
)


def check_root_allows(envelope: bytes, root: Root) -> None:
    """Raise UntrustedKeyError unless the broker's trust ``root`` lets the signing key(s) of ``envelope``
    sign it (listed, allowed for the model, enough of them): devices holding that root would refuse it."""
    try:
        read_manifest(envelope, root.release_trust())
    except SignatureError as exc:
        raise UntrustedKeyError(f"devices following the broker's trust root v{root.version} would refuse this "
                                f"release [{exc.code}]: {exc}") from None


def check_release(
    candidate: Manifest, latest: Manifest | None, retained: Sequence[Manifest], *, new_model: bool = False,
    force: bool = False, rotating: bool = False,
) -> None:
    """Raise the publisher error that refuses ``candidate`` given the broker's ``latest`` manifest and the
    ``retained`` releases' manifests of the same model; return if it may be published. ``rotating``: the
    broker's trust root vouched for the signing key (check_root_allows), so another key than the current
    release's is a rotation, not a mistake."""
    model = candidate.model
    if latest is None and not retained:
        if not new_model:
            raise NewModelError(f"the broker holds no release of model {model!r}: check the id for a typo, or pass "
                                "--new-model to publish its first release")
        return
    if force:
        return
    if latest is None:  # the latest topic was cleared or holds garbage: the newest retained release stands in
        latest = max(retained, key=lambda manifest: manifest.version)
    if candidate.key_id != latest.key_id and not rotating:
        raise UntrustedKeyError(
            f"release {latest.version} of {model} was signed by key {latest.key_id}, this one by "
            f"{candidate.key_id}: devices trust the key they were given, so they would refuse it (unknown-key); "
            "sign with that key, or pass --force once the devices trust the new one"
        )
    if latest.fleet is not None and candidate.fleet != latest.fleet:  # naming a fleet for the first time is fine
        named = "no fleet" if candidate.fleet is None else f"fleet {candidate.fleet!r}"
        raise OtherFleetError(
            f"release {latest.version} of {model} is for fleet {latest.fleet!r}, this one names {named}: that "
            f"fleet's devices would refuse it (wrong-fleet); pass --fleet {latest.fleet}, or --force to move the "
            "model to another fleet"
        )
    if candidate.version == latest.version and candidate.created < latest.created:
        raise ClockBehindError(
            f"release {latest.version} of {model} was signed at {iso_time(latest.created)}, "
            f"{latest.created - candidate.created} s later than this host's clock says now: devices would take this "
            "signing for a replay of an older one (replayed); set the clock (NTP), or publish from the host that "
            "signed it"
        )
    if candidate.version == latest.version and candidate.payload_sha256 != latest.payload_sha256:
        raise VersionTakenError(
            f"version {latest.version} of {model} is already published with another payload: publish this "
            f"update as version {latest.version + 1}"
        )
    if candidate.version < latest.version:
        raise VersionNotNewerError(
            f"version {candidate.version} is below the current release {latest.version} of {model}: devices "
            f"would refuse it (old-version); publish it as version {latest.version + 1}"
        )
    if candidate.payload_kind == "delta" and candidate.version > latest.version:
        known = {latest.target_sha256, latest.base_sha256} | {m.target_sha256 for m in retained} | {
            m.base_sha256 for m in retained}
        if candidate.base_sha256 not in known:
            raise UnknownBaseError(
                f"the update applies to a model file (sha256 {candidate.base_sha256.hex()[:12]}…) that no retained "
                f"release of {model} produces or starts from, so no device runs it; build it on version "
                f"{latest.version} (the current release), or publish the whole file with --full"
            )
