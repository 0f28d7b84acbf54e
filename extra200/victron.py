"""dbus-mqtt-battery JSON: the payloads Victron's ``venus-os_dbus-mqtt-battery`` driver turns into a battery.

Pure builders plus a small publisher that enforces the driver's needs
(facts in the shared docs, ``victron-dbus-mqtt-battery.md``):

* ``Dc.Power``, ``Dc.Voltage`` and ``Soc`` in every message, or no message at all;
* numbers only on numeric paths: 0/1 for flags (JSON booleans are rejected),
  no strings (a string on a numeric path crashes the driver), no nulls; an
  unknown value is left out;
* ``Info.MaxChargeVoltage`` / ``MaxChargeCurrent`` / ``MaxDischargeCurrent``
  always present (the driver's values are sticky across our restarts);
* not retained, at most one message per second per topic (the driver flushes
  once per wall-clock second);
* at most 24 cells per service (``Voltages.Cell1`` .. ``Cell24``).

Topics stay those of the original extra200tomqtt: ``<topic_base>/pylon`` for
the bank and ``<topic_base>/battery_<N>`` per unit.
"""

import json
import logging
from typing import Any, Callable, Dict, Optional, Protocol

from .derive import BankSummary, Extreme, UnitSummary

logger = logging.getLogger(__name__)

MAX_CELLS = 24  # the driver has no path beyond Voltages.Cell24


class Limits(Protocol):
    """What the payload needs from the charge limits (``charge_limits.ChargeLimits``)."""

    charge_voltage: float
    charge_current: float
    discharge_current: float
    allow_charge: bool
    allow_discharge: bool
    mode: str
    charge_reason: str
    discharge_reason: str
    alarms: Dict[str, int]
    battery_low_voltage: Optional[float]


def bank_topic(topic_base: str) -> str:
    return "%s/pylon" % topic_base


def battery_topic(topic_base: str, address: int) -> str:
    return "%s/battery_%d" % (topic_base, address)


def _put(target: Dict[str, Any], key: str, value: Any, digits: Optional[int] = None) -> None:
    """Set ``key`` only for a known value; numbers rounded, booleans as 0/1."""
    if value is None:
        return
    if isinstance(value, bool):
        value = int(value)
    elif digits is not None and isinstance(value, float):
        value = round(value, digits)
    target[key] = value


def _put_extreme(system: Dict[str, Any], value_key: str, id_key: str, extreme: Optional[Extreme], digits: int) -> None:
    if extreme is None:
        return
    system[value_key] = round(extreme.value, digits)
    system[id_key] = extreme.id  # one of the driver's few string paths


def _common(figures: Any) -> Optional[Dict[str, Any]]:
    """The parts shared by bank and unit payloads, or None when a required value is unknown."""
    if figures.voltage is None or figures.power is None or figures.soc is None:
        return None
    dc: Dict[str, Any] = {}
    _put(dc, "Power", figures.power, 1)
    _put(dc, "Voltage", figures.voltage, 3)
    _put(dc, "Current", figures.current, 3)
    _put(dc, "Temperature", figures.temperature, 1)
    payload: Dict[str, Any] = {"Dc": dc}
    _put(payload, "Soc", min(max(figures.soc, 0.0), 100.0), 1)
    _put(payload, "Soh", figures.soh, 1)
    _put(payload, "InstalledCapacity", figures.capacity, 2)
    _put(payload, "Capacity", figures.remaining, 2)
    if figures.capacity is not None and figures.remaining is not None:
        payload["ConsumedAmphours"] = round(max(figures.capacity - figures.remaining, 0.0), 2)
    _put(payload, "Balancing", figures.balancing)
    if figures.cycle_count is not None:
        payload["History"] = {"ChargeCycles": figures.cycle_count}

    system: Dict[str, Any] = {}
    _put_extreme(system, "MinCellVoltage", "MinVoltageCellId", figures.cell_voltage_min, 3)
    _put_extreme(system, "MaxCellVoltage", "MaxVoltageCellId", figures.cell_voltage_max, 3)
    _put_extreme(system, "MinCellTemperature", "MinTemperatureCellId", figures.cell_temp_min, 1)
    _put_extreme(system, "MaxCellTemperature", "MaxTemperatureCellId", figures.cell_temp_max, 1)
    _put(system, "MOSTemperature", figures.mos_temperature, 1)
    payload["System"] = system
    return payload


