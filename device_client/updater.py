"""One followed model's update state machine; no network, no MQTT (the session feeds it messages).

    idle -> downloading -> applying -> verifying -> committed -> idle
    any step -> error (the running model untouched); error -> idle or downloading on a new manifest

Every manifest is handled once per distinct envelope: a refused one is remembered (across restarts too)
and not retried until a different manifest arrives. A delta that arrives while an earlier release is
still downloading, made for that release's result, is queued and applied after it (a burst of
releases), instead of being refused as made for another base. Verification is the codec's: signature, then policy
(version, base, expiry), then each chunk, the payload, the decoded records and the target sha256; then,
when the manifest carries a canary, the staged file must pass it (device_client.predictor) before the
swap, so a model that fails it never runs.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from codec.apply import apply_payload
from codec.canary import Canary
from codec.errors import BaseMismatchError, FloatEnvironmentError, IntegrityError, UpdateError, WrongModelError
from codec.keys import VerifyKey
from codec.limits import MIB, Limits
from codec.manifest import Manifest, check_applicable, read_manifest, read_manifest_unverified
from codec.topics import chunk_topic, manifest_topic
from device_client.errors import DeviceError, RolledBackError
from device_client.spool import ReleaseSpool, Spool
from device_client.status import LastError, Progress
from device_client.store import Installed, ModelStore

log = logging.getLogger("rankcast.device")
#: Room a release leaves free besides its own files (state.json, logs, the file system's own needs).
ROOM_MARGIN = 4 * MIB


class State(enum.Enum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    APPLYING = "applying"
    VERIFYING = "verifying"
    COMMITTED = "committed"
    ERROR = "error"


_NEXT = {
    State.IDLE: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.ERROR},
    State.DOWNLOADING: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.ERROR},
    # A release waiting to be applied may still be superseded by a newer manifest.
    State.APPLYING: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.VERIFYING, State.ERROR},
    State.VERIFYING: {State.COMMITTED, State.ERROR},
    State.COMMITTED: {State.IDLE},
    State.ERROR: {State.IDLE, State.DOWNLOADING, State.APPLYING, State.ERROR},
}


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
    ) -> None:
        """``canary_check`` runs a manifest's canary on a staged file and raises (default:
        device_client.predictor.check_canary); ``on_commit`` hears of every committed model."""
        self.model, self.device_id = model, device_id
        self.store, self.spool = store, spool
        self.trusted_keys, self.limits, self.clock = trusted_keys, limits, clock
        self.prefix, self.window = prefix, window
        self.canary_check, self.on_commit = canary_check or _check_canary, on_commit
        self.state = State.IDLE
        self.release: ReleaseSpool | None = None
        self.last_error: LastError | None = None
        #: time.monotonic() when last_error was set, so a device reports its most recent error.
        self.error_time = 0.0
        #: How often each chunk of the latest release arrived from the network (since this process started).
        self.fetched: Counter[int] = Counter()
        self._manifest_digest: bytes | None = None
        #: Verified deltas that apply on top of the release in progress, in order (envelope, manifest):
        #: a burst of releases published while this device was still downloading.
        self._queued: list[tuple[bytes, bytes, Manifest]] = []  # (sha256 of the envelope, envelope, manifest)

    def wanted_topics(self) -> set[str]:
        """The manifest topic, and while downloading the next ``window`` missing chunks' topics."""
        topics = {manifest_topic(self.model, self.prefix)}
        if self.state is State.DOWNLOADING and self.release is not None:
            version = self.release.manifest.version
            topics |= {chunk_topic(self.model, version, i, self.prefix) for i in self.release.missing(self.window)}
        return topics

    def on_manifest(self, envelope: bytes) -> None:
        """A manifest arrived (retained on subscribe, or newly published)."""
        digest = hashlib.sha256(envelope).digest()
        if digest == self._manifest_digest or any(queued[0] == digest for queued in self._queued):
            return
        self._manifest_digest = digest
        refused = self.spool.refusal(digest)
        if refused is not None:
            self._set_error(refused)
            self._enter(State.ERROR)
            return
        try:
            manifest = self._accept(envelope)
        except BaseMismatchError as exc:
            if not self._queue_successor(envelope):
                self._refuse(exc, _claimed_version(envelope, self.limits))
            return
        except (UpdateError, DeviceError) as exc:
            self._refuse(exc, _claimed_version(envelope, self.limits))
            return
        if manifest is None:
            self._drop_release()
            self._enter(State.IDLE)
        elif self.release is None or self.release.manifest.payload_sha256 != manifest.payload_sha256:
            try:
                self._check_room(manifest)
            except OSError as exc:  # the device's disk, not the release: not remembered
                self._refuse(exc, manifest.version, remember=False)
                return
            self._start(manifest)

    def on_chunk(self, version: int, index: int, data: bytes) -> None:
        """A chunk arrived; one that does not belong to the release in progress is ignored."""
        if self.state is not State.DOWNLOADING or self.release is None or version != self.release.manifest.version:
            return
        self.fetched[index] += 1
        try:
            self.release.put(index, data)
        except UpdateError as exc:
            self._refuse(exc, version)
            return
        if self.release.complete:
            self._enter(State.APPLYING)

    @property
    def installed(self) -> Installed | None:
        """The running model, read from the store (an operator may have rolled it back meanwhile)."""
        return self.store.current(self.model)

    @property
    def ready_to_apply(self) -> bool:
        return self.state is State.APPLYING

    def apply(self) -> None:
        """Apply the complete release to a copy of the model, verify it, and swap it in atomically."""
        release = self.release
        manifest = release.manifest
        staged = None
        try:
            self._check_policy(manifest, self.installed)
            payload = release.payload()
            full = manifest.payload_kind == "full"
            staged = self.store.stage(self.model, copy_current=not full,
                                      needs=self._staged_bytes(manifest) + ROOM_MARGIN)
            sha256 = apply_payload(staged, payload, manifest.decompressed_length, self.limits, self.store.slot_reader,
                                   full=full)
            self._enter(State.VERIFYING)
            if sha256 != manifest.target_sha256:
                raise IntegrityError(
                    f"release {manifest.version} produced a model with sha256 {sha256.hex()[:16]}…, the manifest "
                    f"promises {manifest.target_sha256.hex()[:16]}…; the running model is kept"
                )
            if manifest.canary is not None:
                self.canary_check(staged, manifest.canary)
            installed = self.store.commit(self.model, staged, manifest.version, sha256)
        except (UpdateError, DeviceError, OSError) as exc:
            if staged is not None:
                self.store.discard(staged)
            # a full disk or this process's float environment is the device's, not the release's
            self._refuse(exc, manifest.version, remember=not isinstance(exc, OSError | FloatEnvironmentError))
            return
        log.info("%s: release %d committed (sha256 %s)", self.model, manifest.version, sha256.hex()[:16])
        queued = self._queued
        self._enter(State.COMMITTED)
        self._notify(installed)
        self.last_error = None
        self._drop_release()
        self._enter(State.IDLE)
        self._start_queued(queued)

    def _queue_successor(self, envelope: bytes) -> bool:
        """Keep a delta made for the release in progress (or for the last one queued) to apply after it."""
        end = self._queued[-1][2] if self._queued else (self.release.manifest if self.release else None)
        if end is None:
            return False
        manifest = read_manifest(envelope, self.trusted_keys, self.limits)
        try:
            check_applicable(manifest, model=self.model, current_version=end.version,
                             current_sha256=end.target_sha256, now=self.clock())
        except UpdateError:
            return False
        self._queued.append((hashlib.sha256(envelope).digest(), envelope, manifest))
        log.info("%s: release %d queued: it applies on top of release %d, still in progress", self.model,
                 manifest.version, end.version)
        return True

    def _start_queued(self, queued: list[tuple[bytes, bytes, Manifest]]) -> None:
        """After a commit, take up the next queued release; the rest stay queued behind it."""
        if not queued:
            return
        _, envelope, manifest = queued[0]
        self._manifest_digest = None
        self.on_manifest(envelope)
        if self.release is not None and self.release.manifest == manifest:
            self._queued = queued[1:]

    def _notify(self, installed: Installed) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit(installed)
        except Exception:  # noqa: BLE001 - the commit stands whatever a listener does
            log.exception("%s: a commit listener failed", self.model)

    def progress(self) -> Progress | None:
        if self.release is None or self.state not in (State.DOWNLOADING, State.APPLYING, State.VERIFYING):
            return None
        manifest = self.release.manifest
        return Progress(self.model, manifest.version, self.release.chunks_done, manifest.chunk_count,
                        self.release.bytes_done, manifest.payload_length)

    def fail(self, exc: BaseException) -> None:
        """Record an unexpected failure (a bug, or an error outside the codec) without dying."""
        version = self.release.manifest.version if self.release else 0
        self._refuse(exc, version, remember=False)

    def _accept(self, envelope: bytes) -> Manifest | None:
        """The verified manifest if this device should install it; None if there is nothing to do."""
        manifest = read_manifest(envelope, self.trusted_keys, self.limits)
        if manifest.model != self.model:
            raise WrongModelError(f"the manifest on {self.model}'s topic is for model {manifest.model!r}")
        installed = self.installed
        if installed is not None and manifest.target_sha256 == installed.sha256:
            return None
        if not manifest.in_rollout(self.device_id):
            log.info("%s: release %d is not rolled out to this device (%.1f%%)", self.model, manifest.version,
                     manifest.rollout_percent)
            return None
        self._check_policy(manifest, installed)
        return manifest

    def _check_policy(self, manifest: Manifest, installed: Installed | None) -> None:
        rolled_back = self.store.rolled_back(self.model)
        if rolled_back is not None and manifest.version <= rolled_back:
            raise RolledBackError(
                f"release {manifest.version} was rolled back on this device (up to version {rolled_back}); "
                "publish a newer version"
            )
        check_applicable(
            manifest, model=self.model, current_version=installed.version if installed else None,
            current_sha256=installed.sha256 if installed else None, now=self.clock(),
        )

    def _check_room(self, manifest: Manifest) -> None:
        """Refuse up front (disk-full) a release the disk cannot hold: its chunks and the staged file. The
        chunks already spooled (this release's, resumed, or another's that opening it frees) count as room."""
        need = manifest.payload_length + self._staged_bytes(manifest) + ROOM_MARGIN
        room = self.store.room(self.model) + self.spool.held_bytes()
        if room < need:
            raise OSError(errno.ENOSPC, f"release {manifest.version} needs {need >> 20} MiB on disk, "
                          f"{room >> 20} MiB are free; free space and restart the client")

    def _staged_bytes(self, manifest: Manifest) -> int:
        """The staged file's size: the running file's for a delta, at most the payload's document for a full
        release."""
        installed = self.installed
        if manifest.payload_kind == "full" or installed is None:
            return manifest.decompressed_length
        return installed.path.stat().st_size

    def _start(self, manifest: Manifest) -> None:
        self._queued = []
        self.fetched = Counter()
        self.release = self.spool.open(manifest)  # resumes this release's chunks, drops any other's
        log.info("%s: release %d accepted, %d of %d chunks already spooled", self.model, manifest.version,
                 self.release.chunks_done, manifest.chunk_count)
        self._enter(State.APPLYING if self.release.complete else State.DOWNLOADING)

    def _refuse(self, exc: BaseException, release: int, remember: bool = True) -> None:
        """Enter error for ``exc``. A refusal of the release is remembered and its chunks dropped; a fault
        of the device (``remember=False``: its disk, its float environment, a bug) keeps the spool, so a
        restart resumes the download instead of fetching it again."""
        self._set_error(LastError.from_exception(exc, self.model, release))
        log.warning("%s: release %d refused [%s]: %s", self.model, release, self.last_error.code, exc)
        if remember and self._manifest_digest is not None:
            self.spool.refuse(self._manifest_digest, self.last_error)
        if remember:
            self._drop_release()
        else:
            self.release, self._queued = None, []
        self._enter(State.ERROR)

    def _set_error(self, error: LastError) -> None:
        self.last_error = error
        self.error_time = time.monotonic()

    def _drop_release(self) -> None:
        self.release = None
        self._queued = []
        self.spool.clear()

    def _enter(self, state: State) -> None:
        if state not in _NEXT[self.state]:
            raise RuntimeError(f"{self.model}: no transition from {self.state.value} to {state.value}")
        self.state = state


def _check_canary(path: Path, canary: Canary) -> None:
    from device_client.predictor import check_canary  # loads the TFLite runtime only for canaries

    check_canary(path, canary)


def _claimed_version(envelope: bytes, limits: Limits) -> int:
    """The version a refused manifest claims, for the status report only (0 if unreadable)."""
    try:
        return read_manifest_unverified(envelope, limits).version
    except UpdateError:
        return 0
