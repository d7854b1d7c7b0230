"""The device's status on the wire: compact JSON retained on {prefix}/devices/<id>/status, and its presence
("online", or "offline" from its last will) retained on {prefix}/devices/<id>/presence.

A device leaves out what is empty (``progress``, ``last_error``, ``runtime``, ``trust`` when there are none),
since every status costs bytes on links that carry kilobits; readers get every documented key back, None
where it was left out, and the state "offline" when the presence says so (docs/mqtt.md, "Status").
"""

from __future__ import annotations

import json

ONLINE, OFFLINE = b"online", b"offline"
#: Keys a device leaves out when they are empty; readers see them as None.
OPTIONAL_KEYS = ("progress", "last_error", "runtime", "trust")


def encode_status(fields: dict) -> bytes:
    """``fields`` as the JSON a device sends: no spaces, and the keys whose value is None left out."""
    return json.dumps({key: value for key, value in fields.items() if value is not None},
                      separators=(",", ":")).encode()


def read_status(payload: bytes, presence: bytes | None = None) -> dict:
    """A status with every documented key (an absent optional one is None), in state "offline" when
    ``presence`` says so. Raises ValueError for anything but a JSON object whose optional keys are objects
    (NaN, Infinity and nesting too deep for the parser included: a device's text, read by every tool)."""
    try:
        status = json.loads(payload, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("a status nested too deeply") from None
    if not isinstance(status, dict):
        raise ValueError("a status is a JSON object")
    for key in OPTIONAL_KEYS:
        status.setdefault(key, None)
        if not isinstance(status[key], (str if key == "runtime" else dict) | None):
            raise ValueError(f"a status's {key} is {'a string' if key == 'runtime' else 'an object'}, or left out")
    if presence == OFFLINE:
        status["state"] = "offline"
    return status


def _refuse_constant(name: str) -> None:
    raise ValueError(f"a status holds no {name}")
