"""Battery events: the catalogue of event bits and status words, and the events log.

``pwr N`` prints three bit fields, ``Bat Events``, ``Power Events`` and
``System Fault``; the ``pwr`` table, ``pwr N`` and ``bat N`` print status
words (``Volt.St  High``, a cell's ``Volt. State  High``).  ``EventCatalogue``
turns both into named ``Event`` records with a level, ``info`` (normal
operation: charging, idle, full) or ``warning``.  The built-in names come from
the Pytes community list (system-fault bits are the ones Pytes published; the
power-event bits are unconfirmed except 0x2000, which the console itself
prints as ``COULFULL``; no bat-event bit is documented).  A bit that is not
named is kept as ``unknown bit 0x...`` at warning level, never dropped.  A
YAML or JSON file can add names and change levels (``load_overrides``);
level ``ignore`` hides an event altogether.

``EventMonitor`` follows each unit's events from poll to poll.  When an event
at or above the configured level appears or clears it writes one line to the
events log (a rotating file of its own, not the main log), followed, when
enabled, by that unit's cells as a table.  An event that persists is logged
once.  Appearances are counted per event type since the daemon started.
"""

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .files import ReportingFileHandler
from .model import Bank, Battery, CellRow, CellTable, PowerDetail, PowerRow
from .validation import ValidationError

logger = logging.getLogger(__name__)

INFO = "info"
WARNING = "warning"
IGNORE = "ignore"  # only in overrides: the event is not reported at all
LEVELS: Tuple[str, ...] = (INFO, WARNING)
_RANK = {INFO: 1, WARNING: 2}

BIT_KINDS: Tuple[str, ...] = ("bat_events", "power_events", "system_fault")
APPEARED = "appeared"
CLEARED = "cleared"

# Power Events bits.  Only 0x2000 is confirmed (printed as COULFULL); the
# others follow the community list and may be corrected in an overrides file.
_POWER_EVENTS: Dict[int, Tuple[str, str]] = {
    0x1: ("Over-voltage alarm", WARNING),
    0x2: ("High voltage alarm", WARNING),
    0x4: ("Voltage normal", INFO),
    0x8: ("Low voltage alarm", WARNING),
    0x10: ("Under-voltage alarm", WARNING),
    0x20: ("Cell sleep", WARNING),
    0x40: ("Battery life alarm 1", WARNING),
    0x80: ("System start-up", WARNING),
    0x100: ("Over-temperature alarm", WARNING),
    0x200: ("High temperature alarm", WARNING),
    0x400: ("Temperature normal", INFO),
    0x800: ("Low temperature alarm", WARNING),
    0x1000: ("Under-temperature alarm", WARNING),
    0x2000: ("Full charge (COULFULL)", INFO),
    0x4000: ("Normal power", INFO),
    0x8000: ("Low power", WARNING),
    0x10000: ("Short-circuit protection", WARNING),
    0x20000: ("Discharge over-current protection 2", WARNING),
    0x40000: ("Charge over-current protection 2", WARNING),
    0x80000: ("Discharge over-current protection 1", WARNING),
    0x100000: ("Charge over-current protection 1", WARNING),
    0x200000: ("System idle", INFO),
    0x400000: ("Charging", INFO),
    0x800000: ("Discharging", INFO),
    0x1000000: ("System power failure", WARNING),
    0x10000000: ("System error", WARNING),
    0x20000000: ("System hibernation", WARNING),
    0x40000000: ("System shutdown", WARNING),
    0x80000000: ("Battery life alarm 2", WARNING),
}

# System Fault bits, as Pytes documented them.
_SYSTEM_FAULTS: Dict[int, Tuple[str, str]] = {
    0x1: ("Reverse connection of the external power input", WARNING),
    0x2: ("External power input over-voltage", WARNING),
    0x4: ("Current detection error", WARNING),
    0x8: ("OZ (analogue front end) abnormal", WARNING),
    0x10: ("Sleep module abnormal", WARNING),
    0x20: ("Temperature sensor error", WARNING),
    0x40: ("Voltage detection error", WARNING),
    0x80: ("I2C bus error", WARNING),
    0x100: ("CAN address assignment error", WARNING),
    0x200: ("Internal CAN communication error", WARNING),
    0x400: ("Charge MOSFET failure", WARNING),
    0x800: ("Discharge MOSFET failure", WARNING),
}

