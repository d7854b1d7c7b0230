"""The payload's zstd dictionaries: template documents every writer and reader of the format shares.

A payload of a few hundred bytes spends a third of them on the first occurrence of its map keys and
dtype names ("lowrank", "u_scale", "shake128-signs", ...). Compressing against this fixed template
(as zstd raw content, dictionary id 0) lets those be matches instead of literals, which saves about
100 bytes on every payload. Frames made without the dictionary never reference it, so a reader that
always loads it decodes both. The template is normative: docs/format.md lists it and its sha256.

Format 2 (codec.compact) has a template of its own, put *before* format 1's: a raw-content dictionary
is a prefix of the data, and a match reaches into it by its distance back from the data's first byte,
so format 1's bytes are where a format-1 frame looks for them in either dictionary. Writers compress
format 1 against format 1's template alone (readers that know only format 1 decode those frames) and
format 2 against both; readers always decompress with both.
"""

from __future__ import annotations

from functools import cache

import msgpack
import zstandard

_SCALE = {"dtype": "f32", "shape": [1], "data": bytes.fromhex("0000803f")}  # 1.0, a seeded factor's scale
_SEEDED = {"dtype": "b1", "shape": [1, 1], "seed": 0, "gen": "shake128-signs"}


def _codes(dtype: str, shape: list[int], size: int = 1) -> dict:
    return {"dtype": dtype, "shape": shape, "data": bytes(size)}


def _lowrank(u: dict, v: dict) -> dict:
    return {
        "kind": "lowrank", "name": "0.weight", "shape": [1, 1], "u": u, "u_scale": _SCALE, "v": v, "v_scale": _SCALE,
    }


#: The template, in the key order encoders write: the record kinds and dtypes updates use.
TEMPLATE = {
    "format": 1,
    "records": [
        {"kind": "sparse", "name": "0.weight", "shape": [1], "mode": "add", "gaps": _codes("u32", [1], 4),
         "values": _codes("i8", [1]), "scale": _SCALE},
        {"kind": "dense", "name": "0.bias", "mode": "add", "values": _codes("f32", [1], 4)},
        {"kind": "dense", "name": "0.bias", "mode": "add", "values": _codes("i8", [1]), "scale": _SCALE},
        _lowrank(_codes("i8", [1, 1]), _codes("i8", [1, 1])),
        _lowrank(_codes("i4", [1, 1]), _codes("i4", [1, 1])),
        _lowrank(_codes("trit", [1, 1]), _codes("trit", [1, 1])),
        _lowrank(_codes("trit", [1, 1]), _SEEDED),
        _lowrank(_SEEDED, _codes("trit", [1, 1])),
    ],
}

#: The dictionary's bytes: the msgpack encoding of TEMPLATE (str keys, bin data).
DICTIONARY_BYTES = msgpack.packb(TEMPLATE, use_bin_type=True)

#: Format 2's template: a compact document of one seeded trit record (codec.compact), in key order.
COMPACT_TEMPLATE = {
    "format": 2, "records": 1, "seed": 0, "heads": bytes([0, 0x48, 1]), "scale_dtype": "bf16",
    "scales": bytes(2), "data": bytes(1),
}

#: What readers decompress with, and format-2 writers compress against: format 2's template, then format 1's.
READER_DICTIONARY_BYTES = msgpack.packb(COMPACT_TEMPLATE, use_bin_type=True) + DICTIONARY_BYTES


@cache
def zstd_dictionary(compact: bool = True) -> zstandard.ZstdCompressionDict:
    """READER_DICTIONARY_BYTES (or, with ``compact=False``, format 1's DICTIONARY_BYTES alone) as a zstd
    raw-content dictionary, loaded once per process."""
    data = READER_DICTIONARY_BYTES if compact else DICTIONARY_BYTES
    return zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
