"""dbus-mqtt-battery JSON: the payloads Victron's ``venus-os_dbus-mqtt-battery`` driver turns into a battery.

Pure builders plus a small publisher that enforces the driver's needs
(facts in the shared docs, ``victron-dbus-mqtt-battery.md``, checked against
the driver itself by ``tests/test_victron_driver.py``):

* ``Dc.Power``, ``Dc.Voltage`` and ``Soc`` in every message, or no message at
  all; ``null`` on one of them breaks the driver, so they are never unknown;
* numbers only on numeric paths: 0/1 for flags (JSON booleans are rejected),
  no strings (a string on a numeric path crashes the driver);
* unknown is sent as unknown: the driver keeps every path's last value, so a
  path sent before and unknown now goes out as ``null`` (the driver shows it
  invalid), never as the old number;
* ``Info.MaxChargeVoltage`` / ``MaxChargeCurrent`` / ``MaxDischargeCurrent``
  always present (the driver's values are sticky across our restarts);
* not retained, at most one message per second per topic (the driver flushes
  once per wall-clock second);
* at most 24 cells per service (``Voltages.Cell1`` .. ``Cell24``).

The last word: when the data goes stale, when the daemon stops and (as the
MQTT last will) when it dies, the bank topic gets a message that stops
charging: ``MaxChargeCurrent`` 0, ``MaxChargeVoltage`` no higher than the pack
voltage last seen (under ESS with DC-coupled PV feed-in the solar chargers
follow only the voltage), ``Alarms.BmsCable`` 2.  The three paths the driver
requires carry the last voltage and SoC seen and a power of 0.

Topics stay those of the original extra200tomqtt: ``<topic_base>/pylon`` for
the bank and ``<topic_base>/battery_<N>`` per unit.  Only the bank topic is
meant to steer DVCC; each unit's topic carries that unit's own alarms and
limits.
"""

import json
import logging
import math
import threading
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Protocol, Set, Tuple

from .derive import BankSummary, Extreme, UnitSummary
from .energy import EnergySnapshot, EnergyTotals
from .reporting import Episodes

logger = logging.getLogger(__name__)

MAX_CELLS = 24  # the driver has no path beyond Voltages.Cell24
REQUIRED: Tuple[Tuple[str, ...], ...] = (("Dc", "Power"), ("Dc", "Voltage"), ("Soc",))
LAST_WORD_MODE = "Charging stopped (no data)"

Payload = Dict[str, Any]
Publish = Callable[[str, str, bool], bool]  # (topic, payload, is a last word) -> sent


class UnitLimitsLike(Protocol):
    """One unit's own limits (``charge.UnitLimits``)."""

    charge_current: float
    discharge_current: float
    blocks_charge: bool
    blocks_discharge: bool
    charge_reason: str
    discharge_reason: str
    alarms: Dict[str, int]


class Limits(Protocol):
    """What the payload needs from the charge limits (``charge.ChargeLimits``)."""

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


