"""Sorting an MQTT 5 connection's bytes into categories, on hand-built packets (OASIS MQTT 5.0)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator.fleet.wire_bytes import CATEGORIES, WireTally

PREFIX = "fleet"
CHUNK = f"{PREFIX}/models/m/releases/2/delta/chunks/3"
MANIFEST = f"{PREFIX}/models/m/manifest"
STATUS = f"{PREFIX}/devices/d1/status"


def varint(value: int) -> bytes:
    """A variable byte integer (§1.5.5)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def text(value: str) -> bytes:
    return len(value.encode()).to_bytes(2, "big") + value.encode()


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([kind << 4 | flags]) + varint(len(body)) + body


def publish(topic: str, payload: bytes, qos: int = 1, packet_id: int = 7, properties: bytes = b"") -> tuple[bytes, int]:
    """A PUBLISH (§3.3) and the size of its framing (everything but the payload)."""
    body = text(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + varint(len(properties)) + properties
    whole = packet(3, qos << 1, body + payload)
    return whole, len(whole) - len(payload)


def ack(kind: int, packet_id: int) -> bytes:
    """PUBACK (4), PUBREC (5), PUBREL (6, flags 2), PUBCOMP (7), SUBACK (9), UNSUBACK (11): id, reason 0."""
    return packet(kind, 2 if kind == 6 else 0, packet_id.to_bytes(2, "big") + b"\x00\x00")


def subscribe(packet_id: int, *filters: str) -> bytes:
    return packet(8, 2, packet_id.to_bytes(2, "big") + b"\x00" + b"".join(text(f) + b"\x01" for f in filters))


CONNECT = packet(1, 0, text("MQTT") + b"\x05\x02\x00\x3c\x00" + text("d1"))
CONNACK = packet(2, 0, b"\x00\x00\x00")
PINGREQ, PINGRESP = b"\xc0\x00", b"\xd0\x00"
#: Properties of a PUBLISH: message expiry interval (0x02, four bytes) and a user property (0x26).
PROPERTIES = b"\x02\x00\x00\x0e\x10" + b"\x26" + text("origin") + text("publisher")


def run(exchange: list[tuple[str, bytes]], cuts: list[int] | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Feed one connection the ``exchange`` ("up" or "down", bytes) in order; each step is read in pieces of
    the sizes ``cuts`` (taken in turn, then whatever is left), as a socket may return it."""
    tally = WireTally(PREFIX)
    feeds = dict(zip(("up", "down"), tally.connection(), strict=True))
    sizes = iter(cuts or [])
    for direction, data in exchange:
        position = 0
        while position < len(data):
            size = next(sizes, len(data))
            feeds[direction](data[position:position + size])
            position += size
    wire = tally.snapshot()
    return wire.down.as_dict(), wire.up.as_dict()


def test_a_release_s_packets_land_in_their_categories_and_add_up_to_the_bytes() -> None:
    big = bytes(range(256)) * 3  # a remaining length over 127: two bytes of it
    chunk, chunk_framing = publish(CHUNK, big, qos=1, packet_id=300, properties=PROPERTIES)
    manifest, manifest_framing = publish(MANIFEST, b"signed", qos=0)
    status, status_framing = publish(STATUS, b'{"online": true}', qos=1, packet_id=1)
    sub = subscribe(2, MANIFEST)
    exchange = [("up", CONNECT), ("down", CONNACK), ("up", sub), ("down", ack(9, 2)), ("down", manifest),
                ("up", status), ("down", chunk), ("down", ack(4, 1)), ("up", ack(4, 300)), ("up", PINGREQ),
                ("down", PINGRESP)]
    got_down, got_up = run(exchange)
    down, up = (b"".join(b for d, b in exchange if d == direction) for direction in ("down", "up"))

    assert got_down["chunk_payload"] == len(big) and got_down["chunk_framing"] == chunk_framing
    assert got_down["manifest_payload"] == len(b"signed") and got_down["manifest_framing"] == manifest_framing
    assert got_up["status_payload"] == len(b'{"online": true}')
    assert got_up["status_framing"] == status_framing
    assert got_down["status_framing"] == len(ack(4, 1))  # the broker's PUBACK is the status flow's framing
    assert got_up["chunk_framing"] == len(ack(4, 300))   # the device's PUBACK, the chunk's
    assert got_down["setup"] == len(CONNACK) + len(ack(9, 2)) and got_up["setup"] == len(CONNECT) + len(sub)
    assert got_down["keepalive"] == len(PINGRESP) and got_up["keepalive"] == len(PINGREQ)
    assert got_down["other"] == got_up["other"] == got_down["acks"] == 0
    assert sum(got_down.values()) == len(down) and sum(got_up.values()) == len(up)


@given(st.lists(st.integers(min_value=1, max_value=200), max_size=30))
def test_the_split_does_not_depend_on_how_the_stream_is_cut_into_reads(cuts: list[int]) -> None:
    chunk, _ = publish(CHUNK, b"x" * 20_000, qos=1, properties=PROPERTIES)  # a three-byte remaining length
    root, _ = publish(f"{PREFIX}/trust/root/1", b"root", qos=1, packet_id=9)
    exchange = [("up", CONNECT), ("down", CONNACK), ("up", subscribe(1, CHUNK, MANIFEST)), ("down", root),
                ("up", ack(4, 9)), ("down", chunk + publish(CHUNK, b"y" * 5, qos=0)[0] + PINGRESP),
                ("up", ack(4, 7) + PINGREQ)]
    assert run(exchange, cuts) == run(exchange)
    got_down, got_up = run(exchange, cuts)
    assert got_down["chunk_payload"] == 20_005 and got_up["subscriptions"] == len(subscribe(1, CHUNK, MANIFEST))
    assert got_down["setup"] == len(CONNACK) + len(root) and got_up["setup"] == len(CONNECT) + len(ack(4, 9))


def test_bytes_of_a_packet_still_arriving_count_as_other_until_its_head_is_complete() -> None:
    tally = WireTally(PREFIX)
    _, feed_down = tally.connection()
    chunk, framing = publish(CHUNK, b"z" * 100)
    feed_down(chunk[:10])
    assert tally.snapshot().down.other == 10 and tally.snapshot().down.total == 10
    feed_down(chunk[10:framing + 40])
    assert tally.snapshot().down.as_dict() | {"chunk_framing": 0, "chunk_payload": 0} == dict.fromkeys(CATEGORIES, 0)
    assert (tally.snapshot().down.chunk_framing, tally.snapshot().down.chunk_payload) == (framing, 40)


def test_qos2_acks_and_unknown_ids_and_garbage() -> None:
    status, _ = publish(STATUS, b"s", qos=2, packet_id=5)
    exchange = [("up", CONNECT + status), ("down", ack(5, 5)), ("up", ack(6, 5)),  # PUBREL goes as PUBLISH went
                ("down", ack(7, 5) + ack(4, 99) + b"\x30\xff\xff\xff\xff\x01junk")]
    got_down, got_up = run(exchange)
    assert got_up["status_framing"] == len(status) - 1 + len(ack(6, 5))
    assert got_down["status_framing"] == len(ack(5, 5)) + len(ack(7, 5))
    assert got_down["acks"] == len(ack(4, 99))
    assert got_down["other"] == len(b"\x30\xff\xff\xff\xff\x01junk")  # a five-byte remaining length: malformed


def test_mqtt_3_publishes_have_no_properties() -> None:
    connect = packet(1, 0, text("MQTT") + b"\x04\x02\x00\x3c" + text("d1"))
    body = text(CHUNK) + b"\x00\x01" + b"payload"
    got_down, _ = run([("up", connect), ("down", packet(3, 2, body))])
    assert got_down["chunk_payload"] == len(b"payload")
