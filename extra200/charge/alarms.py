"""The alarm rules (pure): dbus-mqtt-battery's ``Alarms.*`` levels (0 ok / 1 warning / 2 alarm) for the
bank and for each unit alone, each with the reason for its level.

Measured readings go through one table of warning / alarm levels (``_unit_thresholds``,
``_spread_and_soc``); the BMS's own status words, Power Events, System Fault, SoH status and the
unit's current rating raise the alarm they name.
"""

from typing import Dict, List, Optional, Sequence, Tuple

from ..config import ChargeConfig
from ..derive import BankSummary, Extreme
from .common import (
    ALARM,
    ALARM_NAMES,
    CHARGING_CURRENT,
    LFP_CELL_MAX,
    LFP_CELL_MIN,
    OK,
    WARNING,
    Curve,
    plural,
)
from .signals import CURRENT_COLUMNS, POWER_EVENT_ALARMS, StatusWord, state_kind
from .units import Unit

Reading = Optional[Tuple[float, str]]  # a measured value with its reason text, None when not measured
# One row of a threshold table: (alarm, reading, upwards?, warning at, alarm at).
Threshold = Tuple[str, Reading, bool, float, float]

# The alarm a status word raises, by its column: (when High / Over, when Low / Under, any other word);
# a current word names the direction the current flows, any other column InternalFailure.
_CELL_VOLTAGE_WORD = ("HighCellVoltage", "LowCellVoltage", "InternalFailure")
_TEMPERATURE_WORD = ("HighTemperature", "LowTemperature", "LowTemperature")
_WORD_ALARMS: Dict[str, Tuple[str, str, str]] = {
    "Volt.St": ("HighVoltage", "LowVoltage", "InternalFailure"),
    "B.V.St": _CELL_VOLTAGE_WORD,
    "Volt. State": _CELL_VOLTAGE_WORD,
    "M.T.St": ("HighInternalTemperature",) * 3,
    "CTemp. State": ("HighChargeTemperature", "LowChargeTemperature", "LowChargeTemperature"),
    "Temp.St": _TEMPERATURE_WORD,
    "B.T.St": _TEMPERATURE_WORD,
    "Temp. State": _TEMPERATURE_WORD,
    "DTemp. State": _TEMPERATURE_WORD,
}


class Alarms:
    """The alarm levels being built for one poll, each with the reason for its level."""

    def __init__(self) -> None:
        self.levels: Dict[str, int] = {name: OK for name in ALARM_NAMES}
        self.reasons: Dict[str, str] = {}

    def set(self, name: str, level: int, reason: str) -> None:
        if level > self.levels[name]:
            self.levels[name] = level
            self.reasons[name] = reason

    def merge_high_current(self) -> None:
        """``HighCurrent``: the worse of the charge and discharge current alarms."""
        self.set(
            "HighCurrent",
            max(self.levels["HighChargeCurrent"], self.levels["HighDischargeCurrent"]),
            self.reasons.get("HighChargeCurrent") or self.reasons.get("HighDischargeCurrent", ""),
        )

    def thresholds(self, table: Sequence[Threshold]) -> None:
        """Each measured reading of ``table``: warning / alarm when it reaches its levels (upwards or downwards)."""
        for name, reading, high, warn, alarm in table:
            if reading is None:
                continue
            value, text = reading
            if _reached(value, alarm, high):
                self.set(name, ALARM, text)
            elif _reached(value, warn, high):
                self.set(name, WARNING, text)


def _reached(value: float, level: float, high: bool) -> bool:
    return value >= level if high else value <= level


def _reading(extreme: Optional[Extreme], text: str) -> Reading:
    """An extreme as a reading, ``text`` formatted with its id and value."""
    return None if extreme is None else (extreme.value, text % (extreme.id, extreme.value))


def _unit_thresholds(c: ChargeConfig, u: Unit, cells: int) -> List[Threshold]:
    """A unit's cells, pack and cell temperatures against their levels: the cells at the cut-offs (warning)
    and the LiFePO4 limits (alarm), the pack the same per cell x its own cell count, the temperatures at the
    charge window (warning) and the discharge window (alarm)."""
    unit_cells = u.cell_count or cells  # each unit's pack against its own cell count
    pack = None if u.pack_voltage is None else (u.pack_voltage, "B%d pack %.2f V" % (u.address, u.pack_voltage))
    table: List[Threshold] = [
        ("HighCellVoltage", _reading(u.cell_high, "cell %s %.3f V"), True, c.charge_cutoff_cell_voltage, LFP_CELL_MAX),
        ("LowCellVoltage", _reading(u.cell_low, "cell %s %.3f V"), False, c.discharge_cutoff_cell_voltage, LFP_CELL_MIN),
        ("HighVoltage", pack, True, unit_cells * c.charge_cutoff_cell_voltage, unit_cells * LFP_CELL_MAX),
        ("LowVoltage", pack, False, unit_cells * c.discharge_cutoff_cell_voltage, unit_cells * LFP_CELL_MIN),
    ]
    for extreme in (u.temp_high, u.temp_low):
        temp = _reading(extreme, "cell temperature %s %.1f °C")
        table.append(("HighTemperature", temp, True, c.charge_max_temperature + 1e-9, c.discharge_max_temperature + 1e-9))
        table.append(("LowTemperature", temp, False, c.charge_min_temperature - 1e-9, c.discharge_min_temperature - 1e-9))
    return table


