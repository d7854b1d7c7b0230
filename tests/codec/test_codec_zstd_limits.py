"""Decompression limits: a zstd bomb is refused without the memory it would take, large windows too."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zstandard

from codec import LimitError, decode_payload, dense_record, encode_payload, iter_records
from codec.limits import MIB, Limits
from codec.payload import encode_document

GIB = 1 << 30
DECLARED = 1024  # what the (signed) manifest claims the payload decompresses to

#: Runs in a fresh interpreter: reads the bomb, takes a baseline, tries to decode it, measures peak growth.
#: A control allocation afterwards proves the meter sees growth (and that ru_maxrss counts KiB here).
_MEASURE = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    from codec import UpdateError, iter_records

    def peak_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    bomb = Path(sys.argv[1]).read_bytes()
    before = peak_kib()
    try:
        for _ in iter_records(bomb, int(sys.argv[2])):
            pass
        outcome = "accepted"
    except UpdateError as exc:
        outcome = type(exc).__name__
    after = peak_kib()
    control = bytearray(160 << 20)
    control[::4096] = b"x" * len(control[::4096])
    print(json.dumps({"outcome": outcome, "growth_kib": after - before, "control_kib": peak_kib() - after}))
    """
)


#: Linux starts a child's ru_maxrss at its parent's resident size; a small interpreter in between keeps
#: the large pytest process out of the measurement.
_LAUNCH = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def zeros_frame(total: int, *, content_size: bool, window_log: int) -> bytes:
    """A zstd frame of ``total`` zero bytes, compressed in 1 MiB pieces (never all in memory)."""
    params = zstandard.ZstdCompressionParameters.from_level(1, window_log=window_log, write_content_size=content_size)
    sink, piece = io.BytesIO(), bytes(1 << 20)
    writer = zstandard.ZstdCompressor(compression_params=params).stream_writer(
        sink, size=total if content_size else -1, closefd=False
    )
    with writer:
        for _ in range(total // len(piece)):
            writer.write(piece)
    return sink.getvalue()


def streamed_size(frame: bytes) -> int:
    """How many bytes ``frame`` really decompresses to, counted in 1 MiB pieces."""
    reader, total = zstandard.ZstdDecompressor().stream_reader(frame), 0
    while piece := reader.read(1 << 20):
        total += len(piece)
    return total


@pytest.mark.parametrize(
    ("content_size", "expected"),
    [(True, "IntegrityError"), (False, "LimitError")],
    ids=["size-in-header", "size-unknown"],
)
def test_a_zstd_bomb_is_refused_with_little_memory(
    tmp_path: Path, child_env: dict[str, str], content_size: bool, expected: str
) -> None:
    frame = zeros_frame(GIB, content_size=content_size, window_log=23)  # 1 GiB of zeros in an 8 MiB window
    parameters = zstandard.get_frame_parameters(frame)
    assert parameters.window_size <= Limits().max_window_bytes  # so the window check cannot stop it
    assert parameters.content_size == (GIB if content_size else zstandard.CONTENTSIZE_UNKNOWN)
    assert len(frame) < 256 * 1024 and streamed_size(frame) == GIB  # a few dozen KiB on the wire ...
    bomb = tmp_path / "bomb.zst"
    bomb.write_bytes(frame)
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCH, sys.executable, "-c", _MEASURE, str(bomb), str(DECLARED)],
        capture_output=True, text=True, timeout=120, env=child_env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == expected, report
    assert report["growth_kib"] < 64 * 1024, report  # ... and well under 64 MiB of memory to refuse
    assert report["control_kib"] >= 64 * 1024, report  # the meter does see an allocation of that size


def test_a_frame_whose_window_exceeds_the_limit_is_refused() -> None:
    document = encode_document([dense_record("bias", np.ones(4))])
    for window_log, limits in ((24, Limits()), (21, Limits(max_window_bytes=MIB))):
        compressor = zstandard.ZstdCompressor(
            compression_params=zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log)
        ).compressobj()
        frame = compressor.compress(document) + compressor.flush()
        assert zstandard.get_frame_parameters(frame).window_size == 1 << window_log
        with pytest.raises(LimitError):
            decode_payload(frame, len(document), limits)


def test_a_frame_with_a_window_at_the_limit_decodes() -> None:
    record = dense_record("bias", np.ones(4))
    document = encode_document([record])
    compressor = zstandard.ZstdCompressor(
        compression_params=zstandard.ZstdCompressionParameters.from_level(3, window_log=23)
    ).compressobj()
    frame = compressor.compress(document) + compressor.flush()
    assert zstandard.get_frame_parameters(frame).window_size == Limits().max_window_bytes
    assert decode_payload(frame, len(document)) == [record]


def test_the_encoder_caps_its_window_for_documents_larger_than_the_limit() -> None:
    record = dense_record("big", np.zeros(10 * MIB // 4 + 3, np.float32))
    payload, length = encode_payload([record], level=22)
    assert length > 10 * MIB
    assert zstandard.get_frame_parameters(payload).window_size <= Limits().max_window_bytes
    assert list(iter_records(payload, length)) == [record]
