"""Home Assistant: MQTT device discovery, availability and state for the bank and each battery.

The rules come from the shared notes ``home-assistant-discovery.md`` (checked
against a running Home Assistant 2026.11):

* device-based discovery: one retained QoS 1 config per device on
  ``<prefix>/device/<id>/config`` with ``dev``, ``o`` (origin) and ``cmps``;
  one device for the bank and one per battery (``via_device`` the bank);
* identities that survive restarts and re-cabling: a battery is identified by
  its barcode where the console gives one, else by bank id and address; a bank
  id of each bank's own (``_resolve_bank``: configured, else recorded, else from
  the master's barcode), so two banks never share ids or device names;
* correct device_class / unit / state_class triples, ``suggested_display_precision``
  and an icon on every entity, ``entity_category: diagnostic`` for secondary data,
  ``default_entity_id`` with its domain; binary sensors (``ON`` / ``OFF``) for
  alarms and permissions, with details as JSON attributes (``<key>_attributes`` in
  the state); per-cell entities other than the voltages disabled by default;
* availability: the daemon's retained ``online``/``offline`` (last will) plus one
  topic per battery, ``availability_mode: all``; ``expire_after`` on every
  entity so values go unavailable when polling stops;
* configs re-sent when Home Assistant announces ``online`` on its status topic
  and after every reconnect; entities that no longer exist are removed (a
  whole device: empty retained config; one component: reduced to
  ``{"p": <its platform>}``, as simply omitting it does not remove it; the
  record keeps each component's platform);
* one JSON state message per device per poll, never within a second of a new
  config (Home Assistant subscribes in batches and would drop it).

The same entity tables produce the manual YAML (``render_manual_yaml``) for
users who prefer ``mqtt: !include pylon-batteries.yaml`` and the
sample dashboard (``render_dashboard_yaml``).  Topics for state and
availability are by address (``<topic_base>/homeassistant/battery_<N>/state``),
so the YAML and discovery read the same messages; only the identities differ.

What has been announced is recorded in ``<state_dir>/homeassistant.json``, so
after a restart the daemon can still remove a battery that vanished while it
was down, or components of a lowered cell level.
"""

import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

from . import __version__
from .charge import ALARM_NAMES
from .config import Config
from .derive import BankSummary, Extreme, UnitSummary, time_to_empty, time_to_full
from .energy import EMPTY_SNAPSHOT, EnergySnapshot, EnergyTotals, stored_energy_wh
from .files import read_json, write_json_atomic
from .model import Bank, Battery, CellRow

logger = logging.getLogger(__name__)

ORIGIN_NAME = "extra200tomqtt"
RECORD_FILE = "homeassistant.json"
LEVELS = ("off", "low", "medium", "high")
CONFIG_SETTLE = 1.0  # seconds between a new discovery config and the first state for it
MAX_STATE_LENGTH = 255  # Home Assistant turns longer states into "unknown"
MIN_EXPIRE_AFTER = 30  # seconds
RECORD_REFRESH = 600.0  # seconds between record writes that only refresh "last seen"
DEFAULT_BANK_ID = "pylontech"  # the YAML files' bank id, and the start of an automatic one
DEFAULT_BANK_NAME = "Battery bank"  # the YAML files' bank name
IDENTITY_WAIT_POLLS = 3  # polls an automatic bank id waits for the master's barcode before using the port
# Polls a battery waits to be announced until its identity (info) has been read: announced by address
# first, it would be renamed by barcode a few polls later, leaving a removed device behind in HA.
UNIT_IDENTITY_WAIT_POLLS = 10

PublishFn = Callable[..., bool]  # publish(topic, payload, qos=0, retain=False) -> bool
SubscribeFn = Callable[[str, Callable[[str, bytes], None]], None]
EventText = Callable[[Battery], Optional[str]]

STATE_OPTIONS = ("Charging", "Discharging", "Idle", "Balancing", "Error", "Other")
_STATE_WORDS = {"charge": "Charging", "dischg": "Discharging", "discharge": "Discharging", "idle": "Idle",
                "balance": "Balancing", "syserror": "Error", "error": "Error"}
_MANUFACTURERS = {"pylon": "Pylontech", "pytes": "Pytes"}

# device_class -> unit for the measurement kinds used here (see the discovery notes, section 7)
_KINDS = {
    "voltage": ("voltage", "V"),
    "current": ("current", "A"),
    "power": ("power", "W"),
    "temperature": ("temperature", "°C"),
    "percent": ("battery", "%"),
    "energy_storage": ("energy_storage", "kWh"),
    "duration": ("duration", "h"),
    "charge": (None, "Ah"),  # Home Assistant has no device class for ampere-hours
    "count": (None, None),
}

# Abbreviations for discovery payloads, all from Home Assistant's abbreviation table.
_ABBREVIATIONS = {
    "platform": "p", "unique_id": "uniq_id", "default_entity_id": "def_ent_id", "device_class": "dev_cla",
    "unit_of_measurement": "unit_of_meas", "state_class": "stat_cla", "suggested_display_precision": "sug_dsp_prc",
    "entity_category": "ent_cat", "enabled_by_default": "en", "expire_after": "exp_aft", "value_template": "val_tpl",
    "state_topic": "stat_t", "availability": "avty", "availability_mode": "avty_mode", "topic": "t",
    "identifiers": "ids", "manufacturer": "mf", "model": "mdl", "sw_version": "sw", "hw_version": "hw",
    "serial_number": "sn", "support_url": "url", "icon": "ic", "json_attributes_topic": "json_attr_t",
    "json_attributes_template": "json_attr_tpl",
}
PLATFORMS = ("sensor", "binary_sensor")
ON, OFF = "ON", "OFF"  # a binary sensor's payloads (Home Assistant's defaults)


# -- entity tables -------------------------------------------------------------

@dataclass(frozen=True)
class Entity:
    """One sensor: how Home Assistant shows it and where its value comes from."""

    key: str  # component id, JSON state key, suffix of unique id and entity id
    name: str
    value: Callable[[Any], Any]  # view -> value (None = unknown)
    device_class: Optional[str] = None
    unit: Optional[str] = None
    state_class: Optional[str] = None
    precision: Optional[int] = None
    diagnostic: bool = False
    enabled: bool = True
    options: Tuple[str, ...] = ()
    optional: bool = False  # announced once the firmware has reported a value
    platform: str = "sensor"  # or binary_sensor (value ON / OFF / None)
    icon: Optional[str] = None
    attributes: Optional[Callable[[Any], Optional[Dict[str, Any]]]] = None  # view -> JSON attributes


def _measure(kind: str, key: str, name: str, value: Callable[[Any], Any], precision: int, **extra: Any) -> Entity:
    device_class, unit = _KINDS[kind]
    return Entity(key, name, value, device_class, unit, "measurement", precision, **extra)


def _energy(key: str, name: str, value: Callable[[Any], Any]) -> Entity:
    return Entity(key, name, value, "energy", "kWh", "total_increasing", 2, icon=None)


def _binary(key: str, name: str, value: Callable[[Any], Optional[bool]], device_class: Optional[str] = None,
            **extra: Any) -> Entity:
    """A binary sensor; ``value`` gives True / False / None (unknown)."""
    def state(view: Any) -> Optional[str]:
        flag = value(view)
        return None if flag is None else (ON if flag else OFF)

    return Entity(key, name, state, device_class, platform="binary_sensor", **extra)


def _text(key: str, name: str, value: Callable[[Any], Any], **extra: Any) -> Entity:
    return Entity(key, name, value, **extra)


def _counter(key: str, name: str, value: Callable[[Any], Any], **extra: Any) -> Entity:
    return Entity(key, name, value, state_class="total_increasing", precision=0, diagnostic=True, optional=True,
                  **extra)


def _enum(key: str, name: str, value: Callable[[Any], Any], options: Tuple[str, ...], **extra: Any) -> Entity:
    return Entity(key, name, value, device_class="enum", options=options, **extra)


@dataclass(frozen=True)
class UnitView:
    """What a battery's entities read."""

    battery: Battery
    unit: UnitSummary
    energy: Optional[EnergyTotals]
    stored_wh: Optional[float]
    events: Optional[str]


@dataclass(frozen=True)
class BankView:
    """What the bank's entities read."""

    summary: BankSummary
    limits: Any  # charge_limits.ChargeLimits or None (duck-typed, see the attributes read below)
    energy: Optional[EnergyTotals]
    stored_wh: Optional[float]


def _negated(value: Optional[float]) -> Optional[float]:
    """Home Assistant's battery power sign: + discharging (the console's is + charging)."""
    return None if value is None else 0.0 - value


def _extreme_value(extreme: Optional[Extreme]) -> Optional[float]:
    return extreme.value if extreme is not None else None


def _extreme_id(extreme: Optional[Extreme]) -> Optional[str]:
    return extreme.id if extreme is not None and extreme.cell is not None else None


def _charged(energy: Optional[EnergyTotals]) -> Optional[float]:
    return energy.charged_kwh if energy is not None else None


def _discharged(energy: Optional[EnergyTotals]) -> Optional[float]:
    return energy.discharged_kwh if energy is not None else None


