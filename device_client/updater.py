"""One followed model's update state machine (device_client.states); no network, no MQTT (the session
feeds it messages).

Every manifest is handled once per signed content. One that does not verify changes nothing; a verified
one that does not apply is reported and leaves a download in progress alone; only a release whose own
content fails is remembered (device_client.verdicts), across restarts too. A device on any release the
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

import errno
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from codec.apply import apply_payload
from codec.canary import Canary
from codec.errors import BaseMismatchError, ChunkError, IntegrityError, UpdateError, WrongModelError
from codec.keys import VerifyKey
from codec.limits import MIB, Limits
from codec.manifest import Manifest, check_fresh, read_manifest, signed_digest
from codec.topics import chunk_topic, manifest_topic
from device_client.catchup import DEFAULT_MAX_STEPS, describe_miss, plan_path
from device_client.download import Download
from device_client.errors import DeviceError, RolledBackError
from device_client.spool import Spool
from device_client.stall import Refetch, StallWatch
from device_client.states import NEXT, State
from device_client.status import LastError, Progress, sanitised
from device_client.store import Installed, ModelStore
from device_client.verdicts import is_content_failure, replaces

log = logging.getLogger("rankcast.device")
#: Room a release leaves free besides its own files (state.json, logs, the file system's own needs).
ROOM_MARGIN = 4 * MIB
#: Latest manifests kept in memory to pin steps of a later path (each at most the 128 KiB manifest limit).
SEEN_MANIFESTS = 16


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
    ) -> None:
        """``canary_check`` runs a manifest's canary on a staged file and raises (default:
        device_client.predictor.check_canary); ``on_commit`` hears of every committed model; ``max_steps``
        bounds the deltas applied in a row; ``stall_after`` is the least stall deadline in seconds."""
        self.model, self.device_id = model, device_id
        self.store, self.spool = store, spool
        self.trusted_keys, self.limits, self.clock = trusted_keys, limits, clock
        self.prefix, self.window, self.max_steps = prefix, window, max_steps
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
        #: Latest manifests seen in this process (sha256 -> envelope): a newer index pins them, so a burst of
        #: releases needs no manifest fetched twice.
        self._seen: dict[bytes, bytes] = {}
        #: The download's progress against its stall deadline (device_client.stall).
        self.watch = StallWatch(stall_after)
        #: Chunk topics whose message failed its sha256, to fetch again with backoff.
        self._refetch = Refetch()
        self._progress_wall = 0.0

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
        if identity == self._manifest_digest:
            return
        self._manifest_digest = identity
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
        self.download = download
        self.watch.restart()
        self._progress_wall = self.clock()
        log.info("%s: release %d accepted: %s", self.model, accepted[0].version,
                 " then ".join(f"{s.version} ({s.kind}, {s.payload_length} B)" for s in accepted[1]))
        self._enter(State.DOWNLOADING)
        self._open_when_known()

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
            self._check_room(download)
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
            installed = self.installed
            self._check_policy(manifest, installed)
            first = download.steps[0]
            if first.kind == "delta" and (installed is None or installed.sha256 != first.base_sha256):
                raise BaseMismatchError(describe_miss(manifest, installed and installed.sha256,
                                                      installed and installed.version))
            staged = self.store.stage(self.model, copy_current=first.kind == "delta",
                                      needs=self._staged_bytes(download) + ROOM_MARGIN)
            for step, release in download.ordered():
                sha256 = apply_payload(staged, release.payload(), step.decompressed_length, self.limits,
                                       self.store.slot_reader, full=step.payload_kind == "full")
                if sha256 != step.target_sha256:
                    raise IntegrityError(
                        f"release {step.version} produced a model with sha256 {sha256.hex()[:16]}…, its manifest "
                        f"promises {step.target_sha256.hex()[:16]}…; the running model is kept"
                    )
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
        running_sha256, running_version = (installed.sha256, installed.version) if installed else (None, None)
        steps = plan_path(manifest, running_sha256, running_version, self.max_steps)
        if steps is None:
            raise BaseMismatchError(describe_miss(manifest, running_sha256, running_version))
        return manifest, steps

    def _check_policy(self, manifest: Manifest, installed: Installed | None) -> None:
        rolled_back = self.store.rolled_back(self.model)
        if rolled_back is not None and manifest.version <= rolled_back:
            raise RolledBackError(
                f"release {manifest.version} was rolled back on this device (up to version {rolled_back}); "
                "publish a newer version"
            )
        check_fresh(manifest, model=self.model, current_version=installed.version if installed else None,
                    now=self.clock())

    def _check_room(self, download: Download) -> None:
        """Refuse up front (disk-full) a download the disk cannot hold: every step's chunks and the staged
        file. Chunks already spooled (resumed, or another release's that opening the download frees) count
        as room."""
        need = download.payload_bytes + self._staged_bytes(download) + ROOM_MARGIN
        room = self.store.room(self.model) + self.spool.held_bytes()
        if room < need:
            raise OSError(errno.ENOSPC, f"release {download.latest.version} needs {need >> 20} MiB on disk, "
                          f"{room >> 20} MiB are free; free space and restart the client")

    def _staged_bytes(self, download: Download) -> int:
        """The staged file's size: the running file's when the path starts with a delta, at most the full
        payload's document when it starts with the full file."""
        first = download.manifests[download.steps[0].key]
        installed = self.installed
        if first.payload_kind == "full" or installed is None:
            return first.decompressed_length
        return installed.path.stat().st_size

    def _refuse(self, exc: BaseException, release: int, remember: bool = True) -> None:
        """Enter error for ``exc``. A refusal of the release is remembered and its chunks dropped; a fault
        of the device (``remember=False``: its disk, its float environment, a bug) keeps the spool, so a
        restart resumes the download instead of fetching it again."""
        self._set_error(LastError.from_exception(exc, self.model, release))
        log.warning("%s: release %d refused [%s]: %s", self.model, release, self.last_error.code, exc)
        if remember and self._manifest_digest is not None:
            self.spool.refuse(self._manifest_digest, self.last_error)
        if remember:
            self._drop_download()
        else:
            self.download = None
        self._enter(State.ERROR)

    def _report(self, exc: BaseException, release: int) -> None:
        """Report ``exc`` in the status without changing the state or the download."""
        self._set_error(LastError.from_exception(exc, self.model, release))
        log.warning("%s: release %d: %s [%s]", self.model, release, sanitised(str(exc)), self.last_error.code)

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
