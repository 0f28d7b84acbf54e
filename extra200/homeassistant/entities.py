"""The Home Assistant entities: one table row per sensor of the bank and of each battery.

An ``Entity`` says how Home Assistant shows a value (name, device class, unit,
state class, precision, icon, platform) and which value function of ``values``
reads it from a view.  ``BANK_ENTITIES``, ``BATTERY_ENTITIES`` and the per-cell
entities of a cell level are what both discovery and the manual YAML announce;
``state_values`` turns a view into the JSON state all of them read.  Pure.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..charge import ALARM_NAMES
from ..derive import BankSummary, UnitSummary
from .values import (
    STATE_OPTIONS,
    BankView,
    UnitView,
    any_battery_alarm,
    any_limit_alarm,
    battery_alarm_attributes,
    battery_state,
    cell_value,
    charged_kwh,
    clip_text,
    discharged_kwh,
    event_attributes,
    event_summary,
    extreme_id,
    extreme_value,
    limit_alarm_attributes,
    limit_reason_attributes,
    limit_reasons,
    limit_value,
    negated,
    one_alarm,
    one_alarm_level,
    permission,
    readable_name,
    reason_attributes,
    snake_name,
    soh_problem,
    stat_counter,
    status_column_problem,
    status_word_attributes,
)

LEVELS = ("off", "low", "medium", "high")  # cells.level
PLATFORMS = ("sensor", "binary_sensor")
ON, OFF = "ON", "OFF"  # a binary sensor's payloads (Home Assistant's defaults)

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


def _binary(
    key: str, name: str, value: Callable[[Any], Optional[bool]], device_class: Optional[str] = None, **extra: Any
) -> Entity:
    """A binary sensor; ``value`` gives True / False / None (unknown)."""

    def state(view: Any) -> Optional[str]:
        flag = value(view)
        return None if flag is None else (ON if flag else OFF)

    return Entity(key, name, state, device_class, platform="binary_sensor", **extra)


def _text(key: str, name: str, value: Callable[[Any], Any], **extra: Any) -> Entity:
    return Entity(key, name, value, **extra)


def _counter(key: str, name: str, value: Callable[[Any], Any], **extra: Any) -> Entity:
    return Entity(key, name, value, state_class="total_increasing", precision=0, diagnostic=True, optional=True, **extra)


def _enum(key: str, name: str, value: Callable[[Any], Any], options: Tuple[str, ...], **extra: Any) -> Entity:
    return Entity(key, name, value, device_class="enum", options=options, **extra)


# The signs: current is + charging (as on the console and for Victron); power is + discharging
# (what Home Assistant's Energy dashboard expects of a battery); "Power (+ charging)" has the
# current's sign.  The names say so, as the two conventions differ.
CURRENT_NAME = "Current (+ charging)"
POWER_NAME = "Power (+ discharging)"
CHARGE_POWER_NAME = "Power (+ charging)"

# Icons for entities whose device class gives none that follows the state (a battery level, a
# problem or a charging binary sensor keep Home Assistant's state icons).
ICONS = {
    "voltage": "mdi:sine-wave",
    "current": "mdi:current-dc",
    "power": "mdi:flash",
    "charge_power": "mdi:flash",
    "temperature": "mdi:thermometer",
    "cell_temperature_min": "mdi:thermometer-low",
    "cell_temperature_max": "mdi:thermometer-high",
    "mos_temperature": "mdi:chip",
    "cell_voltage_min": "mdi:arrow-collapse-down",
    "cell_voltage_max": "mdi:arrow-collapse-up",
    "cell_voltage_delta": "mdi:delta",
    "cell_voltage_min_id": "mdi:numeric",
    "cell_voltage_max_id": "mdi:numeric",
    "capacity": "mdi:battery-high",
    "remaining_capacity": "mdi:battery-50",
    "stored_energy": "mdi:home-battery",
    "energy_charged": "mdi:battery-plus-variant",
    "energy_discharged": "mdi:battery-minus-variant",
    "time_to_empty": "mdi:timer-sand",
    "time_to_full": "mdi:timer-sand-complete",
    "cycle_count": "mdi:battery-sync",
    "state_of_health": "mdi:battery-heart-variant",
    "units_online": "mdi:counter",
    "charge_voltage_limit": "mdi:battery-charging-high",
    "charge_current_limit": "mdi:battery-arrow-up-outline",
    "discharge_current_limit": "mdi:battery-arrow-down-outline",
    "charging_allowed": "mdi:battery-arrow-up",
    "discharging_allowed": "mdi:battery-arrow-down",
    "charge_mode": "mdi:state-machine",
    "limit_reasons": "mdi:information-outline",
    "state": "mdi:list-status",
    "events": "mdi:message-alert-outline",
    "cell_voltage_average": "mdi:approximately-equal",
    "cells_balancing": "mdi:scale-balance",
    # per cell, by the part after cell_N_
    "coulomb": "mdi:battery-50",
    "soc": "mdi:battery-50",
    "voltage_state": "mdi:list-status",
    "current_state": "mdi:list-status",
    "temperature_state": "mdi:list-status",
    "balancer": "mdi:scale-balance",
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


def _pack_readings(figures: Callable[[Any], Any], current_precision: int, mos_name: str) -> Tuple[Entity, ...]:
    """Voltage to MOS temperature: the same rows for the bank and a battery (``figures``: view -> its summary)."""
    return (
        _measure("voltage", "voltage", "Voltage", lambda v: figures(v).voltage, 2),
        _measure("current", "current", CURRENT_NAME, lambda v: figures(v).current, current_precision),
        _measure("power", "power", POWER_NAME, lambda v: negated(figures(v).power), 0),
        _measure("power", "charge_power", CHARGE_POWER_NAME, lambda v: figures(v).power, 0),
        _measure("percent", "soc", "State of charge", lambda v: figures(v).soc, 0),
        _measure("temperature", "temperature", "Temperature", lambda v: figures(v).temperature, 1),
        _measure(
            "temperature",
            "cell_temperature_min",
            "Cell temperature min",
            lambda v: extreme_value(figures(v).cell_temp_min),
            1,
            optional=True,
        ),
        _measure(
            "temperature",
            "cell_temperature_max",
            "Cell temperature max",
            lambda v: extreme_value(figures(v).cell_temp_max),
            1,
            optional=True,
        ),
        _measure(
            "temperature", "mos_temperature", mos_name, lambda v: figures(v).mos_temperature, 1, diagnostic=True, optional=True
        ),
    )


def _pack_cells_and_energy(figures: Callable[[Any], Any]) -> Tuple[Entity, ...]:
    """The cell extremes, capacity and energy: the same rows for the bank and a battery."""
    return (
        _measure(
            "voltage",
            "cell_voltage_min",
            "Cell voltage min",
            lambda v: extreme_value(figures(v).cell_voltage_min),
            3,
            optional=True,
        ),
        _measure(
            "voltage",
            "cell_voltage_max",
            "Cell voltage max",
            lambda v: extreme_value(figures(v).cell_voltage_max),
            3,
            optional=True,
        ),
        _measure(
            "voltage", "cell_voltage_delta", "Cell voltage delta", lambda v: figures(v).cell_voltage_delta, 3, optional=True
        ),
        _text(
            "cell_voltage_min_id",
            "Cell voltage min cell",
            lambda v: extreme_id(figures(v).cell_voltage_min),
            diagnostic=True,
            optional=True,
        ),
        _text(
            "cell_voltage_max_id",
            "Cell voltage max cell",
            lambda v: extreme_id(figures(v).cell_voltage_max),
            diagnostic=True,
            optional=True,
        ),
        _measure("charge", "capacity", "Capacity", lambda v: figures(v).capacity, 0, diagnostic=True, optional=True),
        _measure("charge", "remaining_capacity", "Remaining capacity", lambda v: figures(v).remaining, 1, optional=True),
        _stored_energy(lambda v: figures(v).stored_energy),
        _energy("energy_charged", "Energy charged", lambda v: charged_kwh(v.energy)),
        _energy("energy_discharged", "Energy discharged", lambda v: discharged_kwh(v.energy)),
    )


def _bank_summary(view: BankView) -> BankSummary:
    return view.summary


def _unit_summary(view: UnitView) -> UnitSummary:
    return view.unit


BANK_ENTITIES: Tuple[Entity, ...] = (
    _pack_readings(_bank_summary, 1, "MOS temperature max")
    + (_pack_cells_and_energy(_bank_summary))
    + (
        _duration("time_to_empty", "Time to empty", lambda v: v.summary.time_to_empty),
        _duration("time_to_full", "Time to full", lambda v: v.summary.time_to_full),
        _counter("cycle_count", "Cycle count max", lambda v: v.summary.cycle_count),
        _soh("State of health min", lambda v: v.summary.soh),
        _measure("count", "units_online", "Units online", lambda v: v.summary.units_online, 0),
        _measure(
            "voltage",
            "charge_voltage_limit",
            "Charge voltage limit",
            limit_value("charge_voltage"),
            2,
            optional=True,
            attributes=reason_attributes("voltage_reason"),
        ),
        _measure(
            "current",
            "charge_current_limit",
            "Charge current limit",
            limit_value("charge_current"),
            1,
            optional=True,
            attributes=reason_attributes("charge_reason"),
        ),
        _measure(
            "current",
            "discharge_current_limit",
            "Discharge current limit",
            limit_value("discharge_current"),
            1,
            optional=True,
            attributes=reason_attributes("discharge_reason"),
        ),
        _binary(
            "charging_allowed",
            "Charging allowed",
            permission("allow_charge"),
            optional=True,
            attributes=reason_attributes("charge_reason"),
        ),
        _binary(
            "discharging_allowed",
            "Discharging allowed",
            permission("allow_discharge"),
            optional=True,
            attributes=reason_attributes("discharge_reason"),
        ),
        _text("charge_mode", "Charge mode", lambda v: clip_text(limit_value("mode")(v)), optional=True),
        _text(
            "limit_reasons",
            "Charge limit reasons",
            lambda v: limit_reasons(v.limits),
            diagnostic=True,
            optional=True,
            attributes=limit_reason_attributes,
        ),
        _binary("alarm", "Alarm", any_limit_alarm, "problem", optional=True, attributes=limit_alarm_attributes),
    )
    + tuple(
        _binary(
            "alarm_" + snake_name(name),
            readable_name(name),
            one_alarm(name),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=one_alarm_level(name),
        )
        for name in ALARM_NAMES
    )
)

BATTERY_ENTITIES: Tuple[Entity, ...] = (
    _pack_readings(_unit_summary, 2, "MOS temperature")
    + (
        _enum("state", "State", lambda v: battery_state(v.battery), STATE_OPTIONS),
        _binary(
            "charging",
            "Charging",
            lambda v: None if battery_state(v.battery) is None else battery_state(v.battery) == "Charging",
            "battery_charging",
        ),
    )
    + _pack_cells_and_energy(_unit_summary)
    + (
        _counter("cycle_count", "Cycle count", lambda v: v.unit.cycle_count),
        _soh("State of health", lambda v: v.unit.soh),
        _binary("alarm", "Alarm", any_battery_alarm, "problem", attributes=battery_alarm_attributes),
        _binary(
            "alarm_voltage",
            "Voltage alarm",
            status_column_problem("voltage_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("voltage_state"),
        ),
        _binary(
            "alarm_current",
            "Current alarm",
            status_column_problem("current_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("current_state"),
        ),
        _binary(
            "alarm_temperature",
            "Temperature alarm",
            status_column_problem("temperature_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("temperature_state"),
        ),
        _binary(
            "alarm_cell_voltage",
            "Cell voltage alarm",
            status_column_problem("battery_voltage_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("battery_voltage_state"),
        ),
        _binary(
            "alarm_cell_temperature",
            "Cell temperature alarm",
            status_column_problem("battery_temperature_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("battery_temperature_state"),
        ),
        _binary(
            "alarm_mos_temperature",
            "MOS temperature alarm",
            status_column_problem("mos_temperature_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("mos_temperature_state"),
        ),
        _binary(
            "alarm_system",
            "System alarm",
            status_column_problem("system_alarm_state"),
            "problem",
            diagnostic=True,
            optional=True,
            attributes=status_word_attributes("system_alarm_state"),
        ),
        _binary("alarm_state_of_health", "State of health alarm", soh_problem, "problem", diagnostic=True, optional=True),
        _text("events", "Events", lambda v: event_summary(v.events), diagnostic=True, optional=True, attributes=event_attributes),
    )
    + tuple(_counter(key, name, stat_counter(label), icon=STAT_ICON) for label, key, name in STAT_COUNTERS)
)

# Per-battery cell statistics from the cell table (cells.level medium and high).
CELL_STATISTICS: Tuple[Entity, ...] = (
    _measure(
        "voltage", "cell_voltage_average", "Cell voltage average", lambda v: v.unit.cell_voltage_average, 3, diagnostic=True
    ),
    _measure("count", "cells_balancing", "Cells balancing", lambda v: v.unit.cells_balancing, 0, diagnostic=True),
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
    entities = [_measure("voltage", prefix + "voltage", label + "voltage", cell_value(index, "voltage"), 3, diagnostic=True)]
    if level in ("medium", "high"):
        entities += [
            _measure("temperature", prefix + "temperature", label + "temperature", cell_value(index, "temperature"), 1, **off),
            _text(prefix + "state", label + "state", cell_value(index, "base_state", clip_text), **off),
        ]
    if level == "high":
        entities += [
            _text(prefix + "voltage_state", label + "voltage state", cell_value(index, "voltage_state", clip_text), **off),
            _text(prefix + "current_state", label + "current state", cell_value(index, "current_state", clip_text), **off),
            _text(
                prefix + "temperature_state",
                label + "temperature state",
                cell_value(index, "temperature_state", clip_text),
                **off,
            ),
            _measure("current", prefix + "current", label + "current", cell_value(index, "current"), 2, **off),
            _measure("percent", prefix + "soc", label + "state of charge", cell_value(index, "soc"), 0, **off),
            _measure("charge", prefix + "coulomb", label + "charge", cell_value(index, "coulomb"), 2, **off),
            # a binary sensor under a new key: the text sensor cell_N_balancing of earlier versions
            # is removed on its own platform (a platform change under one key would orphan it)
            _binary(prefix + "balancer", label + "balancer", cell_value(index, "balancing"), **off),
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
    match = re.match(r"cell_\d+_(.+)$", entity.key)  # a cell's entity: by the part after cell_N_
    return ICONS.get(match.group(1) if match else entity.key)


def attributes_key(entity: Entity) -> str:
    """Where an entity's JSON attributes travel in the device's state message."""
    return "%s_attributes" % entity.key


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