def clip_text(text: Optional[str]) -> Optional[str]:
    """A text state Home Assistant accepts: at most 255 characters, never the word it reads as unknown."""
    if text is None:
        return None
    text = text.strip()
    if text == "None":
        return "none"
    return text if len(text) <= MAX_STATE_LENGTH else text[: MAX_STATE_LENGTH - 1] + "…"


def battery_state(battery: Battery) -> Optional[str]:
    """The ``Base.St`` column as one of ``STATE_OPTIONS``."""
    row = battery.row
    if row is None or not row.present or not row.base_state:
        return None
    return _STATE_WORDS.get(row.base_state.strip().lower(), "Other")


_STATUS_LABELS = (
    ("voltage_state", "Voltage"),
    ("current_state", "Current"),
    ("temperature_state", "Temperature"),
    ("battery_voltage_state", "Cell voltage"),
    ("battery_temperature_state", "Cell temperature"),
    ("mos_temperature_state", "MOS temperature"),
    ("system_alarm_state", "System alarm"),
)
_QUIET = {"", "normal", "-"}


def _status_problem(value: Optional[str]) -> Optional[bool]:
    """A status column's word: True when not normal, None when the firmware does not print it."""
    return None if value is None else value.strip().lower() not in _QUIET


def battery_alarm_list(battery: Battery) -> Optional[List[str]]:
    """The unit's status columns that are not normal (``["Voltage high", "Cell temperature low"]``)."""
    row = battery.row
    if row is None or not row.present:
        return None
    parts: List[str] = []
    if battery_state(battery) == "Error":
        parts.append("System error (%s)" % row.base_state)
    for attr, label in _STATUS_LABELS:
        value = getattr(row, attr)
        if _status_problem(value):
            parts.append("%s %s" % (label, value.strip().lower()))
    detail = battery.detail
    if detail is not None and _status_problem(detail.soh_state):
        parts.append("State of health %s" % detail.soh_state.strip().lower())
    return parts


def battery_alarms(battery: Battery) -> Optional[str]:
    """``battery_alarm_list`` as text (``Voltage high, Cell temperature low``), or ``OK``."""
    parts = battery_alarm_list(battery)
    if parts is None:
        return None
    return clip_text(", ".join(parts)) if parts else "OK"


def default_event_text(battery: Battery) -> Optional[str]:
    """The ``pwr N`` event words as hex (``Power events 0x2000``), or ``No events``; None before ``pwr N`` was read."""
    detail = battery.detail
    if detail is None:
        return None
    parts = ["%s 0x%X" % (label, value) for label, value in
             (("Battery events", detail.bat_events), ("Power events", detail.power_events),
              ("System fault", detail.system_fault)) if value]
    return ", ".join(parts) if parts else "No events"


def event_summary(text: Optional[str]) -> Optional[str]:
    """The events as a state: all of them when they fit in 255 characters, else the first and how many more."""
    if text is None:
        return None
    text = text.strip()
    if len(text) <= MAX_STATE_LENGTH:
        return clip_text(text)
    events = text.split(", ")
    return clip_text("%s and %d more" % (events[0], len(events) - 1))


def _event_attributes(view: "UnitView") -> Optional[Dict[str, Any]]:
    if view.events is None:
        return None
    events = [e for e in view.events.split(", ") if e and e not in ("No events",)]
    return {"events": events}


_SPECIAL_WORDS = {"soc": "SoC", "soh": "SoH", "bms": "BMS", "mos": "MOS"}


def readable_name(name: str) -> str:
    """``HighCellVoltage`` / ``high_cell_voltage`` -> ``High cell voltage``; ``LowSoc`` -> ``Low SoC``."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name.replace("_", " "))
    if not words:
        return name
    out = [_SPECIAL_WORDS.get(w.lower(), w.lower()) for w in words]
    out[0] = out[0][0].upper() + out[0][1:]
    return " ".join(out)


def snake_name(name: str) -> str:
    """``HighCellVoltage`` -> ``high_cell_voltage``."""
    return "_".join(readable_name(name).lower().split())


def _raised_alarms(limits: Any) -> Optional[Dict[str, int]]:
    alarms = getattr(limits, "alarms", None) if limits is not None else None
    return None if alarms is None else {name: level for name, level in alarms.items() if level}


def limit_alarms(limits: Any) -> Optional[str]:
    """The charge-control alarms (0 ok, 1 warning, 2 alarm) that are raised, as text, or ``OK``."""
    raised = _raised_alarms(limits)
    if raised is None:
        return None
    active = ["%s (%s)" % (readable_name(name), "alarm" if level >= 2 else "warning")
              for name, level in sorted(raised.items())]
    return clip_text(", ".join(active)) if active else "OK"


def _limit_alarm_attributes(view: "BankView") -> Optional[Dict[str, Any]]:
    raised = _raised_alarms(view.limits)
    if raised is None:
        return None
    return {"alarms": sorted(readable_name(n) for n, level in raised.items() if level >= 2),
            "warnings": sorted(readable_name(n) for n, level in raised.items() if level == 1)}


_LEVEL_WORDS = {0: "ok", 1: "warning", 2: "alarm"}


def _one_alarm(name: str) -> Callable[["BankView"], Optional[bool]]:
    def value(view: BankView) -> Optional[bool]:
        alarms = getattr(view.limits, "alarms", None) if view.limits is not None else None
        return None if alarms is None or name not in alarms else alarms[name] > 0

    return value


def _one_alarm_level(name: str) -> Callable[["BankView"], Optional[Dict[str, Any]]]:
    def value(view: BankView) -> Optional[Dict[str, Any]]:
        alarms = getattr(view.limits, "alarms", None) if view.limits is not None else None
        if alarms is None or name not in alarms:
            return None
        return {"level": _LEVEL_WORDS.get(alarms[name], str(alarms[name]))}

    return value


def limit_reasons(limits: Any) -> Optional[str]:
    if limits is None:
        return None
    parts = ["%s: %s" % (label, getattr(limits, attr)) for label, attr in _LIMIT_REASONS
             if getattr(limits, attr, None)]
    return clip_text("; ".join(parts)) if parts else None


_LIMIT_REASONS = (("CVL", "voltage_reason"), ("CCL", "charge_reason"), ("DCL", "discharge_reason"))


def _limit_reason_attributes(view: "BankView") -> Optional[Dict[str, Any]]:
    """Each limit's reason in full (the state is cut at 255 characters)."""
    if view.limits is None:
        return None
    return {label: getattr(view.limits, attr, None) for label, attr in _LIMIT_REASONS}


def _limit(attr: str) -> Callable[[BankView], Any]:
    def value(view: BankView) -> Any:
        return getattr(view.limits, attr, None) if view.limits is not None else None

    return value


def _permission(attr: str) -> Callable[[BankView], Optional[bool]]:
    def value(view: BankView) -> Optional[bool]:
        allowed = getattr(view.limits, attr, None) if view.limits is not None else None
        return None if allowed is None else bool(allowed)

    return value


def _reason(attr: str) -> Callable[[BankView], Optional[Dict[str, Any]]]:
    def value(view: BankView) -> Optional[Dict[str, Any]]:
        return None if view.limits is None else {"reason": getattr(view.limits, attr, None)}

    return value


def _cell(battery: Battery, index: int) -> Optional[CellRow]:
    if battery.cells is None:
        return None
    rows = battery.cells.cells
    if 0 <= index < len(rows) and rows[index].index == index:  # the usual table: rows in index order
        return rows[index]
    for row in rows:
        if row.index == index:
            return row
    return None


def _cell_value(index: int, attr: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[UnitView], Any]:
    def value(view: UnitView) -> Any:
        row = _cell(view.battery, index)
        raw = getattr(row, attr) if row is not None else None
        return convert(raw) if raw is not None else None

    return value


def _cell_average(view: UnitView) -> Optional[float]:
    volts = [v for v in view.unit.cell_voltages if v is not None]
    return round(sum(volts) / len(volts), 4) if volts else None


def _cells_balancing(view: UnitView) -> Optional[int]:
    if view.battery.cells is None:
        return None
    flags = [c.balancing for c in view.battery.cells.cells if c.balancing is not None]
    return sum(1 for f in flags if f) if flags else None


def _status_column(attr: str) -> Callable[[UnitView], Optional[bool]]:
    def value(view: UnitView) -> Optional[bool]:
        row = view.battery.row
        return None if row is None or not row.present else _status_problem(getattr(row, attr))

    return value


def _status_word(attr: str) -> Callable[[UnitView], Optional[Dict[str, Any]]]:
    def value(view: UnitView) -> Optional[Dict[str, Any]]:
        row = view.battery.row
        word = getattr(row, attr) if row is not None and row.present else None
        return None if word is None else {"state": word.strip()}

    return value


def _soh_problem(view: UnitView) -> Optional[bool]:
    detail = view.battery.detail
    return None if detail is None else _status_problem(detail.soh_state)


def _any_battery_alarm(view: UnitView) -> Optional[bool]:
    parts = battery_alarm_list(view.battery)
    return None if parts is None else bool(parts)


