"""Home Assistant discovery, availability and state, through a real Mosquitto (and in process, at the end).

Every config and state is checked against the rules of
``home-assistant-discovery.md`` by ``discovery_problems`` / ``state_problems``
below, written from the notes (not from the module under test): required
keys, abbreviations, device_class / unit / state_class triples, enum rules,
unique ids, entity ids with their domain, availability wiring, expire_after.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import paho.mqtt.client as mqtt
import pytest
import yaml

from conftest import ROOT
from extra200.charge import ALARM_NAMES
from extra200.config import Config, replace
from extra200.derive import summarize_bank
from extra200.energy import EnergySnapshot, EnergyTotals
from extra200.homeassistant import (
    BANK_ENTITIES,
    STAT_COUNTERS,
    HomeAssistantPublisher,
    battery_entities,
    battery_alarms,
    clip_text,
    limit_alarms,
    readable_name,
    render_dashboard_yaml,
    render_manual_yaml,
)
from extra200.homeassistant.publisher import UNIT_IDENTITY_WAIT_POLLS
from extra200.model import (
    Bank,
    Battery,
    CellRow,
    CellTable,
    DeviceInfo,
    PowerDetail,
    PowerRow,
    Statistics,
)

NOW = 1_800_000_000.0
WAIT = 15.0  # generous: a loaded 2-core CI machine

# ---------------------------------------------------------------------------
# The rules, from the discovery notes (sections 2, 3, 6, 7)
# ---------------------------------------------------------------------------

ABBREVIATIONS = {
    "p": "platform",
    "uniq_id": "unique_id",
    "def_ent_id": "default_entity_id",
    "dev_cla": "device_class",
    "stat_cla": "state_class",
    "unit_of_meas": "unit_of_measurement",
    "sug_dsp_prc": "suggested_display_precision",
    "ent_cat": "entity_category",
    "en": "enabled_by_default",
    "exp_aft": "expire_after",
    "val_tpl": "value_template",
    "stat_t": "state_topic",
    "avty": "availability",
    "avty_t": "availability_topic",
    "avty_mode": "availability_mode",
    "json_attr_t": "json_attributes_topic",
    "cmps": "components",
    "o": "origin",
    "dev": "device",
    "ids": "identifiers",
    "cns": "connections",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "sw": "sw_version",
    "hw": "hw_version",
    "sn": "serial_number",
    "sa": "suggested_area",
    "cu": "configuration_url",
    "url": "support_url",
    "t": "topic",
    "ic": "icon",
    "json_attr_tpl": "json_attributes_template",
}
ROOT_KEYS = {
    "device",
    "origin",
    "components",
    "state_topic",
    "availability",
    "availability_topic",
    "availability_mode",
    "qos",
    "encoding",
}
DEVICE_KEYS = {
    "identifiers",
    "connections",
    "name",
    "manufacturer",
    "model",
    "model_id",
    "sw_version",
    "hw_version",
    "serial_number",
    "suggested_area",
    "configuration_url",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
COMMON_KEYS = {
    "platform",
    "unique_id",
    "default_entity_id",
    "name",
    "device_class",
    "entity_category",
    "enabled_by_default",
    "expire_after",
    "value_template",
    "state_topic",
    "availability",
    "availability_mode",
    "device",
    "qos",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
}
SENSOR_KEYS = COMMON_KEYS | {"unit_of_measurement", "state_class", "suggested_display_precision", "options"}
BINARY_SENSOR_KEYS = COMMON_KEYS | {"payload_on", "payload_off"}
# binary_sensor device classes used here, from Home Assistant's list
BINARY_CLASSES = {None, "problem", "battery_charging", "battery", "power", "running", "safety", "heat", "cold"}
ENERGY_UNITS = {"Wh", "kWh", "MWh", "J", "kJ", "MJ", "GJ"}
# device_class -> (allowed units, allowed state classes); section 7's table
CLASSES = {
    "voltage": ({"V", "mV", "kV", "µV", "MV"}, {"measurement"}),
    "current": ({"A", "mA", "µA"}, {"measurement"}),
    "power": ({"W", "kW", "mW", "MW"}, {"measurement"}),
    "temperature": ({"°C", "°F", "K"}, {"measurement"}),
    "battery": ({"%"}, {"measurement"}),
    "energy": (ENERGY_UNITS, {"total_increasing", "total"}),
    "energy_storage": (ENERGY_UNITS, {"measurement"}),
    "duration": ({"s", "min", "h", "d"}, {"measurement"}),
    None: ({None, "Ah", "%"}, {None, "measurement", "total_increasing"}),
}
# state-dependent icons of Home Assistant's own: these may go without an icon
STATE_ICON_CLASSES = {"battery", "problem", "battery_charging"}
ID = re.compile(r"^[A-Za-z0-9_-]+$")
ENTITY_ID = re.compile(r"^(sensor|binary_sensor)\.[a-z0-9_]+$")
TEMPLATE = re.compile(r"^\{\{ value_json\.([a-z0-9_]+) \}\}$")
ATTRIBUTES_TEMPLATE = re.compile(r"^\{\{ value_json\.([a-z0-9_]+) \| tojson \}\}$")
ICON = re.compile(r"^mdi:[a-z0-9-]+$")


def expand(options: Dict[str, Any]) -> Dict[str, Any]:
    return {ABBREVIATIONS.get(k, k): v for k, v in options.items()}


def sensor_problems(where: str, comp: Dict[str, Any], seen_ids: Dict[str, str], platform: str = "sensor") -> List[str]:
    """One entity's options (full names) against section 7; records its unique id and entity id."""
    keys = SENSOR_KEYS if platform == "sensor" else BINARY_SENSOR_KEYS
    problems = ["%s: unknown key %s (Home Assistant drops it silently)" % (where, k) for k in comp if k not in keys]
    for required in ("unique_id", "name", "value_template", "default_entity_id"):
        if not comp.get(required):
            problems.append("%s: no %s" % (where, required))
    for kind in ("unique_id", "default_entity_id"):
        value = comp.get(kind)
        if value in seen_ids:
            problems.append("%s: %s %s also used by %s" % (where, kind, value, seen_ids[value]))
        seen_ids[value] = where
    entity_id = str(comp.get("default_entity_id"))
    if not ENTITY_ID.match(entity_id) or entity_id.split(".")[0] != platform:
        problems.append("%s: default_entity_id %r lacks the %s. domain" % (where, entity_id, platform))
    device_class = comp.get("device_class")
    unit = comp.get("unit_of_measurement")
    state_class = comp.get("state_class")
    icon = comp.get("icon")
    if icon is None and device_class not in STATE_ICON_CLASSES:
        problems.append("%s: no icon" % where)
    elif icon is not None and not ICON.match(str(icon)):
        problems.append("%s: icon %r" % (where, icon))
    if ("json_attributes_topic" in comp) != ("json_attributes_template" in comp) or (
        "json_attributes_template" in comp and not ATTRIBUTES_TEMPLATE.match(comp["json_attributes_template"])
    ):
        problems.append("%s: json attributes need a topic and a template of value_json.<key> | tojson" % where)
    if platform == "binary_sensor":
        if device_class not in BINARY_CLASSES:
            problems.append("%s: binary_sensor device_class %r" % (where, device_class))
    elif device_class == "enum":
        if not comp.get("options") or unit is not None or state_class is not None:
            problems.append("%s: enum needs options and no unit / state_class" % where)
    else:
        if "options" in comp:
            problems.append("%s: options without device_class enum" % where)
        if device_class not in CLASSES:
            problems.append("%s: unknown device_class %r" % (where, device_class))
        else:
            units, classes = CLASSES[device_class]
            if unit not in units:
                problems.append("%s: unit %r not valid with device_class %r" % (where, unit, device_class))
            if state_class not in classes:
                problems.append("%s: state_class %r impossible for device_class %r" % (where, state_class, device_class))
    if state_class == "measurement" and not (isinstance(comp.get("expire_after"), int) and comp["expire_after"] > 0):
        problems.append("%s: a measurement without expire_after" % where)
    if comp.get("entity_category") not in (None, "diagnostic"):
        problems.append("%s: entity_category %r" % (where, comp.get("entity_category")))
    precision = comp.get("suggested_display_precision")
    if precision is not None and not (isinstance(precision, int) and precision >= 0):
        problems.append("%s: bad suggested_display_precision %r" % (where, precision))
    if precision is None and (unit is not None or state_class is not None):
        problems.append("%s: a number without suggested_display_precision" % where)
    if not TEMPLATE.match(str(comp.get("value_template"))):
        problems.append("%s: value_template %r" % (where, comp.get("value_template")))
    return problems


def discovery_problems(topic: str, payload: bytes, prefix: str, daemon_topic: str, seen_ids: Dict[str, str]) -> List[str]:
    """A device discovery message against sections 1-4 and 6-7 of the notes."""
    match = re.match(r"^%s/device/([^/]+)/config$" % re.escape(prefix), topic)
    if not match or not ID.match(match.group(1)):
        return ["%s: not a device discovery topic with an id of [a-zA-Z0-9_-]" % topic]
    if payload == b"":
        return []  # removal
    doc = json.loads(payload)
    if not all(k in doc for k in ("dev", "o", "cmps")):
        return ["%s: dev, o and cmps are required (abbreviated)" % topic]
    doc = expand(doc)
    problems = ["%s: unknown root key %s" % (topic, k) for k in doc if k not in ROOT_KEYS]
    device = expand(doc["device"])
    problems += ["%s: unknown device key %s" % (topic, k) for k in device if k not in DEVICE_KEYS]
    if not device.get("identifiers") or not device.get("name"):
        problems.append("%s: the device needs identifiers and a name" % topic)
    origin = expand(doc["origin"])
    problems += ["%s: unknown origin key %s" % (topic, k) for k in origin if k not in ORIGIN_KEYS]
    if not origin.get("name"):
        problems.append("%s: origin without a name" % topic)
    if not doc.get("state_topic"):
        problems.append("%s: no state_topic" % topic)
    availability = [expand(a) for a in doc.get("availability") or []]
    if (
        len(availability) != 2
        or doc.get("availability_mode") != "all"
        or daemon_topic not in [a.get("topic") for a in availability]
    ):
        problems.append("%s: availability must list the daemon's and the device's topic, mode all" % topic)
    components = doc["components"]
    if not components:
        problems.append("%s: no components" % topic)
    for key, comp in components.items():
        comp = expand(comp)
        where = "%s[%s]" % (topic, key)
        platform = comp.get("platform")
        if platform not in ("sensor", "binary_sensor"):
            problems.append("%s: platform %r" % (where, platform))
            continue
        if set(comp) == {"platform"}:
            continue  # a removed component (section 3)
        problems += sensor_problems(where, {k: v for k, v in comp.items() if k != "platform"}, seen_ids, platform)
        template = TEMPLATE.match(str(comp.get("value_template")))
        if template and template.group(1) != key:
            problems.append("%s: the template reads %s" % (where, template.group(1)))
        if comp.get("json_attributes_topic") not in (None, doc.get("state_topic")):
            problems.append("%s: attributes from another topic than the state" % where)
    return problems