# Status words: "COLUMN=VALUE" rules first, then "VALUE" rules, then warning.
_STATE_LEVELS: Dict[str, str] = {
    "Normal": IGNORE,
    "-": IGNORE,
    "Base.St=Charge": INFO,
    "Base.St=Dischg": INFO,
    "Base.St=Idle": INFO,
    "Base.St=Balance": INFO,
    "Base.St=SysError": WARNING,
    "Base.St=Absent": WARNING,
    # A cell's base state repeats the unit's; only unusual values are events.
    "Base State=Charge": IGNORE,
    "Base State=Dischg": IGNORE,
    "Base State=Idle": IGNORE,
    "Base State=Balance": IGNORE,
    "Coul. Status=Full": INFO,
    "Heater Status=OFF": IGNORE,
    "Heater Status=ON": INFO,
}

# Names that read better than "<column> <word>".
_STATE_NAMES: Dict[str, str] = {
    "Base.St=Absent": "unit absent",
    "Base.St=SysError": "system error (SysError)",
    "Coul. Status=Full": "fully charged (Coul. Status Full)",
}

# Readable names of the status columns, by the console's own labels.
_COLUMN_NAMES: Dict[str, str] = {
    "Base.St": "base state",
    "Volt.St": "voltage state",
    "Curr.St": "current state",
    "Temp.St": "temperature state",
    "B.V.St": "battery voltage state",
    "B.T.St": "battery temperature state",
    "M.T.St": "MOSFET temperature state",
    "SysAlarm.St": "system alarm state",
    "Coul. Status": "coulomb state",
    "Soh. Status": "SOH state",
    "Heater Status": "heater",
    "Base State": "base state",
    "Volt. State": "voltage state",
    "Curr. State": "current state",
    "Temp. State": "temperature state",
}

# (console label, PowerRow attribute) in the pwr table's order.
_ROW_STATES: Tuple[Tuple[str, str], ...] = (
    ("Base.St", "base_state"),
    ("Volt.St", "voltage_state"),
    ("Curr.St", "current_state"),
    ("Temp.St", "temperature_state"),
    ("B.V.St", "battery_voltage_state"),
    ("B.T.St", "battery_temperature_state"),
    ("M.T.St", "mos_temperature_state"),
    ("SysAlarm.St", "system_alarm_state"),
)
# pwr N states that the pwr table does not already carry.
_DETAIL_STATES: Tuple[Tuple[str, str], ...] = (
    ("Coul. Status", "coulomb_state"),
    ("Soh. Status", "soh_state"),
    ("Heater Status", "heater_state"),
)
_CELL_STATES: Tuple[Tuple[str, str], ...] = (
    ("Base State", "base_state"),
    ("Volt. State", "voltage_state"),
    ("Curr. State", "current_state"),
    ("Temp. State", "temperature_state"),
)


class CatalogueError(ValidationError):
    """An overrides file cannot be used; ``problems`` says what is wrong, entry by entry."""

    def __init__(self, path: str, problems: List[str]) -> None:
        self.path = path
        super().__init__(problems, path)


@dataclass(frozen=True)
class Event:
    """One event of one unit.

    ``kind``: ``bat_events`` / ``power_events`` / ``system_fault`` (a bit),
    ``status`` (a status word of ``pwr`` / ``pwr N``) or ``cell`` (a status
    word of one cell in ``bat N``).  ``code`` identifies the type within the
    kind (``0x2000``, ``Volt.St=High``, ``Volt. State=High``); ``cell`` is the
    1-based cell number of a cell event.
    """

    kind: str
    code: str
    name: str
    level: str
    cell: Optional[int] = None

    @property
    def type_key(self) -> str:
        """The event type, for counting: ``power_events:0x2000``, ``cell:Volt. State=High``."""
        return "%s:%s" % (self.kind, self.code)

    @property
    def key(self) -> Tuple[str, str, Optional[int]]:
        """What makes two events the same occurrence (the type and, for cells, the cell)."""
        return (self.kind, self.code, self.cell)