def _battery_alarm_attributes(view: UnitView) -> Optional[Dict[str, Any]]:
    parts = battery_alarm_list(view.battery)
    return None if parts is None else {"active": parts}


def _stat_counter(label: str) -> Callable[[UnitView], Optional[int]]:
    def value(view: UnitView) -> Optional[int]:
        stats = view.battery.stats
        raw = stats.counters.get(label) if stats is not None else None
        try:
            return int(raw.split()[0]) if raw else None
        except ValueError:
            return None

    return value


# The signs: current is + charging (as on the console and for Victron); power is + discharging
# (what Home Assistant's Energy dashboard expects of a battery); "Power (+ charging)" has the
# current's sign.  The names say so, as the two conventions differ.
CURRENT_NAME = "Current (+ charging)"
POWER_NAME = "Power (+ discharging)"
CHARGE_POWER_NAME = "Power (+ charging)"

# Icons for entities whose device class gives none that follows the state (a battery level, a
# problem or a charging binary sensor keep Home Assistant's state icons).
ICONS = {
    "voltage": "mdi:sine-wave", "current": "mdi:current-dc", "power": "mdi:flash", "charge_power": "mdi:flash",
    "temperature": "mdi:thermometer", "cell_temperature_min": "mdi:thermometer-low",
    "cell_temperature_max": "mdi:thermometer-high", "mos_temperature": "mdi:chip",
    "cell_voltage_min": "mdi:arrow-collapse-down", "cell_voltage_max": "mdi:arrow-collapse-up",
    "cell_voltage_delta": "mdi:delta", "cell_voltage_min_id": "mdi:numeric", "cell_voltage_max_id": "mdi:numeric",
    "capacity": "mdi:battery-high", "remaining_capacity": "mdi:battery-50", "stored_energy": "mdi:home-battery",
    "energy_charged": "mdi:battery-plus-variant", "energy_discharged": "mdi:battery-minus-variant",
    "time_to_empty": "mdi:timer-sand", "time_to_full": "mdi:timer-sand-complete", "cycle_count": "mdi:battery-sync",
    "state_of_health": "mdi:battery-heart-variant", "units_online": "mdi:counter",
    "charge_voltage_limit": "mdi:battery-charging-high", "charge_current_limit": "mdi:battery-arrow-up-outline",
    "discharge_current_limit": "mdi:battery-arrow-down-outline", "charging_allowed": "mdi:battery-arrow-up",
    "discharging_allowed": "mdi:battery-arrow-down", "charge_mode": "mdi:state-machine",
    "limit_reasons": "mdi:information-outline", "state": "mdi:list-status", "events": "mdi:message-alert-outline",
    "cell_voltage_average": "mdi:approximately-equal", "cells_balancing": "mdi:scale-balance",
    # per cell, by the part after cell_N_
    "coulomb": "mdi:battery-50", "soc": "mdi:battery-50", "voltage_state": "mdi:list-status",
    "current_state": "mdi:list-status", "temperature_state": "mdi:list-status", "balancer": "mdi:scale-balance",
}
STAT_ICON = "mdi:counter"

# stat N counters Pylontech users follow (labels as the console prints them): key, name.
STAT_COUNTERS: Tuple[Tuple[str, str, str], ...] = (
    ("Charge Cnt.", "charge_count", "Charge count"),
    ("Discharge Cnt.", "discharge_count", "Discharge count"),
    ("COC Times", "charge_overcurrent_count", "Charge over-current count"),
    ("DOC Times", "discharge_overcurrent_count", "Discharge over-current count"),
    ("SC Times", "short_circuit_count", "Short circuit count"),
    ("Bat OV Times", "cell_overvoltage_count", "Cell over-voltage count"),
    ("Bat HV Times", "cell_high_voltage_count", "Cell high voltage count"),
    ("Bat LV Times", "cell_low_voltage_count", "Cell low voltage count"),
    ("Bat UV Times", "cell_undervoltage_count", "Cell under-voltage count"),
    ("Pwr OV Times", "pack_overvoltage_count", "Pack over-voltage count"),
    ("Pwr UV Times", "pack_undervoltage_count", "Pack under-voltage count"),
    ("COT Times", "charge_overtemperature_count", "Charge over-temperature count"),
    ("CUT Times", "charge_undertemperature_count", "Charge under-temperature count"),
    ("DOT Times", "discharge_overtemperature_count", "Discharge over-temperature count"),
    ("DUT Times", "discharge_undertemperature_count", "Discharge under-temperature count"),
    ("Shut Times", "shutdown_count", "Shutdown count"),
    ("Reset Times", "reset_count", "Reset count"),
)

# Hours and kWh, the units a user reads (MQTT sensors have no suggested_unit_of_measurement:
# Home Assistant drops the key silently).
def _duration(key: str, name: str, seconds: Callable[[Any], Optional[float]]) -> Entity:
    def hours(view: Any) -> Optional[float]:
        value = seconds(view)
        return None if value is None else round(value / 3600.0, 2)

    return _measure("duration", key, name, hours, 1)


def _stored_energy(watt_hours: Callable[[Any], Optional[float]]) -> Entity:
    def kilowatt_hours(view: Any) -> Optional[float]:
        value = watt_hours(view)
        return None if value is None else round(value / 1000.0, 3)

    return _measure("energy_storage", "stored_energy", "Stored energy", kilowatt_hours, 2, optional=True)


def _soh(name: str, value: Callable[[Any], Any]) -> Entity:
    """State of health in %: not a charge level, so not the battery device class."""
    return Entity("state_of_health", name, value, None, "%", "measurement", 0, diagnostic=True, optional=True)


BANK_ENTITIES: Tuple[Entity, ...] = (
    _measure("voltage", "voltage", "Voltage", lambda v: v.summary.voltage, 2),
    _measure("current", "current", CURRENT_NAME, lambda v: v.summary.current, 1),
    _measure("power", "power", POWER_NAME, lambda v: _negated(v.summary.power), 0),
    _measure("power", "charge_power", CHARGE_POWER_NAME, lambda v: v.summary.power, 0),
    _measure("percent", "soc", "State of charge", lambda v: v.summary.soc, 0),
    _measure("temperature", "temperature", "Temperature", lambda v: v.summary.temperature, 1),
    _measure("temperature", "cell_temperature_min", "Cell temperature min",
             lambda v: _extreme_value(v.summary.cell_temp_min), 1, optional=True),
    _measure("temperature", "cell_temperature_max", "Cell temperature max",
             lambda v: _extreme_value(v.summary.cell_temp_max), 1, optional=True),
    _measure("temperature", "mos_temperature", "MOS temperature max", lambda v: v.summary.mos_temperature, 1,
             diagnostic=True, optional=True),
    _measure("voltage", "cell_voltage_min", "Cell voltage min", lambda v: _extreme_value(v.summary.cell_voltage_min),
             3, optional=True),
    _measure("voltage", "cell_voltage_max", "Cell voltage max", lambda v: _extreme_value(v.summary.cell_voltage_max),
             3, optional=True),
    _measure("voltage", "cell_voltage_delta", "Cell voltage delta", lambda v: v.summary.cell_voltage_delta, 3,
             optional=True),
    _text("cell_voltage_min_id", "Cell voltage min cell", lambda v: _extreme_id(v.summary.cell_voltage_min),
          diagnostic=True, optional=True),
    _text("cell_voltage_max_id", "Cell voltage max cell", lambda v: _extreme_id(v.summary.cell_voltage_max),
          diagnostic=True, optional=True),
    _measure("charge", "capacity", "Capacity", lambda v: v.summary.capacity, 0, diagnostic=True, optional=True),
    _measure("charge", "remaining_capacity", "Remaining capacity", lambda v: v.summary.remaining, 1, optional=True),
    _stored_energy(lambda v: v.stored_wh),
    _energy("energy_charged", "Energy charged", lambda v: _charged(v.energy)),
    _energy("energy_discharged", "Energy discharged", lambda v: _discharged(v.energy)),
    _duration("time_to_empty", "Time to empty", lambda v: time_to_empty(v.summary)),
    _duration("time_to_full", "Time to full", lambda v: time_to_full(v.summary)),
    _counter("cycle_count", "Cycle count max", lambda v: v.summary.cycle_count),
    _soh("State of health min", lambda v: v.summary.soh),
    _measure("count", "units_online", "Units online", lambda v: v.summary.units_online, 0),
    _measure("voltage", "charge_voltage_limit", "Charge voltage limit", _limit("charge_voltage"), 2, optional=True,
             attributes=_reason("voltage_reason")),
    _measure("current", "charge_current_limit", "Charge current limit", _limit("charge_current"), 1, optional=True,
             attributes=_reason("charge_reason")),
    _measure("current", "discharge_current_limit", "Discharge current limit", _limit("discharge_current"), 1,
             optional=True, attributes=_reason("discharge_reason")),
    _binary("charging_allowed", "Charging allowed", _permission("allow_charge"), optional=True,
            attributes=_reason("charge_reason")),
    _binary("discharging_allowed", "Discharging allowed", _permission("allow_discharge"), optional=True,
            attributes=_reason("discharge_reason")),
    _text("charge_mode", "Charge mode", lambda v: clip_text(_limit("mode")(v)), optional=True),
    _text("limit_reasons", "Charge limit reasons", lambda v: limit_reasons(v.limits), diagnostic=True, optional=True,
          attributes=_limit_reason_attributes),
    _binary("alarm", "Alarm", lambda v: None if _raised_alarms(v.limits) is None else bool(_raised_alarms(v.limits)),
            "problem", optional=True, attributes=_limit_alarm_attributes),
) + tuple(
    _binary("alarm_" + snake_name(name), readable_name(name), _one_alarm(name), "problem", diagnostic=True,
            optional=True, attributes=_one_alarm_level(name))
    for name in ALARM_NAMES
)

