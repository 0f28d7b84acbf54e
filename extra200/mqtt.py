"""MQTT connections (paho-mqtt 1.6 and 2.x).

A persistent client for the life of the daemon: reconnection with capped
backoff in paho's own network thread, and publishing that never blocks the
polling loop: while the broker is away, ``publish`` returns False at once and
the message is dropped (the next poll publishes fresh values; outputs that
must not lose data keep their own spool).

The daemon holds two: the main link, with a retained availability topic
(``online`` after every connect, ``offline`` as last will and on a clean
stop), and the Victron link, whose last will is the bank topic's "stop
charging" message (MQTT allows one will per connection).  A will is fixed
when the client connects, so ``set_will`` reconnects to renew it.

The Victron link speaks MQTT 5 to give its will a delay (``WILL_DELAY``): the
dbus-mqtt-battery driver stamps each message with the whole second it arrived in
and updates D-Bus only when that second changes, so a will arriving in the same
second as the last data message would be lost, for good when the driver's own
timeout is off.  MQTT 5 brokers: Mosquitto 1.6 and newer, FlashMQ (Venus OS 3.20+).

This is the only module that imports paho.
"""

import logging
import ssl
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .config import MqttConfig
from .reporting import Episodes

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]

# paho-mqtt 2.x wants the callback API version; 1.6 has no such argument.
_PAHO2 = hasattr(paho, "CallbackAPIVersion")


def _reason_value(reason: Any) -> int:
    """An int from a paho 1.6 rc or a paho 2.x ReasonCode."""
    if reason is None:
        return 0
    value = getattr(reason, "value", reason)
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


# CONNACK codes of a broker that does not speak the protocol version asked for: MQTT 3.1.1's
# "unacceptable protocol version", MQTT 5's "unsupported protocol version".
_UNSUPPORTED_PROTOCOL = (1, 132)

# Seconds the broker waits before publishing the Victron link's will (MQTT 5), and how long it keeps the
# session after the connection drops (a will is never delayed past the session's end).
WILL_DELAY = 2
SESSION_EXPIRY = 10


def _make_client(client_id: str, mqtt5: bool) -> "paho.Client":
    protocol = paho.MQTTv5 if mqtt5 else paho.MQTTv311
    if _PAHO2:
        return paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    return paho.Client(client_id=client_id, protocol=protocol)


def _properties(packet_type: int, **values: int) -> Properties:
    properties = Properties(packet_type)
    for name, value in values.items():
        setattr(properties, name, value)
    return properties