def state_problems(config: Dict[str, Any], state: Dict[str, Any]) -> List[str]:
    """A state message against its device's config: every component's key, values Home Assistant accepts."""
    problems: List[str] = []
    for key, comp in expand(config)["components"].items():
        comp = expand(comp)
        if set(comp) == {"platform"}:
            continue
        if key not in state:
            problems.append("state lacks %s" % key)
            continue
        value = state[key]
        attributes = ATTRIBUTES_TEMPLATE.match(str(comp.get("json_attributes_template")))
        if attributes and not isinstance(state.get(attributes.group(1)), dict):
            problems.append("%s: attributes %s are not a JSON object" % (key, attributes.group(1)))
        if value is None:
            continue
        if comp.get("platform") == "binary_sensor":
            if value not in ("ON", "OFF"):
                problems.append("%s: %r is neither ON nor OFF" % (key, value))
        elif comp.get("device_class") == "enum":
            if value not in comp["options"]:
                problems.append("%s: %r not among the options" % (key, value))
        elif comp.get("unit_of_measurement") or comp.get("state_class"):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append("%s: %r is not a number" % (key, value))
            elif comp.get("state_class") == "total_increasing" and value < 0:
                problems.append("%s: a counter below zero" % key)
        elif not isinstance(value, str) or len(value) > 255 or value == "None":
            problems.append("%s: %r is not a text state" % (key, value))
    return problems


# ---------------------------------------------------------------------------
# Banks, by hand: Pylontech US3000C (15 cells) and Pytes E-BOX-48100V-D (16 cells)
# ---------------------------------------------------------------------------