BATTERY_ENTITIES: Tuple[Entity, ...] = (
    _measure("voltage", "voltage", "Voltage", lambda v: v.unit.voltage, 2),
    _measure("current", "current", CURRENT_NAME, lambda v: v.unit.current, 2),
    _measure("power", "power", POWER_NAME, lambda v: _negated(v.unit.power), 0),
    _measure("power", "charge_power", CHARGE_POWER_NAME, lambda v: v.unit.power, 0),
    _measure("percent", "soc", "State of charge", lambda v: v.unit.soc, 0),
    _measure("temperature", "temperature", "Temperature", lambda v: v.unit.temperature, 1),
    _measure("temperature", "cell_temperature_min", "Cell temperature min",
             lambda v: _extreme_value(v.unit.cell_temp_min), 1, optional=True),
    _measure("temperature", "cell_temperature_max", "Cell temperature max",
             lambda v: _extreme_value(v.unit.cell_temp_max), 1, optional=True),
    _measure("temperature", "mos_temperature", "MOS temperature", lambda v: v.unit.mos_temperature, 1,
             diagnostic=True, optional=True),
    _enum("state", "State", lambda v: battery_state(v.battery), STATE_OPTIONS),
    _binary("charging", "Charging", lambda v: None if battery_state(v.battery) is None
            else battery_state(v.battery) == "Charging", "battery_charging"),
    _measure("voltage", "cell_voltage_min", "Cell voltage min", lambda v: _extreme_value(v.unit.cell_voltage_min), 3,
             optional=True),
    _measure("voltage", "cell_voltage_max", "Cell voltage max", lambda v: _extreme_value(v.unit.cell_voltage_max), 3,
             optional=True),
    _measure("voltage", "cell_voltage_delta", "Cell voltage delta", lambda v: v.unit.cell_voltage_delta, 3,
             optional=True),
    _text("cell_voltage_min_id", "Cell voltage min cell", lambda v: _extreme_id(v.unit.cell_voltage_min),
          diagnostic=True, optional=True),
    _text("cell_voltage_max_id", "Cell voltage max cell", lambda v: _extreme_id(v.unit.cell_voltage_max),
          diagnostic=True, optional=True),
    _measure("charge", "capacity", "Capacity", lambda v: v.unit.capacity, 0, diagnostic=True, optional=True),
    _measure("charge", "remaining_capacity", "Remaining capacity", lambda v: v.unit.remaining, 1, optional=True),
    _stored_energy(lambda v: v.stored_wh),
    _energy("energy_charged", "Energy charged", lambda v: _charged(v.energy)),
    _energy("energy_discharged", "Energy discharged", lambda v: _discharged(v.energy)),
    _counter("cycle_count", "Cycle count", lambda v: v.unit.cycle_count),
    _soh("State of health", lambda v: v.unit.soh),
    _binary("alarm", "Alarm", _any_battery_alarm, "problem", attributes=_battery_alarm_attributes),
    _binary("alarm_voltage", "Voltage alarm", _status_column("voltage_state"), "problem", diagnostic=True,
            optional=True, attributes=_status_word("voltage_state")),
    _binary("alarm_current", "Current alarm", _status_column("current_state"), "problem", diagnostic=True,
            optional=True, attributes=_status_word("current_state")),
    _binary("alarm_temperature", "Temperature alarm", _status_column("temperature_state"), "problem",
            diagnostic=True, optional=True, attributes=_status_word("temperature_state")),
    _binary("alarm_cell_voltage", "Cell voltage alarm", _status_column("battery_voltage_state"), "problem",
            diagnostic=True, optional=True, attributes=_status_word("battery_voltage_state")),
    _binary("alarm_cell_temperature", "Cell temperature alarm", _status_column("battery_temperature_state"),
            "problem", diagnostic=True, optional=True, attributes=_status_word("battery_temperature_state")),
    _binary("alarm_mos_temperature", "MOS temperature alarm", _status_column("mos_temperature_state"), "problem",
            diagnostic=True, optional=True, attributes=_status_word("mos_temperature_state")),
    _binary("alarm_system", "System alarm", _status_column("system_alarm_state"), "problem", diagnostic=True,
            optional=True, attributes=_status_word("system_alarm_state")),
    _binary("alarm_state_of_health", "State of health alarm", _soh_problem, "problem", diagnostic=True,
            optional=True),
    _text("events", "Events", lambda v: event_summary(v.events), diagnostic=True, optional=True,
          attributes=_event_attributes),
) + tuple(_counter(key, name, _stat_counter(label), icon=STAT_ICON) for label, key, name in STAT_COUNTERS)

# Per-battery cell statistics from the cell table (cells.level medium and high).
CELL_STATISTICS: Tuple[Entity, ...] = (
    _measure("voltage", "cell_voltage_average", "Cell voltage average", _cell_average, 3, diagnostic=True),
    _measure("count", "cells_balancing", "Cells balancing", _cells_balancing, 0, diagnostic=True),
)


def cell_entities(number: int, level: str) -> List[Entity]:
    """The entities of cell ``number`` (1-based, console index ``number - 1``) at a cell level.

    Cell voltages are enabled (they are what the cells are watched for, and the dashboard
    charts them); the other columns, from level medium on, are disabled by default.
    """
    if level not in LEVELS or level == "off":
        return []
    index = number - 1
    prefix = "cell_%d_" % number
    label = "Cell %d " % number
    off = {"enabled": False}
    entities = [_measure("voltage", prefix + "voltage", label + "voltage", _cell_value(index, "voltage"), 3,
                         diagnostic=True)]
    if level in ("medium", "high"):
        entities += [
            _measure("temperature", prefix + "temperature", label + "temperature",
                     _cell_value(index, "temperature"), 1, **off),
            _text(prefix + "state", label + "state", _cell_value(index, "base_state", clip_text), **off),
        ]
    if level == "high":
        entities += [
            _text(prefix + "voltage_state", label + "voltage state", _cell_value(index, "voltage_state", clip_text),
                  **off),
            _text(prefix + "current_state", label + "current state", _cell_value(index, "current_state", clip_text),
                  **off),
            _text(prefix + "temperature_state", label + "temperature state",
                  _cell_value(index, "temperature_state", clip_text), **off),
            _measure("current", prefix + "current", label + "current", _cell_value(index, "current"), 2, **off),
            _measure("percent", prefix + "soc", label + "state of charge", _cell_value(index, "soc"), 0, **off),
            _measure("charge", prefix + "coulomb", label + "charge", _cell_value(index, "coulomb"), 2, **off),
            # a binary sensor under a new key: the text sensor cell_N_balancing of earlier versions
            # is removed on its own platform (a platform change under one key would orphan it)
            _binary(prefix + "balancer", label + "balancer", _cell_value(index, "balancing"), **off),
        ]
    return entities


def battery_entities(level: str, cells: int) -> List[Entity]:
    """Every entity of one battery at a cell level with ``cells`` cells."""
    entities = list(BATTERY_ENTITIES)
    if level in ("medium", "high"):
        entities += CELL_STATISTICS
    for number in range(1, cells + 1):
        entities += cell_entities(number, level)
    return entities


def entity_icon(entity: Entity) -> Optional[str]:
    """The entity's icon; None where the device class's own icon follows the state."""
    if entity.icon:
        return entity.icon
    if entity.platform == "binary_sensor" and entity.device_class:
        return None
    if entity.device_class == "battery":
        return None
    key = entity.key
    match = re.match(r"cell_\d+_(.+)$", key)
    if match and match.group(1) not in ("voltage", "temperature", "current", "state"):
        key = match.group(1)
    elif match:
        key = {"voltage": "voltage", "temperature": "temperature", "current": "current",
               "state": "state"}[match.group(1)]
    return ICONS.get(key)


# -- names, topics, payload pieces ---------------------------------------------

def safe_id(text: str) -> str:
    """Only ``[a-zA-Z0-9_-]``: what discovery topics and ids may contain."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text.strip()) or "_"


def bank_key(bank_id: str) -> str:
    return "%s_bank" % bank_id


def battery_key(bank_id: str, address: int, barcode: Optional[str]) -> str:
    """The device id of a battery: by barcode where known (stable across re-cabling), else by address."""
    return "%s_%s" % (bank_id, safe_id(barcode)) if barcode else "%s_battery_%d" % (bank_id, address)


def topic_id(address: Optional[int]) -> str:
    return "bank" if address is None else "battery_%d" % address


def state_topic(topic_base: str, address: Optional[int]) -> str:
    return "%s/homeassistant/%s/state" % (topic_base, topic_id(address))


def device_availability_topic(topic_base: str, address: Optional[int]) -> str:
    return "%s/homeassistant/%s/availability" % (topic_base, topic_id(address))


def discovery_topic(prefix: str, device_key: str) -> str:
    return "%s/device/%s/config" % (prefix, device_key)


def daemon_availability_topic(topic_base: str) -> str:
    """The daemon's retained online/offline topic (``MqttLink.availability_topic``)."""
    return "%s/status" % topic_base


