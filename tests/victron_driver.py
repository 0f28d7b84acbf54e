"""The real venus-os_dbus-mqtt-battery driver, run off Venus OS by ../shared/victron-driver/run.sh.

``Driver(...).start()`` starts the harness (its own Mosquitto on a free loopback
port, a private D-Bus, the unmodified driver) in a directory of its own, so
several can run at once; ``values()`` reads every path of the driver's D-Bus
service back (None where the driver shows the path invalid).  D-Bus is read
with Debian's python3-dbus (``/usr/bin/python3``), which is where it lives.

Tests using it skip when ``../shared/victron-driver`` or python3-dbus is absent.
"""

import json
import os
import subprocess
import time
from typing import Any, Callable, Dict, Optional

import pytest

HARNESS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "victron-driver"))
SYSTEM_PYTHON = "/usr/bin/python3"

# Reads every item of a service in one GetItems call; prints {path: value} as JSON (null = invalid).
_READ_ALL = r"""
import json, sys
import dbus
bus = dbus.bus.BusConnection(sys.argv[1])
if not bus.name_has_owner(sys.argv[2]):
    print("null"); sys.exit(0)
def plain(v):
    if isinstance(v, dbus.Array):
        return None if len(v) == 0 else [plain(x) for x in v]
    if isinstance(v, dbus.Double):
        return float(v)
    if isinstance(v, (dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16, dbus.UInt32, dbus.UInt64, dbus.Byte)):
        return int(v)
    if isinstance(v, dbus.String):
        return str(v)
    return v
items = bus.get_object(sys.argv[2], "/", introspect=False).GetItems(dbus_interface="com.victronenergy.BusItem")
print(json.dumps({str(path): plain(item["Value"]) for path, item in items.items()}))
"""


def available() -> Optional[str]:
    """Why the driver cannot run here, or None."""
    if not os.path.isfile(os.path.join(HARNESS, "run.sh")):
        return "../shared/victron-driver is absent"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import dbus, gi"], capture_output=True)
    if probe.returncode != 0:
        return "python3-dbus / python3-gi are not installed (Debian packages)"
    return None


def require() -> None:
    reason = available()
    if reason is not None:
        pytest.skip(reason)


class Driver:
    """One harness: broker, bus and driver, subscribed to ``topic``."""

    def __init__(self, directory: str, topic: str, timeout: int = 0, instance: int = 100) -> None:
        self.directory = directory
        self.env = dict(
            os.environ,
            VICTRON_HARNESS_DIR=directory,
            MQTT_TOPIC=topic,
            DRIVER_TIMEOUT=str(timeout),
            DEVICE_INSTANCE=str(instance),
            DRIVER_LOGGING="INFO",
        )
        self.info: Dict[str, Any] = {}

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", os.path.join(HARNESS, "run.sh"), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError("run.sh %s failed:\n%s\n%s" % (" ".join(args), done.stdout, done.stderr))
        return done.stdout

    def start(self) -> "Driver":
        self._run("start")
        with open(os.path.join(self.directory, "run", "env.json")) as handle:
            self.info = json.load(handle)
        return self

    def listen_on(self, port: int) -> None:
        """Point this harness's driver at another harness's broker (for a second service on one broker)."""
        config = os.path.join(self.info["driver_dir"], "config.ini")
        with open(config) as handle:
            text = handle.read()
        lines = ["broker_port = %d" % port if line.startswith("broker_port") else line for line in text.splitlines()]
        with open(config, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self._run("restart-driver")

    def stop(self) -> None:
        try:
            self._run("stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    @property
    def port(self) -> int:
        return int(self.info["mqtt_port"])

    def log(self) -> str:
        try:
            with open(os.path.join(self.info["run"], "driver.log")) as handle:
                return handle.read()[-4000:]
        except (OSError, KeyError):
            return ""

    def values(self) -> Optional[Dict[str, Any]]:
        """Every path of the service, or None while the driver has no service on the bus."""
        done = subprocess.run(
            [SYSTEM_PYTHON, "-c", _READ_ALL, self.info["bus_address"], self.info["service"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError("reading D-Bus failed: %s" % done.stderr)
        return json.loads(done.stdout)

    def wait(self, predicate: Callable[[Dict[str, Any]], bool], timeout: float) -> Optional[Dict[str, Any]]:
        """The first reading (about 5 a second) for which ``predicate`` holds, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            values = self.values()
            if values is not None and predicate(values):
                return values
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