def _number(value: Any, digits: Optional[int] = None) -> Any:
    """A value as the driver takes it: None stays None (unknown), booleans 0/1, floats rounded."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if digits is not None and isinstance(value, float):
        return round(value, digits)
    return value


def _extreme(system: Payload, value_key: str, id_key: str, extreme: Optional[Extreme], digits: int) -> None:
    system[value_key] = round(extreme.value, digits) if extreme is not None else None
    system[id_key] = extreme.id if extreme is not None else None  # one of the driver's few string paths


def _energy(totals: Optional[EnergyTotals]) -> Payload:
    if totals is None:
        return {}
    return {"ChargedEnergy": round(totals.charged_kwh, 3), "DischargedEnergy": round(totals.discharged_kwh, 3)}


def _common(figures: Any, energy: Optional[EnergyTotals]) -> Optional[Payload]:
    """The parts shared by bank and unit payloads, or None when a required value is unknown."""
    if figures.voltage is None or figures.power is None or figures.soc is None:
        return None
    payload: Payload = {
        "Dc": {
            "Power": _number(figures.power, 1),
            "Voltage": _number(figures.voltage, 3),
            "Current": _number(figures.current, 3),
            "Temperature": _number(figures.temperature, 1),
        },
        "Soc": round(min(max(figures.soc, 0.0), 100.0), 1),
        "Soh": _number(figures.soh, 1),
        "InstalledCapacity": _number(figures.capacity, 2),
        "Capacity": _number(figures.remaining, 2),
        # Sent even when unknown, so the driver neither derives it nor keeps an old value.
        "ConsumedAmphours": figures.consumed,
        "TimeToGo": _number(figures.time_to_empty, 0),
        "Balancing": _number(figures.balancing),
    }
    history: Payload = {"ChargeCycles": figures.cycle_count}
    history.update(_energy(energy))
    payload["History"] = history
    system: Payload = {}
    _extreme(system, "MinCellVoltage", "MinVoltageCellId", figures.cell_voltage_min, 3)
    _extreme(system, "MaxCellVoltage", "MaxVoltageCellId", figures.cell_voltage_max, 3)
    _extreme(system, "MinCellTemperature", "MinTemperatureCellId", figures.cell_temp_min, 1)
    _extreme(system, "MaxCellTemperature", "MaxTemperatureCellId", figures.cell_temp_max, 1)
    system["MOSTemperature"] = _number(figures.mos_temperature, 1)
    payload["System"] = system
    return payload


def _info(limits: Limits, charge_current: float, discharge_current: float, charge_reason: str, discharge_reason: str) -> Payload:
    return {
        "MaxChargeVoltage": round(limits.charge_voltage, 2),
        "MaxChargeCurrent": round(charge_current, 1),
        "MaxDischargeCurrent": round(discharge_current, 1),
        "BatteryLowVoltage": _number(limits.battery_low_voltage, 2),
        # The three texts are string paths in the driver's table (shown by the GUI).
        "ChargeMode": limits.mode,
        "ChargeLimitation": charge_reason,
        "DischargeLimitation": discharge_reason,
    }


def _unit_limits(limits: Limits) -> Mapping[int, UnitLimitsLike]:
    return getattr(limits, "units", None) or {}


def bank_payload(
    summary: BankSummary,
    limits: Limits,
    cells_per_battery: Optional[int],
    units_offline: int,
    energy: Optional[EnergyTotals] = None,
) -> Optional[Payload]:
    """The bank message, or None when a required value is unknown (then nothing is sent)."""
    payload = _common(summary, energy)
    if payload is None:
        return None
    units = _unit_limits(limits)
    system = payload["System"]
    system["NrOfModulesOnline"] = summary.units_online
    system["NrOfModulesOffline"] = units_offline
    # The modules whose own condition stops a direction; a bank-wide stop (no data) is every module's.
    for key, allowed, blocks in (
        ("NrOfModulesBlockingCharge", limits.allow_charge, "blocks_charge"),
        ("NrOfModulesBlockingDischarge", limits.allow_discharge, "blocks_discharge"),
    ):
        own = sum(1 for u in units.values() if getattr(u, blocks))
        system[key] = 0 if allowed else (own or summary.units_online)
    system["NrOfCellsPerBattery"] = cells_per_battery or None
    payload["Info"] = _info(
        limits, limits.charge_current, limits.discharge_current, limits.charge_reason, limits.discharge_reason
    )
    payload["Io"] = {"AllowToCharge": int(limits.allow_charge), "AllowToDischarge": int(limits.allow_discharge)}
    payload["Alarms"] = {name: int(level) for name, level in sorted(limits.alarms.items())}
    return payload


def _cells(payload: Payload, unit: UnitSummary) -> None:
    """``Voltages`` and ``Balances``; with the sum and spread sent, so the driver derives nothing from them."""
    cells = unit.cell_voltages
    if not cells or len(cells) > MAX_CELLS:
        return
    voltages: Payload = {"Cell%d" % (i + 1): _number(v, 3) for i, v in enumerate(cells)}
    voltages["Sum"] = unit.cell_voltage_sum
    voltages["Diff"] = unit.cell_voltage_delta
    payload["Voltages"] = voltages
    if unit.cell_balancing and len(unit.cell_balancing) == len(cells):
        payload["Balances"] = {"Cell%d" % (i + 1): _number(b) for i, b in enumerate(unit.cell_balancing)}


def unit_payload(unit: UnitSummary, limits: Limits, energy: Optional[EnergyTotals] = None) -> Optional[Payload]:
    """One unit's message: its own figures, cells, alarms and limits (never another unit's)."""
    payload = _common(unit, energy)
    if payload is None:
        return None
    system = payload["System"]
    system["NrOfModulesOnline"] = 1
    system["NrOfModulesOffline"] = 0
    system["NrOfCellsPerBattery"] = len(unit.cell_voltages) or None
    _cells(payload, unit)
    own = _unit_limits(limits).get(unit.address)
    if own is None:
        return payload  # its limits are not known yet: left out (null), never borrowed from the bank
    system["NrOfModulesBlockingCharge"] = int(own.blocks_charge)
    system["NrOfModulesBlockingDischarge"] = int(own.blocks_discharge)
    payload["Info"] = _info(limits, own.charge_current, own.discharge_current, own.charge_reason, own.discharge_reason)
    payload["Io"] = {"AllowToCharge": int(own.charge_current > 0), "AllowToDischarge": int(own.discharge_current > 0)}
    payload["Alarms"] = {name: int(level) for name, level in sorted(own.alarms.items())}
    return payload


def last_word(payload: Payload, reason: str, discharge_current: Optional[float] = None) -> Payload:
    """The message that stops charging, from the last message sent on the topic.

    Keeps what the driver requires (the last voltage and SoC, power 0: no flow is
    claimed) and the ratings; ``MaxChargeCurrent`` 0, ``MaxChargeVoltage`` at most the
    last pack voltage, the BMS-cable alarm; discharge at ``discharge_current``
    (default: as last sent).  Every measured value is left out (the publisher
    turns it into null).
    """
    info = dict(payload.get("Info") or {})
    voltage = payload["Dc"]["Voltage"]
    cvl = info.get("MaxChargeVoltage")
    info["MaxChargeVoltage"] = (
        math.floor(min(cvl, voltage) * 100) / 100.0 if cvl is not None else math.floor(voltage * 100) / 100.0
    )
    info["MaxChargeCurrent"] = 0.0
    if discharge_current is not None:
        info["MaxDischargeCurrent"] = round(discharge_current, 1)
    info.setdefault("MaxDischargeCurrent", 0.0)
    info["ChargeMode"] = LAST_WORD_MODE
    info["ChargeLimitation"] = reason
    info["DischargeLimitation"] = reason if info["MaxDischargeCurrent"] == 0 else "%s; discharge as last allowed" % reason
    system = payload.get("System") or {}
    modules = system.get("NrOfModulesOnline", 0) + system.get("NrOfModulesOffline", 0)
    alarms = dict(payload.get("Alarms") or {})
    alarms["BmsCable"] = 2
    word: Payload = {
        "Dc": {"Power": 0.0, "Voltage": voltage},
        "Soc": payload["Soc"],
        "InstalledCapacity": payload.get("InstalledCapacity"),
        "Info": info,
        "Io": {"AllowToCharge": 0, "AllowToDischarge": int(info["MaxDischargeCurrent"] > 0)},
        "Alarms": alarms,
        "System": {
            "NrOfModulesOnline": 0,
            "NrOfModulesOffline": modules,
            "NrOfModulesBlockingCharge": modules,
            "NrOfModulesBlockingDischarge": 0 if info["MaxDischargeCurrent"] > 0 else modules,
            "NrOfCellsPerBattery": system.get("NrOfCellsPerBattery"),
        },
    }
    return word


def _leaves(payload: Payload, prefix: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], Any]]:
    for key, value in payload.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _set(payload: Payload, path: Tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        payload = payload.setdefault(key, {})
    payload[path[-1]] = value


def with_unknowns(payload: Payload, known: Set[Tuple[str, ...]]) -> Payload:
    """``payload`` plus ``null`` for every path in ``known`` it no longer has; ``known`` grows by its paths."""
    out = json.loads(json.dumps(payload))
    present = set()
    for path, value in _leaves(payload):
        present.add(path)
        if value is not None:
            known.add(path)
    for path in sorted(known - present):
        if path not in REQUIRED:
            _set(out, path, None)
    return out


# How far a message's arrival at the driver may lag its sending (loopback or a LAN), in seconds.
_ARRIVAL_MARGIN = 0.05


def _will_differs(old: Optional[Payload], new: Payload) -> bool:
    """Whether the last will must be renewed: its stop voltage or discharge limit is off."""
    if old is None:
        return True
    old_info, new_info = old["Info"], new["Info"]
    if (old_info["MaxDischargeCurrent"] > 0) != (new_info["MaxDischargeCurrent"] > 0):
        return True
    if abs(old_info["MaxDischargeCurrent"] - new_info["MaxDischargeCurrent"]) > 0.1 * max(old_info["MaxDischargeCurrent"], 1.0):
        return True
    # a will above the pack no longer stops a charger that follows only the voltage
    return (
        old_info["MaxChargeVoltage"] - new_info["MaxChargeVoltage"] > 0.2
        or new_info["MaxChargeVoltage"] - old_info["MaxChargeVoltage"] > 1.0
    )


class VictronPublisher:
    """Sends the bank and unit payloads (at most once a second per topic) and the last word.

    ``publish(topic, payload, last_word)`` sends one message (a last word is worth
    waiting for); ``set_will(topic, payload)``, when given, renews the MQTT last will
    of the bank topic (it costs a reconnect, so it is renewed only when the stop it
    would say has changed materially, at most once a minute).  Thread-safe: the staleness watcher may send the last word while
    the loop publishes.
    """

    WILL_RENEW_INTERVAL = 60.0

    def __init__(
        self,
        publish: Publish,
        topic_base: str,
        per_battery: bool,
        set_will: Optional[Callable[[str, str], None]] = None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._publish = publish
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._sent_at: Dict[str, float] = {}  # topic -> wall-clock time its last message went out
        self._repeat: Dict[str, Tuple[float, Payload]] = {}  # last words to send again: topic -> (when, word)
        self._topic_base = topic_base
        self._per_battery = per_battery
        self._set_will = set_will
        self._lock = threading.Lock()
        self._last_sent: Dict[str, float] = {}
        self._last_payload: Dict[str, Payload] = {}  # what each topic last carried (real data)
        self._last_word_sent: Dict[str, Payload] = {}
        self._known: Dict[str, Set[Tuple[str, ...]]] = {}
        self._will: Optional[Payload] = None
        self._will_time: Optional[float] = None
        self._unpublishable = Episodes(logger)  # "bank": voltage, power or SoC unknown, until a payload is built

    @property
    def bank_topic(self) -> str:
        return bank_topic(self._topic_base)

    def _send(self, topic: str, payload: Payload, now: float, word: bool = False) -> bool:
        last = self._last_sent.get(topic)
        if not word and last is not None and now - last < 1.0:
            return False
        message = with_unknowns(payload, self._known.setdefault(topic, set()))
        if self._publish(topic, json.dumps(message, separators=(",", ":"), sort_keys=True), word):
            self._last_sent[topic] = now
            self._sent_at[topic] = self._wall_clock()
            return True
        return False

    def update(
        self,
        summary: BankSummary,
        limits: Limits,
        units_offline: int,
        cells_per_battery: Optional[int],
        now: float,
        energy: Optional[EnergySnapshot] = None,
    ) -> int:
        """Publish fresh data; returns the number of messages sent."""
        with self._lock:
            sent = 0
            bank = bank_payload(summary, limits, cells_per_battery, units_offline, energy.bank if energy is not None else None)
            if bank is None:
                self._unpublishable.fault(
                    "bank", logging.WARNING, "Victron: bank voltage, power or SoC unknown; not publishing %s", self.bank_topic
                )
            else:
                self._unpublishable.forget("bank")
                if self._send(self.bank_topic, bank, now):
                    sent += 1
                    self._remember(self.bank_topic, bank)
                    self._renew_will(bank, limits.discharge_current, now)
            if self._per_battery:
                for unit in summary.units:
                    payload = unit_payload(unit, limits, energy.unit(unit.address) if energy is not None else None)
                    topic = battery_topic(self._topic_base, unit.address)
                    if payload is not None and self._send(topic, payload, now):
                        sent += 1
                        self._remember(topic, payload)
            return sent

    def _remember(self, topic: str, payload: Payload) -> None:
        self._last_payload[topic] = payload
        self._last_word_sent.pop(topic, None)

    def last_word(self, reason: str, now: float, discharge_current: Optional[float] = None) -> int:
        """Tell every topic that had data to stop charging (once per distinct word); returns messages sent."""
        with self._lock:
            sent = 0
            for topic, payload in sorted(self._last_payload.items()):
                word = last_word(payload, reason, discharge_current if topic == self.bank_topic else None)
                if self._last_word_sent.get(topic) == word:
                    continue
                previous = self._sent_at.get(topic)
                if self._send(topic, word, now, word=True):
                    self._last_word_sent[topic] = word
                    sent += 1
                    self._repeat_if_same_second(topic, word, previous)
                    logger.info("Victron: %s told to stop charging (%s)", topic, reason)
                else:
                    logger.warning("Victron: could not tell %s to stop charging (%s): the broker did not take it", topic, reason)
            return sent

    def _repeat_if_same_second(self, topic: str, word: Payload, previous: Optional[float]) -> None:
        """The driver updates D-Bus only when a message arrives in another whole second than the last
        update: a word right behind a data message may be ignored, so it goes out again a second on."""
        sent = self._sent_at[topic]
        if previous is not None and sent - previous < 1.0 + _ARRIVAL_MARGIN:
            self._repeat[topic] = (math.floor(sent + _ARRIVAL_MARGIN) + 1.0 + _ARRIVAL_MARGIN, word)

    def repeat_last_word(self) -> int:
        """Send again the last words that followed data within a second, once their second has passed
        (waits for it: at most about a second; called on stop, after the other outputs have closed)."""
        with self._lock:
            pending, self._repeat = self._repeat, {}
            if not pending:
                return 0
            due = max(when for when, _ in pending.values())
            wait = due - self._wall_clock()
            if wait > 0:
                self._sleep(min(wait, 1.0 + 2 * _ARRIVAL_MARGIN))
            return sum(
                1
                for topic, (_, word) in sorted(pending.items())
                if self._last_word_sent.get(topic) == word and self._send(topic, word, self._last_sent.get(topic, 0.0), word=True)
            )

    def _renew_will(self, bank: Payload, discharge_current: float, now: float) -> None:
        if self._set_will is None:
            return
        will = last_word(bank, "extra200tomqtt is gone (MQTT last will)", discharge_current)
        due = self._will_time is None or now - self._will_time >= self.WILL_RENEW_INTERVAL
        if self._will is None or (due and _will_differs(self._will, will)):
            message = with_unknowns(will, set(self._known.get(self.bank_topic, set())))
            self._set_will(self.bank_topic, json.dumps(message, separators=(",", ":"), sort_keys=True))
            self._will = will
            self._will_time = now
