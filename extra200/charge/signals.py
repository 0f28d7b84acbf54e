"""What a unit's BMS signals mean: the ``pwr N`` Power Events bits (alarms, stops), System Fault and
the Pytes charge / discharge switches (``protection``), and the status words of the ``pwr`` row and
the cell table (``StatusWord``: which direction and stage each is, which direction it stops)."""

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Tuple

from ..model import CellRow, PowerDetail, PowerRow
from .common import ALARM, CHARGING_CURRENT, WARNING

# Power Events bits -> (alarm, level).  The bit meanings are the community
# list (charge-control/console-protocol docs, unconfirmed): used for alarms
# only, never for the limits.
POWER_EVENT_ALARMS: Tuple[Tuple[int, str, int], ...] = (
    (0x1, "HighVoltage", ALARM),
    (0x2, "HighVoltage", WARNING),
    (0x8, "LowVoltage", WARNING),
    (0x10, "LowVoltage", ALARM),
    (0x100, "HighTemperature", ALARM),
    (0x200, "HighTemperature", WARNING),
    (0x800, "LowTemperature", WARNING),
    (0x1000, "LowTemperature", ALARM),
    (0x10000, "HighCurrent", ALARM),
    (0x20000, "HighDischargeCurrent", ALARM),
    (0x40000, "HighChargeCurrent", ALARM),
    (0x80000, "HighDischargeCurrent", WARNING),
    (0x100000, "HighChargeCurrent", WARNING),
    (0x1000000, "InternalFailure", WARNING),
    (0x10000000, "InternalFailure", ALARM),
    (0x80000000, "StateOfHealth", ALARM),
)

# Power Events bits that stop a direction (with bms_states_block): over- / high-voltage and charge
# over-current stop charging; low- / under-voltage, discharge over-current and short circuit stop
# discharging.  The poller re-reads a unit's ``pwr N`` every poll while one is set, so it clears.
CHARGE_STOP_EVENTS: Tuple[Tuple[int, str], ...] = (
    (0x1, "over-voltage"),
    (0x2, "high voltage"),
    (0x40000, "charge over-current 2"),
    (0x100000, "charge over-current"),
)
DISCHARGE_STOP_EVENTS: Tuple[Tuple[int, str], ...] = (
    (0x8, "low voltage"),
    (0x10, "under-voltage"),
    (0x10000, "short circuit"),
    (0x20000, "discharge over-current 2"),
    (0x80000, "discharge over-current"),
)
STOP_EVENTS = sum(bit for bit, _ in CHARGE_STOP_EVENTS + DISCHARGE_STOP_EVENTS)
FULL_EVENT = 0x2000  # COULFULL
SWITCHES = ("CMOS Status", "DMOS Status")  # Pytes pwr N: the BMS's own charge / discharge switch


def detail_signals_protection(detail: Optional[PowerDetail]) -> bool:
    """Whether a unit's ``pwr N`` holds a protection signal that stops a limit (read it again next poll)."""
    return detail is not None and (bool((detail.power_events or 0) & STOP_EVENTS) or bool(detail.system_fault))


def protection(detail: PowerDetail) -> Optional[PowerDetail]:
    """What of a ``pwr N`` stops or lowers a limit (stop events, System Fault, a switch OFF), None if nothing."""
    events = (detail.power_events or 0) & STOP_EVENTS
    switches = {key: word for key, word in detail.extra.items() if key in SWITCHES and word.strip().upper() == "OFF"}
    if not (events or detail.system_fault or switches):
        return None
    return PowerDetail(detail.address, power_events=events, system_fault=detail.system_fault, extra=switches)


def state_kind(word: Optional[str]) -> Optional[Tuple[str, int]]:
    """(direction, level) of an abnormal status word, None for Normal or unknown ("-").

    ``High`` / ``Low`` are the first stage (warning); ``Over`` / ``Under`` the
    protection stage (alarm); any other word counts as an abnormal warning.
    """
    if word is None:
        return None
    text = word.strip().lower()
    if text in ("", "-", "normal"):
        return None
    for prefix, kind in (
        ("high", ("high", WARNING)),
        ("over", ("high", ALARM)),
        ("low", ("low", WARNING)),
        ("under", ("low", ALARM)),
    ):
        if text.startswith(prefix):
            return kind
    return ("other", WARNING)


