"""The one MQTT connection of the process (paho-mqtt 1.6 and 2.x).

One persistent client for the life of the daemon: a retained availability
topic (``online`` after every connect, ``offline`` as last will and on a clean
stop), reconnection with capped backoff in paho's own network thread, and
publishing that never blocks the polling loop: while the broker is away,
``publish`` returns False at once and the message is dropped (the next poll
publishes fresh values; outputs that must not lose data keep their own spool).

This is the only module that imports paho.
"""

import logging
import ssl
import threading
from typing import Any, Callable, Dict, List, Optional, Union

import paho.mqtt.client as paho

from .config import MqttConfig

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


def _make_client(client_id: str) -> "paho.Client":
    if _PAHO2:
        return paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    return paho.Client(client_id=client_id)


class MqttLink:
    """A persistent, self-reconnecting MQTT client with an availability topic."""

    def __init__(self, config: MqttConfig, client_id: str) -> None:
        self._config = config
        self._client_id = client_id
        self._client: Optional["paho.Client"] = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._handlers: Dict[str, List[MessageHandler]] = {}
        self._connect_hooks: List[Callable[[], None]] = []
        self._down_logged = False
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
        client = _make_client(self._client_id)
        if self._config.username:
            client.username_pw_set(self._config.username, self._config.password or None)
        tls = self._config.tls
        if tls.enabled:
            client.tls_set(ca_certs=tls.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)
            client.tls_insecure_set(tls.insecure)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        logger.info("MQTT: connecting to %s as %s", self.broker, self._client_id)
        try:
            client.connect_async(self._config.broker, self._config.port, keepalive=self._config.keepalive)
        except (OSError, ValueError) as exc:  # e.g. an unresolvable host name in some paho versions
            logger.warning("MQTT: cannot start connecting to %s: %s; retrying", self.broker, exc)
        client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (if connected), disconnect and stop the network thread."""
        client = self._client
        if client is None:
            return
        self._available = False
        if self.connected:
            info = client.publish(self.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=timeout)
            except (RuntimeError, ValueError):
                pass  # not sent: the broker fires the last will instead
        client.disconnect()
        client.loop_stop()
        self._client = None
        self._connected.clear()

    def set_available(self, available: bool) -> None:
        """Publish ``online`` / ``offline`` (retained) when the data's freshness changes."""
        if available == self._available:
            return
        self._available = available
        self.publish(self.availability_topic, "online" if available else "offline", qos=1, retain=True)

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: Union[str, bytes], qos: int = 0, retain: bool = False) -> bool:
        """Send one message; False (and nothing queued) when not connected."""
        client = self._client
        if client is None or not self.connected:
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        self.messages_sent += 1
        return True

    # paho callbacks: signatures differ between 1.6 and 2.x, hence *args.
    def _on_connect(self, client: "paho.Client", userdata: Any, flags: Any, reason: Any, *rest: Any) -> None:
        code = _reason_value(reason)
        if code != 0:
            if not self._down_logged:
                logger.warning("MQTT: %s refused the connection: %s", self.broker, _describe(reason, code))
                self._down_logged = True
            return
        self.connections += 1
        self._connected.set()
        if self._down_logged or self.connections == 1:
            logger.info("MQTT: connected to %s", self.broker)
        self._down_logged = False
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
        # paho 1.6: (rc); 2.x: (flags, reason_code, properties)
        reason = args[1] if len(args) >= 2 else (args[0] if args else None)
        code = _reason_value(reason)
        if code != 0 and was_connected and not self._down_logged:
            logger.warning("MQTT: lost the connection to %s (%s); reconnecting in the background",
                           self.broker, _describe(reason, code))
            self._down_logged = True

    def _on_connect_fail(self, client: "paho.Client", userdata: Any) -> None:
        if not self._down_logged:
            logger.warning("MQTT: cannot reach %s; retrying in the background", self.broker)
            self._down_logged = True

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