def us3000c(address: int, amps: float = 8.0, barcode: bool = True) -> Battery:
    volts = [3.337 + 0.001 * (i % 4) for i in range(15)]
    volts[6] = 3.331
    volts[11] = 3.346
    battery = Battery(address)
    battery.row = PowerRow(
        address=address,
        present=True,
        voltage=50.125,
        current=amps,
        temperature=24.0,
        cell_temp_low=22.0,
        cell_temp_high=23.5,
        cell_voltage_low=3.331,
        cell_voltage_high=3.346,
        base_state="Charge" if amps > 0 else "Dischg",
        voltage_state="Normal",
        current_state="Normal",
        temperature_state="Normal",
        soc=76.0,
        time="2026-11-20 10:00:00",
        battery_voltage_state="Normal",
        battery_temperature_state="Normal",
        mos_temperature=25.5,
        mos_temperature_state="Normal",
        system_alarm_state="Normal",
    )
    battery.detail = PowerDetail(
        address=address,
        voltage=50.125,
        current=amps,
        total_capacity=74.0,
        soh_state="Normal",
        bat_events=0,
        power_events=0,
        system_fault=0,
    )
    battery.cells = CellTable(
        address,
        tuple(
            CellRow(
                index=i,
                voltage=v,
                current=amps,
                temperature=22.0 + (i // 5) * 0.5,
                base_state="Charge",
                voltage_state="Normal",
                current_state="Normal",
                temperature_state="Normal",
                soc=76.0,
                coulomb=56.24,
                balancing=(i == 11),
            )
            for i, v in enumerate(volts)
        ),
    )
    battery.info = DeviceInfo(
        address=address,
        manufacturer="Pylon",
        device_name="US3000C",
        board_version="PHANTOMSAD",
        main_soft_version="B69.25.0.0",
        soft_version="V2.9",
        specification="48V/74AH",
        barcode=("PPTBH02400210%03d" % address) if barcode else None,
        nominal_capacity=74.0,
        cell_count=15,
    )
    counters = {label: str(address * 10 + n) for n, (label, _, _) in enumerate(STAT_COUNTERS)}
    counters.update({"CYCLE Times": str(310 + address), "Charge Times": "21462"})
    battery.stats = Statistics(address=address, cycle_count=310 + address, soh=99.0 - address, counters=counters)
    battery.info_time = battery.stats_time = battery.cells_time = battery.detail_time = battery.row_time = 100.0
    return battery


def pytes(address: int) -> Battery:
    barcode = "PYT48100V2236%04d" % address
    battery = Battery(address)
    battery.row = PowerRow(
        address=address,
        present=True,
        voltage=53.21,
        current=-12.5,
        temperature=21.0,
        cell_temp_low=19.0,
        cell_temp_high=20.0,
        cell_voltage_low=3.322,
        cell_voltage_high=3.330,
        base_state="Dischg",
        voltage_state="Normal",
        current_state="Normal",
        temperature_state="Normal",
        soc=64.0,
        time="2026-11-20 10:00:00",
        battery_voltage_state="Normal",
        battery_temperature_state="Normal",
        barcode=barcode,
        device_type="E-BOX-48100V-D",
    )
    battery.detail = PowerDetail(address=address, total_capacity=100.0, power_events=0x800000)
    battery.cells = CellTable(
        address,
        tuple(
            CellRow(
                index=i,
                voltage=3.322 + 0.0005 * i,
                temperature=19.0 + (i % 2),
                base_state="Dischg",
                voltage_state="Normal",
                temperature_state="Normal",
                soc=64.0,
                coulomb=64.0,
            )
            for i in range(16)
        ),
    )
    battery.info = DeviceInfo(
        address=address,
        manufacturer="PYTES",
        device_name="E-BOX-48100V-D",
        main_soft_version="V1.10",
        barcode=barcode,
        nominal_capacity=100.0,
        cell_count=16,
    )
    battery.info_time = battery.row_time = 100.0  # stat N is rejected on this firmware: no stats
    return battery


def bank_of(*batteries: Battery, missing: Tuple[int, ...] = ()) -> Bank:
    units = {b.address: b for b in batteries}
    for address in missing:
        units[address] = Battery(address)
    return Bank(batteries=units, expected=tuple(sorted(units)), missing=missing, poll_time=NOW, complete=not missing)


@dataclasses.dataclass
class Limits:
    charge_voltage: float = 52.5
    charge_current: float = 75.0
    discharge_current: float = 90.0
    allow_charge: bool = True
    allow_discharge: bool = True
    mode: str = "Bulk"
    charge_reason: str = "configured maximum"
    discharge_reason: str = "configured maximum"
    voltage_reason: str = "bulk"
    alarms: Dict[str, int] = dataclasses.field(default_factory=lambda: {"HighVoltage": 0, "LowSoc": 1})


def energy_for(bank: Bank) -> EnergySnapshot:
    return EnergySnapshot(bank=EnergyTotals(12.5, 10.25), units={a: EnergyTotals(4.0 + a, 3.0 + a) for a in bank.batteries})


# ---------------------------------------------------------------------------
# MQTT helpers: real paho clients on the real broker
# ---------------------------------------------------------------------------


def _client(port: int, name: str) -> mqtt.Client:
    client_id = "%s-%s" % (name, uuid.uuid4().hex[:8])
    if hasattr(mqtt, "CallbackAPIVersion"):
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    else:
        client = mqtt.Client(client_id=client_id)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(WAIT), "no CONNACK from the test broker"
    return client


def _subscribe(client: mqtt.Client, topic: str) -> None:
    done = threading.Event()
    client.on_subscribe = lambda *args: done.set()
    client.subscribe(topic, qos=1)
    assert done.wait(WAIT), "no SUBACK for %s" % topic


class Link:
    """What the publisher needs from the daemon's MQTT link, on a real paho client; logs every publish."""

    def __init__(self, port: int) -> None:
        self.client = _client(port, "daemon")
        self.log: List[Tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        with self.lock:
            self.log.append((time.monotonic(), topic, payload))
        return self.client.publish(topic, payload, qos=qos, retain=retain).rc == mqtt.MQTT_ERR_SUCCESS

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        self.client.message_callback_add(topic, lambda c, u, m: handler(m.topic, m.payload))
        _subscribe(self.client, topic)

    def published(self, topic_part: str) -> List[Tuple[float, str, str]]:
        with self.lock:
            return [e for e in self.log if topic_part in e[1]]

    def close(self) -> None:
        self.client.disconnect()  # first: it ends paho's loop at once, so loop_stop() does not wait
        self.client.loop_stop()


class Collector:
    """A subscriber (like Home Assistant) recording every message under the test's topics."""

    def __init__(self, port: int, *filters: str) -> None:
        self.messages: List[Tuple[float, str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.client = _client(port, "collector")
        self.client.on_message = self._on_message
        for topic in filters:
            _subscribe(self.client, topic)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.cond:
            self.messages.append((time.monotonic(), message.topic, message.payload, bool(message.retain)))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting for %s" % what
                self.cond.wait(left)

    def on(self, topic: str) -> List[bytes]:
        with self.cond:
            return [m[2] for m in self.messages if m[1] == topic]

    def matching(self, part: str) -> List[Tuple[float, str, bytes, bool]]:
        with self.cond:
            return [m for m in self.messages if part in m[1]]

    def latest(self, part: str) -> Dict[str, bytes]:
        with self.cond:
            return {m[1]: m[2] for m in self.messages if part in m[1]}

    def close(self) -> None:
        self.client.disconnect()  # first: it ends paho's loop at once, so loop_stop() does not wait
        self.client.loop_stop()


class Scene:
    """One test's world: unique topics on the session broker, a Link, a Collector, publishers."""

    def __init__(self, broker: Any, tmp_path: Any, **changes: Any) -> None:
        tag = uuid.uuid4().hex[:8]
        self.port = broker.port
        self.prefix = "ha%s" % tag
        self.base = "bank%s" % tag
        config = replace(Config(), "mqtt", topic_base=self.base)
        ha_changes = {k: v for k, v in changes.items() if k in ("remove_after", "bank_id", "bank_name")}
        ha_changes.setdefault("bank_id", "pylontech")  # the automatic id has tests of its own
        config = replace(config, "homeassistant", discovery_prefix=self.prefix, **ha_changes)
        if "level" in changes:
            config = replace(config, "cells", level=changes["level"])
        if "addresses" in changes:
            config = replace(config, "battery", addresses=changes["addresses"])
        self.config = config
        self.state_dir = str(tmp_path / "state")
        self.daemon_topic = "%s/status" % self.base
        self.link = Link(self.port)
        self.link.publish(self.daemon_topic, "online", qos=1, retain=True)
        self.collector = Collector(self.port, "%s/#" % self.prefix, "%s/#" % self.base)
        self.publishers: List[HomeAssistantPublisher] = []

    def publisher(self, **changes: Any) -> HomeAssistantPublisher:
        config = self.config
        if "level" in changes:
            config = replace(config, "cells", level=changes["level"])
        if "addresses" in changes:
            config = replace(config, "battery", addresses=changes["addresses"])
        publisher = HomeAssistantPublisher(config, self.link.publish, self.link.subscribe, self.daemon_topic, self.state_dir)
        publisher.start()
        self.publishers.append(publisher)
        return publisher

    def config_topic(self, key: str) -> str:
        return "%s/device/%s/config" % (self.prefix, key)

    def state_topic(self, name: str) -> str:
        return "%s/homeassistant/%s/state" % (self.base, name)

    def retained(self) -> Dict[str, bytes]:
        """What the broker keeps now under the discovery prefix (a fresh subscriber, synced by a marker)."""
        fresh = Collector(self.port, "%s/#" % self.prefix)
        marker = "%s/device/zz_marker_%s/config" % (self.prefix, uuid.uuid4().hex[:6])
        fresh.client.publish(marker, b"x", qos=1)
        fresh.wait_for(lambda: bool(fresh.on(marker)), "the marker")
        result = {m[1]: m[2] for m in fresh.messages if m[3]}
        fresh.close()
        return result

    def close(self) -> None:
        for publisher in self.publishers:
            publisher.close()
        self.collector.close()
        self.link.close()


@pytest.fixture
def scene_factory(broker, tmp_path):
    scenes: List[Scene] = []

    def make(**changes: Any) -> Scene:
        scene = Scene(broker, tmp_path, **changes)
        scenes.append(scene)
        return scene

    yield make
    for scene in scenes:
        scene.close()


def run_poll(
    scene: Scene, publisher: HomeAssistantPublisher, bank: Bank, now: float = NOW, limits: Optional[Limits] = None
) -> None:
    summary = summarize_bank(bank)
    publisher.update(bank, summary, limits if limits is not None else Limits(), energy_for(bank), now)


def wait_for_states(scene: Scene, names: List[str], count: int = 1) -> Dict[str, Dict[str, Any]]:
    topics = [scene.state_topic(n) for n in names]
    scene.collector.wait_for(lambda: all(len(scene.collector.on(t)) >= count for t in topics), "states on %s" % names)
    return {n: json.loads(scene.collector.on(t)[-1]) for n, t in zip(names, topics)}


def check_everything(scene: Scene, configs: Dict[str, bytes], states: Dict[str, Dict[str, Any]]) -> None:
    seen: Dict[str, str] = {}
    problems: List[str] = []
    for topic, payload in sorted(configs.items()):
        problems += discovery_problems(topic, payload, scene.prefix, scene.daemon_topic, seen)
        if not payload:
            continue
        doc = json.loads(payload)
        name = doc["stat_t"].split("/")[-2]
        if name in states:
            problems += ["%s: %s" % (name, p) for p in state_problems(doc, states[name])]
    assert problems == []


def battery_keys(count: int, make_barcode: Callable[[int], str]) -> List[str]:
    return ["pylontech_%s" % make_barcode(a) for a in range(1, count + 1)]


# ---------------------------------------------------------------------------
# Discovery payloads
# ---------------------------------------------------------------------------


def test_three_us3000c_at_cell_level_low(scene_factory):
    scene = scene_factory(level="low")
    publisher = scene.publisher()
    bank = bank_of(us3000c(1), us3000c(2, amps=-20.0), us3000c(3))
    run_poll(scene, publisher, bank)
    states = wait_for_states(scene, ["bank", "battery_1", "battery_2", "battery_3"])
    configs = scene.retained()
    keys = ["pylontech_bank"] + ["pylontech_PPTBH02400210%03d" % a for a in (1, 2, 3)]
    assert sorted(configs) == sorted(scene.config_topic(k) for k in keys)
    check_everything(scene, configs, states)

    battery = json.loads(configs[scene.config_topic(keys[2])])
    assert battery["dev"] == {
        "ids": ["pylontech_PPTBH02400210002"],
        "name": "Battery 2",
        "mf": "Pylontech",
        "mdl": "US3000C",
        "sw": "B69.25.0.0",
        "hw": "PHANTOMSAD",
        "sn": "PPTBH02400210002",
        "via_device": "pylontech_bank",
    }
    assert battery["o"]["name"] == "extra200tomqtt" and battery["o"]["sw"]
    assert battery["stat_t"] == scene.state_topic("battery_2")
    assert battery["avty"] == [{"t": scene.daemon_topic}, {"t": "%s/homeassistant/battery_2/availability" % scene.base}]
    voltage = battery["cmps"]["voltage"]
    assert voltage == {
        "p": "sensor",
        "name": "Voltage",
        "uniq_id": "pylontech_PPTBH02400210002_voltage",
        "def_ent_id": "sensor.pylontech_battery_2_voltage",
        "dev_cla": "voltage",
        "unit_of_meas": "V",
        "stat_cla": "measurement",
        "sug_dsp_prc": 2,
        "exp_aft": 30,
        "val_tpl": "{{ value_json.voltage }}",
        "ic": "mdi:sine-wave",
    }
    alarm = battery["cmps"]["alarm"]
    assert alarm == {
        "p": "binary_sensor",
        "name": "Alarm",
        "uniq_id": "pylontech_PPTBH02400210002_alarm",
        "def_ent_id": "binary_sensor.pylontech_battery_2_alarm",
        "dev_cla": "problem",
        "exp_aft": 30,
        "val_tpl": "{{ value_json.alarm }}",
        "json_attr_t": scene.state_topic("battery_2"),
        "json_attr_tpl": "{{ value_json.alarm_attributes | tojson }}",
    }
    assert battery["cmps"]["charging"]["dev_cla"] == "battery_charging"
    assert battery["cmps"]["current"]["name"] == "Current (+ charging)"
    assert battery["cmps"]["power"]["name"] == "Power (+ discharging)"
    assert battery["cmps"]["charge_power"]["name"] == "Power (+ charging)"
    assert "dev_cla" not in battery["cmps"]["state_of_health"]  # not a charge level
    assert battery["cmps"]["state_of_health"]["unit_of_meas"] == "%"
    assert battery["cmps"]["stored_energy"]["unit_of_meas"] == "kWh"
    bank_config = json.loads(configs[scene.config_topic(keys[0])])
    assert bank_config["cmps"]["time_to_empty"]["unit_of_meas"] == "h"
    assert bank_config["cmps"]["alarm_high_voltage"]["dev_cla"] == "problem"
    assert battery["cmps"]["energy_charged"]["stat_cla"] == "total_increasing"
    assert battery["cmps"]["energy_charged"]["unit_of_meas"] == "kWh"
    assert battery["cmps"]["stored_energy"]["dev_cla"] == "energy_storage"
    assert battery["cmps"]["state"]["options"] == ["Charging", "Discharging", "Idle", "Balancing", "Error", "Other"]
    assert battery["cmps"]["cycle_count"]["ent_cat"] == "diagnostic"
    cells = [k for k in battery["cmps"] if k.startswith("cell_") and k[5].isdigit()]
    assert sorted(cells) == sorted("cell_%d_voltage" % n for n in range(1, 16))
    assert all("en" not in battery["cmps"][k] for k in cells)  # cell voltages are enabled (the cells chart)

    # Exact values in the state of battery 2 (discharging at 20 A).
    two = states["battery_2"]
    assert two["voltage"] == 50.125 and two["current"] == -20.0
    assert two["power"] == 1002.5  # Home Assistant's sign: + discharging
    assert two["charge_power"] == -1002.5 and two["charging"] == "OFF"
    assert two["soc"] == 76.0 and two["state"] == "Discharging"
    assert two["cell_voltage_min"] == 3.331 and two["cell_voltage_min_id"] == "B2C7"
    assert two["cell_voltage_max"] == 3.346 and two["cell_voltage_max_id"] == "B2C12"
    assert two["cell_voltage_delta"] == 0.015
    assert two["cell_7_voltage"] == 3.331
    assert two["energy_charged"] == 6.0 and two["energy_discharged"] == 5.0
    assert two["stored_energy"] == round(74.0 * 0.76 * 48 / 1000, 3)  # kWh
    assert two["cycle_count"] == 312 and two["state_of_health"] == 97.0
    assert two["alarm"] == "OFF" and two["alarm_attributes"] == {"active": []}
    assert two["alarm_voltage"] == "OFF" and two["alarm_voltage_attributes"] == {"state": "Normal"}
    assert two["events"] == "No events" and two["events_attributes"] == {"events": []}
    bank_state = states["bank"]
    assert bank_state["units_online"] == 3
    assert bank_state["charge_voltage_limit"] == 52.5 and bank_state["discharge_current_limit"] == 90.0
    assert bank_state["charging_allowed"] == "ON" and bank_state["charging_allowed_attributes"] == {
        "reason": "configured maximum"
    }
    assert bank_state["alarm"] == "ON" and bank_state["alarm_attributes"] == {"alarms": [], "warnings": ["Low SoC"]}
    assert bank_state["alarm_low_soc"] == "ON" and bank_state["alarm_low_soc_attributes"] == {"level": "warning"}
    assert bank_state["alarm_high_voltage"] == "OFF"
    assert bank_state["alarm_cell_imbalance"] is None  # not among this bank's alarms
    assert bank_state["energy_charged"] == 12.5
    assert bank_state["power"] == round(-(50.125 * 8 * 2 - 50.125 * 20), 1)
    assert bank_state["time_to_empty"] == round(151848.0 / 3600, 2)  # hours: 3 x 56.24 Ah at 4 A
    assert bank_state["time_to_full"] is None
    avail = scene.collector.latest("/availability")
    assert avail == {
        "%s/homeassistant/%s/availability" % (scene.base, n): b"online" for n in ("bank", "battery_1", "battery_2", "battery_3")
    }


def test_sixteen_pytes_at_cell_level_high(scene_factory):
    scene = scene_factory(level="high")
    publisher = scene.publisher()
    bank = bank_of(*[pytes(a) for a in range(1, 17)])
    run_poll(scene, publisher, bank)
    names = ["bank"] + ["battery_%d" % a for a in range(1, 17)]
    states = wait_for_states(scene, names)
    configs = scene.retained()
    assert len(configs) == 17
    check_everything(scene, configs, states)
    one = json.loads(configs[scene.config_topic("pylontech_PYT48100V22360001")])
    assert one["dev"]["mf"] == "Pytes" and one["dev"]["mdl"] == "E-BOX-48100V-D"
    # This firmware has no MOS sensor and rejects stat N: those entities are not created.
    assert not {"mos_temperature", "cycle_count", "state_of_health"} & set(one["cmps"])
    cell_keys = [k for k in one["cmps"] if re.match(r"cell_\d+_", k)]
    assert len(cell_keys) == 16 * 10
    assert one["cmps"]["cell_16_balancer"]["en"] is False and one["cmps"]["cell_16_balancer"]["p"] == "binary_sensor"
    assert states["battery_16"]["cell_16_voltage"] == 3.3295
    assert states["battery_16"]["cell_16_current"] is None  # Pytes V5 prints no cell current
    assert states["battery_3"]["events"] == "Power events 0x800000"
    assert states["bank"]["units_online"] == 16
    # 16 x 12.5 A discharging from 16 x 64 % of 100 Ah: 1024 Ah / 200 A = 5.12 h
    assert states["bank"]["time_to_empty"] == 5.12


def test_states_wait_a_second_after_a_new_config_and_come_once_per_poll(scene_factory):
    scene = scene_factory()
    publisher = scene.publisher()
    bank = bank_of(us3000c(1), us3000c(2))
    run_poll(scene, publisher, bank)
    wait_for_states(scene, ["bank", "battery_1", "battery_2"])  # sent by the timer, without another poll
    for name, key in (("bank", "pylontech_bank"), ("battery_1", "pylontech_PPTBH02400210001")):
        config_time = scene.link.published(scene.config_topic(key))[0][0]
        state_time = scene.link.published(scene.state_topic(name))[0][0]
        assert state_time - config_time >= 1.0
    before = len(scene.link.published("/state"))
    run_poll(scene, publisher, bank, now=NOW + 5)  # configs unchanged: not sent again; states at once
    assert len(scene.link.published("/state")) == before + 3
    assert len(scene.link.published("/config")) == 3


def test_birth_message_resends_every_config_then_the_states(scene_factory):
    scene = scene_factory(level="medium")
    publisher = scene.publisher()
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), us3000c(3)))
    wait_for_states(scene, ["bank", "battery_3"])
    configs = scene.retained()
    assert len(configs) == 4
    mark = len(scene.collector.messages)
    scene.collector.client.publish("%s/status" % scene.prefix, "online")  # Home Assistant restarted
    again = lambda: {m[1] for m in scene.collector.messages[mark:] if m[1] in configs}  # noqa: E731
    scene.collector.wait_for(lambda: again() == set(configs), "every config again")
    resent = {m[1]: m[2] for m in scene.collector.messages[mark:] if m[1] in configs}
    assert resent == configs  # the same payloads
    wait_for_states(scene, ["bank", "battery_1", "battery_2", "battery_3"], count=2)
    for name, key in (("bank", "pylontech_bank"), ("battery_3", "pylontech_PPTBH02400210003")):
        resent_at = scene.link.published(scene.config_topic(key))[-1][0]
        state_at = min(e[0] for e in scene.link.published(scene.state_topic(name)) if e[0] > resent_at)
        assert state_at - resent_at >= 1.0
    # "offline" from Home Assistant changes nothing.
    count = len(scene.link.published("/config"))
    scene.collector.client.publish("%s/status" % scene.prefix, "offline")
    time.sleep(1.5)
    assert len(scene.link.published("/config")) == count


def test_a_silent_configured_unit_goes_unavailable_but_keeps_its_device(scene_factory):
    scene = scene_factory(addresses=(1, 2, 3))
    publisher = scene.publisher()
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), us3000c(3)))
    wait_for_states(scene, ["battery_3"])
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), missing=(3,)), now=NOW + 5)
    avail = "%s/homeassistant/battery_3/availability" % scene.base
    scene.collector.wait_for(lambda: scene.collector.on(avail)[-1:] == [b"offline"], "battery 3 offline")
    states_3 = len(scene.collector.on(scene.state_topic("battery_3")))
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), missing=(3,)), now=NOW + 10**6)
    wait_for_states(scene, ["battery_1"], count=2)
    assert len(scene.collector.on(scene.state_topic("battery_3"))) == states_3  # no state for a silent unit
    configs = scene.retained()
    assert configs[scene.config_topic("pylontech_PPTBH02400210003")] != b""  # kept: it is configured
    # It answers again: online, states again.
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), us3000c(3)), now=NOW + 10**6 + 5)
    scene.collector.wait_for(lambda: scene.collector.on(avail)[-1:] == [b"online"], "battery 3 online")
    wait_for_states(scene, ["battery_3"], count=states_3 + 1)


