"""The MQTT link against a real Mosquitto: availability, last will, a dead broker, paho 1.6 and 2.x."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from extra200.config import MqttConfig
from extra200.mqtt import WILL_DELAY, MqttLink
from mqtt_helpers import Recorder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAHO16 = os.path.join(ROOT, ".venv", "paho16")


def _link(port: int, base: str = "t") -> MqttLink:
    return MqttLink(MqttConfig(broker="127.0.0.1", port=port, topic_base=base), "test-%d" % os.getpid())


def test_availability_follows_freshness_and_stop(broker):
    recorder = Recorder(broker.port, ("a1/status",))
    link = _link(broker.port, "a1")
    link.start()
    assert link.wait_connected(10)
    assert recorder.wait_for(lambda t, p: p == b"offline")  # no data yet: offline
    after = recorder.count()
    link.set_available(True)
    assert recorder.wait_for(lambda t, p: p == b"online", after=after)
    assert link.publish("a1/x", "1") is True
    after = recorder.count()
    link.stop()
    assert recorder.wait_for(lambda t, p: p == b"offline", after=after)
    recorder.close()


def test_status_is_retained(broker):
    link = _link(broker.port, "a2")
    link.start()
    assert link.wait_connected(10)
    link.set_available(True)
    time.sleep(0.3)
    recorder = Recorder(broker.port, ("a2/status",))  # subscribes after: gets the retained value
    message = recorder.wait_for(lambda t, p: True, timeout=5)
    assert message is not None and message[2] == b"online" and message[3] is True
    link.stop()
    recorder.close()


SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from extra200.config import MqttConfig
    from extra200.mqtt import MqttLink
    import paho.mqtt
    link = MqttLink(MqttConfig(broker="127.0.0.1", port={port}, topic_base="{base}", keepalive=5), "will-{base}")
    link.start()
    victron = MqttLink(MqttConfig(broker="127.0.0.1", port={port}, topic_base="{base}", keepalive=5),
                       "will-{base}-victron", availability=False)
    victron.set_will("{base}/word", "stop charging")
    victron.start()
    assert link.wait_connected(10) and victron.wait_connected(10)
    link.set_available(True)
    link.publish("{base}/hello", paho.mqtt.__version__)
    print("ready", flush=True)
    time.sleep(60)
""")


def _run_and_kill(broker, base: str, env=None):
    recorder = Recorder(broker.port, ("%s/#" % base,))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(root=ROOT, port=broker.port, base=base)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert recorder.wait_for(lambda t, p: t.endswith("/status") and p == b"online")
        hello = recorder.wait_for(lambda t, p: t == "%s/hello" % base)
        assert hello is not None
        after = recorder.count()
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)  # no clean stop: the broker must send the last will
        assert recorder.wait_for(lambda t, p: t.endswith("/status") and p == b"offline", after=after)
        # The Victron link's will (MQTT 5) comes WILL_DELAY later: never in the same second as the last data.
        word = recorder.wait_for(lambda t, p: t == "%s/word" % base, after=after)
        assert word is not None and word[2] == b"stop charging"
        assert word[0] - killed >= WILL_DELAY - 0.5, "the will came %.2f s after the kill" % (word[0] - killed)
        return hello[2].decode()
    finally:
        proc.kill()
        proc.wait()
        recorder.close()


def test_last_will_says_offline_when_the_process_dies(broker):
    version = _run_and_kill(broker, "a3")
    assert version.startswith("2.")


@pytest.mark.skipif(not os.path.isdir(PAHO16), reason="paho-mqtt 1.6 not installed in .venv/paho16 (scripts/setup.sh --test)")
def test_paho_16_works_too(broker):
    env = dict(os.environ, PYTHONPATH=PAHO16)
    assert _run_and_kill(broker, "a4", env) == "1.6.1"


def test_dead_broker_never_blocks_and_is_reached_later(own_broker):
    own_broker.stop()
    link = _link(own_broker.port, "a5")
    started = time.monotonic()
    link.start()
    assert link.publish("a5/x", "1") is False
    assert time.monotonic() - started < 2.0
    own_broker.start()
    assert link.wait_connected(40), "did not reconnect after the broker came up"
    assert link.publish("a5/x", "1") is True
    link.stop()


def test_refused_credentials_are_survived(tmp_path):
    from servers import Mosquitto

    password_file = Mosquitto.make_password_file(str(tmp_path), "user", "right")
    server = Mosquitto(password_file=password_file).start()
    try:
        link = MqttLink(
            MqttConfig(broker="127.0.0.1", port=server.port, username="user", password="wrong", topic_base="a6"), "refused"
        )
        link.start()
        assert not link.wait_connected(2)
        assert link.publish("a6/x", "1") is False
        link.stop()
        good = MqttLink(
            MqttConfig(broker="127.0.0.1", port=server.port, username="user", password="right", topic_base="a6"), "accepted"
        )
        good.start()
        assert good.wait_connected(10)
        good.stop()
    finally:
        server.close()


def test_tls_with_a_ca_file(tmp_path):
    from servers import Mosquitto, make_certificates
    from extra200.config import TlsConfig

    certificates = make_certificates(str(tmp_path))
    server = Mosquitto(tls=certificates).start()
    try:
        trusted = MqttLink(
            MqttConfig(
                broker="127.0.0.1", port=server.port, topic_base="a7", tls=TlsConfig(enabled=True, ca_file=certificates["ca"])
            ),
            "tls-good",
        )
        trusted.start()
        assert trusted.wait_connected(10)
        assert trusted.publish("a7/x", "1") is True
        trusted.stop()
        # the system's CA store does not know the test CA: no connection, and no crash
        untrusted = MqttLink(
            MqttConfig(broker="127.0.0.1", port=server.port, topic_base="a7", tls=TlsConfig(enabled=True)), "tls-bad"
        )
        untrusted.start()
        assert not untrusted.wait_connected(3)
        untrusted.stop()
    finally:
        server.close()


def test_a_broker_without_mqtt5_gets_the_victron_link_on_mqtt_311(caplog):
    """The Victron link asks for MQTT 5 (a delayed will); a broker that speaks only 3.1.1 refuses that, and
    the link comes back on 3.1.1.  Debian ships no such broker: this socket stands in for one, answering a
    CONNECT the way a 3.1.1 broker does (CONNACK code 1, "unacceptable protocol version", for level 5)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    levels = []
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            data = conn.recv(4096)
            level = data[8]  # fixed header (2), protocol name (6), then the protocol level
            levels.append(level)
            conn.sendall(b"\x20\x02\x00" + (b"\x00" if level == 4 else b"\x01"))
            if level == 4:
                accepted.append(conn)
            else:
                conn.close()

    import threading

    threading.Thread(target=serve, daemon=True).start()
    link = MqttLink(
        MqttConfig(broker="127.0.0.1", port=server.getsockname()[1], topic_base="old", keepalive=60),
        "old-victron",
        availability=False,
    )
    link.set_will("old/pylon", "stop charging")
    try:
        with caplog.at_level("WARNING", logger="extra200.mqtt"):
            link.start()
            assert link.wait_connected(15), levels
        assert levels[0] == 5 and levels[-1] == 4
        assert "does not speak MQTT 5" in caplog.text
    finally:
        link.stop(timeout=0.5)
        server.close()
        for conn in accepted:
            conn.close()