def expire_after_for(config: Config) -> int:
    """Seconds without a state before Home Assistant shows values as unavailable."""
    if config.homeassistant.expire_after:
        return int(config.homeassistant.expire_after)
    return max(MIN_EXPIRE_AFTER, int(3 * config.serial.reading_freq + 0.999))


def attributes_key(entity: Entity) -> str:
    """Where an entity's JSON attributes travel in the device's state message."""
    return "%s_attributes" % entity.key


def component(entity: Entity, unique_prefix: str, entity_prefix: str, expire_after: Optional[int],
              state_topic_: Optional[str] = None) -> Dict[str, Any]:
    """An entity's options with full key names (no platform or device: those depend on the style).

    ``state_topic_`` is the device's state topic, for entities with JSON attributes.
    """
    options: Dict[str, Any] = {
        "name": entity.name,
        "unique_id": "%s_%s" % (unique_prefix, entity.key),
        "default_entity_id": "%s.%s_%s" % (entity.platform, entity_prefix, entity.key),
        "value_template": "{{ value_json.%s }}" % entity.key,
    }
    icon = entity_icon(entity)
    if icon:
        options["icon"] = icon
    if entity.attributes is not None and state_topic_:
        options["json_attributes_topic"] = state_topic_
        options["json_attributes_template"] = "{{ value_json.%s | tojson }}" % attributes_key(entity)
    if entity.device_class:
        options["device_class"] = entity.device_class
    if entity.unit:
        options["unit_of_measurement"] = entity.unit
    if entity.state_class:
        options["state_class"] = entity.state_class
    if entity.precision is not None:
        options["suggested_display_precision"] = entity.precision
    if entity.options:
        options["options"] = list(entity.options)
    if entity.diagnostic:
        options["entity_category"] = "diagnostic"
    if not entity.enabled:
        options["enabled_by_default"] = False
    if expire_after:
        options["expire_after"] = expire_after
    return options


def abbreviate(options: Dict[str, Any]) -> Dict[str, Any]:
    """Full key names -> Home Assistant's abbreviations (one level; values unchanged)."""
    return {_ABBREVIATIONS.get(key, key): value for key, value in options.items()}


def entity_prefix(bank_id: str, address: Optional[int]) -> str:
    """The object-id part of entity ids: ``pylontech_bank``, ``pylontech_battery_2``."""
    return ("%s_%s" % (bank_id, topic_id(address))).lower()


def state_values(entities: Iterable[Entity], view: Any) -> Dict[str, Any]:
    """The JSON state: every entity's value (None = unknown), floats rounded to 4 decimals, and attributes."""
    values: Dict[str, Any] = {}
    for entity in entities:
        value = entity.value(view)
        if isinstance(value, float):
            value = round(value, 4)
        values[entity.key] = value
        if entity.attributes is not None:
            values[attributes_key(entity)] = entity.attributes(view) or {}
    return values


def _origin() -> Dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw": __version__}


def bank_device(bank_id: str, bank_name: str, with_version: bool) -> Dict[str, Any]:
    device: Dict[str, Any] = {"identifiers": [bank_key(bank_id)], "name": bank_name, "model": "Battery bank"}
    if with_version:  # the daemon's version; a static YAML file would soon be wrong
        device["sw_version"] = __version__
    return device


def battery_device(bank_id: str, key: str, battery: Optional[Battery], address: int,
                   bank_name: str = DEFAULT_BANK_NAME) -> Dict[str, Any]:
    """The device block of one battery: identity, model and firmware from ``info N`` where read."""
    device: Dict[str, Any] = {"identifiers": [key], "name": battery_name(bank_name, address)}
    info = battery.info if battery is not None else None
    row = battery.row if battery is not None else None
    manufacturer = info.manufacturer if info is not None else None
    if manufacturer:
        device["manufacturer"] = _MANUFACTURERS.get(manufacturer.strip().lower(), manufacturer.strip())
    model = (info.device_name if info is not None else None) or (row.device_type if row is not None else None)
    if model:
        device["model"] = model
    if info is not None and (info.main_soft_version or info.soft_version):
        device["sw_version"] = info.main_soft_version or info.soft_version
    if info is not None and info.board_version:
        device["hw_version"] = info.board_version
    barcode = battery.barcode if battery is not None else None
    if barcode:
        device["serial_number"] = barcode
    device["via_device"] = bank_key(bank_id)
    return device


def automatic_bank_id(master_barcode: Optional[str], port: str) -> str:
    """A bank id of its own for each bank: from the master battery's barcode, else from the console port.

    ``pylontech_210001`` (the barcode's last 6 characters), ``pylontech_ttyusb0``.
    """
    if master_barcode:
        tail = re.sub(r"[^a-z0-9]", "", master_barcode.lower())[-6:]
        if tail:
            return "%s_%s" % (DEFAULT_BANK_ID, tail)
    name = port.rstrip("/").split("://")[-1].split("?")[0]
    name = name.rsplit("/", 1)[-1] or name
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "bank"
    return "%s_%s" % (DEFAULT_BANK_ID, slug)


def recorded_bank_id(state_dir: Optional[str]) -> Optional[str]:
    """The bank id the daemon announced under, as recorded in its state directory (None when unknown)."""
    data = read_json(os.path.join(state_dir, RECORD_FILE)) if state_dir else None
    bank_id = data.get("bank_id") if isinstance(data, dict) else None
    return bank_id if isinstance(bank_id, str) and bank_id else None


def automatic_bank_name(bank_id: str, manufacturer: Optional[str]) -> str:
    """``Pylontech 210001`` for ``pylontech_210001``: what tells two banks apart in Home Assistant."""
    if bank_id == DEFAULT_BANK_ID:
        return DEFAULT_BANK_NAME
    suffix = bank_id[len(DEFAULT_BANK_ID) + 1:] if bank_id.startswith(DEFAULT_BANK_ID + "_") else bank_id
    maker = _MANUFACTURERS.get((manufacturer or "").strip().lower(), "Pylontech")
    return "%s %s" % (maker, suffix.upper() if suffix.isalnum() else suffix)


def battery_name(bank_name: str, address: int) -> str:
    """A battery device's name, which starts with its bank's so two banks' batteries differ.

    ``Battery 2`` in the bank of the default name (as before; two banks cannot both have the
    default id), ``Pylontech 210001 battery 2`` otherwise.
    """
    return "Battery %d" % address if bank_name == DEFAULT_BANK_NAME else "%s battery %d" % (bank_name, address)


# -- the manual YAML and the dashboard -------------------------------------------

class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated block (the device of every sensor) in full, not as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                     width=120)


def render_manual_yaml(batteries: int, cells_per_battery: int, level: str, topic_base: str,
                       bank_id: str = DEFAULT_BANK_ID, bank_name: str = DEFAULT_BANK_NAME,
                       expire_after: int = MIN_EXPIRE_AFTER) -> str:
    """Manual MQTT sensor definitions for ``mqtt: sensor: !include pylon-batteries.yaml``.

    The same entities, state topics and entity ids as discovery, for a bank of
    ``batteries`` units at addresses 1..N; batteries are identified by address
    (a YAML file cannot know barcodes).  Every optional entity is included.
    """
    if level not in LEVELS:
        raise ValueError("level must be one of %s, got %r" % (", ".join(LEVELS), level))
    status = daemon_availability_topic(topic_base)
    by_platform: Dict[str, List[Dict[str, Any]]] = {platform: [] for platform in PLATFORMS}

    def add(entities: Sequence[Entity], address: Optional[int], device: Dict[str, Any], unique_prefix: str) -> None:
        for entity in entities:
            topic = state_topic(topic_base, address)
            options = component(entity, unique_prefix, entity_prefix(bank_id, address), expire_after, topic)
            options["state_topic"] = topic
            options["availability"] = [{"topic": status}, {"topic": device_availability_topic(topic_base, address)}]
            options["availability_mode"] = "all"
            options["device"] = device
            by_platform[entity.platform].append(options)

    add(BANK_ENTITIES, None, bank_device(bank_id, bank_name, with_version=False), bank_key(bank_id))
    for address in range(1, batteries + 1):
        key = battery_key(bank_id, address, None)
        add(battery_entities(level, cells_per_battery), address,
            battery_device(bank_id, key, None, address, bank_name), key)
    command = "python3 extra200tomqtt.py homeassistant-yaml --batteries %d --cells %d --level %s" % (
        batteries, cells_per_battery, level)
    header = [
        "# Home Assistant MQTT sensors and binary sensors for extra200tomqtt (%d batteries, %d cells each," % (
            batteries, cells_per_battery),
        "# cell level %s, topic base %s, bank id %s)." % (level, topic_base, bank_id),
        "# Generated by: %s" % command,
        "# Use: mqtt: !include pylon-batteries.yaml   (Home Assistant 2025.10 or newer)",
        "# Use this file OR MQTT discovery (homeassistant.discovery), never both: both would create",
        "# every entity twice.  Per-cell entities other than the voltages are disabled by default.",
        "",
    ]
    return "\n".join(header) + _yaml(by_platform)


