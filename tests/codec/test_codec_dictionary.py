"""The payload's template dictionary: its bytes are the specified ones, and it only ever saves bytes."""

from __future__ import annotations

import hashlib

import msgpack
import numpy as np
import zstandard

from codec.arrays import pack
from codec.dictionary import DICTIONARY_BYTES, TEMPLATE
from codec.limits import DEFAULT_LIMITS
from codec.payload import decode_payload, encode_document, encode_payload
from codec.records import LowRankRecord, record_from_msgpack
from codec.seeded import SeededSigns

#: docs/format.md, section 3: computed once from the listed template and hard-coded.
DICTIONARY_SHA256 = "47b17100cf53da693412f0b6def3f3c3e612a3fd1c25051b234dc7f09a467ddb"


def small_update() -> list[LowRankRecord]:
    """A rank-1 seeded trit update of a 64-256-256-10 MLP: a payload of a couple of hundred bytes."""
    rng = np.random.default_rng(0)
    one = pack(np.array([0.01], np.float32), "f32")
    records = []
    for index, (out, rest) in enumerate([(256, 64), (256, 256), (10, 256)]):
        seeded = SeededSigns((out, 1) if out >= rest else (1, rest), index)
        sent = pack(rng.integers(-1, 2, (1, rest) if out >= rest else (out, 1)), "trit")
        u, v = (seeded, sent) if out >= rest else (sent, seeded)
        records.append(LowRankRecord(f"{2 * index + 1}.weight", (out, rest), u, one, v, one))
    return records


def test_the_dictionary_is_the_specified_template_document() -> None:
    assert len(DICTIONARY_BYTES) == 1235
    assert hashlib.sha256(DICTIONARY_BYTES).hexdigest() == DICTIONARY_SHA256
    assert msgpack.unpackb(DICTIONARY_BYTES) == TEMPLATE


def test_every_template_record_is_a_valid_record() -> None:
    for record in TEMPLATE["records"]:
        record_from_msgpack(record, DEFAULT_LIMITS)


def test_a_payload_names_no_dictionary_id_and_decodes() -> None:
    records = small_update()
    payload, length = encode_payload(records)
    assert zstandard.get_frame_parameters(payload).dict_id == 0
    assert decode_payload(payload, length) == records


def test_the_dictionary_saves_at_least_80_bytes_on_a_small_update() -> None:
    records = small_update()
    document = encode_document(records)
    without = zstandard.ZstdCompressor(level=19).compress(document)
    assert len(encode_payload(records)[0]) <= len(without) - 80


def test_a_frame_compressed_without_the_dictionary_decodes_the_same() -> None:
    records = small_update()
    document = encode_document(records)
    for level in (1, 19):
        plain = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(document)
        assert decode_payload(plain, len(document)) == records