def test_a_battery_removed_from_the_configuration_is_cleared_after_a_restart(scene_factory):
    scene = scene_factory(addresses=(1, 2, 3))
    first = scene.publisher()
    run_poll(scene, first, bank_of(us3000c(1), us3000c(2), us3000c(3)))
    wait_for_states(scene, ["battery_3"])
    first.close()
    assert os.path.exists(os.path.join(scene.state_dir, "homeassistant.json"))
    # The daemon restarts with battery 3 taken out of the bank (and out of battery.addresses).
    second = scene.publisher(addresses=(1, 2))
    run_poll(scene, second, bank_of(us3000c(1), us3000c(2)), now=NOW + 60)
    gone = scene.config_topic("pylontech_PPTBH02400210003")
    scene.collector.wait_for(lambda: scene.collector.on(gone)[-1:] == [b""], "the removal of battery 3")
    configs = scene.retained()
    assert gone not in configs  # the broker forgot it: an empty retained payload
    assert len(configs) == 3


def test_an_auto_detected_unit_gone_for_remove_after_is_cleared(scene_factory):
    scene = scene_factory(remove_after=600.0)
    publisher = scene.publisher()
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), us3000c(3)))
    wait_for_states(scene, ["battery_3"])
    gone = scene.config_topic("pylontech_PPTBH02400210003")
    two = bank_of(us3000c(1), us3000c(2))
    run_poll(scene, publisher, two, now=NOW + 5)
    run_poll(scene, publisher, two, now=NOW + 10)
    avail = "%s/homeassistant/battery_3/availability" % scene.base
    scene.collector.wait_for(lambda: scene.collector.on(avail)[-1:] == [b"offline"], "battery 3 offline")
    assert scene.collector.on(gone)[-1] != b""
    run_poll(scene, publisher, two, now=NOW + 700)  # past remove_after
    scene.collector.wait_for(lambda: scene.collector.on(gone)[-1:] == [b""], "the removal of battery 3")
    assert len(scene.retained()) == 3


def test_a_lower_cell_level_reduces_those_components(scene_factory):
    scene = scene_factory(level="high")
    first = scene.publisher()
    bank = bank_of(us3000c(1))
    run_poll(scene, first, bank)
    wait_for_states(scene, ["battery_1"])
    first.close()
    topic = scene.config_topic("pylontech_PPTBH02400210001")
    high = json.loads(scene.retained()[topic])
    second = scene.publisher(level="low")
    run_poll(scene, second, bank, now=NOW + 60)
    scene.collector.wait_for(lambda: len(scene.collector.on(topic)) >= 2, "the reconfiguration")
    low = json.loads(scene.retained()[topic])
    removed = {k for k, v in low["cmps"].items() if v == {"p": "sensor"}}
    expected = {k for k in high["cmps"] if re.match(r"cell_\d+_", k) and not k.endswith("_voltage")}
    expected |= {"cell_voltage_average", "cells_balancing"}
    removed |= {k for k, v in low["cmps"].items() if v == {"p": "binary_sensor"}}
    assert removed == expected
    # each is removed on the platform it was announced on
    assert low["cmps"]["cell_3_balancer"] == {"p": "binary_sensor"} and high["cmps"]["cell_3_balancer"]["p"] == "binary_sensor"
    assert low["cmps"]["cell_3_voltage"]["uniq_id"] == "pylontech_PPTBH02400210001_cell_3_voltage"
    check_everything(scene, {topic: json.dumps(low).encode()}, {})
    # Later configs keep the stubs, and a state carries no removed key any more.
    state = wait_for_states(scene, ["battery_1"], count=2)["battery_1"]
    assert "cell_3_temperature" not in state and "cell_3_voltage" in state


def test_identity_by_address_without_a_barcode_then_by_barcode(scene_factory):
    scene = scene_factory()
    publisher = scene.publisher()
    run_poll(scene, publisher, bank_of(us3000c(1, barcode=False)))
    by_address = scene.config_topic("pylontech_battery_1")
    scene.collector.wait_for(lambda: bool(scene.collector.on(by_address)), "the address-keyed device")
    doc = json.loads(scene.collector.on(by_address)[-1])
    assert doc["cmps"]["soc"]["uniq_id"] == "pylontech_battery_1_soc" and "sn" not in doc["dev"]
    # The barcode arrives: the device is re-announced under it and the address-keyed one removed.
    run_poll(scene, publisher, bank_of(us3000c(1)), now=NOW + 5)
    scene.collector.wait_for(lambda: scene.collector.on(by_address)[-1:] == [b""], "the address device removed")
    configs = scene.retained()
    assert sorted(configs) == sorted([scene.config_topic("pylontech_bank"), scene.config_topic("pylontech_PPTBH02400210001")])