def render_dashboard_yaml(batteries: int, bank_id: str = DEFAULT_BANK_ID, cells: int = 15) -> str:
    """A Lovelace dashboard (YAML) for the bank and each battery, by the entity ids both styles create.

    Views: the bank (at a glance, charge control with the reason for each limit, cells, energy,
    alarms, a day's graph), the batteries (one card each), and the cells (each battery's cell
    voltages as a chart).
    """
    def bank(key: str, domain: str = "sensor") -> str:
        return "%s.%s_%s" % (domain, entity_prefix(bank_id, None), key)

    def unit(address: int, key: str, domain: str = "sensor") -> str:
        return "%s.%s_%s" % (domain, entity_prefix(bank_id, address), key)

    addresses = range(1, batteries + 1)

    def reason_row(key: str, name: str) -> Dict[str, Any]:
        return {"type": "attribute", "entity": bank(key), "attribute": "reason", "name": name}

    def rows(entity: Callable[..., str], names: Sequence[Tuple[str, str]], *args: Any) -> List[Dict[str, Any]]:
        """Entities card rows with short names (the card's title says whose they are)."""
        return [{"entity": entity(*(args + tuple(key.split(":")))), "name": name} for key, name in names]

    bank_cards: List[Dict[str, Any]] = [
        {"type": "gauge", "entity": bank("soc"), "name": "State of charge", "min": 0, "max": 100,
         "needle": True, "severity": {"red": 0, "yellow": 20, "green": 40}},
        {"type": "glance", "title": "Bank at a glance", "columns": 4, "entities": [
            {"entity": bank("power"), "name": "Power out"}, {"entity": bank("voltage"), "name": "Voltage"},
            {"entity": bank("current"), "name": "Current in"}, {"entity": bank("temperature"), "name": "Temperature"},
            {"entity": bank("time_to_empty"), "name": "To empty"}, {"entity": bank("time_to_full"), "name": "To full"},
            {"entity": bank("stored_energy"), "name": "Stored"},
            {"entity": bank("units_online"), "name": "Units online"}]},
        {"type": "entities", "title": "Charge control (sent to Victron)", "state_color": True, "entities": [
            {"entity": bank("charge_mode"), "name": "Mode"},
            {"entity": bank("charge_voltage_limit"), "name": "Charge voltage limit"},
            reason_row("charge_voltage_limit", "because"),
            {"entity": bank("charge_current_limit"), "name": "Charge current limit"},
            reason_row("charge_current_limit", "because"),
            {"entity": bank("discharge_current_limit"), "name": "Discharge current limit"},
            reason_row("discharge_current_limit", "because")] + rows(
            bank, (("charging_allowed:binary_sensor", "Charging allowed"),
                   ("discharging_allowed:binary_sensor", "Discharging allowed")))},
        {"type": "entities", "title": "Cells", "entities": rows(bank, (
            ("cell_voltage_min", "Lowest cell"), ("cell_voltage_min_id", "Lowest is"),
            ("cell_voltage_max", "Highest cell"), ("cell_voltage_max_id", "Highest is"),
            ("cell_voltage_delta", "Spread"), ("cell_temperature_min", "Coldest cell"),
            ("cell_temperature_max", "Warmest cell")))},
        {"type": "glance", "title": "Alarms", "state_color": True, "columns": batteries + 1, "entities": [
            {"entity": bank("alarm", "binary_sensor"), "name": "Bank"}] + [
            {"entity": unit(a, "alarm", "binary_sensor"), "name": "Battery %d" % a} for a in addresses]},
        {"type": "entities", "title": "Energy", "entities": rows(bank, (
            ("energy_charged", "Charged (total)"), ("energy_discharged", "Discharged (total)"),
            ("remaining_capacity", "Remaining"), ("cycle_count", "Cycles (most)"),
            ("state_of_health", "Health (lowest)")))},
        {"type": "history-graph", "title": "Last 24 hours", "hours_to_show": 24,
         "entities": [bank("power"), bank("soc")]},
    ]
    battery_cards: List[Dict[str, Any]] = [
        {"type": "history-graph", "title": "State of charge", "hours_to_show": 24,
         "entities": [unit(a, "soc") for a in addresses]},
    ]
    for address in addresses:
        battery_cards.append({"type": "entities", "title": "Battery %d" % address, "state_color": True,
                              "entities": rows(unit, (
                                  ("soc", "State of charge"), ("voltage", "Voltage"),
                                  ("current", "Current (+ charging)"), ("power", "Power (+ discharging)"),
                                  ("temperature", "Temperature"), ("state", "State"),
                                  ("charging:binary_sensor", "Charging"), ("cell_voltage_min", "Lowest cell"),
                                  ("cell_voltage_max", "Highest cell"), ("cell_voltage_delta", "Cell spread"),
                                  ("alarm:binary_sensor", "Alarm"), ("cycle_count", "Cycles"),
                                  ("state_of_health", "Health")), address)})
    cell_cards: List[Dict[str, Any]] = []
    for address in addresses:  # each battery: its cells now, then their last hours
        cell_rows = [{"entity": unit(address, "cell_%d_voltage" % n), "name": "C%d" % n} for n in range(1, cells + 1)]
        cell_cards.append({"type": "vertical-stack", "cards": [
            {"type": "glance", "title": "Battery %d cells" % address, "columns": 8 if cells > 15 else 5,
             "show_icon": False, "entities": cell_rows},
            {"type": "history-graph", "hours_to_show": 2, "entities": cell_rows}]})
    dashboard = {
        "title": "Batteries",
        "views": [
            {"title": "Bank", "path": "bank", "icon": "mdi:home-battery", "cards": bank_cards},
            {"title": "Batteries", "path": "batteries", "icon": "mdi:battery-high", "cards": battery_cards},
            {"title": "Cells", "path": "cells", "icon": "mdi:chart-bell-curve", "cards": cell_cards},
        ],
    }
    header = [
        "# Home Assistant dashboard (YAML mode) for extra200tomqtt: the bank and %d batteries of %d cells."
        % (batteries, cells),
        "# Works with MQTT discovery and with pylon-batteries.yaml (same entity ids, bank id %s)." % bank_id,
        "# Remove rows your firmware does not report (for example cycle count and state of health on Pytes).",
        "",
    ]
    return "\n".join(header) + _yaml(dashboard)


# -- the publisher ---------------------------------------------------------------

@dataclass
class _Record:
    """What was announced for one device (persisted)."""

    topic: str
    address: Optional[int]
    barcode: Optional[str]
    components: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)  # sent as {"p": <platform>} until the device goes
    last_seen: float = 0.0
    platforms: Dict[str, str] = field(default_factory=dict)  # component -> platform, where not "sensor"

    def to_json(self) -> Dict[str, Any]:
        return {"topic": self.topic, "address": self.address, "barcode": self.barcode,
                "components": self.components, "removed": self.removed, "last_seen": self.last_seen,
                "platforms": self.platforms}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> Optional["_Record"]:
        topic = data.get("topic")
        address = data.get("address")
        if not isinstance(topic, str) or not (address is None or isinstance(address, int)):
            return None
        barcode = data.get("barcode") if isinstance(data.get("barcode"), str) else None
        components = [c for c in data.get("components") or [] if isinstance(c, str)]
        removed = [c for c in data.get("removed") or [] if isinstance(c, str)]
        seen = data.get("last_seen")
        platforms = data.get("platforms") if isinstance(data.get("platforms"), dict) else {}
        return cls(topic, address, barcode, components, removed, float(seen) if isinstance(seen, (int, float)) else 0.0,
                   {str(k): str(v) for k, v in platforms.items() if v in PLATFORMS})


@dataclass
class _Device:
    """One device as this poll sees it."""

    key: str
    address: Optional[int]
    barcode: Optional[str]
    device: Dict[str, Any]
    entities: List[Entity]
    values: Dict[str, Any]
    available: bool


