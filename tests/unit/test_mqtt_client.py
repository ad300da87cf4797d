"""BufferedClient: paho's packet parser fed from one large read, and batched publish wake-ups.

These tests drive paho's real code paths (``loop_read`` → ``_packet_read`` → ``on_message``,
``publish`` → ``_packet_queue``) with a fake socket, so they fail if paho's internals that
:class:`~connectors.mqtt.client.BufferedClient` relies on change.
"""

from __future__ import annotations

import socket
import struct
import threading

import paho.mqtt.client as mqtt
import pytest

from connectors.mqtt.client import READ_CHUNK, BufferedClient, idle_packet_state, make_client, subscription_ready


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet (fixed header, topic, payload)."""
    body = struct.pack(">H", len(topic)) + topic.encode() + payload
    n, length = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (128 if n else 0))
        if not n:
            break
    return b"\x30" + bytes(length) + body


class FakeSocket:
    """Non-blocking socket stand-in: serves queued bytes, counts recv/send calls."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = bytearray(data)
        self.recv_sizes: list[int] = []
        self.sent = bytearray()

    def recv(self, n: int) -> bytes:
        self.recv_sizes.append(n)
        if not self.data:
            raise BlockingIOError
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def send(self, buf: bytes) -> int:
        self.sent += buf
        return len(buf)

    def close(self) -> None:
        pass


def receiving_client(sock: FakeSocket) -> tuple[BufferedClient, list[tuple[str, bytes]]]:
    client = make_client("unit-buffered")
    got: list[tuple[str, bytes]] = []
    client.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    client._sock = sock  # what paho's connect() sets
    return client, got


def test_make_client_returns_a_paho_client_with_the_overrides():
    client = make_client("unit-kind")
    assert isinstance(client, mqtt.Client)
    # The methods BufferedClient overrides or uses must still exist in paho with these names.
    for name in ("_sock_recv", "loop_read", "_packet_read", "_packet_queue", "_handle_on_message"):
        assert callable(getattr(mqtt.Client, name)), name
    for attr in ("_sockpairW", "_sock", "_callback_mutex", "_in_callback_mutex", "_userdata", "suppress_exceptions"):
        assert hasattr(client, attr), attr


def test_one_loop_read_delivers_a_burst_from_few_recv_calls():
    msgs = [(f"plant/{i}", f'{{"rpm":{i}.5}}'.encode()) for i in range(300)]
    sock = FakeSocket(b"".join(publish_packet(t, p) for t, p in msgs))
    client, got = receiving_client(sock)
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == msgs
    # paho alone would call recv three times per message (command byte, length byte, body).
    assert len(sock.recv_sizes) <= 3
    assert max(sock.recv_sizes) >= READ_CHUNK


def test_a_packet_split_across_reads_is_completed_on_the_next_read():
    pkt = publish_packet("plant/split", b"12.5" * 100)
    sock = FakeSocket(pkt[:7])
    client, got = receiving_client(sock)
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == []
    sock.data += pkt[7:] + publish_packet("plant/next", b"1")
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == [("plant/split", b"12.5" * 100), ("plant/next", b"1")]


def test_bytes_of_an_old_connection_are_never_served_to_a_new_one():
    old = FakeSocket(publish_packet("plant/a", b"1") + publish_packet("plant/b", b"2")[:5])
    client, got = receiving_client(old)
    client.loop_read()
    assert got == [("plant/a", b"1")]
    # Reconnect: paho resets its packet state and installs a new socket.
    client._in_packet = idle_packet_state()
    client._sock = FakeSocket(publish_packet("plant/c", b"3"))
    assert client.buffered() == 0
    client.loop_read()
    assert got == [("plant/a", b"1"), ("plant/c", b"3")]


@pytest.mark.parametrize("qos", [0, 1])
def test_batch_wakes_the_network_thread_once(qos: int):
    client = make_client("unit-batch")
    r, w = socket.socketpair()
    r.setblocking(False)
    client._sockpairR, client._sockpairW = r, w
    client._sock = FakeSocket()
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    client._thread = object()  # as with loop_start(): publish() only queues and wakes the thread
    try:
        with client.batch():
            infos = [client.publish(f"plant/{i}", b"1", qos=qos) for i in range(50)]
            with pytest.raises(BlockingIOError):
                r.recv(100)
        assert all(i.rc == mqtt.MQTT_ERR_SUCCESS for i in infos)
        assert r.recv(100) == b"0"
        assert client._sockpairW is w
        assert len(client._out_packet) == 50
        client.publish("plant/x", b"1", qos=qos)  # outside a batch: paho's own wake-up per publish
        assert r.recv(100) == b"0"
    finally:
        client._thread = None
        r.close()
        w.close()


def test_topic_filtered_callbacks_still_take_their_messages():
    sock = FakeSocket(publish_packet("plant/a/cmd", b"1") + publish_packet("plant/b", b"2"))
    client, got = receiving_client(sock)
    filtered: list[str] = []
    client.message_callback_add("plant/+/cmd", lambda c, u, m: filtered.append(m.topic))
    client.loop_read()
    assert filtered == ["plant/a/cmd"]
    assert got == [("plant/b", b"2")]


def test_an_exception_in_on_message_is_raised_unless_suppressed():
    client, _ = receiving_client(FakeSocket(publish_packet("plant/a", b"1") * 2))

    def boom(c, u, m):
        raise ValueError("callback bug")

    client.on_message = boom
    with pytest.raises(ValueError, match="callback bug"):
        client.loop_read()
    client.suppress_exceptions = True
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS


def test_long_remaining_lengths_and_control_packets_are_framed_like_paho():
    big = b"x" * 20_000  # a 3-byte remaining length
    mid = b"y" * 200  # a 2-byte remaining length
    pingresp = b"\xd0\x00"
    stream = publish_packet("plant/big", big) + pingresp + publish_packet("plant/mid", mid) + publish_packet("p", b"")
    for sock in (FakeSocket(stream), FakeSocket(b"")):
        client, got = receiving_client(sock)
        if not sock.data:  # the same bytes trickling in a few at a time: paho's own byte-wise path
            for k in range(0, len(stream), 7):
                sock.data += stream[k : k + 7]
                client.loop_read()
        else:
            client.loop_read()
        assert got == [("plant/big", big), ("plant/mid", mid), ("p", b"")]


def test_a_malformed_remaining_length_is_a_protocol_error():
    sock = FakeSocket(b"\x30\xff\xff\xff\xff\x01" + b"z" * 10)
    client, got = receiving_client(sock)
    client._state = mqtt._ConnectionState.MQTT_CS_CONNECTED
    assert client.loop_read() == mqtt.MQTT_ERR_PROTOCOL
    assert got == []


def test_subscription_ready_waits_for_the_suback_and_names_refused_topics(caplog: pytest.LogCaptureFixture) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    ready = threading.Event()
    on_subscribe = subscription_ready(["plant/a", "plant/secret"], ready)
    assert not ready.is_set()  # connecting and sending SUBSCRIBE is not enough
    granted, refused = ReasonCode(PacketTypes.SUBACK, identifier=1), ReasonCode(PacketTypes.SUBACK, identifier=0x80)
    with caplog.at_level("ERROR", logger="connectors.mqtt.client"):
        on_subscribe(None, None, 1, [granted, refused], None)
    assert ready.is_set()
    assert "plant/secret" in caplog.text and "plant/a," not in caplog.text
