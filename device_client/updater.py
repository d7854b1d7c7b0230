"""One followed model's update state machine (device_client.states); no network, no MQTT (the session
feeds it messages).

Every manifest is handled once per signed content. One that does not verify changes nothing; a verified
one that does not apply is reported and leaves a download in progress alone; only a release whose own
content fails is remembered (device_client.verdicts), across restarts too. One older than the newest
followed, or a deleted or withheld one, is reported as a freeze (device_client.freeze). A device on any release the
latest manifest's index lists reaches the latest in one swap: it picks the cheapest path
(device_client.catchup: a chain of deltas, or the full file), fetches the steps' manifests and chunks
(device_client.download), applies the steps in order to one staged copy, checking each step's target
sha256, and commits once. A newer manifest arriving mid-download is planned afresh; chunks of steps on
both paths are kept. A chunk that fails its sha256 is dropped and fetched again (device_client.stall).
Verification is the codec's: signature, then policy (version, expiry), then each chunk, the payload,
the decoded records and each target sha256; then, when the manifest carries a canary, the staged file
must pass it (device_client.predictor) before the swap, so a model that fails it never runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from codec.canary import Canary
from codec.errors import ChunkError, IntegrityError, UpdateError
from codec.keys import VerifyKey
from codec.limits import Limits
from codec.manifest import Manifest, read_manifest, signed_digest
from codec.topics import chunk_topic, manifest_topic
from device_client.catchup import DEFAULT_MAX_STEPS
from device_client.download import Download
from device_client.errors import DeviceError, ManifestMissingError, ReplayedError
from device_client.freeze import FreezeWatch
from device_client.policy import DevicePolicy
from device_client.spool import Spool
from device_client.staging import build_staged, check_room
from device_client.stall import Refetch, StallWatch
from device_client.states import NEXT, State
from device_client.status import LastError, Progress, sanitised
from device_client.store import Installed, ModelStore
from device_client.verdicts import is_content_failure, replaces

log = logging.getLogger("rankcast.device")
#: Latest manifests kept in memory to pin steps of a later path (each at most the 128 KiB manifest limit).
SEEN_MANIFESTS = 16
#: Codes of a freeze, cleared once the manifest followed is back.
_FREEZE_CODES = (ReplayedError.code, ManifestMissingError.code)


class ModelUpdater:
    """Follows one model: decides on manifests, spools chunks, applies and commits releases."""

    def __init__(
        self,
        *,
        model: str,
        device_id: str,
        store: ModelStore,
        spool: Spool,
        trusted_keys: Mapping[str, VerifyKey],
        limits: Limits,
        clock: Callable[[], float],
        prefix: str,
        window: int,
        canary_check: Callable[[Path, Canary], None] | None = None,
        on_commit: Callable[[Installed], None] | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        stall_after: float = 120.0,
        fleet: str | None = None,
        manifest_wait: float = 60.0,
    ) -> None:
        """``canary_check`` runs a manifest's canary on a staged file and raises (default:
        device_client.predictor.check_canary); ``on_commit`` hears of every committed model; ``max_steps``
        bounds the deltas applied in a row; ``stall_after`` is the least stall deadline in seconds;
        ``fleet`` the fleet whose releases this device takes (None: any); ``manifest_wait`` the seconds
        after subscribing before a manifest that did not arrive is reported."""
        self.model, self.device_id = model, device_id
        self.store, self.spool = store, spool
        self.trusted_keys, self.limits, self.clock = trusted_keys, limits, clock
        self.prefix, self.window = prefix, window
        self.policy = DevicePolicy(model, device_id, fleet, max_steps, clock)
        self.canary_check, self.on_commit = canary_check or _check_canary, on_commit
        self.state = State.IDLE
        self.download: Download | None = None
        self.last_error: LastError | None = None
        #: time.monotonic() when last_error was set, so a device reports its most recent error.
        self.error_time = 0.0
        #: How often each chunk, by (version, kind, index), arrived from the network for the download in
        #: progress or the last one (a newer plan of it included), and their bytes.
        self.fetched: Counter[tuple[int, str, int]] = Counter()
        self.fetched_bytes = 0
        self._manifest_digest: bytes | None = None
        #: The identity of the latest manifest of the download in progress (what a refusal of it is kept under).
        self._download_digest: bytes | None = None
        #: Latest manifests seen in this process (sha256 -> envelope): a newer index pins them, so a burst of
        #: releases needs no manifest fetched twice.
        self._seen: dict[bytes, bytes] = {}
        #: The download's progress against its stall deadline (device_client.stall).
        self.watch = StallWatch(stall_after)
        #: Chunk topics whose message failed its sha256, to fetch again with backoff.
        self._refetch = Refetch()
        self._progress_wall = 0.0
        #: The newest manifest followed, and the wait for one after subscribing (device_client.freeze).
        self.freeze = FreezeWatch(spool.root / "followed.json", manifest_wait)

    def wanted_topics(self) -> set[str]:
        """The manifest topic, and while downloading the steps' manifests or next ``window`` missing chunks."""
        topics = {manifest_topic(self.model, self.prefix)}
        if self.state is State.DOWNLOADING and self.download is not None:
            topics |= self.download.wanted_topics(self.window, self.prefix)
        return topics

    def on_manifest(self, envelope: bytes) -> None:
        """The latest manifest arrived (retained on subscribe, or newly published).

        One whose signature does not verify (junk, an unknown key, a forgery) is reported and changes
        nothing else: not the download in progress, not the state, not the disk. A verified one is
        handled once per signed content (its identity, however its envelope is encoded)."""
        try:
            identity = signed_digest(envelope, self.limits)
            manifest = read_manifest(envelope, self.trusted_keys, self.limits)
        except UpdateError as exc:
            self._report_unverified(exc)
            return
        if self.policy.addressed(manifest):  # a manifest for this device came: not missing
            self.freeze.arrived()
        if identity == self._manifest_digest:
            return
        self._manifest_digest = identity
        if self.policy.follows(manifest):
            try:
                self.freeze.check(manifest)
            except ReplayedError as exc:
                self._report_freeze(exc, manifest.version)
                return
            if self.last_error is not None and self.last_error.code in _FREEZE_CODES:
                self.last_error = None
        refused = self.spool.refusal(identity)
        if refused is not None:
            self._set_error(refused)
            self._enter(State.ERROR)
            return
        current = self.download
        try:
            accepted = self._accept(manifest)
            download = None if accepted is None else Download(*accepted, self._seen, self.limits)
        except (UpdateError, DeviceError) as exc:
            if current is not None:  # a release that does not apply leaves the download in progress alone
                self._report(exc, manifest.version)
            else:
                self._refuse(exc, manifest.version, remember=is_content_failure(exc))
            return
        if len(self._seen) >= SEEN_MANIFESTS:
            self._seen.pop(next(iter(self._seen)))
        self._seen[hashlib.sha256(envelope).digest()] = envelope
        if current is not None and not replaces(manifest, current.latest, download):
            log.info("%s: release %d changes nothing: release %d is in progress", self.model, manifest.version,
                     current.latest.version)
            return
        if download is None:
            self._drop_download()
            self._enter(State.IDLE)
            return
        if self.download is None:  # a new download, not a newer plan of the one in progress
            self.fetched, self.fetched_bytes = Counter(), 0
        self.download, self._download_digest = download, identity
        self.watch.restart()
        self._progress_wall = self.clock()
        log.info("%s: release %d accepted: %s", self.model, accepted[0].version,
                 " then ".join(f"{s.version} ({s.kind}, {s.payload_length} B)" for s in accepted[1]))
        self._enter(State.DOWNLOADING)
        self._open_when_known()

    def on_manifest_deleted(self) -> None:
        """The retained manifest was deleted (an empty retained message): a freeze, once one was followed;
        nothing else changes, and the same manifest published again is handled afresh."""
        self._manifest_digest = None
        error = self.freeze.deleted()
        if error is not None:
            self._report_freeze(error, self.freeze.mark.version)

    def manifest_subscribed(self) -> None:
        """The manifest topic was (re)subscribed: its retained manifest should arrive (device_client.freeze)."""
        self.freeze.subscribed()

    def notice_missing(self, now: float | None = None) -> None:
        """Report the manifest as missing if none verified arrived within the wait after subscribing."""
        error = self.freeze.overdue(now)
        if error is not None:
            self._manifest_digest = None  # the same manifest arriving late is handled afresh, and clears this
            self._report_freeze(error, self.freeze.mark.version)

    def on_release_manifest(self, version: int, kind: str, envelope: bytes) -> None:
        """A step's own manifest arrived from its retained topic; ignored unless the download waits for it."""
        if self.state is not State.DOWNLOADING or self.download is None:
            return
        try:
            if self.download.add_manifest(version, kind, envelope):
                self._progressed()
                self._open_when_known()
        except IntegrityError as exc:  # not the pinned manifest: a stray message, not the signed release's fault
            log.warning("%s: ignored a manifest on release %d's topic: %s", self.model, version, exc)
        except UpdateError as exc:  # pinned, but not what the signed index says it is
            self._refuse(exc, self.download.latest.version)

    def on_chunk(self, version: int, kind: str, index: int, data: bytes) -> None:
        """A chunk arrived; one that belongs to no step of the download in progress is ignored."""
        release = self.download.spool_for(version, kind) if self.state is State.DOWNLOADING and self.download else None
        if release is None:
            return
        self.fetched[version, kind, index] += 1
        self.fetched_bytes += len(data)
        try:
            new = release.put(index, data)
        except ChunkError as exc:  # a bad message, not a bad release: dropped, and fetched again with backoff
            self._report(exc, self.download.latest.version)
            self._refetch.schedule(chunk_topic(self.model, version, kind, index, self.prefix), self.watch.monotonic())
            return
        if new:
            self._refetch.forget(chunk_topic(self.model, version, kind, index, self.prefix))
            self._progressed()
        if self.download.complete:
            self._enter(State.APPLYING)

    def resubscribe_due(self, now: float | None = None) -> set[str]:
        """The download's topics, when it is due to subscribe to them again (their retained messages are
        sent again: a chunk lost on the way, or retained again after a broker lost it); else nothing."""
        if self.state is not State.DOWNLOADING or self.download is None:
            return set()
        now = self.watch.monotonic() if now is None else now
        again = self._refetch.due(now)
        was_stalled = self.watch.stalled
        if not self.watch.due(now):
            return again
        if self.watch.stalled and not was_stalled:
            log.warning("%s: release %d stalled: no progress for %.0f s, %d still missing; the spool is kept and "
                        "the download resumes when they arrive", self.model, self.download.latest.version,
                        now - self.watch.progress_at, self.download.missing())
        return again | self.download.wanted_topics(self.window, self.prefix)

    @property
    def stalled(self) -> bool:
        """Downloading, without progress for a while (device_client.stall)."""
        return self.download is not None and self.state is State.DOWNLOADING and self.watch.stalled

    def _progressed(self) -> None:
        self.watch.progressed()
        self._progress_wall = self.clock()

    def _open_when_known(self) -> None:
        """Once every step's manifest is known: check the disk, then spool (resuming what is held)."""
        download = self.download
        if not download.manifests_known:
            return
        try:
            check_room(self.store, self.spool, self.model, download)
        except OSError as exc:  # the device's disk, not the release: not remembered
            self._refuse(exc, download.latest.version, remember=False)
            return
        download.open(self.spool)
        done, total, _ = download.done()
        log.info("%s: release %d: %d of %d chunks already spooled", self.model, download.latest.version, done, total)
        if download.complete:
            self._enter(State.APPLYING)

    @property
    def latest_digest(self) -> bytes | None:
        """The identity (codec.manifest.signed_digest) of the last verified latest manifest this updater
        handled (None before the first)."""
        return self._manifest_digest

    @property
    def installed(self) -> Installed | None:
        """The running model, read from the store (an operator may have rolled it back meanwhile)."""
        return self.store.current(self.model)

    @property
    def ready_to_apply(self) -> bool:
        return self.state is State.APPLYING

    def apply(self) -> None:
        """Apply the download's steps in order to one staged copy, verify it, and swap it in atomically."""
        download = self.download
        manifest = download.latest
        staged = None
        try:
            self.policy.check(manifest, self.installed, self.store.rolled_back(self.model))
            staged, sha256 = build_staged(self.store, self.model, download, self.limits)
            self._enter(State.VERIFYING)
            if manifest.canary is not None:
                self.canary_check(staged, manifest.canary)
            committed = self.store.commit(self.model, staged, manifest.version, sha256)
        except (UpdateError, DeviceError, OSError) as exc:
            if staged is not None:
                self.store.discard(staged)
            # only what the signed content itself gets wrong is remembered: not the device's disk or float
            # environment, not a policy that another moment or an operator may change
            self._refuse(exc, manifest.version, remember=is_content_failure(exc))
            return
        log.info("%s: release %d committed in %d step(s) (sha256 %s)", self.model, manifest.version,
                 len(download.steps), sha256.hex()[:16])
        self._enter(State.COMMITTED)
        self._notify(committed)
        self.last_error = None
        self._drop_download()
        self._enter(State.IDLE)

    def _notify(self, installed: Installed) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit(installed)
        except Exception:  # noqa: BLE001 - the commit stands whatever a listener does
            log.exception("%s: a commit listener failed", self.model)

    def progress(self) -> Progress | None:
        if self.download is None or self.state not in (State.DOWNLOADING, State.APPLYING, State.VERIFYING):
            return None
        done, total, bytes_done = self.download.done()
        return Progress(self.model, self.download.latest.version, done, total, bytes_done, self.download.payload_bytes,
                        self.download.missing(), round(self._progress_wall, 1))

    def fail(self, exc: BaseException) -> None:
        """Record an unexpected failure (a bug, or an error outside the codec) without dying."""
        version = self.download.latest.version if self.download else 0
        self._refuse(exc, version, remember=False)

    def _accept(self, manifest: Manifest) -> tuple[Manifest, list] | None:
        """The verified manifest and the path to it if this device should install it; None if there is
        nothing to do."""
        steps = self.policy.plan(manifest, self.installed, self.store.rolled_back(self.model))
        return None if steps is None else (manifest, steps)

    def _refuse(self, exc: BaseException, release: int, remember: bool = True) -> None:
        """Enter error for ``exc``. A refusal of the release is remembered and its chunks dropped; a fault
        of the device (``remember=False``: its disk, its float environment, a bug) keeps the spool, so a
        restart resumes the download instead of fetching it again."""
        self._set_error(LastError.from_exception(exc, self.model, release))
        log.warning("%s: release %d refused [%s]: %s", self.model, release, self.last_error.code, exc)
        digest = self._download_digest if self.download is not None else self._manifest_digest
        if remember and digest is not None:
            self.spool.refuse(digest, self.last_error)
        if remember:
            self._drop_download()
        else:
            self.download = None
        self._enter(State.ERROR)

    def _report(self, exc: BaseException, release: int) -> None:
        """Report ``exc`` in the status without changing the state or the download."""
        self._set_error(LastError.from_exception(exc, self.model, release))
        log.warning("%s: release %d: %s [%s]", self.model, release, sanitised(str(exc)), self.last_error.code)

    def _report_freeze(self, exc: DeviceError, release: int) -> None:
        """Report a freeze: the download in progress goes on; without one the device is in error (it runs
        its model, but the operator should know)."""
        if self.download is not None:
            self._report(exc, release)
            return
        self._set_error(LastError.from_exception(exc, self.model, release))
        log.warning("%s: [%s] %s", self.model, exc.code, exc)
        self._enter(State.ERROR)

    def _report_unverified(self, exc: UpdateError) -> None:
        """A manifest refused before its signature verified: its code, and nothing it claims (no version, no
        text from the message); nothing is written to disk and nothing else changes."""
        topic = manifest_topic(self.model, self.prefix)
        self._set_error(LastError(exc.code, f"a manifest on {topic} was refused before its signature verified "
                                            f"[{exc.code}]; the device carries on as it was", 0, self.model))
        log.warning("%s: refused a manifest that did not verify [%s]: %s", self.model, exc.code,
                    sanitised(str(exc)))

    def _set_error(self, error: LastError) -> None:
        self.last_error = error
        self.error_time = time.monotonic()

    def _drop_download(self) -> None:
        self.download = None
        self.spool.clear()

    def _enter(self, state: State) -> None:
        if state not in NEXT[self.state]:
            raise RuntimeError(f"{self.model}: no transition from {self.state.value} to {state.value}")
        self.state = state


def _check_canary(path: Path, canary: Canary) -> None:
    from device_client.predictor import check_canary  # loads the TFLite runtime only for canaries

    check_canary(path, canary)
