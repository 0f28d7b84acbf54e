"""A recording MQTT subscriber for the tests (a real paho client on the real broker)."""

import threading
import time
from typing import Callable, List, Optional, Tuple

import paho.mqtt.client as paho


class Recorder:
    """Subscribes to ``topics`` and keeps every message as (time, topic, payload, retained)."""

    def __init__(self, port: int, topics: Tuple[str, ...] = ("#",)) -> None:
        if hasattr(paho, "CallbackAPIVersion"):
            self.client = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2)
        else:
            self.client = paho.Client()
        self.messages: List[Tuple[float, str, bytes, bool]] = []
        self._lock = threading.Condition()
        self._topics = topics
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self._subscribed.wait(5)

    def _on_connect(self, client, userdata, flags, *rest) -> None:
        for topic in self._topics:
            client.subscribe(topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), message.topic, bytes(message.payload), bool(message.retain)))
            self._lock.notify_all()

    def wait_for(
        self, predicate: Callable[[str, bytes], bool], timeout: float = 20.0, after: int = 0
    ) -> Optional[Tuple[float, str, bytes, bool]]:
        """The first message (from index ``after``) matching ``predicate``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            index = after
            while True:
                while index < len(self.messages):
                    message = self.messages[index]
                    index += 1
                    if predicate(message[1], message[2]):
                        return message
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._lock.wait(remaining)

    def on_topic(self, topic: str) -> List[bytes]:
        with self._lock:
            return [m[2] for m in self.messages if m[1] == topic]

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
