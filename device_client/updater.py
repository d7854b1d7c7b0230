"""One followed model's update state machine (device_client.states); no network, no MQTT (the session
feeds it messages).

Every manifest is handled once per signed content. One that does not verify (device_client.trust: with
which keys), or whose chunk inline is not the one it signs, changes nothing; a verified one that does not
apply is reported and leaves a download in progress alone; only a release whose own content fails is
remembered (device_client.verdicts); one refused for trust or time is handled again when those change
(device_client.held). A replayed, deleted or withheld manifest is a freeze (device_client.freeze). A
device on any release the index lists reaches the latest in one swap by the cheapest path
(device_client.catchup): it fetches the steps' manifests and chunks, or takes a chunk carried inline
(device_client.download), applies the steps to one staged copy, checking each target sha256, and commits
once; a newer manifest mid-download is planned afresh, keeping the chunks both paths share. A chunk that
fails its sha256 is fetched again (device_client.stall). Verification is the codec's, then the canary.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from codec.canary import Canary
from codec.errors import ChunkError, IntegrityError, UpdateError
from codec.limits import Limits
from codec.manifest import Manifest, read_manifest, signed_digest
from codec.topics import chunk_topic, manifest_topic
from device_client.catchup import DEFAULT_MAX_STEPS
from device_client.download import Download
from device_client.errors import DeviceError, ManifestMissingError, ReplayedError
from device_client.freeze import FreezeWatch
from device_client.held import HeldManifest
from device_client.policy import DevicePolicy
from device_client.predictor import check_canary
from device_client.reports import ErrorReport
from device_client.spool import Spool
from device_client.staging import build_staged, check_room
from device_client.stall import Refetch, StallWatch
from device_client.states import NEXT, State
from device_client.status import LastError, Progress
from device_client.store import Installed, ModelStore
from device_client.trust import DeviceTrust
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
        trust: DeviceTrust,
        limits: Limits,
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
        after subscribing before a manifest that did not arrive is reported. ``trust`` gives the release keys
        and the device's time (its clock, never below the floor of signed creation times)."""
        self.model, self.device_id = model, device_id
        self.store, self.spool = store, spool
        self.trust, self.limits, self.clock = trust, limits, trust.time.now
        self.prefix, self.window = prefix, window
        self.policy = DevicePolicy(model, device_id, fleet, max_steps, self.clock)
        self.canary_check, self.on_commit = canary_check or check_canary, on_commit
        self.state = State.IDLE
        self.download: Download | None = None
        self.errors = ErrorReport(model)
        #: How often each chunk, by (version, kind, index), arrived from the network for the download in
        #: progress or the last one (a newer plan of it included), and their bytes.
        self.fetched: Counter[tuple[int, str, int]] = Counter()
        self.fetched_bytes = 0
        self._manifest_digest: bytes | None = None
        #: The latest manifest refused for trust or time, handled again when that may have changed.
        self.held = HeldManifest()
        #: The latest manifest envelope of the download in progress (checked again when the root changes).
        self._download_envelope = b""
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
        """The latest manifest arrived (retained on subscribe, or newly published). One whose signature
        does not verify (junk, an unknown key, a forgery) is reported and changes nothing else: not the
        download in progress, not the state, not the disk. A verified one is handled once per signed
        content (its identity, however its envelope is encoded)."""
        try:
            identity = signed_digest(envelope, self.limits)
            manifest = read_manifest(envelope, self.trust.release_keys(), self.limits)
        except UpdateError as exc:
            self.errors.unverified(exc, manifest_topic(self.model, self.prefix))
            self._hold(envelope, exc, None)
            return
        self.held.clear()
        self.trust.time.witness(manifest.created)
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
            self.errors.clear(_FREEZE_CODES)
        refused = self.spool.refusal(identity)
        if refused is not None:
            self.errors.set(refused)
            self._enter(State.ERROR)
            return
        current = self.download
        try:
            steps = self.policy.plan(manifest, self.installed, self.store.rolled_back(self.model))
            download = None if steps is None else Download(manifest, steps, self._seen, self.limits, envelope)
        except (UpdateError, DeviceError) as exc:
            if current is not None:  # a release that does not apply leaves the download in progress alone
                self.errors.report(exc, manifest.version)
            else:
                self._refuse(exc, manifest.version, remember=is_content_failure(exc))
            self._hold(envelope, exc, manifest)
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
        self.download, self._download_digest, self._download_envelope = download, identity, envelope
        self.watch.restart()
        self._progress_wall = self.clock()
        log.info("%s: release %d accepted: %s", self.model, manifest.version,
                 " then ".join(f"{s.version} ({s.kind}, {s.payload_length} B)" for s in steps))
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
        except ChunkError as exc:  # pinned, with a chunk inline that is not the one it signs: the release's fault
            self._refuse(exc, self.download.latest.version)
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
            self.errors.report(exc, self.download.latest.version)
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

    def reconsider(self, trust_changed: bool = False) -> None:
        """Handle the manifest refused for trust or time again (device_client.held) when the root changed or
        the device's time is back below the expiry that refused it. A root change also checks the download
        in progress again, so a release whose key was just revoked is not applied."""
        if trust_changed and self.download is not None:
            try:
                read_manifest(self._download_envelope, self.trust.release_keys(), self.limits)
            except UpdateError as exc:
                envelope = self._download_envelope
                self._refuse(exc, self.download.latest.version, remember=False)
                self._hold(envelope, exc, None)
                return
        envelope = self.held.due(trust_changed, self.clock())
        if envelope is not None:
            log.info("%s: reconsidering the manifest refused for %s", self.model, "trust" if trust_changed else "time")
            self._manifest_digest = None
            self.on_manifest(envelope)

    def _hold(self, envelope: bytes, exc: BaseException, manifest: Manifest | None) -> None:
        self.held.hold(envelope, exc, manifest, self.clock(), self.trust.root.expires if self.trust.root else None)

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
        (done, total, _), version = download.done(), download.latest.version
        log.info("%s: release %d: %d of %d chunks held (spooled or inline)", self.model, version, done, total)
        if download.complete:
            self._enter(State.APPLYING)

    @property
    def latest_digest(self) -> bytes | None:
        """The identity (codec.manifest.signed_digest) of the last verified latest manifest this updater
        handled (None before the first)."""
        return self._manifest_digest

    @property
    def last_error(self) -> LastError | None:
        """What the status reports for this model (device_client.reports)."""
        return self.errors.last

    @property
    def error_time(self) -> float:
        return self.errors.at

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
            self._hold(self._download_envelope, exc, manifest)
            return
        if self.trust.uses_root:
            self.trust.note_install(self.model, sha256, manifest.key_id)
        log.info("%s: release %d committed in %d step(s) (sha256 %s)", self.model, manifest.version,
                 len(download.steps), sha256.hex()[:16])
        self._enter(State.COMMITTED)
        self._notify(committed)
        self.errors.clear()
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
        busy = self.download is not None and self.state in (State.DOWNLOADING, State.APPLYING, State.VERIFYING)
        return self.download.progress(self.model, self._progress_wall) if busy else None

    def fail(self, exc: BaseException) -> None:
        """Record an unexpected failure (a bug, or an error outside the codec) without dying."""
        version = self.download.latest.version if self.download else 0
        self._refuse(exc, version, remember=False)

    def _refuse(self, exc: BaseException, release: int, remember: bool = True) -> None:
        """Enter error for ``exc``. A refusal of the release is remembered and its chunks dropped; a fault
        of the device (``remember=False``: its disk, its float environment, a bug) keeps the spool, so a
        restart resumes the download instead of fetching it again."""
        error = self.errors.of(exc, release)
        log.warning("%s: release %d refused [%s]: %s", self.model, release, error.code, exc)
        digest = self._download_digest if self.download is not None else self._manifest_digest
        if remember and digest is not None:
            self.spool.refuse(digest, error)
        if remember:
            self._drop_download()
        else:
            self.download = None
        self._enter(State.ERROR)

    def _report_freeze(self, exc: DeviceError, release: int) -> None:
        """Report a freeze: the download in progress goes on; without one the device is in error (it runs
        its model, but the operator should know)."""
        if self.download is not None:
            self.errors.report(exc, release)
            return
        self.errors.of(exc, release)
        log.warning("%s: [%s] %s", self.model, exc.code, exc)
        self._enter(State.ERROR)

    def _drop_download(self) -> None:
        self.download = None
        self.spool.clear()

    def _enter(self, state: State) -> None:
        if state not in NEXT[self.state]:
            raise RuntimeError(f"{self.model}: no transition from {self.state.value} to {state.value}")
        self.state = state