# The pwr row's status columns: (console label, PowerRow attribute); voltage, temperature, current, alarm.
_ROW_STATE_COLUMNS = (
    ("Volt.St", "voltage_state"),
    ("B.V.St", "battery_voltage_state"),
    ("Temp.St", "temperature_state"),
    ("B.T.St", "battery_temperature_state"),
    ("M.T.St", "mos_temperature_state"),
    ("Curr.St", "current_state"),
    ("SysAlarm.St", "system_alarm_state"),
)
VOLTAGE_COLUMNS = ("Volt.St", "B.V.St", "Volt. State")
CURRENT_COLUMNS = ("Curr.St", "Curr. State")
SYSTEM_COLUMNS = ("Base.St", "SysAlarm.St")


@dataclass(frozen=True)
class StatusWord:
    """One abnormal status word of a unit or a cell."""

    address: int
    column: str  # console label: Volt.St, B.V.St, Temp.St, a cell's Volt. State ...
    word: str
    direction: str  # high / low / other
    level: int
    cell: Optional[int] = None  # 0-based cell index for cell states

    @property
    def where(self) -> str:
        return (
            "B%dC%d %s" % (self.address, self.cell + 1, self.column)
            if self.cell is not None
            else "B%d %s" % (self.address, self.column)
        )

    @property
    def text(self) -> str:
        return "%s %s" % (self.where, self.word)

    def blocks(self, charge: bool, current: Optional[float]) -> bool:
        """Whether this word stops charge (or discharge).

        Voltage: High / Over / unknown words stop charge, Low / Under stop
        discharge.  Temperature: any abnormal word stops charge; an alarm-stage
        word (Over / Under) also stops discharge.  ``CTemp.`` / ``DTemp.``
        (charge / discharge temperature) act on their own direction only.
        Current (``Curr.St``): the direction the current flows, both when it
        is near 0 (the BMS may already have cut it).  ``Base.St SysError`` and
        ``SysAlarm.St`` stop charge.
        """
        column = self.column
        if column in VOLTAGE_COLUMNS:
            return self.direction != "low" if charge else self.direction == "low"
        if column == "CTemp. State":
            return charge
        if column == "DTemp. State":
            return not charge and self.level >= ALARM
        if column in ("Temp.St", "B.T.St", "M.T.St", "Temp. State"):
            return charge or self.level >= ALARM
        if column in CURRENT_COLUMNS:
            flowing = current or 0.0
            return abs(flowing) <= CHARGING_CURRENT or (flowing > 0) == charge
        if column in SYSTEM_COLUMNS:
            return charge
        return False


def row_status_words(address: int, row: PowerRow) -> List[StatusWord]:
    """The abnormal words of a unit's pwr row (``Base.St`` counts only as ``SysError``)."""
    words: List[StatusWord] = []
    for column, attr in _ROW_STATE_COLUMNS:
        word = getattr(row, attr)
        kind = state_kind(word)
        if kind is not None:
            words.append(StatusWord(address, column, word.strip(), kind[0], kind[1]))
    if row.base_state is not None and row.base_state.strip().lower() == "syserror":
        words.append(StatusWord(address, "Base.St", row.base_state.strip(), "other", ALARM))
    return words


def cell_status_words(
    address: int, cells: Sequence[CellRow], summarised: Mapping[str, Optional[str]], this_poll: bool
) -> List[StatusWord]:
    """The abnormal words of a unit's cell table; an older table's words give way to the row's own
    summary of them (``summarised``: a cell column -> the row's word, when the row has one)."""
    words: List[StatusWord] = []
    for cell in cells:
        columns = [
            ("Volt. State", cell.voltage_state),
            ("Temp. State", cell.temperature_state),
            ("Curr. State", cell.current_state),
        ]
        columns.extend((label, word) for label, word in sorted(cell.extra.items()) if label in ("CTemp. State", "DTemp. State"))
        for column, word in columns:
            if not this_poll and summarised.get(column) is not None:
                continue
            kind = state_kind(word)
            if kind is not None and word is not None:
                words.append(StatusWord(address, column, word.strip(), kind[0], kind[1], cell.index))
    return words
