"""rankcast's update format: records, payloads, signed manifests, chunks and exact apply.

Imports numpy, msgpack, zstandard and cryptography only; nothing else of rankcast. The normative
description of every byte is docs/format.md.
"""

from codec.apply import apply_payload, apply_to_bytes, file_sha256
from codec.canary import Canary
from codec.chunks import Reassembler, split_payload, verify_chunk
from codec.errors import (
    BaseMismatchError,
    ChunkError,
    ExpiredError,
    FloatEnvironmentError,
    FormatError,
    IntegrityError,
    LimitError,
    ModelMismatchError,
    NonFiniteError,
    RollbackError,
    SignatureError,
    UnknownKeyError,
    UpdateError,
    WrongModelError,
)
from codec.keys import SigningKey, VerifyKey, generate_signing_key, load_signing_key, load_verify_key
from codec.limits import DEFAULT_LIMITS, Limits
from codec.manifest import Manifest, read_manifest, validate_id
from codec.payload import decode_payload, encode_payload, iter_records
from codec.quantise import dense_record, full_record, lowrank_record, sparse_record
from codec.records import DenseRecord, FullRecord, LowRankRecord, Record, SparseRecord
from codec.release import Release, make_release
from codec.release_policy import check_applicable
from codec.weights import TensorSlot, encode_weights, load_weights, read_slots, write_weights

__all__ = [
    "DEFAULT_LIMITS", "BaseMismatchError", "Canary", "ChunkError", "DenseRecord", "ExpiredError",
    "FloatEnvironmentError", "FormatError",
    "FullRecord", "IntegrityError", "LimitError", "Limits", "LowRankRecord", "Manifest", "ModelMismatchError",
    "NonFiniteError", "Reassembler", "Record", "Release", "RollbackError", "SignatureError", "SigningKey",
    "SparseRecord", "TensorSlot", "UnknownKeyError", "UpdateError", "VerifyKey", "WrongModelError", "apply_payload",
    "apply_to_bytes",
    "check_applicable", "decode_payload", "dense_record", "encode_payload", "encode_weights", "file_sha256",
    "full_record", "generate_signing_key", "iter_records", "load_signing_key", "load_verify_key",
    "load_weights", "lowrank_record", "make_release", "read_manifest", "read_slots", "sparse_record",
    "split_payload", "validate_id", "verify_chunk", "write_weights",
]