class MqttLink:
    """A persistent, self-reconnecting MQTT client with an availability topic."""

    def __init__(self, config: MqttConfig, client_id: str, availability: bool = True) -> None:
        """``availability`` False: no availability topic, and the broker's coming and going is
        logged at DEBUG only (the main link reports it once for the process)."""
        self._config = config
        self._client_id = client_id
        self._with_availability = availability
        self._mqtt5 = not availability  # a link with its own will delays it (see WILL_DELAY)
        self._will: Optional[Tuple[str, str]] = None
        self._will_announced = False  # the current will has been logged as in place
        # The will the client was last configured with: a connect under way when the will
        # changes carries the old one, and must not be logged as carrying the new one.
        self._applied_will: Optional[Tuple[str, str]] = None
        self._renewing = threading.Lock()
        self._client: Optional["paho.Client"] = None
        self._connected = threading.Event()
        self._disconnected = threading.Event()  # set when a disconnect we asked for has completed
        self._lock = threading.Lock()
        self._handlers: Dict[str, List[MessageHandler]] = {}
        self._connect_hooks: List[Callable[[], None]] = []
        self._down = Episodes(logger)  # "broker": refused, lost or unreachable, until connected
        self._available = False  # "online" only while the daemon has fresh data
        self.connections = 0  # successful connects, for diagnostics and the benchmark
        self.messages_sent = 0

    @property
    def availability_topic(self) -> str:
        return "%s/status" % self._config.topic_base

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        return "%s:%d" % (self._config.broker, self._config.port)

    def subscribe(self, topic: str, handler: MessageHandler) -> None:
        """Call ``handler(topic, payload)`` for messages on ``topic``; kept across reconnects.

        Handlers run in paho's network thread: keep them short.
        """
        with self._lock:
            self._handlers.setdefault(topic, []).append(handler)
        client = self._client
        if client is not None and self.connected:
            client.subscribe(topic, qos=1)

    def add_connect_hook(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every (re)connect, in paho's network thread."""
        with self._lock:
            self._connect_hooks.append(callback)

    def start(self) -> None:
        """Begin connecting in the background; never blocks, never raises for a dead broker."""
        logger.info("MQTT: connecting to %s as %s", self.broker, self._client_id)
        self._launch()

    def _launch(self) -> None:
        client = _make_client(self._client_id, self._mqtt5)
        if self._config.username:
            client.username_pw_set(self._config.username, self._config.password or None)
        tls = self._config.tls
        if tls.enabled:
            client.tls_set(ca_certs=tls.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(tls.insecure)
        self._apply_will(client)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        try:
            self._connect(client)
        except (OSError, ValueError) as exc:  # e.g. an unresolvable host name in some paho versions
            logger.warning("MQTT: cannot start connecting to %s: %s; retrying", self.broker, exc)
        client.loop_start()

    def _connect(self, client: "paho.Client") -> None:
        if self._mqtt5:
            client.connect_async(
                self._config.broker,
                self._config.port,
                keepalive=self._config.keepalive,
                clean_start=True,
                properties=_properties(PacketTypes.CONNECT, SessionExpiryInterval=SESSION_EXPIRY),
            )
        else:
            client.connect_async(self._config.broker, self._config.port, keepalive=self._config.keepalive)

    def _apply_will(self, client: "paho.Client") -> None:
        if self._with_availability:
            client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        elif self._will is not None:
            delay = _properties(PacketTypes.WILLMESSAGE, WillDelayInterval=WILL_DELAY) if self._mqtt5 else None
            client.will_set(self._will[0], self._will[1], qos=1, retain=False, properties=delay)
        self._applied_will = self._will

    def set_will(self, topic: str, payload: str) -> None:
        """Make ``payload`` on ``topic`` this connection's last will (links without availability only).

        The broker takes a will only with a connect, so a running client reconnects, in
        the background: a clean disconnect first (the old will is dropped, not fired), then
        a connect with the new one.  Messages published meanwhile are dropped like during
        any broker outage.
        """
        if self._with_availability:
            raise ValueError("the availability topic is this link's last will")
        (logger.info if self._will is None else logger.debug)("MQTT: renewing the last will on %s", topic)
        self._will = (topic, payload)
        self._will_announced = False
        if self._client is not None:
            threading.Thread(target=self._relaunch, name="mqtt-will", daemon=True).start()

    def _relaunch(self) -> None:
        """A new client in place of the running one, connecting with the current will and protocol version
        (both are fixed per connection; a clean disconnect first drops the old will without firing it)."""
        with self._renewing:
            client = self._client
            if client is None:
                return  # stopped meanwhile
            self._close_cleanly(client, 1.0)
            self._launch()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (if connected and with availability), disconnect and stop the network thread."""
        with self._renewing:
            client = self._client
            if client is None:
                return
            self._available = False
            if self.connected and self._with_availability:
                info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(timeout=timeout)
                except (RuntimeError, ValueError):
                    pass  # not sent: the broker fires the last will instead
            self._client = None
        self._close_cleanly(client, timeout)

    def _close_cleanly(self, client: "paho.Client", timeout: float) -> None:
        """Disconnect and stop the network thread, the DISCONNECT sent first: a connection
        closed without it makes the broker fire the last will."""
        self._disconnected.clear()
        was_connected = self.connected
        self._connected.clear()
        client.disconnect()
        if was_connected:
            self._disconnected.wait(timeout)
        client.loop_stop()

    def set_available(self, available: bool) -> None:
        """Publish ``online`` / ``offline`` (retained) when the data's freshness changes."""
        if available == self._available or not self._with_availability:
            return
        self._available = available
        self.publish(self.availability_topic, "online" if available else "offline", qos=1, retain=True)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: Union[str, bytes], qos: int = 0, retain: bool = False, wait: float = 0.0) -> bool:
        """Send one message; False (and nothing queued) when not connected.

        ``wait`` > 0: also wait up to that many seconds until it has left (qos 0) or the
        broker has it (qos 1); False when it did not make it in time.
        """
        client = self._client
        if client is None or not self.connected:
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        self.messages_sent += 1
        if wait > 0:
            try:
                info.wait_for_publish(timeout=wait)
            except (RuntimeError, ValueError):
                return False
            return info.is_published()
        return True

    def _report_down(self, message: str, *args: Any) -> None:
        """The broker is not there: once per outage, at WARNING for the main link (the Victron link's at DEBUG)."""
        self._down.fault("broker", logging.WARNING if self._with_availability else logging.DEBUG, message, *args)

    # paho callbacks: signatures differ between 1.6 and 2.x, hence *args.
    def _on_connect(self, client: "paho.Client", userdata: Any, flags: Any, reason: Any, *rest: Any) -> None:
        code = _reason_value(reason)
        if code in _UNSUPPORTED_PROTOCOL and self._mqtt5:
            logger.warning(
                "MQTT: %s does not speak MQTT 5; the Victron link falls back to MQTT 3.1.1, whose "
                "last will cannot be delayed (the driver may miss it when it comes in the same second "
                "as the last data)",
                self.broker,
            )
            self._mqtt5 = False
            threading.Thread(target=self._relaunch, name="mqtt-fallback", daemon=True).start()
            return
        if code != 0:
            self._report_down("MQTT: %s refused the connection: %s", self.broker, _describe(reason, code))
            return
        self.connections += 1
        self._connected.set()
        was_down = self._down.forget("broker")
        if (was_down or self.connections == 1) and self._with_availability:
            logger.info("MQTT: connected to %s", self.broker)
        if self._will is not None and self._applied_will is self._will and not self._will_announced:
            (logger.info if self.connections <= 2 else logger.debug)("MQTT: last will in place on %s", self._will[0])
            self._will_announced = True
        if self._with_availability:
            client.publish(self.availability_topic, "online" if self._available else "offline", qos=1, retain=True)
        with self._lock:
            topics = list(self._handlers)
            hooks = list(self._connect_hooks)
        for topic in topics:
            client.subscribe(topic, qos=1)
        for hook in hooks:
            try:
                hook()
            except Exception:  # a broken output must not kill the network thread
                logger.exception("MQTT: connect hook failed")

    def _on_disconnect(self, client: "paho.Client", userdata: Any, *args: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._disconnected.set()
        # paho 1.6: (rc) or, MQTT 5, (reason_code, properties); 2.x: (flags, reason_code, properties)
        reason = args[1] if _PAHO2 and len(args) >= 2 else (args[0] if args else None)
        code = _reason_value(reason)
        if code != 0 and was_connected:
            self._report_down(
                "MQTT: lost the connection to %s (%s); reconnecting in the background", self.broker, _describe(reason, code)
            )

    def _on_connect_fail(self, client: "paho.Client", userdata: Any) -> None:
        self._report_down("MQTT: cannot reach %s; retrying in the background", self.broker)

    def _on_message(self, client: "paho.Client", userdata: Any, message: Any) -> None:
        with self._lock:
            handlers = list(self._handlers.get(message.topic, ()))
        for handler in handlers:
            try:
                handler(message.topic, message.payload)
            except Exception:
                logger.exception("MQTT: handler for %s failed", message.topic)


def _describe(reason: Any, code: int) -> str:
    text = str(reason) if reason is not None and not isinstance(reason, int) else ""
    if not text and hasattr(paho, "connack_string"):
        try:
            text = paho.connack_string(code)
        except Exception:
            text = ""
    return "%s (code %d)" % (text, code) if text else "code %d" % code
