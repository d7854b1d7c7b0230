"""A download in progress: the releases on a device's path to the latest one, their manifests and chunks.

The latest manifest is verified by its signature; every other step's manifest arrives from its retained
topic and is trusted through the pin in the latest manifest's index (codec.manifest.read_pinned_manifest).
Once every step's manifest is known, their chunks are spooled (device_client.spool), the first step's
first, a window at a time; a chunk a step's manifest envelope carries inline (codec.manifest_compact) goes
into the same spool as one from its topic would, so the device never subscribes to that release's chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

from codec.limits import Limits
from codec.manifest import Manifest, inline_chunk, read_pinned_manifest
from codec.release_index import IndexEntry
from codec.topics import chunk_topic, release_manifest_topic
from device_client.catchup import Step
from device_client.spool import ReleaseSpool, Spool
from device_client.status import Progress


class Download:
    """The path to ``latest``: its steps in order, each step's manifest once known, and their spools."""

    def __init__(self, latest: Manifest, steps: list[Step], known: dict[bytes, bytes], limits: Limits,
                 envelope: bytes | None = None) -> None:
        """``known`` maps envelope sha256 to envelopes this device already holds (earlier latest manifests);
        ``envelope`` is the verified one ``latest`` came in (it may carry the chunk inline)."""
        inline = None if envelope is None else inline_chunk(envelope)
        self.latest, self.steps, self.limits = latest, steps, limits
        self.manifests: dict[tuple[int, str], Manifest] = {}
        #: The chunk of each release whose manifest envelope carries it, checked by the manifest's reader.
        self.inline: dict[tuple[int, str], bytes] = {} if inline is None else {latest.release_key: inline}
        self.spools: list[ReleaseSpool] = []
        for step in steps:
            if step.manifest_sha256 is None:
                self.manifests[step.key] = latest
            elif step.manifest_sha256 in known:
                self.add_manifest(step.version, step.kind, known[step.manifest_sha256])

    @property
    def manifests_known(self) -> bool:
        return len(self.manifests) == len(self.steps)

    @property
    def opened(self) -> bool:
        return bool(self.spools)

    def add_manifest(self, version: int, kind: str, envelope: bytes) -> bool:
        """Take a step's retained manifest; False if no step waits for it. Raises IntegrityError if it is not
        the pinned one, FormatError if the pinned one is not what its index entry says."""
        step = next((s for s in self.steps if s.key == (version, kind) and s.key not in self.manifests), None)
        if step is None:
            return False
        entry = IndexEntry(step.version, step.kind, step.base_sha256, step.target_sha256, step.payload_length,
                           step.manifest_sha256)
        self.manifests[step.key] = read_pinned_manifest(envelope, entry, self.latest.model, self.limits)
        inline = inline_chunk(envelope)
        if inline is not None:
            self.inline[step.key] = inline
        return True

    def open(self, spool: Spool) -> None:
        """Spool every step (resuming what is held, dropping chunks of releases off the path), and put in each
        chunk that came inline (checked again by the spool, as every chunk is)."""
        self.spools = spool.open_all([self.manifests[step.key] for step in self.steps])
        for manifest, release in self.ordered():
            if manifest.release_key in self.inline and not release.complete:
                release.put(0, self.inline[manifest.release_key])

    def ordered(self) -> Iterator[tuple[Manifest, ReleaseSpool]]:
        """Each step's manifest and spool, in the order they apply."""
        return zip((self.manifests[step.key] for step in self.steps), self.spools, strict=True)

    def wanted_topics(self, window: int, prefix: str) -> set[str]:
        """The manifests still missing, or the next ``window`` missing chunks of the first incomplete step."""
        model = self.latest.model
        if not self.manifests_known:
            return {release_manifest_topic(model, s.version, s.kind, prefix) for s in self.steps
                    if s.key not in self.manifests}
        for manifest, release in self.ordered():
            missing = release.missing(window)
            if missing:
                return {chunk_topic(model, manifest.version, manifest.payload_kind, i, prefix) for i in missing}
        return set()

    def spool_for(self, version: int, kind: str) -> ReleaseSpool | None:
        return next((r for m, r in self.ordered() if m.release_key == (version, kind)), None) if self.opened else None

    @property
    def complete(self) -> bool:
        return self.opened and all(release.complete for release in self.spools)

    @property
    def payload_bytes(self) -> int:
        """What the whole path downloads."""
        return sum(step.payload_length for step in self.steps)

    def missing(self) -> int:
        """Chunks still to come, and the manifests of steps not known yet (their chunks are not counted)."""
        done, total, _ = self.done()
        return total - done + len(self.steps) - len(self.manifests)

    def progress(self, model: str, last_progress: float) -> Progress:
        """The status's progress of this download; ``last_progress`` the Unix time something last arrived."""
        done, total, bytes_done = self.done()
        return Progress(model, self.latest.version, done, total, bytes_done, self.payload_bytes, self.missing(),
                        round(last_progress, 1))

    def done(self) -> tuple[int, int, int]:
        """Chunks held, chunks in all (as far as the manifests are known), payload bytes held."""
        known = [self.manifests[s.key] for s in self.steps if s.key in self.manifests]
        total = sum(m.chunk_count for m in known)
        if not self.opened:
            return 0, total, 0
        return sum(r.chunks_done for r in self.spools), total, sum(r.bytes_done for r in self.spools)
