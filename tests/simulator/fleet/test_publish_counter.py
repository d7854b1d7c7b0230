"""Counting PUBLISH packets per topic in an MQTT byte stream, however the stream is cut into reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator.fleet.publish_counter import PublishCounter


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def publish(topic: str, payload: bytes, qos: int = 1) -> bytes:
    """A PUBLISH packet (MQTT 3.1.1 §3.3): topic, a packet id at QoS > 0, the payload."""
    body = len(topic.encode()).to_bytes(2, "big") + topic.encode() + (b"\x00\x07" if qos else b"") + payload
    return bytes([0x30 | qos << 1]) + _remaining_length(len(body)) + body


PINGRESP = b"\xd0\x00"


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=20), st.integers(0, 2))
def test_packets_are_counted_whatever_the_reads(cuts: list[int], big_payloads: int) -> None:
    stream = (publish("a/chunks/0", b"x" * 10) + PINGRESP + publish("a/chunks/1", b"y" * (200 * big_payloads))
              + publish("a/chunks/0", b"z", qos=0) + PINGRESP)
    counter = PublishCounter()
    feed, position = counter.stream(), 0
    for cut in cuts:
        feed(stream[position:position + cut])
        position += cut
    feed(stream[position:])
    assert (counter.count("a/chunks/0"), counter.count("a/chunks/1"), counter.count("other")) == (2, 1, 0)


def test_each_connection_has_its_own_stream() -> None:
    counter = PublishCounter()
    first, second = counter.stream(), counter.stream()
    packet = publish("t", b"p" * 20_000)  # a three-byte remaining length
    first(packet[:5])
    second(packet)
    first(packet[5:])
    assert counter.count("t") == 2