def _spread_and_soc(c: ChargeConfig, spread: Optional[float], soc: Optional[float], who: str) -> List[Threshold]:
    """The cell spread and SoC against their levels; ``who`` starts the reason ("" for the bank, "B2 " ...)."""
    return [
        (
            "CellImbalance",
            None if spread is None else (spread, "%scell spread %.3f V" % (who, spread)),
            True,
            c.imbalance_warning,
            c.imbalance_alarm,
        ),
        ("LowSoc", None if soc is None else (soc, "%sSoC %.1f %%" % (who, soc)), False, c.low_soc_warning, c.low_soc_alarm),
    ]


def _word_alarm(word: StatusWord, current: Optional[float]) -> str:
    """The alarm a unit's abnormal status word raises."""
    if word.column in CURRENT_COLUMNS:
        flowing = current or 0.0
        return "HighChargeCurrent" if flowing > 0 else "HighDischargeCurrent" if flowing < 0 else "HighCurrent"
    high, low, other = _WORD_ALARMS.get(word.column, ("InternalFailure",) * 3)
    return high if word.direction == "high" else low if word.direction == "low" else other


class AlarmRules:
    """The alarm levels of the bank (``bank``) and of one unit alone (``unit``)."""

    def __init__(self, charge: ChargeConfig, electronics_curve: Curve) -> None:
        self._cfg = charge
        self._electronics_curve = electronics_curve

    def bank(
        self, units: Sequence[Unit], summary: BankSummary, spread: Optional[float], cells: int, missing: Sequence[int]
    ) -> Alarms:
        a = Alarms()
        if missing:
            a.set("BmsCable", WARNING, plural(missing, "missing"))
        if not units:
            a.set("BmsCable", ALARM, "no unit reporting")
        charging = (summary.current or 0.0) > CHARGING_CURRENT
        for u in units:
            self._unit_measurement_alarms(a, u, cells, charging)
        a.thresholds(_spread_and_soc(self._cfg, spread, summary.soc, ""))
        a.merge_high_current()
        return a

    def unit(self, u: Unit, cells: int) -> Dict[str, int]:
        """The alarms one unit causes on its own (its cells, its spread, its SoC, its words)."""
        a = Alarms()
        self._unit_measurement_alarms(a, u, cells, (u.current or 0.0) > CHARGING_CURRENT)
        spread = u.cell_high.value - u.cell_low.value if u.cell_high is not None and u.cell_low is not None else None
        a.thresholds(_spread_and_soc(self._cfg, spread, u.soc, "B%d " % u.address))
        a.merge_high_current()
        return a.levels

    def _unit_measurement_alarms(self, a: Alarms, u: Unit, cells: int, charging: bool) -> None:
        """One unit's share of the alarms: its cells, pack, temperatures, electronics and status words."""
        c = self._cfg
        a.thresholds(_unit_thresholds(c, u, cells))
        for e in (u.temp_high, u.temp_low):
            if e is None or not charging:
                continue
            text = "cell temperature %s %.1f °C" % (e.id, e.value)
            if e.value > c.charge_max_temperature:
                a.set("HighChargeTemperature", ALARM, "charging at " + text)
            if e.value < c.charge_min_temperature:
                a.set("LowChargeTemperature", ALARM, "charging at " + text)
        if u.electronics is not None:
            fraction = self._electronics_curve(u.electronics[0])
            if fraction < 1.0:
                a.set(
                    "HighInternalTemperature",
                    ALARM if fraction <= 0.0 else WARNING,
                    "%s B%d %.1f °C" % (u.electronics[1], u.address, u.electronics[0]),
                )
        for s in u.states:
            a.set(_word_alarm(s, u.current), s.level, s.text)
        _signal_alarms(a, u)
        _rating_alarms(a, u)


def _signal_alarms(a: Alarms, u: Unit) -> None:
    """Alarms from a unit's ``pwr N``: Power Events bits, System Fault, an abnormal SoH status."""
    detail = u.battery.detail
    if detail is None:
        return
    events = detail.power_events or 0
    for bit, name, level in POWER_EVENT_ALARMS:
        if events & bit:
            a.set(name, level, "B%d Power Events 0x%X" % (u.address, events))
    if detail.system_fault:
        a.set("InternalFailure", ALARM, "B%d System Fault 0x%X" % (u.address, detail.system_fault))
    kind = state_kind(detail.soh_state)
    if kind is not None and detail.soh_state is not None:
        a.set("StateOfHealth", WARNING, "B%d Soh. Status %s" % (u.address, detail.soh_state.strip()))


def _rating_alarms(a: Alarms, u: Unit) -> None:
    """A unit's current above its own ``info`` rating: a warning."""
    info = u.battery.info
    if info is None or u.current is None:
        return
    if info.max_charge_current and u.current > info.max_charge_current:
        a.set(
            "HighChargeCurrent",
            WARNING,
            "B%d %.1f A above its rating %.1f A" % (u.address, u.current, info.max_charge_current),
        )
    if info.max_discharge_current and -u.current > info.max_discharge_current:
        a.set(
            "HighDischargeCurrent",
            WARNING,
            "B%d %.1f A above its rating %.1f A" % (u.address, -u.current, info.max_discharge_current),
        )
