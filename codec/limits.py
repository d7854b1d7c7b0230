"""Limits a reader enforces before it allocates memory for anything it was sent."""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

#: Largest chunk a release may use: the payload limit of AWS IoT Core-class brokers.
MAX_CHUNK_SIZE = 128 * KIB
#: Smallest chunk a release may use (smaller chunks only add per-message overhead).
MIN_CHUNK_SIZE = 256
#: Default chunk size for publishing.
DEFAULT_CHUNK_SIZE = 32 * KIB
#: Largest payload a format-2 manifest envelope carries inline instead of on a chunk topic. A chunk on its
#: own topic costs a device a SUBSCRIBE, an UNSUBSCRIBE and a PUBLISH's framing (~175 B with the topic
#: names); inline it costs ~10 B. Kept small because every device receives the latest manifest, the ones
#: outside the rollout too, and a release's other manifests repeat it.
MAX_INLINE_BYTES = 4 * KIB


@dataclass(frozen=True)
class Limits:
    """Upper bounds for everything a device decodes. Defaults suit a Raspberry Pi-class device."""

    max_manifest_bytes: int = 128 * KIB
    max_chunks: int = 3500
    max_payload_bytes: int = 256 * MIB
    max_decompressed_bytes: int = 512 * MIB
    max_records: int = 4096
    max_record_bytes: int = 256 * MIB
    max_tensor_elements: int = 64 * 1024 * 1024
    max_rank: int = 1024
    max_dims: int = 8
    max_name_length: int = 256
    max_window_bytes: int = 8 * MIB

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"limit {name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = Limits()
