"""What a verified manifest or a failure means for the download in progress and for the refusals a device
remembers (device_client.updater)."""

from __future__ import annotations

from codec.errors import ChunkError, FormatError, IntegrityError, LimitError, ModelMismatchError, NonFiniteError
from codec.manifest import Manifest
from device_client.download import Download
from device_client.errors import CanaryError


def replaces(manifest: Manifest, in_progress: Manifest, download: Download | None) -> bool:
    """Whether a verified ``manifest`` takes over from the download of ``in_progress``: it is newer and has
    something to download, or it is the same release signed again (a changed rollout or expiry), which
    decides even when it leaves nothing to download (a rollout narrowed or paused past this device)."""
    if manifest.version < in_progress.version:
        return False
    if manifest.version == in_progress.version and manifest.payload_sha256 == in_progress.payload_sha256:
        return True
    return manifest.version > in_progress.version and download is not None


def is_content_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the signed release's own fault (its payload, records, result or canary), which no
    retry can change: only those refusals are remembered."""
    return isinstance(exc, FormatError | LimitError | IntegrityError | NonFiniteError | ModelMismatchError |
                      CanaryError) and not isinstance(exc, ChunkError)