class HomeAssistantPublisher:
    """Announces, updates and removes the Home Assistant devices of one bank.

    Wiring (the daemon): ``start()`` once (loads the record, subscribes to Home
    Assistant's status topic); ``on_connect`` as an MQTT connect hook;
    ``update(...)`` after every good poll, on the polling thread; ``close()`` on
    shutdown.  Thread-safe: the status handler and the connect hook only set a
    flag and arm a timer that does the work off paho's thread.
    """

    def __init__(self, config: Config, publish: PublishFn, subscribe: Optional[SubscribeFn],
                 availability_topic: str, state_dir: Optional[str],
                 event_text: Optional[EventText] = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._ha = config.homeassistant
        self._publish_fn = publish
        self._subscribe_fn = subscribe
        self._availability = availability_topic
        self._record_path = os.path.join(state_dir, RECORD_FILE) if state_dir else None
        self._event_text = event_text or default_event_text
        self._clock = clock
        self._expire_after = expire_after_for(config)
        self._topic_base = config.mqtt.topic_base
        self._level = config.cells.level
        self._status_topic = self._ha.status_topic or "%s/status" % self._ha.discovery_prefix
        self._discovery = self._ha.discovery

        self._lock = threading.RLock()
        self._records: Dict[str, _Record] = {}
        self._record_dirty = False
        self._record_saved_at: Optional[float] = None
        self._record_failing = False
        self._sent_config: Dict[str, Tuple[str, str]] = {}  # device key -> (topic, payload)
        self._sent_signature: Dict[str, str] = {}  # device key -> what that payload was built from
        self._entities: Dict[Tuple[str, int], List[Entity]] = {}  # (level, cells) -> a battery's entities
        self._sent_availability: Dict[str, str] = {}  # topic -> payload
        self._hold_until: Dict[str, float] = {}  # device key -> monotonic time states may flow
        self._last_state: Dict[str, Tuple[str, str, float]] = {}  # key -> (topic, payload, monotonic time)
        self._pending: Dict[str, Tuple[str, str, float]] = {}
        self._absent_polls: Dict[str, int] = {}
        self._bank_id = ""  # settled at the first update (_resolve_bank)
        self._bank_name = ""
        self._recorded_bank_id = ""  # the id an earlier run announced under
        self._identity_polls = 0
        self._unit_identity_polls: Dict[int, int] = {}  # per address, polls waited for its identity
        self._resend = False  # set from paho's thread: Home Assistant came online / we reconnected

        self._timer_lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        self._timer_due = 0.0
        self._closed = False

    # -- life cycle ----------------------------------------------------------
    @property
    def status_topic(self) -> str:
        return self._status_topic

    @property
    def expire_after(self) -> int:
        return self._expire_after

    def start(self) -> None:
        """Load the record of earlier announcements and listen for Home Assistant's birth message."""
        self._load_record()
        if self._subscribe_fn is not None:
            self._subscribe_fn(self._status_topic, self._on_ha_status)

    def on_connect(self) -> None:
        """MQTT connect hook: the broker may have lost retained configs (restart without persistence)."""
        self._resend = True
        self._schedule(0.5)

    def close(self) -> None:
        with self._timer_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        with self._lock:
            self._save_record(force=True)  # with the latest "last seen" times

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        """Runs in paho's thread: only note it; the timer thread re-sends."""
        if payload.strip().lower() == b"online":
            logger.info("Home Assistant is online (%s): re-sending discovery, availability and states", topic)
            self._resend = True
            self._schedule(random.uniform(0.1, 1.0))  # spreads the load when many devices answer at once

    # -- the poll ----------------------------------------------------------------
    def update(self, bank: Bank, summary: BankSummary, limits: Any, energy: Optional[EnergySnapshot],
               now: float) -> int:
        """Announce what is new, remove what is gone, and publish one state per device; returns messages sent.

        ``now`` is wall-clock time (``time.time()``); it dates the record used to
        remove batteries absent for longer than ``homeassistant.remove_after``.
        """
        with self._lock:
            sent = 0
            if not self._discovery and self._records:
                sent += self._clear_records()  # switched to the YAML file: no entity twice
            if self._resend:
                sent += self._resend_all()
            if not self._resolve_bank(bank):
                return sent
            devices = self._build(bank, summary, limits, energy or EMPTY_SNAPSHOT)
            sent += self._reconcile(devices, now)
            self._save_record()
            return sent

    def remove_all(self) -> int:
        """Clear every device this daemon ever announced, as recorded in the state directory (a tool for
        uninstalling; with ``homeassistant.discovery: false`` the next ``update`` does this by itself)."""
        with self._lock:
            if not self._records:
                self._load_record()
            return self._clear_records()

    def _clear_records(self) -> int:
        sent = 0
        for key, record in list(self._records.items()):
            if self._publish(record.topic, "", qos=1, retain=True):
                logger.info("Home Assistant: removed device %s (discovery is off)", key)
                sent += 1
                self._forget(key)
        self._save_record(force=True)
        return sent

    # -- building the devices ------------------------------------------------------
    def _cells_of(self, battery: Battery) -> int:
        # 15 only until the console tells (display: cell entities, stored energy; never a limit)
        return battery.cell_count or self._config.battery.cells or 15

    def _identity(self, battery: Battery) -> Optional[str]:
        """The barcode, or before ``info`` was first read, the one last recorded at this address."""
        if battery.barcode:
            return battery.barcode
        if battery.info_time is None:
            recorded = [r for r in self._records.values() if r.address == battery.address and r.barcode]
            if recorded:
                return max(recorded, key=lambda r: r.last_seen).barcode
        return None

    def _resolve_bank(self, bank: Bank) -> bool:
        """Settle the bank's id and name once; False while an automatic id still waits for the barcode.

        ``homeassistant.bank_id`` when set; else the id recorded by an earlier run (so an upgrade
        keeps every unique id, and the energy sensors their statistics); else one from the
        master battery's barcode (the port when no barcode comes within a few polls).
        """
        if self._bank_id:
            return True
        master = min(bank.present(), key=lambda b: b.address, default=None)
        bank_id = self._ha.bank_id or self._recorded_bank_id
        if not bank_id:
            if master is None:
                return False  # no battery has answered yet: nothing to name the bank after
            barcode = master.barcode
            if barcode is None and self._identity_polls < IDENTITY_WAIT_POLLS:
                self._identity_polls += 1
                return False
            bank_id = automatic_bank_id(barcode, self._config.serial.port)
            logger.info("Home Assistant: bank id %s (set homeassistant.bank_id to choose one)", bank_id)
        manufacturer = master.info.manufacturer if master is not None and master.info is not None else None
        self._bank_id = bank_id
        self._bank_name = self._ha.bank_name or automatic_bank_name(bank_id, manufacturer)
        self._record_dirty = True
        return True

    def _build(self, bank: Bank, summary: BankSummary, limits: Any, energy: EnergySnapshot) -> List[_Device]:
        bank_id = self._bank_id
        units = {u.address: u for u in summary.units}
        devices: List[_Device] = []
        stored: List[Optional[float]] = []
        used: Dict[str, int] = {}
        for battery in bank.present():
            unit = units.get(battery.address)
            if unit is None:
                continue
            cells = self._cells_of(battery)
            stored_wh = stored_energy_wh(unit.remaining, cells)
            stored.append(stored_wh)
            barcode = self._identity(battery)
            if barcode is None and battery.info_time is None and not self._waited_for_identity(battery.address):
                continue
            key = battery_key(bank_id, battery.address, barcode)
            if key in used:
                logger.warning("Home Assistant: batteries %d and %d report the same barcode %s; using addresses",
                               used[key], battery.address, barcode)
                barcode = None
                key = battery_key(bank_id, battery.address, None)
            used[key] = battery.address
            view = UnitView(battery, unit, energy.unit(battery.address), stored_wh, self._event_text(battery))
            entities = self._entities.get((self._level, cells))
            if entities is None:
                entities = self._entities[(self._level, cells)] = battery_entities(self._level, cells)
            device = battery_device(bank_id, key, battery, battery.address, self._bank_name)
            devices.append(_Device(key, battery.address, barcode, device, entities, state_values(entities, view), True))
        bank_stored = sum(s for s in stored if s is not None) if stored and None not in stored else None
        bank_view = BankView(summary, limits, energy.bank, round(bank_stored, 1) if bank_stored is not None else None)
        devices.insert(0, _Device(bank_key(bank_id), None, None, bank_device(bank_id, self._bank_name, True),
                                  list(BANK_ENTITIES), state_values(BANK_ENTITIES, bank_view),
                                  summary.units_online > 0))
        return devices

    def _waited_for_identity(self, address: int) -> bool:
        waited = self._unit_identity_polls.get(address, 0)
        self._unit_identity_polls[address] = waited + 1
        return waited >= UNIT_IDENTITY_WAIT_POLLS

    # -- publishing ------------------------------------------------------------------
    def _publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> bool:
        try:
            return bool(self._publish_fn(topic, payload, qos=qos, retain=retain))
        except Exception:  # a broken connection object must not stop the poll
            logger.exception("Home Assistant: publishing to %s failed", topic)
            return False

    def _reconcile(self, devices: List[_Device], now: float) -> int:
        sent = 0
        wanted = {d.key: d for d in devices}
        occupied = {d.address for d in devices if d.address is not None}
        availability: Dict[str, str] = {}
        for key, record in list(self._records.items()):
            if key in wanted:
                continue
            if self._gone(key, record, occupied, now):
                if self._publish(record.topic, "", qos=1, retain=True):
                    logger.info("Home Assistant: removed device %s (battery %s is gone)", key, record.address)
                    self._forget(key)
                    sent += 1
                continue
            self._absent_polls[key] = self._absent_polls.get(key, 0) + 1
            availability[device_availability_topic(self._topic_base, record.address)] = "offline"
        for device in devices:
            self._absent_polls.pop(device.key, None)
            sent += self._announce(device, now)
            topic = device_availability_topic(self._topic_base, device.address)
            if device.available or availability.get(topic) != "online":
                availability[topic] = "online" if device.available else "offline"
        for topic, payload in sorted(availability.items()):
            if self._sent_availability.get(topic) != payload and self._publish(topic, payload, qos=1, retain=True):
                self._sent_availability[topic] = payload
                sent += 1
        for device in devices:
            if device.available and (device.key in self._sent_config or not self._discovery):
                sent += self._send_state(device)
        return sent

    def _gone(self, key: str, record: _Record, occupied: Iterable[int], now: float) -> bool:
        """Whether a device not seen this poll is to be removed (else it is only unavailable)."""
        bank_id = self._bank_id
        if not key.startswith(bank_id + "_"):
            return True  # announced under an earlier bank_id
        if record.address is None:
            return key != bank_key(bank_id)
        configured = self._config.battery.addresses
        if configured and record.address not in configured:
            return True  # no longer part of the configured bank
        if record.barcode is None and record.address in occupied:
            return True  # the unit at this address is now known by its barcode
        if configured:
            return False  # a configured unit that is silent stays, unavailable
        # Auto-detected bank: gone after remove_after (also counting time the daemon was down),
        # but never on a single poll's glitch after a restart.
        return now - record.last_seen > self._ha.remove_after and self._absent_polls.get(key, 0) >= 2

    def _forget(self, key: str) -> None:
        self._records.pop(key, None)
        self._sent_config.pop(key, None)
        self._sent_signature.pop(key, None)
        self._hold_until.pop(key, None)
        self._last_state.pop(key, None)
        self._pending.pop(key, None)
        self._absent_polls.pop(key, None)
        self._record_dirty = True

    def _discovery_payload(self, device: _Device, keep: List[Entity], removed: List[str],
                           platforms: Dict[str, str]) -> Dict[str, Any]:
        bank_id = self._bank_id
        prefix = entity_prefix(bank_id, device.address)
        components: Dict[str, Any] = {}
        topic = state_topic(self._topic_base, device.address)
        for entity in keep:
            options = abbreviate(component(entity, device.key, prefix, self._expire_after, topic))
            options["p"] = entity.platform
            components[entity.key] = options
        for key in removed:
            components[key] = {"p": platforms.get(key, "sensor")}
        device_block = abbreviate(device.device)
        return {
            "dev": device_block,
            "o": _origin(),
            "stat_t": state_topic(self._topic_base, device.address),
            "avty": [{"t": self._availability}, {"t": device_availability_topic(self._topic_base, device.address)}],
            "avty_mode": "all",
            "cmps": components,
        }

    def _announce(self, device: _Device, now: float) -> int:
        """Send the device's config when it is new or changed; 1 when sent."""
        if not self._discovery:
            return 0
        topic = discovery_topic(self._ha.discovery_prefix, device.key)
        record = self._records.get(device.key)
        sent = 0
        if record is not None and record.topic != topic:  # the discovery prefix changed
            if not self._publish(record.topic, "", qos=1, retain=True):
                return 0
            sent += 1
            self._forget(device.key)
            record = None
        before = set(record.components) | set(record.removed) if record is not None else set()
        keep = [e for e in device.entities
                if not e.optional or device.values.get(e.key) is not None or e.key in before]
        kept = {e.key for e in keep}
        removed = sorted(before - kept)
        # A component is removed on the platform it was announced on (an older version's text
        # sensors "alarms", "charge_allowed" are now binary sensors under other keys).
        platforms = {k: p for k, p in (record.platforms.items() if record is not None else ()) if k in removed}
        platforms.update((e.key, e.platform) for e in keep if e.platform != "sensor")
        if record is not None:
            record.last_seen = now
        # What the payload is made of, cheap to compare: a 16-unit bank at cell level high has
        # almost a megabyte of configs, not to be rebuilt on every poll of a small GX device.
        signature = json.dumps([device.device, sorted(kept), removed, device.address, platforms], sort_keys=True)
        previous = self._sent_config.get(device.key)
        if previous is not None and self._sent_signature.get(device.key) == signature:
            return sent
        payload = json.dumps(self._discovery_payload(device, keep, removed, platforms), sort_keys=True,
                             separators=(",", ":"),
                             ensure_ascii=False)
        if not self._publish(topic, payload, qos=1, retain=True):
            return sent
        self._sent_signature[device.key] = signature
        if previous is None and record is None:
            logger.info("Home Assistant: announced %s (%d entities)", device.key, len(keep))
        elif removed and (record is None or removed != record.removed):
            logger.info("Home Assistant: %s reconfigured, %d entities removed", device.key, len(removed))
        self._sent_config[device.key] = (topic, payload)
        self._hold_until[device.key] = self._clock() + CONFIG_SETTLE
        self._records[device.key] = _Record(topic, device.address, device.barcode, sorted(kept), removed, now,
                                            platforms)
        self._record_dirty = True
        return sent + 1

    def _send_state(self, device: _Device) -> int:
        topic = state_topic(self._topic_base, device.address)
        payload = json.dumps(device.values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        stamp = self._clock()
        self._last_state[device.key] = (topic, payload, stamp)
        hold = self._hold_until.get(device.key, 0.0)
        if stamp < hold:
            self._pending[device.key] = (topic, payload, stamp)
            self._schedule(hold - stamp)
            return 0
        self._pending.pop(device.key, None)
        return 1 if self._publish(topic, payload) else 0

    def _resend_all(self) -> int:
        """Home Assistant restarted (or we reconnected): every config, availability, then the states."""
        self._resend = False
        sent = 0
        for key, (topic, payload) in sorted(self._sent_config.items()):
            if self._publish(topic, payload, qos=1, retain=True):
                sent += 1
                self._hold_until[key] = self._clock() + CONFIG_SETTLE
            else:
                self._resend = True  # not connected: try again on the next connect or poll
        for topic, payload in sorted(self._sent_availability.items()):
            if self._publish(topic, payload, qos=1, retain=True):
                sent += 1
        now = self._clock()
        for key, (topic, payload, stamp) in self._last_state.items():
            if now - stamp <= self._expire_after:  # never revive values older than Home Assistant would show
                self._pending[key] = (topic, payload, stamp)
        if self._pending:
            self._schedule(CONFIG_SETTLE)
        return sent

    # -- the timer: re-sends and held states, off the poll and paho threads -------------
    def _schedule(self, delay: float) -> None:
        with self._timer_lock:
            if self._closed:
                return
            due = self._clock() + delay
            if self._timer is not None and self._timer_due <= due:
                return
            if self._timer is not None:
                self._timer.cancel()
            timer = threading.Timer(max(delay, 0.0), self._flush)
            timer.daemon = True
            self._timer = timer
            self._timer_due = due
            timer.start()

    def _flush(self) -> None:
        with self._timer_lock:
            self._timer = None
        with self._lock:
            if self._resend:
                self._resend_all()
            now = self._clock()
            waiting: List[float] = []
            for key, (topic, payload, stamp) in list(self._pending.items()):
                hold = self._hold_until.get(key, 0.0)
                if now < hold:
                    waiting.append(hold - now)
                    continue
                del self._pending[key]
                if now - stamp <= self._expire_after:
                    self._publish(topic, payload)
            if waiting:
                self._schedule(min(waiting))

    # -- the record --------------------------------------------------------------------
    def _load_record(self) -> None:
        if self._record_path is None:
            return
        data = read_json(self._record_path)
        if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
            return
        with self._lock:
            for key, value in data["devices"].items():
                record = _Record.from_json(value) if isinstance(value, dict) else None
                if record is not None:
                    self._records[str(key)] = record
            recorded = data.get("bank_id")
            if not isinstance(recorded, str) or not recorded:
                # written before the id was recorded: the bank device's key is <bank id>_bank
                banks = [k for k, r in self._records.items() if r.address is None and k.endswith("_bank")]
                recorded = banks[0][:-len("_bank")] if len(banks) == 1 else ""
            self._recorded_bank_id = recorded
        logger.info("Home Assistant: %d devices announced earlier (%s)", len(self._records), self._record_path)

    def _save_record(self, force: bool = False) -> None:
        if self._record_path is None:
            return
        now = self._clock()
        refresh = self._record_saved_at is None or now - self._record_saved_at >= RECORD_REFRESH
        if not (force or self._record_dirty or refresh):
            return
        data: Dict[str, Any] = {"version": 1, "devices": {k: r.to_json() for k, r in sorted(self._records.items())}}
        if self._bank_id or self._recorded_bank_id:
            data["bank_id"] = self._bank_id or self._recorded_bank_id
        try:
            write_json_atomic(self._record_path, data)
        except OSError as exc:
            if not self._record_failing:
                logger.warning("Home Assistant: cannot write %s (%s); a restart may not clear removed batteries",
                               self._record_path, exc)
                self._record_failing = True
            self._record_saved_at = now  # retry after RECORD_REFRESH, or at the next change
            return
        self._record_failing = False
        self._record_dirty = False
        self._record_saved_at = now
