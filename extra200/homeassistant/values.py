"""What the Home Assistant entities read: the views of a battery and of the bank, and the value functions.

A view (``UnitView``, ``BankView``) is what one poll gives an entity to read; the
functions here turn it into the states Home Assistant accepts: numbers, ``ON`` /
``OFF`` flags, texts of at most 255 characters, and the JSON attributes beside
them.  Pure: no I/O, no state.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ..derive import BankSummary, Extreme, UnitSummary
from ..energy import EnergyTotals
from ..model import Battery, CellRow

MAX_STATE_LENGTH = 255  # Home Assistant turns longer states into "unknown"
STATE_OPTIONS = ("Charging", "Discharging", "Idle", "Balancing", "Error", "Other")
_STATE_WORDS = {
    "charge": "Charging",
    "dischg": "Discharging",
    "discharge": "Discharging",
    "idle": "Idle",
    "balance": "Balancing",
    "syserror": "Error",
    "error": "Error",
}


@dataclass(frozen=True)
class UnitView:
    """What a battery's entities read."""

    battery: Battery
    unit: UnitSummary
    energy: Optional[EnergyTotals]
    events: Optional[str]


@dataclass(frozen=True)
class BankView:
    """What the bank's entities read."""

    summary: BankSummary
    limits: Any  # charge.ChargeLimits or None (duck-typed, see the attributes read below)
    energy: Optional[EnergyTotals]


def negated(value: Optional[float]) -> Optional[float]:
    """Home Assistant's battery power sign: + discharging (the console's is + charging)."""
    return None if value is None else 0.0 - value


def extreme_value(extreme: Optional[Extreme]) -> Optional[float]:
    return extreme.value if extreme is not None else None


def extreme_id(extreme: Optional[Extreme]) -> Optional[str]:
    return extreme.id if extreme is not None and extreme.cell is not None else None


def charged_kwh(energy: Optional[EnergyTotals]) -> Optional[float]:
    return energy.charged_kwh if energy is not None else None


def discharged_kwh(energy: Optional[EnergyTotals]) -> Optional[float]:
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
    parts = [
        "%s 0x%X" % (label, value)
        for label, value in (
            ("Battery events", detail.bat_events),
            ("Power events", detail.power_events),
            ("System fault", detail.system_fault),
        )
        if value
    ]
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


def event_attributes(view: UnitView) -> Optional[Dict[str, Any]]:
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
    alarms = getattr(limits, "alarms", None)  # None without limits
    return None if alarms is None else {name: level for name, level in alarms.items() if level}


def any_limit_alarm(view: BankView) -> Optional[bool]:
    raised = _raised_alarms(view.limits)
    return None if raised is None else bool(raised)


def limit_alarms(limits: Any) -> Optional[str]:
    """The charge-control alarms (0 ok, 1 warning, 2 alarm) that are raised, as text, or ``OK``."""
    raised = _raised_alarms(limits)
    if raised is None:
        return None
    active = ["%s (%s)" % (readable_name(name), "alarm" if level >= 2 else "warning") for name, level in sorted(raised.items())]
    return clip_text(", ".join(active)) if active else "OK"


def limit_alarm_attributes(view: BankView) -> Optional[Dict[str, Any]]:
    raised = _raised_alarms(view.limits)
    if raised is None:
        return None
    return {
        "alarms": sorted(readable_name(n) for n, level in raised.items() if level >= 2),
        "warnings": sorted(readable_name(n) for n, level in raised.items() if level == 1),
    }


_LEVEL_WORDS = {0: "ok", 1: "warning", 2: "alarm"}


def one_alarm(name: str) -> Callable[[BankView], Optional[bool]]:
    def value(view: BankView) -> Optional[bool]:
        alarms = getattr(view.limits, "alarms", None)
        return None if alarms is None or name not in alarms else alarms[name] > 0

    return value


def one_alarm_level(name: str) -> Callable[[BankView], Optional[Dict[str, Any]]]:
    def value(view: BankView) -> Optional[Dict[str, Any]]:
        alarms = getattr(view.limits, "alarms", None)
        if alarms is None or name not in alarms:
            return None
        return {"level": _LEVEL_WORDS.get(alarms[name], str(alarms[name]))}

    return value


def limit_reasons(limits: Any) -> Optional[str]:
    if limits is None:
        return None
    parts = ["%s: %s" % (label, getattr(limits, attr)) for label, attr in _LIMIT_REASONS if getattr(limits, attr, None)]
    return clip_text("; ".join(parts)) if parts else None


_LIMIT_REASONS = (("CVL", "voltage_reason"), ("CCL", "charge_reason"), ("DCL", "discharge_reason"))


def limit_reason_attributes(view: BankView) -> Optional[Dict[str, Any]]:
    """Each limit's reason in full (the state is cut at 255 characters)."""
    if view.limits is None:
        return None
    return {label: getattr(view.limits, attr, None) for label, attr in _LIMIT_REASONS}


def limit_value(attr: str) -> Callable[[BankView], Any]:
    def value(view: BankView) -> Any:
        return getattr(view.limits, attr, None)  # None without limits

    return value


def permission(attr: str) -> Callable[[BankView], Optional[bool]]:
    def value(view: BankView) -> Optional[bool]:
        allowed = getattr(view.limits, attr, None)
        return None if allowed is None else bool(allowed)

    return value


def reason_attributes(attr: str) -> Callable[[BankView], Optional[Dict[str, Any]]]:
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


def cell_value(index: int, attr: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[UnitView], Any]:
    def value(view: UnitView) -> Any:
        row = _cell(view.battery, index)
        raw = getattr(row, attr) if row is not None else None
        return convert(raw) if raw is not None else None

    return value


def status_column_problem(attr: str) -> Callable[[UnitView], Optional[bool]]:
    def value(view: UnitView) -> Optional[bool]:
        row = view.battery.row
        return None if row is None or not row.present else _status_problem(getattr(row, attr))

    return value


def status_word_attributes(attr: str) -> Callable[[UnitView], Optional[Dict[str, Any]]]:
    def value(view: UnitView) -> Optional[Dict[str, Any]]:
        row = view.battery.row
        word = getattr(row, attr) if row is not None and row.present else None
        return None if word is None else {"state": word.strip()}

    return value


def soh_problem(view: UnitView) -> Optional[bool]:
    detail = view.battery.detail
    return None if detail is None else _status_problem(detail.soh_state)


def any_battery_alarm(view: UnitView) -> Optional[bool]:
    parts = battery_alarm_list(view.battery)
    return None if parts is None else bool(parts)


def battery_alarm_attributes(view: UnitView) -> Optional[Dict[str, Any]]:
    parts = battery_alarm_list(view.battery)
    return None if parts is None else {"active": parts}


def stat_counter(label: str) -> Callable[[UnitView], Optional[int]]:
    def value(view: UnitView) -> Optional[int]:
        stats = view.battery.stats
        raw = stats.counters.get(label) if stats is not None else None
        try:
            return int(raw.split()[0]) if raw else None
        except ValueError:
            return None

    return value