@dataclass(frozen=True)
class EventChange:
    """An event that appeared or cleared on unit ``address`` at ``time`` (wall clock)."""

    address: int
    event: Event
    change: str  # APPEARED / CLEARED
    time: float


def hex_code(bit: int) -> str:
    return "0x%x" % bit


class EventCatalogue:
    """Names and levels of event bits and status words; built-in, plus a user's overrides."""

    def __init__(
        self,
        bits: Mapping[str, Mapping[int, Tuple[str, str]]],
        states: Mapping[str, str],
        state_names: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._bits: Dict[str, Dict[int, Tuple[str, str]]] = {kind: dict(bits.get(kind, {})) for kind in BIT_KINDS}
        self._states: Dict[str, str] = dict(states)
        self._state_names: Dict[str, str] = dict(state_names or {})

    @classmethod
    def builtin(cls) -> "EventCatalogue":
        return cls({"power_events": _POWER_EVENTS, "system_fault": _SYSTEM_FAULTS}, _STATE_LEVELS, _STATE_NAMES)

    def load_overrides(self, path: str) -> None:
        """Add or change entries from a YAML (or JSON) file; raise ``CatalogueError`` on any bad entry.

        Format::

            power_events:            # also bat_events, system_fault
              0x40: info             # a level: info, warning or ignore
              0x4000000: {name: "Charge MOSFET open", level: warning}
            states:                  # status words: "COLUMN=VALUE" or just "VALUE"
              "Base.St=Balance": info
              "Heater Status=ON": ignore
              "Volt. State=High": {name: "cell over-voltage", level: warning}
        """
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except OSError as exc:
            raise CatalogueError(path, ["cannot read the file: %s" % exc.strerror]) from None
        except yaml.YAMLError as exc:
            raise CatalogueError(path, ["not valid YAML or JSON: %s" % exc]) from None
        if data is None:
            return
        if not isinstance(data, Mapping):
            raise CatalogueError(path, ["must be a mapping of sections (%s, states)" % ", ".join(BIT_KINDS)])
        problems: List[str] = []
        bits: Dict[str, Dict[int, Tuple[str, str]]] = {kind: {} for kind in BIT_KINDS}
        states: Dict[str, Tuple[Optional[str], str]] = {}
        for section, entries in data.items():
            if section not in BIT_KINDS and section != "states":
                problems.append("%s: unknown section (known: %s, states)" % (section, ", ".join(BIT_KINDS)))
                continue
            if not isinstance(entries, Mapping):
                problems.append("%s: must map entries to a level or {name, level}" % section)
                continue
            for raw_key, value in entries.items():
                where = "%s.%s" % (section, raw_key)
                if section == "states":
                    key = str(raw_key).strip()
                    entry = self._parse_entry(where, value, None, problems)
                    if entry is not None:
                        states[key] = entry
                    continue
                bit = _parse_bit(raw_key)
                if bit is None:
                    problems.append("%s: must be a single bit such as 0x40 or 64" % where)
                    continue
                current = self._bits[section].get(bit, ("unknown bit %s" % hex_code(bit), WARNING))
                named = self._parse_entry(where, value, current[0], problems)
                if named is not None:
                    bits[section][bit] = (named[0] or current[0], named[1])
        if problems:
            raise CatalogueError(path, problems)
        for kind, entries in bits.items():
            self._bits[kind].update(entries)
        for key, (name, level) in states.items():
            self._states[key] = level
            if name:
                self._state_names[key] = name
        logger.info("event catalogue: %d overrides from %s", _count(bits, states), path)

    @staticmethod
    def _parse_entry(
        where: str, value: Any, default_name: Optional[str], problems: List[str]
    ) -> Optional[Tuple[Optional[str], str]]:
        """``info`` or ``{name: ..., level: ...}`` to (name, level)."""
        levels = LEVELS + (IGNORE,)
        if isinstance(value, str):
            if value not in levels:
                problems.append("%s: level must be one of %s, got %r" % (where, ", ".join(levels), value))
                return None
            return (default_name, value)
        if isinstance(value, Mapping):
            unknown = sorted(str(k) for k in value if k not in ("name", "level"))
            if unknown:
                problems.append("%s: unknown keys %s (known: name, level)" % (where, ", ".join(unknown)))
                return None
            level = value.get("level", WARNING)
            if level not in levels:
                problems.append("%s: level must be one of %s, got %r" % (where, ", ".join(levels), level))
                return None
            name = value.get("name")
            if name is not None and (not isinstance(name, str) or not name.strip()):
                problems.append("%s: name must be text" % where)
                return None
            return (name.strip() if name else default_name, level)
        problems.append("%s: must be a level or {name, level}, got %r" % (where, value))
        return None

    def describe(self, kind: str, value: Optional[int]) -> List[Event]:
        """The events of a bit field, lowest bit first; unnamed bits become ``unknown bit 0x...`` warnings."""
        if kind not in BIT_KINDS:
            raise ValueError("unknown event kind %r (one of %s)" % (kind, ", ".join(BIT_KINDS)))
        if not value:
            return []
        table = self._bits[kind]
        events: List[Event] = []
        bit = 1
        while bit <= value:
            if value & bit:
                name, level = table.get(bit, ("unknown bit %s" % hex_code(bit), WARNING))
                if level != IGNORE:
                    events.append(Event(kind, hex_code(bit), name, level))
            bit <<= 1
        return events

    def describe_state(self, column: str, value: Optional[str], cell: Optional[int] = None) -> Optional[Event]:
        """The event a status word stands for (None for ``Normal``, ``-``, unknown or ignored words).

        ``column`` is the console's label (``Volt.St``, ``Coul. Status``, a
        cell's ``Volt. State``); ``cell`` (1-based) makes it a cell event.
        """
        if value is None:
            return None
        word = value.strip()
        if not word:
            return None
        specific = "%s=%s" % (column, word)
        level = self._states.get(specific, self._states.get(word, WARNING))
        if level == IGNORE:
            return None
        label = _COLUMN_NAMES.get(column, column)
        name = self._state_names.get(specific) or self._state_names.get(word) or "%s %s" % (label, word)
        if cell is not None:
            return Event("cell", specific, "cell %d %s" % (cell, name), level, cell)
        return Event("status", specific, name, level)

    def battery_events(self, battery: Battery) -> Dict[str, List[Event]]:
        """A unit's events by source (``row``, ``detail``, ``cells``); a source not read yet is left out."""
        found: Dict[str, List[Event]] = {}
        if battery.row is not None:
            found["row"] = self._row_events(battery.row)
        if battery.detail is not None:
            found["detail"] = self._detail_events(battery.detail)
        if battery.cells is not None:
            found["cells"] = self._cell_events(battery.cells)
        return found

    def _row_events(self, row: PowerRow) -> List[Event]:
        if not row.present:
            event = self.describe_state("Base.St", "Absent")
            return [event] if event is not None else []
        return self._states_of(row, _ROW_STATES)

    def _detail_events(self, detail: PowerDetail) -> List[Event]:
        events: List[Event] = []
        for kind in BIT_KINDS:
            events.extend(self.describe(kind, getattr(detail, kind)))
        events.extend(self._states_of(detail, _DETAIL_STATES))
        return events

    def _cell_events(self, table: CellTable) -> List[Event]:
        events: List[Event] = []
        for cell in table.cells:
            events.extend(self._states_of(cell, _CELL_STATES, cell.index + 1))
            # Columns some firmware adds (DTemp. State, CTemp. State) arrive in ``extra``.
            for column, word in sorted(cell.extra.items()):
                if column.endswith("State") or column.endswith(".St"):
                    event = self.describe_state(column, word, cell.index + 1)
                    if event is not None:
                        events.append(event)
        return events

    def _states_of(self, record: Any, columns: Sequence[Tuple[str, str]], cell: Optional[int] = None) -> List[Event]:
        events: List[Event] = []
        for column, attr in columns:
            event = self.describe_state(column, getattr(record, attr), cell)
            if event is not None:
                events.append(event)
        return events


def _count(bits: Mapping[str, Mapping[int, Any]], states: Mapping[str, Any]) -> int:
    return sum(len(v) for v in bits.values()) + len(states)


def _parse_bit(raw: Any) -> Optional[int]:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = raw
    else:
        try:
            value = int(str(raw).strip(), 0)
        except ValueError:
            return None
    if value <= 0 or value & (value - 1):
        return None
    return value


class EventMonitor:
    """Tracks every unit's events from poll to poll and writes the events log."""

    def __init__(
        self,
        catalogue: EventCatalogue,
        log_path: Optional[str],
        level: str = WARNING,
        max_bytes: int = 1000 * 1024,
        backups: int = 5,
        cell_snapshots: bool = True,
    ) -> None:
        if level not in LEVELS:
            raise ValueError("level must be one of %s, got %r" % (", ".join(LEVELS), level))
        self.catalogue = catalogue
        self.level = level
        self.cell_snapshots = cell_snapshots
        self._active: Dict[int, Dict[str, List[Event]]] = {}
        self._counts: Dict[str, int] = {}
        self._handler: Optional[ReportingFileHandler] = None
        if log_path:
            directory = os.path.dirname(os.path.abspath(log_path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                logger.error("cannot create %s for the events log: %s", directory, exc)
            self._handler = ReportingFileHandler(
                log_path,
                lambda message: logger.error("events log: %s; events are still tracked", message),
                maxBytes=max_bytes,
                backupCount=backups,
                encoding="utf-8",
                delay=True,
            )
            self._handler.setFormatter(logging.Formatter("%(message)s"))

    def update(self, bank: Bank, now: float) -> List[EventChange]:
        """Compare this poll's events with the last ones; log and return what appeared and cleared.

        ``now`` is the wall-clock time (``time.time()``) written in the log.  A
        part of a unit that was not read (no ``pwr N`` or ``bat N`` yet, a
        unit that did not answer) keeps its previous events: not knowing is
        not clearing.
        """
        changes: List[EventChange] = []
        for address, battery in sorted(bank.batteries.items()):
            previous = self._active.get(address, {})
            current = dict(previous)
            current.update(self.catalogue.battery_events(battery))
            self._active[address] = current
            before = _flatten(previous)
            after = _flatten(current)
            before_keys = {e.key for e in before}
            after_keys = {e.key for e in after}
            unit_changes = [EventChange(address, e, CLEARED, now) for e in before if e.key not in after_keys]
            unit_changes += [EventChange(address, e, APPEARED, now) for e in after if e.key not in before_keys]
            for change in unit_changes:
                if change.change == APPEARED:
                    type_key = change.event.type_key
                    self._counts[type_key] = self._counts.get(type_key, 0) + 1
            self._log(battery, [c for c in unit_changes if _RANK[c.event.level] >= _RANK[self.level]])
            changes.extend(unit_changes)
        return changes

    def _log(self, battery: Battery, changes: List[EventChange]) -> None:
        if not changes:
            return
        for change in changes:
            event = change.event
            text = format_change(change)
            if event.level == WARNING and change.change == APPEARED:
                logger.warning("battery %d: %s", change.address, event.name)
            else:
                logger.info("battery %d: %s %s", change.address, event.name, change.change)
            self._write(text)
        if self.cell_snapshots:
            self._write(cell_snapshot(battery))

    def _write(self, text: str) -> None:
        if self._handler is None:
            return
        record = logging.LogRecord("extra200.events.log", logging.INFO, __file__, 0, text, None, None)
        self._handler.handle(record)

    def counts(self) -> Dict[str, int]:
        """How often each event type appeared since the start (``power_events:0x2000`` -> 3)."""
        return dict(sorted(self._counts.items()))

    def kind_counts(self) -> Dict[str, int]:
        """Appearances per kind (``bat_events``, ``power_events``, ``system_fault``, ``status``, ``cell``)."""
        totals = {kind: 0 for kind in BIT_KINDS + ("status", "cell")}
        for type_key, count in self._counts.items():
            kind = type_key.split(":", 1)[0]
            totals[kind] = totals.get(kind, 0) + count
        return totals

    def active(self) -> Dict[int, List[Event]]:
        """Each unit's events now, warnings first."""
        return {
            address: sorted(_flatten(sources), key=lambda e: -_RANK[e.level]) for address, sources in sorted(self._active.items())
        }

    def active_text(self, address: int, level: str = WARNING) -> str:
        """The unit's active events at or above ``level`` as one readable line ("" when none)."""
        events = self.active().get(address, [])
        return ", ".join(e.name for e in events if _RANK[e.level] >= _RANK[level])

    def close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            self._handler = None


def _flatten(sources: Mapping[str, List[Event]]) -> List[Event]:
    """Events of every source in a fixed order, each occurrence once."""
    seen = set()
    events: List[Event] = []
    for source in ("row", "detail", "cells"):
        for event in sources.get(source, []):
            if event.key not in seen:
                seen.add(event.key)
                events.append(event)
    return events


def format_time(now: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))


def format_change(change: EventChange) -> str:
    """``2024-05-01 12:00:00 battery 2 WARNING appeared: Over-voltage alarm [power_events 0x1]``."""
    event = change.event
    return "%s battery %d %s %s: %s [%s %s]" % (
        format_time(change.time),
        change.address,
        event.level.upper(),
        change.change,
        event.name,
        event.kind,
        event.code,
    )


# Snapshot columns: (header, CellRow attribute, format); a column is shown when any cell has a value.
_SNAPSHOT_COLUMNS: Tuple[Tuple[str, str, str], ...] = (
    ("Volt V", "voltage", "%.3f"),
    ("Curr A", "current", "%.3f"),
    ("Tempr C", "temperature", "%.1f"),
    ("Base", "base_state", "%s"),
    ("Volt.St", "voltage_state", "%s"),
    ("Curr.St", "current_state", "%s"),
    ("Temp.St", "temperature_state", "%s"),
    ("SoC %", "soc", "%.0f"),
    ("Coulomb Ah", "coulomb", "%.3f"),
    ("Bal", "balancing", "%s"),
)


def _cell_text(cell: CellRow, attr: str, fmt: str) -> str:
    value = getattr(cell, attr)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "Y" if value else "N"
    return fmt % value


def cell_snapshot(battery: Battery) -> str:
    """The unit's last ``bat N`` as an aligned text table (indented, so log lines stay greppable)."""
    lines = ["    bat %d cells:" % battery.address]
    detail = battery.detail
    if detail is not None:
        lines[0] += "  bat_events %s, power_events %s, system_fault %s" % tuple(
            hex_code(v) if v is not None else "-" for v in (detail.bat_events, detail.power_events, detail.system_fault)
        )
    cells: Sequence[CellRow] = battery.cells.cells if battery.cells is not None else ()
    if not cells:
        lines.append("    (no cell data read yet)")
        return "\n".join(lines)
    columns = [c for c in _SNAPSHOT_COLUMNS if any(getattr(cell, c[1]) is not None for cell in cells)]
    extras = sorted({k for cell in cells for k in cell.extra})
    headers = ["Cell"] + [c[0] for c in columns] + extras
    rows = [
        [str(cell.index + 1)]
        + [_cell_text(cell, attr, fmt) for _, attr, fmt in columns]
        + [cell.extra.get(k, "-") for k in extras]
        for cell in cells
    ]
    widths = [max(len(r[i]) for r in rows + [headers]) for i in range(len(headers))]
    for row in [headers] + rows:
        lines.append("    " + "  ".join(_align(text, width) for text, width in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _align(text: str, width: int) -> str:
    numeric = text.replace(".", "", 1).lstrip("-").isdigit()
    return text.rjust(width) if numeric else text.ljust(width)


def default_log_path(main_log: str, state_dir: str) -> str:
    """``battery_events.log`` beside the main log file, or in ``state_dir`` when the main log is stderr."""
    directory = os.path.dirname(main_log) if main_log else state_dir
    return os.path.join(directory, "battery_events.log")


def monitor_from_config(config: Any) -> EventMonitor:
    """An ``EventMonitor`` for a ``Config`` (``events``, ``logging``, ``state_dir``); may raise ``CatalogueError``."""
    events = config.events
    catalogue = EventCatalogue.builtin()
    if events.catalogue_file:
        catalogue.load_overrides(events.catalogue_file)
    path = events.log_path or default_log_path(config.logging.file_path, config.state_dir)
    return EventMonitor(
        catalogue,
        path,
        level=events.level,
        max_bytes=events.max_size_kb * 1024,
        backups=events.max_files,
        cell_snapshots=events.cell_snapshots,
    )