def test_a_re_cabled_unit_keeps_its_device(scene_factory):
    scene = scene_factory()
    publisher = scene.publisher()
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2)))
    wait_for_states(scene, ["battery_2"])
    moved = us3000c(3)
    moved.info = dataclasses.replace(moved.info, barcode="PPTBH02400210002")  # unit 2 now answers as 3
    run_poll(scene, publisher, bank_of(us3000c(1), moved), now=NOW + 5)
    topic = scene.config_topic("pylontech_PPTBH02400210002")
    scene.collector.wait_for(lambda: len(scene.collector.on(topic)) >= 2, "the re-announcement")
    doc = json.loads(scene.collector.on(topic)[-1])
    assert doc["stat_t"] == scene.state_topic("battery_3") and doc["dev"]["name"] == "Battery 3"
    assert doc["cmps"]["voltage"]["uniq_id"] == "pylontech_PPTBH02400210002_voltage"  # unchanged


def test_a_different_discovery_prefix_clears_the_old_topics(scene_factory):
    scene = scene_factory()
    first = scene.publisher()
    run_poll(scene, first, bank_of(us3000c(1)))
    wait_for_states(scene, ["battery_1"])
    first.close()
    old = scene.config_topic("pylontech_PPTBH02400210001")
    scene.config = replace(scene.config, "homeassistant", discovery_prefix=scene.prefix + "/new")
    second = scene.publisher()
    run_poll(scene, second, bank_of(us3000c(1)), now=NOW + 60)
    scene.collector.wait_for(lambda: scene.collector.on(old)[-1:] == [b""], "the old config cleared")
    new = "%s/new/device/pylontech_PPTBH02400210001/config" % scene.prefix
    scene.collector.wait_for(lambda: bool(scene.collector.on(new)), "the new config")