def _limits_part(payload: Dict[str, Any], limits: Limits, share: float) -> None:
    """Info / Io / Alarms from the charge limits; ``share`` scales the bank currents to one unit."""
    info: Dict[str, Any] = {
        "MaxChargeVoltage": round(limits.charge_voltage, 2),
        "MaxChargeCurrent": round(limits.charge_current * share, 1),
        "MaxDischargeCurrent": round(limits.discharge_current * share, 1),
    }
    _put(info, "BatteryLowVoltage", limits.battery_low_voltage, 2)
    # The three texts are string paths in the driver's table (shown by the GUI).
    info["ChargeMode"] = limits.mode
    info["ChargeLimitation"] = limits.charge_reason
    info["DischargeLimitation"] = limits.discharge_reason
    payload["Info"] = info
    payload["Io"] = {"AllowToCharge": int(limits.allow_charge), "AllowToDischarge": int(limits.allow_discharge)}
    if limits.alarms:
        payload["Alarms"] = {name: int(level) for name, level in sorted(limits.alarms.items())}


def bank_payload(summary: BankSummary, limits: Limits, cells_per_battery: Optional[int],
                 units_offline: int) -> Optional[Dict[str, Any]]:
    """The bank message, or None when a required value is unknown (then nothing is sent)."""
    payload = _common(summary)
    if payload is None:
        return None
    system = payload["System"]
    system["NrOfModulesOnline"] = summary.units_online
    system["NrOfModulesOffline"] = units_offline
    system["NrOfModulesBlockingCharge"] = 0 if limits.allow_charge else summary.units_online
    system["NrOfModulesBlockingDischarge"] = 0 if limits.allow_discharge else summary.units_online
    if cells_per_battery:
        system["NrOfCellsPerBattery"] = cells_per_battery
    _limits_part(payload, limits, 1.0)
    return payload


def unit_payload(unit: UnitSummary, limits: Limits, units_online: int, with_cells: bool) -> Optional[Dict[str, Any]]:
    """One unit's message: its own figures, its share of the bank's current limits, and its cells."""
    payload = _common(unit)
    if payload is None:
        return None
    system = payload["System"]
    system["NrOfModulesOnline"] = 1
    cells = unit.cell_voltages
    if cells:
        system["NrOfCellsPerBattery"] = len(cells)
    if with_cells and cells and len(cells) <= MAX_CELLS and all(v is not None for v in cells):
        payload["Voltages"] = {"Cell%d" % (i + 1): round(v, 3) for i, v in enumerate(cells) if v is not None}
    _limits_part(payload, limits, 1.0 / max(units_online, 1))
    return payload


class VictronPublisher:
    """Sends the bank and unit payloads, at most once a second per topic."""

    def __init__(self, publish: Callable[[str, str], bool], topic_base: str, per_battery: bool) -> None:
        self._publish = publish
        self._topic_base = topic_base
        self._per_battery = per_battery
        self._last_sent: Dict[str, float] = {}
        self._missing_logged = False

    def _send(self, topic: str, payload: Dict[str, Any], now: float) -> bool:
        last = self._last_sent.get(topic)
        if last is not None and now - last < 1.0:
            return False
        if self._publish(topic, json.dumps(payload, separators=(",", ":"), sort_keys=True)):
            self._last_sent[topic] = now
            return True
        return False

    def update(self, summary: BankSummary, limits: Limits, units_offline: int, cells_per_battery: Optional[int],
               now: float) -> int:
        """Publish fresh data; returns the number of messages sent."""
        sent = 0
        bank = bank_payload(summary, limits, cells_per_battery, units_offline)
        if bank is None:
            if not self._missing_logged:
                logger.warning("Victron: bank voltage, power or SoC unknown; not publishing %s", bank_topic(self._topic_base))
                self._missing_logged = True
        else:
            self._missing_logged = False
            sent += self._send(bank_topic(self._topic_base), bank, now)
        if self._per_battery:
            for unit in summary.units:
                payload = unit_payload(unit, limits, summary.units_online, with_cells=True)
                if payload is not None:
                    sent += self._send(battery_topic(self._topic_base, unit.address), payload, now)
        return sent
