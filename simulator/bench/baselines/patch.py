"""(c) zstd of the fine-tuned model file with the deployed file as a raw-content dictionary.

This is what ``zstd --patch-from`` does: matches against the old file make unchanged bytes almost free.
The patch is not a codec payload, so it is applied here by decompression, not by codec.apply.
"""

from __future__ import annotations

import zstandard

PATCH_LEVELS = (3, 19, 22)


def make_patch(base_file: bytes, target_file: bytes, level: int = 19) -> bytes:
    """The target file compressed against the base file as dictionary (long-distance matching on)."""
    dictionary = zstandard.ZstdCompressionDict(base_file, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    params = zstandard.ZstdCompressionParameters.from_level(
        level, source_size=len(target_file), enable_ldm=True, window_log=_window_log(base_file, target_file)
    )
    return zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params).compress(target_file)


def apply_patch(base_file: bytes, patch: bytes) -> bytes:
    """The target file back from its patch and the base file."""
    dictionary = zstandard.ZstdCompressionDict(base_file, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=1 << 31).decompress(patch)


def _window_log(base_file: bytes, target_file: bytes) -> int:
    return max(10, min(31, (len(base_file) + len(target_file)).bit_length()))