def test_nothing_is_sent_while_the_broker_is_away_and_all_of_it_afterwards():
    sent: List[Tuple[str, str]] = []
    connected = {"up": False}

    def publish(topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        if connected["up"]:
            sent.append((topic, payload))
        return connected["up"]

    publisher = HomeAssistantPublisher(Config(), publish, None, "b/status", None)
    publisher.start()
    bank = bank_of(us3000c(1))
    publisher.update(bank, summarize_bank(bank), None, None, NOW)
    assert sent == []
    connected["up"] = True
    publisher.update(bank, summarize_bank(bank), None, None, NOW + 5)
    topics = [t for t, _ in sent]
    # The automatic bank id, from the master's barcode PPTBH02400210001
    assert topics.count("homeassistant/device/pylontech_210001_bank/config") == 1
    assert "homeassistant/device/pylontech_210001_PPTBH02400210001/config" in topics
    bank_config = json.loads(dict(sent)["homeassistant/device/pylontech_210001_bank/config"])
    # Without charge limits, their entities are not created until limits exist.
    assert "charge_voltage_limit" not in bank_config["cmps"]
    publisher.close()


# ---------------------------------------------------------------------------
# The homeassistant/ folder: the include file and the dashboard
# ---------------------------------------------------------------------------


def test_the_shipped_include_file_is_what_the_command_generates():
    path = os.path.join(ROOT, "homeassistant", "pylon-batteries.yaml")
    with open(path, encoding="utf-8") as handle:
        shipped = handle.read()
    assert shipped == render_manual_yaml(batteries=3, cells_per_battery=15, level="low", topic_base="victron-battery-middleware")


def test_the_include_file_follows_the_rules_and_matches_discovery(scene_factory):
    text = render_manual_yaml(batteries=3, cells_per_battery=15, level="low", topic_base="base")
    by_platform = yaml.safe_load(text)
    assert sorted(by_platform) == ["binary_sensor", "sensor"]
    sensors = [dict(s, platform=p) for p, entries in by_platform.items() for s in entries]
    seen: Dict[str, str] = {}
    problems: List[str] = []
    for sensor in sensors:
        where = sensor.get("unique_id", "?")
        platform = sensor.pop("platform")
        problems += sensor_problems(where, sensor, seen, platform)
        if [a["topic"] for a in sensor["availability"]][0] != "base/status" or sensor["availability_mode"] != "all":
            problems.append("%s: availability" % where)
        if not sensor["device"].get("identifiers") or not sensor["device"].get("name"):
            problems.append("%s: device" % where)
    assert problems == []
    bank_entities = 32 + 18  # 18 alarms of the charge control
    battery_entities = 33 + 17 + 15  # 17 stat counters, 15 cell voltages
    assert len(sensors) == len(seen) // 2 == bank_entities + 3 * battery_entities
    # Discovery for the same bank reads the same topics and creates the same entity ids.
    scene = scene_factory(level="low")
    yaml_ids = {s["default_entity_id"]: s["state_topic"].replace("base/", scene.base + "/") for s in sensors}
    publisher = scene.publisher()
    every_alarm = Limits(alarms={name: 0 for name in ALARM_NAMES})
    run_poll(scene, publisher, bank_of(us3000c(1), us3000c(2), us3000c(3)), limits=every_alarm)
    wait_for_states(scene, ["battery_3"])
    discovered = {}
    for payload in scene.retained().values():
        doc = json.loads(payload)
        for comp in doc["cmps"].values():
            discovered[comp["def_ent_id"]] = doc["stat_t"]
    assert discovered == yaml_ids


def test_the_shipped_dashboard_is_generated_and_names_existing_entities():
    path = os.path.join(ROOT, "homeassistant", "dashboard.yaml")
    with open(path, encoding="utf-8") as handle:
        shipped = handle.read()
    assert shipped == render_dashboard_yaml(batteries=3)
    entity_ids = {
        s["default_entity_id"]
        for entries in yaml.safe_load(render_manual_yaml(batteries=3, cells_per_battery=15, level="low", topic_base="x")).values()
        for s in entries
    }
    used = set(re.findall(r"(?<![a-z_])(?:binary_)?sensor\.[a-z0-9_]+", shipped))
    assert used and used <= entity_ids


# ---------------------------------------------------------------------------
# Text states
# ---------------------------------------------------------------------------


def test_readable_texts():
    assert readable_name("HighCellVoltage") == "High cell voltage"
    assert readable_name("LowSoc") == "Low SoC"
    assert readable_name("BmsCable") == "BMS cable"
    assert readable_name("high_charge_temperature") == "High charge temperature"
    assert (
        limit_alarms(Limits(alarms={"HighVoltage": 2, "LowSoc": 1, "CellImbalance": 0}))
        == "High voltage (alarm), Low SoC (warning)"
    )
    assert limit_alarms(Limits(alarms={"HighVoltage": 0})) == "OK"
    assert limit_alarms(None) is None
    assert clip_text("None") == "none"
    assert len(clip_text("x" * 300)) == 255
    battery = us3000c(1)
    battery.row = dataclasses.replace(
        battery.row, base_state="SysError", voltage_state="Low", battery_voltage_state="Low", mos_temperature_state="-"
    )
    assert battery_alarms(battery) == "System error (SysError), Voltage low, Cell voltage low"


def test_the_checker_catches_what_home_assistant_rejects_or_mangles():
    good = {
        "dev": {"ids": ["x_1"], "name": "Battery 1"},
        "o": {"name": "extra200tomqtt"},
        "stat_t": "b/s",
        "avty": [{"t": "b/status"}, {"t": "b/1/availability"}],
        "avty_mode": "all",
        "cmps": {
            "soc": {
                "p": "sensor",
                "uniq_id": "x_1_soc",
                "def_ent_id": "sensor.x_1_soc",
                "name": "SoC",
                "dev_cla": "battery",
                "unit_of_meas": "%",
                "stat_cla": "measurement",
                "exp_aft": 30,
                "val_tpl": "{{ value_json.soc }}",
                "sug_dsp_prc": 0,
            }
        },
    }

    def check(change: Callable[[Dict[str, Any]], None], topic: str = "ha/device/x_1/config") -> List[str]:
        doc = json.loads(json.dumps(good))
        change(doc)
        return discovery_problems(topic, json.dumps(doc).encode(), "ha", "b/status", {})

    soc = lambda d: d["cmps"]["soc"]  # noqa: E731
    assert check(lambda d: None) == []
    assert check(lambda d: None, topic="ha/device/bat.1/config")  # illegal character in the id
    assert check(lambda d: d.pop("o"))  # origin is required
    assert check(lambda d: soc(d).pop("uniq_id"))
    assert check(lambda d: soc(d).update(unit_of_meas="V"))  # unit not valid for the class: rejected
    assert check(lambda d: soc(d).update(dev_cla="energy", unit_of_meas="kWh"))  # energy + measurement
    assert check(lambda d: soc(d).update(dev_cla="enum", options=["a"]))  # enum with a unit
    assert check(lambda d: soc(d).update(def_ent_id="x_1_soc"))  # no domain: sensor.unnamed_device
    assert check(lambda d: soc(d).update(stat_class="measurement"))  # a misspelt key is dropped silently
    assert check(lambda d: soc(d).pop("exp_aft"))  # would show stale values
    assert check(lambda d: soc(d).pop("sug_dsp_prc"))  # Home Assistant guesses the precision
    assert check(lambda d: soc(d).update(dev_cla=None, unit_of_meas=None, stat_cla=None))  # text without an icon
    assert check(lambda d: soc(d).update(suggested_unit_of_measurement="h"))  # MQTT drops it silently
    assert check(lambda d: soc(d).update(p="binary_sensor"))  # a unit on a binary sensor; wrong domain
    assert check(lambda d: soc(d).update(json_attr_t="b/s"))  # attributes without a template
    binary = {
        "p": "binary_sensor",
        "uniq_id": "x_1_alarm",
        "def_ent_id": "binary_sensor.x_1_alarm",
        "name": "Alarm",
        "dev_cla": "problem",
        "exp_aft": 30,
        "val_tpl": "{{ value_json.alarm }}",
        "json_attr_t": "b/s",
        "json_attr_tpl": "{{ value_json.alarm_attributes | tojson }}",
    }
    assert check(lambda d: d["cmps"].update(alarm=binary)) == []
    assert check(lambda d: d["cmps"].update(alarm=dict(binary, def_ent_id="sensor.x_1_alarm")))
    assert check(lambda d: d["cmps"].update(alarm=dict(binary, dev_cla="battery_low")))
    with_alarm = dict(good, cmps=dict(good["cmps"], alarm=binary))
    assert not state_problems(with_alarm, {"soc": 5, "alarm": "ON", "alarm_attributes": {}})
    assert state_problems(with_alarm, {"soc": 5, "alarm": "Yes", "alarm_attributes": {}})
    assert state_problems(with_alarm, {"soc": 5, "alarm": "ON"})  # attributes missing
    assert check(lambda d: d.update(avty_mode="latest"))
    assert check(lambda d: d["cmps"].update(soh=dict(soc(d), val_tpl="{{ value_json.soh }}")))  # same ids twice
    assert check(lambda d: d["cmps"].update(gone={"p": "sensor"})) == []  # a removed component is fine
    assert state_problems(good, {"soc": "full"}) and state_problems(good, {})
    assert not state_problems(good, {"soc": None})


def test_reconnect_and_remove_all_without_a_broker(tmp_path):
    sent: List[Tuple[str, str, bool]] = []
    lock = threading.Lock()

    def publish(topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        with lock:
            sent.append((topic, payload, retain))
        return True

    def configs() -> List[Tuple[str, str, bool]]:
        with lock:
            return [m for m in sent if m[0].endswith("/config")]

    publisher = HomeAssistantPublisher(Config(), publish, None, "b/status", str(tmp_path))
    publisher.start()
    bank = bank_of(us3000c(1), us3000c(2))
    publisher.update(bank, summarize_bank(bank), Limits(), None, NOW)
    assert len(configs()) == 3
    publisher.on_connect()  # a reconnect: the broker may have lost the retained configs
    deadline = time.monotonic() + WAIT
    while len(configs()) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c[:2] for c in configs()[3:]] == sorted(c[:2] for c in configs()[:3])
    publisher.close()
    # Discovery switched off: a new process clears every device it ever announced, from the record.
    cleaner = HomeAssistantPublisher(Config(), publish, None, "b/status", str(tmp_path))
    assert cleaner.remove_all() == 3
    assert sorted(m[0] for m in configs()[-3:]) == sorted(c[0] for c in configs()[:3])
    assert all(m[1] == "" and m[2] for m in configs()[-3:])
    with open(os.path.join(str(tmp_path), "homeassistant.json")) as handle:
        assert json.load(handle)["devices"] == {}


def test_without_discovery_only_states_flow_and_earlier_configs_are_cleared(tmp_path):
    sent: List[Tuple[str, str, bool]] = []

    def publish(topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        sent.append((topic, payload, retain))
        return True

    bank = bank_of(us3000c(1))
    first = HomeAssistantPublisher(Config(), publish, None, "b/status", str(tmp_path))
    first.start()
    first.update(bank, summarize_bank(bank), Limits(), None, NOW)
    first.close()
    announced = sorted(t for t, p, r in sent if t.endswith("/config"))
    assert len(announced) == 2
    del sent[:]
    # The user switches to pylon-batteries.yaml: discovery off, the same state topics as before.
    config = replace(Config(), "homeassistant", discovery=False)
    second = HomeAssistantPublisher(config, publish, None, "b/status", str(tmp_path))
    second.start()
    second.update(bank, summarize_bank(bank), Limits(), None, NOW + 5)
    second.update(bank, summarize_bank(bank), Limits(), None, NOW + 10)
    second.close()
    assert sorted(t for t, p, r in sent if t.endswith("/config")) == announced
    assert all(p == "" and r for t, p, r in sent if t.endswith("/config"))
    states = [t for t, p, r in sent if t.endswith("/state")]
    assert (
        states
        == ["victron-battery-middleware/homeassistant/bank/state", "victron-battery-middleware/homeassistant/battery_1/state"] * 2
    )


# ---------------------------------------------------------------------------
# Identity per bank, upgrades, counters, events
# ---------------------------------------------------------------------------


def _rebarcoded(battery: Battery, prefix: str) -> Battery:
    battery.info = dataclasses.replace(battery.info, barcode=prefix + battery.info.barcode[len(prefix) :])
    return battery


def test_two_banks_get_ids_and_names_of_their_own(scene_factory, tmp_path):
    first = scene_factory(bank_id="", bank_name="")
    one = first.publisher()
    # the second daemon: the same broker and settings, its own state directory
    two = HomeAssistantPublisher(
        first.config, first.link.publish, first.link.subscribe, first.daemon_topic, str(tmp_path / "state-2")
    )
    two.start()
    first.publishers.append(two)
    run_poll(first, one, bank_of(us3000c(1), us3000c(2)))
    run_poll(first, two, bank_of(*[_rebarcoded(us3000c(a), "PPTBH0240077") for a in (1, 2)]))
    first.collector.wait_for(lambda: len(first.collector.latest("/device/")) >= 6, "both banks' configs")
    configs = {t: json.loads(p) for t, p in first.retained().items() if p}
    assert sorted(t.split("/")[-2] for t in configs) == sorted(
        [
            "pylontech_210001_bank",
            "pylontech_210001_PPTBH02400210001",
            "pylontech_210001_PPTBH02400210002",
            "pylontech_770001_bank",
            "pylontech_770001_PPTBH02400770001",
            "pylontech_770001_PPTBH02400770002",
        ]
    )
    names = sorted(d["dev"]["name"] for d in configs.values())
    assert names == [
        "Pylontech 210001",
        "Pylontech 210001 battery 1",
        "Pylontech 210001 battery 2",
        "Pylontech 770001",
        "Pylontech 770001 battery 1",
        "Pylontech 770001 battery 2",
    ]
    unique_ids = [c["uniq_id"] for d in configs.values() for c in d["cmps"].values()]
    entity_ids = [c["def_ent_id"] for d in configs.values() for c in d["cmps"].values()]
    assert len(set(unique_ids)) == len(unique_ids) and len(set(entity_ids)) == len(entity_ids)
    assert "sensor.pylontech_770001_bank_energy_charged" in entity_ids
    # the id is kept in the record: a restart (and a replaced master battery) keeps it
    one.close()
    with open(os.path.join(first.state_dir, "homeassistant.json")) as handle:
        assert json.load(handle)["bank_id"] == "pylontech_210001"
    again = first.publisher()
    run_poll(first, again, bank_of(_rebarcoded(us3000c(1), "PPTBH0240099"), us3000c(2)), now=NOW + 60)
    assert again._bank_id == "pylontech_210001"


def test_without_a_barcode_the_automatic_id_comes_from_the_port_after_a_few_polls():
    sent: List[Tuple[str, str]] = []
    config = replace(Config(), "serial", port="/dev/ttyUSB0")
    publisher = HomeAssistantPublisher(
        config, lambda t, p, qos=0, retain=False: sent.append((t, p)) or True, None, "b/status", None
    )
    bank = bank_of(us3000c(1, barcode=False))
    bank.batteries[1].info_time = None  # info not read yet
    for poll in range(3):
        publisher.update(bank, summarize_bank(bank), Limits(), None, NOW + poll)
        assert sent == []  # waiting for the master's barcode
    publisher.update(bank, summarize_bank(bank), Limits(), None, NOW + 3)
    assert "homeassistant/device/pylontech_ttyusb0_bank/config" in [t for t, _ in sent]
    publisher.close()


def test_an_upgrade_keeps_the_unique_ids_and_removes_the_retired_text_sensors(scene_factory):
    scene = scene_factory(bank_id="", bank_name="")
    os.makedirs(scene.state_dir)
    old_bank = [
        "voltage",
        "current",
        "power",
        "soc",
        "energy_charged",
        "energy_discharged",
        "charge_allowed",
        "discharge_allowed",
        "alarms",
        "limit_reasons",
        "charge_voltage_limit",
    ]
    old_battery = ["voltage", "soc", "energy_charged", "energy_discharged", "alarms", "events", "state"]
    record = {
        "version": 1,
        "devices": {  # what the previous version recorded (no bank_id, no platforms)
            "pylontech_bank": {
                "topic": scene.config_topic("pylontech_bank"),
                "address": None,
                "barcode": None,
                "components": old_bank,
                "removed": [],
                "last_seen": NOW - 60,
            },
            "pylontech_PPTBH02400210001": {
                "topic": scene.config_topic("pylontech_PPTBH02400210001"),
                "address": 1,
                "barcode": "PPTBH02400210001",
                "components": old_battery,
                "removed": [],
                "last_seen": NOW - 60,
            },
        },
    }
    with open(os.path.join(scene.state_dir, "homeassistant.json"), "w") as handle:
        json.dump(record, handle)
    publisher = scene.publisher()
    run_poll(scene, publisher, bank_of(us3000c(1)))
    states = wait_for_states(scene, ["bank", "battery_1"])
    configs = scene.retained()
    assert sorted(configs) == sorted([scene.config_topic("pylontech_bank"), scene.config_topic("pylontech_PPTBH02400210001")])
    check_everything(scene, configs, states)
    bank = json.loads(configs[scene.config_topic("pylontech_bank")])
    battery = json.loads(configs[scene.config_topic("pylontech_PPTBH02400210001")])
    # the energy counters keep their unique ids, so their statistics
    assert bank["cmps"]["energy_charged"]["uniq_id"] == "pylontech_bank_energy_charged"
    assert battery["cmps"]["energy_discharged"]["uniq_id"] == "pylontech_PPTBH02400210001_energy_discharged"
    # the old text sensors are removed on their platform; their binary successors are new components
    for key in ("charge_allowed", "discharge_allowed", "alarms"):
        assert bank["cmps"][key] == {"p": "sensor"}
    # no key announced before changes its platform (that would orphan the old entity)
    for key, comp in list(bank["cmps"].items()) + list(battery["cmps"].items()):
        assert key not in old_bank + old_battery or comp["p"] == "sensor", key
    assert battery["cmps"]["alarms"] == {"p": "sensor"}
    assert bank["cmps"]["charging_allowed"]["p"] == "binary_sensor"
    assert bank["dev"]["name"] == "Battery bank" and battery["dev"]["name"] == "Battery 1"


def test_stat_counters_and_events_as_users_of_other_integrations_know_them(scene_factory):
    scene = scene_factory()
    publisher = scene.publisher()
    many = ", ".join("Cell %d voltage high (warning)" % n for n in range(1, 16))
    one = us3000c(1)
    one.stats.counters.update({"Charge Cnt.": "20", "Bat OV Times": "3", "SC Times": "garbled"})
    publisher._event_text = lambda battery: many if battery.address == 1 else "No events"
    run_poll(scene, publisher, bank_of(one, us3000c(2)))
    states = wait_for_states(scene, ["battery_1", "battery_2"])
    configs = scene.retained()
    check_everything(scene, configs, states)
    battery = json.loads(configs[scene.config_topic("pylontech_PPTBH02400210001")])
    counter = battery["cmps"]["cell_overvoltage_count"]
    assert counter["stat_cla"] == "total_increasing" and counter["ent_cat"] == "diagnostic"
    assert counter["ic"] == "mdi:counter" and counter["name"] == "Cell over-voltage count"
    state = states["battery_1"]
    assert state["charge_count"] == 20 and state["cell_overvoltage_count"] == 3
    assert state["short_circuit_count"] is None  # not a number: unknown, not a wrong count
    assert len(many) > 255
    assert state["events"] == "Cell 1 voltage high (warning) and 14 more"
    assert state["events_attributes"]["events"] == many.split(", ")
    assert states["battery_2"]["events"] == "No events" and states["battery_2"]["events_attributes"] == {"events": []}


def test_the_command_prints_a_dashboard_for_the_bank_id_the_daemon_uses(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "homeassistant.json").write_text(json.dumps({"version": 1, "devices": {}, "bank_id": "pylontech_770001"}))
    config = tmp_path / "config.yaml"
    config.write_text("state_dir: %s\n" % state)
    command = [
        sys.executable,
        os.path.join(ROOT, "extra200tomqtt.py"),
        "--config",
        str(config),
        "homeassistant-yaml",
        "--dashboard",
        "--batteries",
        "2",
        "--cells",
        "16",
    ]
    text = subprocess.run(command, stdout=subprocess.PIPE, check=True, text=True).stdout
    assert text == render_dashboard_yaml(2, "pylontech_770001", 16)
    assert "sensor.pylontech_770001_battery_2_cell_16_voltage" in text
    text = subprocess.run(command + ["--bank-id", "garage"], stdout=subprocess.PIPE, check=True, text=True).stdout
    assert "binary_sensor.garage_bank_alarm" in text


# Every component key the version before binary sensors announced (all of them sensors).
EARLIER_SENSOR_KEYS = {
    "voltage",
    "current",
    "power",
    "soc",
    "temperature",
    "cell_temperature_min",
    "cell_temperature_max",
    "mos_temperature",
    "cell_voltage_min",
    "cell_voltage_max",
    "cell_voltage_delta",
    "cell_voltage_min_id",
    "cell_voltage_max_id",
    "capacity",
    "remaining_capacity",
    "stored_energy",
    "energy_charged",
    "energy_discharged",
    "time_to_empty",
    "time_to_full",
    "cycle_count",
    "state_of_health",
    "units_online",
    "charge_voltage_limit",
    "charge_current_limit",
    "discharge_current_limit",
    "charge_allowed",
    "discharge_allowed",
    "charge_mode",
    "limit_reasons",
    "alarms",
    "state",
    "events",
    "cell_voltage_average",
    "cells_balancing",
} | {
    "cell_%d_%s" % (n, column)
    for n in range(1, 17)
    for column in (
        "voltage",
        "temperature",
        "state",
        "voltage_state",
        "current_state",
        "temperature_state",
        "current",
        "soc",
        "coulomb",
        "balancing",
    )
}


def test_no_component_key_changes_its_platform():
    """Home Assistant keys a discovered entity by platform and key: a sensor turned binary sensor under the
    same key would leave the sensor behind, so new platforms come with new keys (the old ones are removed)."""
    entities = list(BANK_ENTITIES) + battery_entities("high", 16)
    binary = {e.key for e in entities if e.platform == "binary_sensor"}
    assert binary and not binary & EARLIER_SENSOR_KEYS
    assert {"charge_allowed", "discharge_allowed", "alarms", "cell_1_balancing"}.isdisjoint(e.key for e in entities)


# ---------------------------------------------------------------------------
# The publisher's decisions in process: its publish function, clock and timer injected (no broker)
# ---------------------------------------------------------------------------


class ManualTimer:
    """A timer the test runs itself, when the world's clock passes its due time."""

    def __init__(self, due: float, action: Callable[[], None]) -> None:
        self.due = due
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class World:
    """What a publisher sees of the world: a publish function that records, a clock, timers, Home Assistant."""

    def __init__(self, tmp_path: Any, **ha_changes: Any) -> None:
        self.messages: List[Tuple[str, str, int, bool]] = []
        self.connected = True
        self.now = 5000.0  # the publisher's (monotonic) clock
        self.timers: List[ManualTimer] = []
        self.handlers: Dict[str, Callable[[str, bytes], None]] = {}
        self.state_dir = str(tmp_path / "state")
        ha_changes.setdefault("bank_id", "pylontech")
        self.config = replace(replace(Config(), "mqtt", topic_base="bb"), "homeassistant", discovery_prefix="hp", **ha_changes)

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        if self.connected:
            self.messages.append((topic, payload, qos, retain))
        return self.connected

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        self.handlers[topic] = handler

    def start_timer(self, delay: float, action: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer(self.now + delay, action)
        self.timers.append(timer)
        return timer

    def publisher(self, **changes: Any) -> HomeAssistantPublisher:
        config = self.config
        for section, key in (("cells", "level"), ("battery", "addresses")):
            if key in changes:
                config = replace(config, section, **{key: changes[key]})
        publisher = HomeAssistantPublisher(
            config,
            self.publish,
            self.subscribe,
            "bb/status",
            self.state_dir,
            clock=lambda: self.now,
            start_timer=self.start_timer,
        )
        publisher.start()
        return publisher

    def advance(self, seconds: float) -> None:
        """Time passes: the timers that come due run, in order (as the publisher's timer thread would)."""
        self.now += seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.due <= self.now]
            if not due:
                return
            timer = min(due, key=lambda t: t.due)
            self.timers.remove(timer)
            timer.action()

    def take(self) -> List[Tuple[str, str, int, bool]]:
        """The messages since the last take."""
        taken, self.messages = self.messages, []
        return taken

    def poll(self, publisher: HomeAssistantPublisher, bank: Bank, now: float = NOW, limits: Optional[Limits] = None) -> int:
        return publisher.update(bank, summarize_bank(bank), limits or Limits(), energy_for(bank), now)

    def record(self) -> Dict[str, Any]:
        with open(os.path.join(self.state_dir, "homeassistant.json")) as handle:
            return json.load(handle)


def topics(messages: List[Tuple[str, str, int, bool]], part: str = "") -> List[str]:
    return [m[0] for m in messages if part in m[0]]


def battery_config_topic(address: int) -> str:
    return "hp/device/pylontech_PPTBH02400210%03d/config" % address


def test_in_process_a_bank_is_announced_and_its_states_follow_a_second_later(tmp_path):
    world = World(tmp_path)
    publisher = world.publisher()
    assert world.handlers.keys() == {"hp/status"}  # Home Assistant's birth messages
    assert world.poll(publisher, bank_of(us3000c(1), us3000c(2))) == 6
    sent = world.take()
    configs = {m[0]: m for m in sent if m[0].endswith("/config")}
    assert sorted(configs) == sorted(["hp/device/pylontech_bank/config", battery_config_topic(1), battery_config_topic(2)])
    assert all(qos == 1 and retain for _, _, qos, retain in configs.values())
    seen: Dict[str, str] = {}
    for topic, payload, _, _ in configs.values():
        assert discovery_problems(topic, payload.encode(), "hp", "bb/status", seen) == []
    assert sorted((m[0], m[1], m[3]) for m in sent if m[0].endswith("/availability")) == [
        ("bb/homeassistant/%s/availability" % name, "online", True) for name in ("bank", "battery_1", "battery_2")
    ]
    assert topics(sent, "/state") == []  # held: Home Assistant is still subscribing to the new configs
    world.advance(0.9)
    assert world.take() == []
    world.advance(0.2)
    states = {m[0]: json.loads(m[1]) for m in world.take()}
    assert sorted(states) == ["bb/homeassistant/%s/state" % n for n in ("bank", "battery_1", "battery_2")]
    battery = json.loads(configs[battery_config_topic(1)][1])
    assert state_problems(battery, states["bb/homeassistant/battery_1/state"]) == []
    assert states["bb/homeassistant/battery_1/state"]["soc"] == 76.0
    assert states["bb/homeassistant/bank/state"]["units_online"] == 2
    # The next poll: nothing changed but the values, so one state per device at once and nothing else.
    assert world.poll(publisher, bank_of(us3000c(1), us3000c(2, amps=-5.0)), now=NOW + 5) == 3
    sent = world.take()
    assert topics(sent) == ["bb/homeassistant/%s/state" % n for n in ("bank", "battery_1", "battery_2")]
    assert json.loads(sent[2][1])["state"] == "Discharging" and all(not m[3] for m in sent)
    assert sorted(world.record()["devices"]) == ["pylontech_PPTBH02400210001", "pylontech_PPTBH02400210002", "pylontech_bank"]
    publisher.close()


def test_in_process_a_battery_waits_for_its_identity_before_it_is_announced(tmp_path):
    world = World(tmp_path)
    publisher = world.publisher()
    later = us3000c(2)
    later.info_time = None
    later.info = dataclasses.replace(later.info, barcode=None)  # info N not read yet
    world.poll(publisher, bank_of(us3000c(1), later))
    assert battery_config_topic(1) in topics(world.take())
    for poll in range(1, 6):  # not announced by address, to be renamed by barcode a few polls later
        world.poll(publisher, bank_of(us3000c(1), later), now=NOW + poll)
        assert not any("battery_2" in t or "210002" in t for t in topics(world.take())), poll
    world.poll(publisher, bank_of(us3000c(1), us3000c(2)), now=NOW + 6)  # its info is read: by barcode at once
    assert battery_config_topic(2) in topics(world.take())
    # A unit whose identity never comes is announced by address after UNIT_IDENTITY_WAIT_POLLS polls.
    silent = us3000c(3, barcode=False)
    silent.info_time = None
    for poll in range(UNIT_IDENTITY_WAIT_POLLS):
        world.poll(publisher, bank_of(us3000c(1), us3000c(2), silent), now=NOW + 10 + poll)
        assert "hp/device/pylontech_battery_3/config" not in topics(world.take())
    world.poll(publisher, bank_of(us3000c(1), us3000c(2), silent), now=NOW + 20)
    assert "hp/device/pylontech_battery_3/config" in topics(world.take())
    publisher.close()


def test_in_process_a_gone_battery_goes_offline_then_is_removed(tmp_path):
    world = World(tmp_path, remove_after=600.0)
    publisher = world.publisher()
    world.poll(publisher, bank_of(us3000c(1), us3000c(2), us3000c(3)))
    world.advance(1.0)
    world.take()
    two = bank_of(us3000c(1), us3000c(2))
    world.poll(publisher, two, now=NOW + 5)
    sent = world.take()
    assert ("bb/homeassistant/battery_3/availability", "offline", 1, True) in sent
    assert battery_config_topic(3) not in topics(sent) and "bb/homeassistant/battery_3/state" not in topics(sent)
    world.poll(publisher, two, now=NOW + 10)
    assert topics(world.take()) == ["bb/homeassistant/%s/state" % n for n in ("bank", "battery_1", "battery_2")]
    world.poll(publisher, two, now=NOW + 700)  # absent for longer than remove_after
    sent = world.take()
    assert (battery_config_topic(3), "", 1, True) in sent
    assert "pylontech_PPTBH02400210003" not in world.record()["devices"]
    world.poll(publisher, two, now=NOW + 705)
    assert battery_config_topic(3) not in topics(world.take())  # removed once
    publisher.close()
    # After a restart, an old record alone is not enough: one poll's glitch never removes a device,
    # and a device that is back starts counting its absent polls again.
    world.take()
    again = world.publisher()
    one = bank_of(us3000c(1))
    world.poll(again, one, now=NOW + 2000)
    assert battery_config_topic(2) not in topics(world.take())
    world.poll(again, two, now=NOW + 2005)
    world.poll(again, one, now=NOW + 3000)
    world.poll(again, one, now=NOW + 3005)
    assert (battery_config_topic(2), "", 1, True) not in world.take()
    world.poll(again, one, now=NOW + 3010)
    assert (battery_config_topic(2), "", 1, True) in world.take()
    again.close()


def test_in_process_a_configured_silent_battery_stays_and_one_taken_out_is_removed(tmp_path):
    world = World(tmp_path)
    publisher = world.publisher(addresses=(1, 2))
    world.poll(publisher, bank_of(us3000c(1), us3000c(2)))
    world.poll(publisher, bank_of(us3000c(1), missing=(2,)), now=NOW + 10**6)
    sent = world.take()
    assert battery_config_topic(2) in topics(sent)  # its announcement only
    assert ("bb/homeassistant/battery_2/availability", "offline", 1, True) in sent
    assert [m for m in sent if m[0] == battery_config_topic(2) and m[1] == ""] == []
    publisher.close()
    smaller = world.publisher(addresses=(1,))
    world.poll(smaller, bank_of(us3000c(1)), now=NOW + 10**6 + 60)
    assert (battery_config_topic(2), "", 1, True) in world.take()
    smaller.close()


def test_in_process_changed_components_are_migrated_on_their_platform(tmp_path):
    world = World(tmp_path)
    os.makedirs(world.state_dir)
    old = {
        "version": 1,
        "bank_id": "pylontech",
        "devices": {  # an older version's text sensors
            "pylontech_bank": {
                "topic": "hp/device/pylontech_bank/config",
                "address": None,
                "barcode": None,
                "components": ["voltage", "charge_allowed", "alarms"],
                "removed": [],
                "last_seen": NOW,
            }
        },
    }
    with open(os.path.join(world.state_dir, "homeassistant.json"), "w") as handle:
        json.dump(old, handle)
    publisher = world.publisher(level="high")
    world.poll(publisher, bank_of(us3000c(1)))
    sent = {m[0]: json.loads(m[1]) for m in world.take() if m[0].endswith("/config")}
    bank = sent["hp/device/pylontech_bank/config"]["cmps"]
    assert bank["charge_allowed"] == {"p": "sensor"} and bank["alarms"] == {"p": "sensor"}
    assert bank["charging_allowed"]["p"] == "binary_sensor" and bank["voltage"]["p"] == "sensor"
    high = sent[battery_config_topic(1)]["cmps"]
    assert high["cell_3_balancer"]["p"] == "binary_sensor" and "cell_3_temperature" in high
    world.advance(1.0)
    publisher.close()
    world.take()
    # The cell level is lowered: the battery's per-cell extras are reduced, each on its own platform.
    lower = world.publisher(level="low")
    world.poll(lower, bank_of(us3000c(1)), now=NOW + 60)
    sent = world.take()
    low = json.loads(dict((m[0], m[1]) for m in sent)[battery_config_topic(1)])["cmps"]
    assert low["cell_3_balancer"] == {"p": "binary_sensor"} and low["cell_3_temperature"] == {"p": "sensor"}
    assert "uniq_id" in low["cell_3_voltage"] and "uniq_id" in low["voltage"]
    assert sorted(world.record()["devices"]["pylontech_PPTBH02400210001"]["removed"]) == sorted(
        k for k, v in low.items() if set(v) == {"p"}
    )
    assert topics(sent, "/state") == []  # held after the new config
    world.advance(1.0)
    state = json.loads(dict((m[0], m[1]) for m in world.take())["bb/homeassistant/battery_1/state"])
    assert "cell_3_temperature" not in state and state["cell_3_voltage"] == 3.339  # 3.337 + 0.002
    # The reduced config is not sent again while nothing changes.
    world.poll(lower, bank_of(us3000c(1)), now=NOW + 65)
    assert topics(world.take(), "/config") == []
    lower.close()


def test_in_process_a_changed_discovery_prefix_empties_the_old_topics(tmp_path):
    world = World(tmp_path)
    first = world.publisher()
    world.poll(first, bank_of(us3000c(1)))
    first.close()
    world.take()
    world.config = replace(world.config, "homeassistant", discovery_prefix="hp2")
    second = world.publisher()
    world.poll(second, bank_of(us3000c(1)), now=NOW + 60)
    sent = [(m[0], m[1] == "") for m in world.take() if m[0].endswith("/config")]
    assert sorted(sent) == sorted(
        [
            ("hp/device/pylontech_bank/config", True),
            (battery_config_topic(1), True),
            ("hp2/device/pylontech_bank/config", False),
            ("hp2/device/pylontech_PPTBH02400210001/config", False),
        ]
    )
    assert sent.index((battery_config_topic(1), True)) < sent.index(("hp2/device/pylontech_PPTBH02400210001/config", False))
    second.close()


def test_in_process_home_assistant_online_resends_configs_availability_then_states(tmp_path):
    world = World(tmp_path)
    publisher = world.publisher()
    world.poll(publisher, bank_of(us3000c(1), us3000c(2)))
    world.advance(1.0)
    first = world.take()
    configs = sorted((m for m in first if m[0].endswith("/config")), key=lambda m: m[0])
    availability = sorted(m for m in first if m[0].endswith("/availability"))
    states = {m[0]: m[1] for m in first if m[0].endswith("/state")}
    world.handlers["hp/status"]("hp/status", b"offline")
    world.advance(5.0)
    assert world.take() == []  # offline changes nothing
    world.handlers["hp/status"]("hp/status", b"online")
    assert world.take() == []  # paho's thread only notes it; the timer does the work
    world.advance(1.0)
    sent = world.take()
    assert sent == configs + availability  # the same payloads, configs first
    world.advance(1.0)  # the states come a second after the configs, the latest of each device
    assert sorted(world.take()) == sorted((t, p, 0, False) for t, p in states.items())
    # Home Assistant comes online while the broker is away: sent once it is back, at the next poll.
    world.connected = False
    world.handlers["hp/status"]("hp/status", b"online")
    world.advance(1.0)
    world.connected = True
    world.poll(publisher, bank_of(us3000c(1), us3000c(2)), now=NOW + 10)
    sent = world.take()
    assert [m for m in sent if m[0].endswith("/config")] == configs
    assert topics(sent, "/state") == []  # held behind the configs just re-sent
    world.advance(1.0)
    assert len(topics(world.take(), "/state")) == 3
    publisher.close()


def test_in_process_a_resend_never_revives_states_older_than_expire_after(tmp_path):
    world = World(tmp_path)
    publisher = world.publisher()
    world.poll(publisher, bank_of(us3000c(1)))
    world.advance(1.0)
    world.take()
    world.advance(publisher.expire_after + 1.0)  # polling stopped: Home Assistant shows them unavailable
    world.handlers["hp/status"]("hp/status", b"online")
    for _ in range(5):  # past the re-sent configs' second
        world.advance(1.0)
    sent = world.take()
    assert len(topics(sent, "/config")) == 2 and topics(sent, "/state") == []
    publisher.close()


def test_a_record_that_cannot_be_written_is_reported_once_per_failure(tmp_path, caplog):
    """One warning while the record cannot be written, none once it can, one again when it fails anew."""
    import logging

    from extra200.homeassistant.record import RecordFile

    state = tmp_path / "state"
    state.write_text("a file where the state directory should be")
    record = RecordFile(str(state), clock=lambda: 1000.0)
    with caplog.at_level(logging.INFO, logger="extra200.homeassistant"):
        record.save({}, "bank", force=True)
        record.save({}, "bank", force=True)
        state.unlink()
        state.mkdir()
        record.save({}, "bank", force=True)
        assert (state / "homeassistant.json").exists()
        (state / "homeassistant.json").unlink()
        state.rmdir()
        state.write_text("a file again")
        record.save({}, "bank", force=True)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "extra200.homeassistant"]
    expected = "Home Assistant: cannot write %s (" % (state / "homeassistant.json")
    assert [level for level, _ in lines] == ["WARNING", "WARNING"], lines
    assert all(m.startswith(expected) and m.endswith("); a restart may not clear removed batteries") for _, m in lines)
